"""Local folder backend (`file:///path`): a model baked into the image, or a mounted volume.

Same contract as the object stores, so `fetch` verifies a baked-in model exactly like a
downloaded one. The create-only manifest write is a hard link of a finished temp file, which
is atomic and fails if the name exists.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from modelapp_serving.stores.base import Store
from modelapp_serving.stores.errors import ConflictError, CredentialsError, NotFoundError, StoreError


class LocalStore(Store):
    """Versions under a local folder."""

    @property
    def root(self) -> Path:
        return Path(self.location.prefix)

    def _path(self, key: str) -> Path:
        return Path(key)

    def _list_children(self) -> Iterator[str]:
        self.stats.requests += 1
        try:
            with os.scandir(self.root) as entries:
                names = [entry.name for entry in entries if entry.is_dir()]
        except FileNotFoundError:
            raise NotFoundError(f"{self.uri}: folder not found") from None
        except OSError as exc:
            raise StoreError(f"{self.uri}: {type(exc).__name__}: {exc.strerror}") from None
        yield from names

    def _read(self, key: str, start: int, length: int) -> tuple[bytes, int]:
        self.stats.requests += 1
        try:
            with self._path(key).open("rb") as stream:
                total = os.fstat(stream.fileno()).st_size
                return os.pread(stream.fileno(), length, start), total
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise NotFoundError(f"{key}: not found") from None
        except PermissionError:
            raise CredentialsError(f"{key}: permission denied") from None
        except OSError as exc:
            raise StoreError(f"{key}: {type(exc).__name__}: {exc.strerror}") from None

    def _upload_file(self, key: str, source: Path, size: int) -> None:
        target = self._path(key)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
        except OSError as exc:
            raise StoreError(f"{key}: {type(exc).__name__}: {exc.strerror}") from None

    def _create(self, key: str, data: bytes) -> None:
        target = self._path(key)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, temp = tempfile.mkstemp(dir=target.parent, prefix=".manifest-")
            try:
                with os.fdopen(fd, "wb") as stream:
                    stream.write(data)
                os.link(temp, target)
            finally:
                os.unlink(temp)
        except FileExistsError:
            raise ConflictError(f"{key}: already exists") from None
        except OSError as exc:
            raise StoreError(f"{key}: {type(exc).__name__}: {exc.strerror}") from None
