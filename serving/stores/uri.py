"""Parse a model location URI into a `Location` (pure; no I/O).

Forms (docs/contracts.md): `azureblob://<container>/<prefix>`, `s3://<bucket>/<prefix>`,
`file:///<absolute path>`. The prefix may be empty (versions at the container's root). A URI
never carries credentials: a query string (where a SAS token would sit) is refused, and the
error does not repeat it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

from modelapp_serving.stores.errors import StoreConfigError

Scheme = Literal["azureblob", "s3", "file"]

_CONTAINER = re.compile(r"^[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){2,62}$")
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_FORMS = "azureblob://<container>/<prefix>, s3://<bucket>/<prefix> or file:///<absolute path>"


@dataclass(frozen=True)
class Location:
    """Where versions live: `<container>/<prefix>/<version>/...` (for `file`, `prefix` is the folder)."""

    scheme: Scheme
    container: str
    prefix: str

    def key(self, *parts: str) -> str:
        """The object key (or path) of `parts` under the prefix, joined with `/`."""
        return "/".join(part for part in (self.prefix, *parts) if part)


def _clean_prefix(path: str, uri_for_error: str) -> str:
    segments = [segment for segment in path.strip("/").split("/")]
    if segments == [""]:
        return ""
    if any(segment in ("", ".", "..") for segment in segments):
        raise StoreConfigError(f"model URI {uri_for_error!r}: the prefix has an empty, '.' or '..' segment")
    return "/".join(segments)


def parse_uri(uri: str) -> Location:
    """Parse `uri`; raise StoreConfigError with a one-line reason naming the expected forms."""
    parts = urlsplit(uri.strip())
    shown = f"{parts.scheme}://{parts.netloc}{parts.path}" if parts.scheme else uri.split("?", maxsplit=1)[0]
    if parts.query or parts.fragment:
        raise StoreConfigError(
            f"model URI {shown!r} must not carry a query or fragment (put credentials in the environment)"
        )
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost") or not parts.path.startswith("/"):
            raise StoreConfigError(f"model URI {shown!r}: a file URI needs an absolute path, file:///path")
        return Location("file", "", "/" + _clean_prefix(parts.path, shown))
    if parts.scheme not in ("azureblob", "s3"):
        raise StoreConfigError(f"model URI {shown!r}: unknown scheme {parts.scheme!r}; expected {_FORMS}")
    name = parts.netloc
    if parts.scheme == "azureblob" and not _CONTAINER.match(name):
        raise StoreConfigError(f"model URI {shown!r}: {name!r} is not a valid Azure container name")
    if parts.scheme == "s3" and (not _BUCKET.match(name) or ".." in name):
        raise StoreConfigError(f"model URI {shown!r}: {name!r} is not a valid S3 bucket name")
    scheme: Scheme = "azureblob" if parts.scheme == "azureblob" else "s3"
    return Location(scheme, name, _clean_prefix(parts.path, shown))
