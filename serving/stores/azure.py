"""Azure Blob Storage backend (azure-storage-blob).

Credentials, in order (docs/contracts.md): `AZURE_STORAGE_CONNECTION_STRING`; else
`AZURE_STORAGE_ACCOUNT_URL` with `AZURE_STORAGE_SAS_TOKEN`; else `AZURE_STORAGE_ACCOUNT_URL`
with azure-identity's `DefaultAzureCredential` (workload identity, managed identity, CLI...).
The SDK's own retry policy is kept short (2 retries, linear backoff) because the transfer
engine retries ranges itself; every SDK error is mapped to a `StoreError` with a scrubbed
one-line message (the account key and SAS token are named to `scrub` as secrets).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    IncompleteReadError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.storage.blob import BlobServiceClient, ContainerClient, LinearRetry

from modelapp_serving.stores.base import Store
from modelapp_serving.stores.errors import (
    ConflictError,
    CredentialsError,
    NotFoundError,
    StoreConfigError,
    StoreError,
    TransientError,
    first_line,
)
from modelapp_serving.stores.transfer import TransferSettings
from modelapp_serving.stores.uri import Location

_TRANSIENT_STATUS = frozenset({408, 429, 500, 502, 503, 504})


def _secrets(env: Mapping[str, str]) -> list[str]:
    """Secret values that must never appear in a message."""
    found = [env.get("AZURE_STORAGE_SAS_TOKEN", "").lstrip("?")]
    for field in env.get("AZURE_STORAGE_CONNECTION_STRING", "").split(";"):
        name, _, value = field.partition("=")
        if name.strip().lower() in ("accountkey", "sharedaccesssignature"):
            found.append(value.strip())
    return [secret for secret in found if secret]


def _service(env: Mapping[str, str], settings: TransferSettings, hook: Any, *, ambient: bool) -> BlobServiceClient:
    options: dict[str, Any] = {
        "retry_policy": LinearRetry(backoff=1, random_jitter_range=1, retry_total=2),
        "connection_timeout": 10,
        "read_timeout": 60,
        "max_single_get_size": settings.chunk_size,
        "max_chunk_get_size": settings.chunk_size,
        "raw_request_hook": hook,
    }
    connection_string = env.get("AZURE_STORAGE_CONNECTION_STRING")
    account_url = env.get("AZURE_STORAGE_ACCOUNT_URL")
    try:
        if connection_string:
            return BlobServiceClient.from_connection_string(connection_string, **options)
        if account_url and env.get("AZURE_STORAGE_SAS_TOKEN"):
            return BlobServiceClient(account_url, credential=env["AZURE_STORAGE_SAS_TOKEN"].lstrip("?"), **options)
        if account_url and not ambient:
            return BlobServiceClient(account_url, credential=None, **options)  # anonymous: no identity of ours
        if account_url:
            from azure.identity import DefaultAzureCredential

            return BlobServiceClient(account_url, credential=DefaultAzureCredential(), **options)
    except ValueError as exc:
        raise StoreConfigError(f"Azure credentials: {first_line(exc, _secrets(env))}") from None
    raise StoreConfigError(
        "azureblob:// needs AZURE_STORAGE_CONNECTION_STRING, or AZURE_STORAGE_ACCOUNT_URL "
        "(with AZURE_STORAGE_SAS_TOKEN or a workload identity)"
    )


def map_error(exc: Exception, what: str, secrets: list[str]) -> StoreError:
    """Translate an SDK exception into our error kinds with a scrubbed one-line message."""
    status = getattr(getattr(exc, "response", None), "status_code", None) or getattr(exc, "status_code", None)
    code = getattr(exc, "error_code", None)
    reason = f"{what}: {code or type(exc).__name__}" + (f" (HTTP {status})" if status else "")
    detail = first_line(exc, secrets, limit=200)
    if isinstance(exc, ResourceNotFoundError) or status == 404:
        return NotFoundError(f"{what}: not found ({code or 'HTTP 404'})")
    if isinstance(exc, ClientAuthenticationError) or status in (401, 403):
        return CredentialsError(
            f"{reason}: the store refused the credentials; check the AZURE_STORAGE_* keys of the credentials "
            "Secret, or the workload identity's role on the container"
        )
    if isinstance(exc, ResourceExistsError | ResourceModifiedError) or status in (409, 412):
        return ConflictError(f"{what}: already exists")
    if isinstance(exc, ServiceRequestError | ServiceResponseError | IncompleteReadError | OSError):
        return TransientError(f"{reason}: {detail}")
    if status in _TRANSIENT_STATUS or (isinstance(exc, HttpResponseError) and status is None):
        return TransientError(f"{reason}: {detail}")
    return StoreError(f"{reason}: {detail}")


class AzureBlobStore(Store):
    """Versions under `azureblob://<container>/<prefix>`."""

    def __init__(self, location: Location, env: Mapping[str, str], settings: TransferSettings | None = None, *,
                 ambient: bool = True) -> None:  # fmt: skip
        super().__init__(location, settings)
        self._secrets = _secrets(env)
        service = _service(env, self.settings, self._count, ambient=ambient)
        self._container: ContainerClient = service.get_container_client(location.container)

    def _count(self, _request: Any) -> None:
        self.stats.requests += 1

    def _error(self, exc: Exception, what: str) -> StoreError:
        return map_error(exc, f"{self.uri}: {what}", self._secrets)

    def _list_children(self) -> Iterator[str]:
        start = self.location.key("") + "/" if self.location.prefix else ""
        try:
            listing = self._container.walk_blobs(name_starts_with=start or None, delimiter="/", results_per_page=5000)
            for item in listing:
                name: str = item.name
                if name.endswith("/"):
                    yield name[len(start) : -1]
        except Exception as exc:
            raise self._error(exc, "listing versions") from None

    def _read(self, key: str, start: int, length: int) -> tuple[bytes, int]:
        blob = self._container.get_blob_client(key)
        try:
            downloader = blob.download_blob(offset=start, length=length, max_concurrency=1)
            # chunks() hands over the single GET's buffer without readall()'s extra copies;
            # properties.size is the range's length, the object's size ends the Content-Range.
            data = b"".join(downloader.chunks())
            return data, int(str(downloader.properties.content_range).rpartition("/")[2])
        except HttpResponseError as exc:
            if exc.status_code != 416:
                raise self._error(exc, key) from None
        except Exception as exc:
            raise self._error(exc, key) from None
        try:  # 416: the range starts at or past the end (an empty blob); learn the size
            return b"", int(blob.get_blob_properties().size)
        except Exception as exc:
            raise self._error(exc, key) from None

    def _upload_file(self, key: str, source: Path, size: int) -> None:
        try:
            with source.open("rb") as stream:
                self._container.upload_blob(
                    key, stream, length=size, overwrite=True, max_concurrency=self.settings.workers
                )
        except Exception as exc:
            raise self._error(exc, key) from None

    def _create(self, key: str, data: bytes) -> None:
        try:
            self._container.upload_blob(key, data, length=len(data), overwrite=False)
        except Exception as exc:
            raise self._error(exc, key) from None
