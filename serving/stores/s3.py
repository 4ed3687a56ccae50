"""S3 backend (boto3): any S3-compatible server.

Credentials come from boto3's usual chain (the `AWS_*` variables of the given environment,
shared files, IRSA web identity, instance metadata); `AWS_ENDPOINT_URL` points it at a
non-AWS server. botocore retries request-level faults (standard mode, 3 attempts); a body cut
while streaming is retried by the transfer engine. The create-only manifest write uses `If-None-Match: *`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import boto3
from boto3.s3.transfer import TransferConfig
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, PartialCredentialsError

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

_NOT_FOUND = frozenset({"NoSuchKey", "NoSuchBucket", "404", "NotFound"})
_DENIED = frozenset(
    {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken", "403", "401"}
)
_CONFLICT = frozenset({"PreconditionFailed", "ConditionalRequestConflict", "412", "409"})
_TRANSIENT = frozenset(
    {"SlowDown", "InternalError", "ServiceUnavailable", "RequestTimeout", "500", "502", "503", "504"}
)


def _secrets(env: Mapping[str, str]) -> list[str]:
    return [env[name] for name in ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN") if env.get(name)]


def _client_error(exc: ClientError, what: str, secrets: list[str]) -> StoreError:
    code = str(exc.response.get("Error", {}).get("Code", ""))
    status = str(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
    if code in _NOT_FOUND or status == "404":
        return NotFoundError(f"{what}: not found ({code})")
    if code in _DENIED or status in ("401", "403"):
        return CredentialsError(
            f"{what}: {code or status}: the store refused the credentials; check the AWS_* keys of the "
            "credentials Secret, or the IAM role's access to the bucket"
        )
    if code in _CONFLICT or status in ("409", "412"):
        return ConflictError(f"{what}: already exists")
    if code in _TRANSIENT or status in _TRANSIENT:
        return TransientError(f"{what}: {code or status}")
    return StoreError(f"{what}: {code or status}: {first_line(exc, secrets, limit=200)}")


def map_error(exc: Exception, what: str, secrets: list[str]) -> StoreError:
    """Translate a botocore exception into our error kinds with a scrubbed one-line message."""
    if isinstance(exc, ClientError):
        return _client_error(exc, what, secrets)
    if isinstance(exc, NoCredentialsError | PartialCredentialsError):
        return CredentialsError(
            f"{what}: no usable AWS credentials ({type(exc).__name__}): set AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY in the credentials Secret, or give the pod an IAM role (IRSA)"
        )
    if isinstance(exc, BotoCoreError | OSError):
        return TransientError(f"{what}: {type(exc).__name__}: {first_line(exc, secrets, limit=200)}")
    return StoreError(f"{what}: {type(exc).__name__}: {first_line(exc, secrets, limit=200)}")


class S3Store(Store):
    """Versions under `s3://<bucket>/<prefix>`."""

    def __init__(self, location: Location, env: Mapping[str, str], settings: TransferSettings | None = None, *,
                 ambient: bool = True) -> None:  # fmt: skip
        super().__init__(location, settings)
        self._secrets = _secrets(env)
        # Without keys in `env`, boto3 would look for credentials in the process (environment, ~/.aws, IRSA,
        # instance metadata): that is the process's own identity, so it is used only when `ambient`;
        # otherwise requests go unsigned (anonymous).
        unsigned = not ambient and not env.get("AWS_ACCESS_KEY_ID")
        config = Config(
            retries={"max_attempts": 3, "mode": "standard"},
            connect_timeout=10,
            read_timeout=60,
            max_pool_connections=self.settings.workers * 2 + 2,
            **({"signature_version": UNSIGNED} if unsigned else {}),
        )
        session = boto3.session.Session(
            aws_access_key_id=env.get("AWS_ACCESS_KEY_ID") or None,
            aws_secret_access_key=env.get("AWS_SECRET_ACCESS_KEY") or None,
            aws_session_token=env.get("AWS_SESSION_TOKEN") or None,
            region_name=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or None,
        )
        try:
            self._client: Any = session.client("s3", endpoint_url=env.get("AWS_ENDPOINT_URL") or None, config=config)
        except ValueError as exc:  # botocore: "Invalid endpoint: ..."
            raise StoreConfigError(f"S3 settings: {first_line(exc, self._secrets)} (check AWS_ENDPOINT_URL)") from None
        self._client.meta.events.register("before-send.s3.*", self._count)
        self._bucket = location.container

    def _count(self, **_kwargs: Any) -> None:
        self.stats.requests += 1

    def _error(self, exc: Exception, what: str) -> StoreError:
        return map_error(exc, f"{self.uri}: {what}", self._secrets)

    def _list_children(self) -> Iterator[str]:
        start = self.location.key("") + "/" if self.location.prefix else ""
        try:
            pages = self._client.get_paginator("list_objects_v2").paginate(
                Bucket=self._bucket, Prefix=start, Delimiter="/"
            )
            for page in pages:
                for common in page.get("CommonPrefixes", []):
                    yield str(common["Prefix"])[len(start) : -1]
        except Exception as exc:
            raise self._error(exc, "listing versions") from None

    def _read(self, key: str, start: int, length: int) -> tuple[bytes, int]:
        try:
            span = f"bytes={start}-{start + length - 1}"
            response = self._client.get_object(Bucket=self._bucket, Key=key, Range=span)
            data: bytes = response["Body"].read()
            total = int(str(response["ContentRange"]).rpartition("/")[2])
            return data, total
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "InvalidRange":
                raise self._error(exc, key) from None
        except Exception as exc:
            raise self._error(exc, key) from None
        try:  # 416: the range starts at or past the end (an empty object); learn the size
            return b"", int(self._client.head_object(Bucket=self._bucket, Key=key)["ContentLength"])
        except Exception as exc:
            raise self._error(exc, key) from None

    def _upload_file(self, key: str, source: Path, size: int) -> None:
        config = TransferConfig(
            multipart_threshold=max(self.settings.chunk_size, 8 * 1024 * 1024),
            multipart_chunksize=max(self.settings.chunk_size, 8 * 1024 * 1024),
            max_concurrency=self.settings.workers,
        )
        try:
            self._client.upload_file(str(source), self._bucket, key, Config=config)
        except Exception as exc:
            raise self._error(exc, key) from None

    def _create(self, key: str, data: bytes) -> None:
        try:
            self._client.put_object(Bucket=self._bucket, Key=key, Body=data, IfNoneMatch="*")
        except Exception as exc:
            raise self._error(exc, key) from None
