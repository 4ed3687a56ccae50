"""`modelapp-serving fetch`: download a model version, prove it is the right bytes, then publish it locally.

The init container's job (docs/contracts.md). The order is what makes it fail closed:

1. refuse a non-empty DEST before any network I/O;
2. read the manifest, check it against the pin (`--sha256`) and parse it;
3. stream every file into a sibling temp folder `.<DEST name>.partial-*`, checking size and
   sha256 while streaming (`Store.download` hashes what it writes);
4. write the manifest last and rename the temp folder to DEST in one step.

Any failure removes the temp folder, leaves DEST as it was (absent or empty), prints ONE
scrubbed line on stderr and exits 1. Success prints one summary line on stderr and the version
digest on stdout.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from modelapp_serving.manifest import MANIFEST_NAME, SHA256_PATTERN, Manifest, ManifestError, parse_manifest, verify_pin
from modelapp_serving.stores import IntegrityError, Store, StoreError, open_store, scrub
from modelapp_serving.stores.base import check_version
from modelapp_serving.stores.transfer import settings_from_env


class FetchError(Exception):
    """A reason to refuse the fetch that is not the store's fault (DEST, pin, manifest contents)."""


@dataclass(frozen=True)
class FetchResult:
    digest: str
    files: int
    size: int
    seconds: float


def check_dest(dest: Path) -> None:
    """DEST must not exist or be an empty folder (pure check over the file system's answer)."""
    if dest.is_symlink() or (dest.exists() and not dest.is_dir()):
        raise FetchError(f"destination {dest} exists and is not a folder")
    if dest.is_dir() and any(dest.iterdir()):
        raise FetchError(f"destination {dest} is not empty; refusing to mix model versions")


def check_pin(pinned: str | None) -> str | None:
    """A pin must be 64 hex digits; it is compared in lower case."""
    if pinned is None or pinned == "":
        return None
    if not SHA256_PATTERN.match(pinned.lower()):
        raise FetchError("--sha256 must be 64 hex digits (the version digest printed by publish)")
    return pinned.lower()


def safe_target(root: Path, relative: str) -> Path:
    """`root / relative`, refusing anything that would land outside `root` (defence in depth:
    the manifest validator already rejects `..` and absolute paths)."""
    target = (root / relative).resolve()
    if not target.is_relative_to(root.resolve()) or target == root.resolve():
        raise FetchError(f"manifest path {relative!r} points outside the model folder")
    return target


def load_manifest(store: Store, version: str, pinned: str | None) -> tuple[bytes, Manifest, str]:
    """The manifest bytes, parsed, and the version digest; pin and version name checked."""
    data = store.read_manifest(version)
    digest = verify_pin(data, pinned)
    manifest = parse_manifest(data)
    if manifest.version != version:
        raise ManifestError(f"manifest names version {manifest.version!r}, not {version!r}")
    if manifest.total_size == 0:
        raise IntegrityError(f"version {version} holds no data (every file is 0 bytes)")
    return data, manifest, digest


def download_files(store: Store, version: str, manifest: Manifest, root: Path) -> None:
    """Stream every file under `root`, comparing each sha256 with the manifest's."""
    for entry in manifest.files:
        target = safe_target(root, entry.path)
        target.parent.mkdir(parents=True, exist_ok=True)
        with target.open("xb") as sink:
            actual = store.download(version, entry.path, sink, entry.size)
            sink.flush()
            os.fsync(sink.fileno())
        if actual != entry.sha256:
            raise IntegrityError(f"{version}/{entry.path}: sha256 mismatch: manifest {entry.sha256}, got {actual}")


def fetch_version(store: Store, *, version: str, dest: Path, pinned: str | None) -> FetchResult:
    """Fetch `version` into `dest` atomically; raise on any failure with DEST untouched."""
    started = time.monotonic()
    check_version(version)
    pin = check_pin(pinned)
    check_dest(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    data, manifest, digest = load_manifest(store, version, pin)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.partial-", dir=dest.parent))
    try:
        download_files(store, version, manifest, staging)
        (staging / MANIFEST_NAME).write_bytes(data)
        staging.chmod(0o755)
        os.rename(staging, dest)  # replaces an empty DEST; fails if it filled up meanwhile
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return FetchResult(digest, len(manifest.files), manifest.total_size, time.monotonic() - started)


def main(args: argparse.Namespace) -> int:
    """CLI adapter: one scrubbed line on stderr and exit 1 on failure; the digest on stdout on success."""
    try:
        store = open_store(args.uri, settings=settings_from_env(os.environ))
        result = fetch_version(store, version=args.version, dest=Path(args.dest), pinned=args.sha256)
    except (StoreError, ManifestError, FetchError, OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        where = f" ({exc.filename})" if isinstance(exc, OSError) and exc.filename else ""
        print(f"fetch failed: {scrub(reason + where)}", file=sys.stderr)
        return 1
    rate = result.size / max(result.seconds, 1e-6) / 2**20
    print(
        f"fetched {args.version} ({result.files} files, {result.size} bytes, {rate:.1f} MiB/s) into {args.dest}",
        file=sys.stderr,
    )
    print(result.digest)
    return 0
