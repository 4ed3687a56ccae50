"""The store interface: what `fetch`, `publish` and the operator's version discovery need.

A store is a location (`<container>/<prefix>`) holding versions `<prefix>/<V>/...`. Backends
(Azure Blob, S3, local folder) implement four primitives -- a delimiter listing of the version
names, a ranged read, a file upload and a create-only write -- and this class builds the
contract on them:

- `list_versions()` -- complete versions only (manifest present, parses, names its own version).
  Cost: ONE listing sequence (one request per page: 5,000 names on Azure, 1,000 on S3), then
  one ranged GET of the manifest per candidate, in the caller's preferred order (`rank`) and
  stopping after `limit` complete ones. Versions are immutable once complete, so a store object
  remembers the complete ones and does not read their manifests again. "newest complete
  version" is therefore 1 listing + usually 1 GET.
- `read_manifest(version)` -- the manifest's exact bytes (the version digest is their sha256).
- `download(...)` -- one file streamed to disk through `transfer.stream_object`.
- `upload(...)`, `publish_manifest(...)` -- files first, the manifest last and create-only.
- `exists(version)` -- a manifest object is present (even a malformed one: the name is taken).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import BinaryIO

from modelapp_serving.manifest import MANIFEST_NAME, MAX_MANIFEST_BYTES, VERSION_PATTERN, ManifestError, parse_manifest
from modelapp_serving.stores.errors import NotFoundError, StoreConfigError
from modelapp_serving.stores.transfer import TransferSettings, TransferStats, read_range, read_small, stream_object
from modelapp_serving.stores.uri import Location

Rank = Callable[[Sequence[str]], Sequence[str]]


def check_version(version: str) -> str:
    """Refuse a version name outside the contract's pattern (it becomes part of an object key)."""
    if not VERSION_PATTERN.match(version):
        raise StoreConfigError(f"version {version!r} does not match {VERSION_PATTERN.pattern}")
    return version


class Store(ABC):
    """A model location; see the module docstring for the contract and the request counts."""

    def __init__(self, location: Location, settings: TransferSettings | None = None) -> None:
        self.location = location
        self.settings = settings or TransferSettings()
        self.stats = TransferStats()
        self._complete: set[str] = set()

    @property
    def uri(self) -> str:
        """The location as users write it (`azureblob://<container>/<prefix>`), for messages."""
        if self.location.scheme == "file":
            return f"file://{self.location.prefix}"
        return f"{self.location.scheme}://" + "/".join(p for p in (self.location.container, self.location.prefix) if p)

    # -- backend primitives (I/O) ---------------------------------------------------------------

    @abstractmethod
    def _list_children(self) -> Iterator[str]:
        """Names directly under the prefix (one delimiter listing, paged)."""

    @abstractmethod
    def _read(self, key: str, start: int, length: int) -> tuple[bytes, int]:
        """One ranged read: bytes `[start, min(start+length, total))` and the object's total size."""

    @abstractmethod
    def _upload_file(self, key: str, source: Path, size: int) -> None:
        """Upload a local file to `key`, replacing any object there."""

    @abstractmethod
    def _create(self, key: str, data: bytes) -> None:
        """Write `data` to `key` only if no object is there; ConflictError otherwise."""

    # -- the contract -----------------------------------------------------------------------------

    def list_versions(self, *, rank: Rank | None = None, limit: int | None = None) -> list[str]:
        """Complete versions, in `rank`'s order (default: sorted by name), at most `limit` of them."""
        candidates = [name for name in self._list_children() if VERSION_PATTERN.match(name)]
        ordered = rank(candidates) if rank is not None else sorted(candidates)
        found: list[str] = []
        for version in ordered:
            if limit is not None and len(found) >= limit:
                break
            if version in self._complete or self.is_complete(version):
                found.append(version)
        return found

    def is_complete(self, version: str) -> bool:
        """True when the version's manifest exists, parses and names this version."""
        try:
            manifest = parse_manifest(self.read_manifest(version))
        except (NotFoundError, ManifestError):
            return False
        if manifest.version != version:
            return False
        self._complete.add(version)
        return True

    def read_manifest(self, version: str) -> bytes:
        """The manifest's exact bytes; NotFoundError when the version has none."""
        key = self.location.key(check_version(version), MANIFEST_NAME)
        return read_small(
            lambda start, length: self._read(key, start, length),
            limit=MAX_MANIFEST_BYTES,
            settings=self.settings,
            stats=self.stats,
            name=f"{version}/{MANIFEST_NAME}",
        )

    def read_small_file(self, version: str, path: str, *, limit: int) -> bytes:
        """A small file of a version (the card) whole, in one ranged read of at most `limit` bytes; the caller
        checks its sha256 against the manifest. NotFoundError when it is missing."""
        key = self.location.key(check_version(version), path)
        return read_small(
            lambda start, length: self._read(key, start, length),
            limit=limit,
            settings=self.settings,
            stats=self.stats,
            name=f"{version}/{path}",
        )

    def exists(self, version: str) -> bool:
        """True when a manifest object is present for `version` (complete or not, the name is taken)."""
        key = self.location.key(check_version(version), MANIFEST_NAME)
        try:
            read_range(lambda s, n: self._read(key, s, n), 0, 1, settings=self.settings, stats=self.stats, name=key)
        except NotFoundError:
            return False
        return True

    def download(self, version: str, path: str, dest_file: BinaryIO, expected_size: int) -> str:
        """Stream `<version>/<path>` into `dest_file`; return its sha256 (the caller compares it)."""
        key = self.location.key(check_version(version), path)
        return stream_object(
            lambda start, length: self._read(key, start, length),
            dest_file,
            expected_size=expected_size,
            settings=self.settings,
            stats=self.stats,
            name=f"{version}/{path}",
        )

    def upload(self, version: str, path: str, source: Path) -> None:
        """Upload one file of a version being published (before its manifest)."""
        self._upload_file(self.location.key(check_version(version), path), source, source.stat().st_size)

    def publish_manifest(self, version: str, data: bytes) -> None:
        """Write the manifest last and create-only: the version becomes visible, atomically, once."""
        self._create(self.location.key(check_version(version), MANIFEST_NAME), data)
