"""Model stores: where model versions live (Azure Blob, S3, a local folder).

`open_store(uri)` is the one entry point; the operator calls `open_store(uri).list_versions()`
for discovery, `fetch` and `publish` use the rest of `Store`. Backends are imported lazily so
that a pod fetching from Azure never imports boto3 and vice versa.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from modelapp_serving.stores.base import Store
from modelapp_serving.stores.errors import (
    ConflictError,
    CredentialsError,
    IntegrityError,
    NotFoundError,
    StoreConfigError,
    StoreError,
    TransientError,
    scrub,
)
from modelapp_serving.stores.transfer import TransferSettings
from modelapp_serving.stores.uri import Location, parse_uri

__all__ = [
    "ConflictError",
    "CredentialsError",
    "IntegrityError",
    "Location",
    "NotFoundError",
    "Store",
    "StoreConfigError",
    "StoreError",
    "TransferSettings",
    "TransientError",
    "open_store",
    "parse_uri",
    "scrub",
]

#: The client packages each object store needs (the `stores` extra installs them).
_CLIENTS = {"azureblob": "azure-storage-blob and azure-identity", "s3": "boto3"}


def open_store(uri: str, *, env: Mapping[str, str] | None = None, settings: TransferSettings | None = None,
               ambient: bool = True) -> Store:  # fmt: skip
    """Open the store named by `uri`, with credentials from `env` (default: the process environment).

    `ambient`: whether the process's own identity may be used when `env` holds no key (Azure's
    DefaultAzureCredential: workload or managed identity; boto3's default chain: IRSA, instance metadata,
    ~/.aws). A pod fetching its own model wants that; `modelapp bump` opening a tenant's store does not
    (the identity is the bump's), so it passes False and such stores are read anonymously.

    Raises StoreConfigError with a one-line reason for a malformed URI, missing credentials or a missing
    client package.
    Opening does no network I/O; the first request is made by the first call.
    """
    location = parse_uri(uri)
    environ = os.environ if env is None else env
    try:
        if location.scheme == "azureblob":
            from modelapp_serving.stores.azure import AzureBlobStore

            return AzureBlobStore(location, environ, settings, ambient=ambient)
        if location.scheme == "s3":
            from modelapp_serving.stores.s3 import S3Store

            return S3Store(location, environ, settings, ambient=ambient)
    except ModuleNotFoundError as exc:
        # An image built without the store clients: one app's row fails, not a whole bump run.
        raise StoreConfigError(
            f"{location.scheme}:// needs {_CLIENTS[location.scheme]} (no module {exc.name!r} here): "
            "install modelapp[stores]; the operator and serving images carry it"
        ) from None
    from modelapp_serving.stores.local import LocalStore

    return LocalStore(location, settings)
