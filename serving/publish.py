"""`modelapp-serving publish`: how a data scientist publishes a model version.

Each FILE is published under its base name; a folder is published as its tree (paths relative
to the folder). The manifest lists every file's size and sha256 and is uploaded LAST and
create-only, so a version is invisible until complete and can never be overwritten: an
existing version (a manifest already there) is refused with exit 1 before any upload. The
version digest (sha256 of the manifest bytes) is printed as the last line on stdout; pin it in
`spec.model.sha256`. See docs/model-versions.md.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

from pydantic import ValidationError

from modelapp_serving.manifest import FileEntry, ManifestError, ModelFormat, build_manifest, digest
from modelapp_serving.stores import ConflictError, Store, StoreError, open_store, scrub
from modelapp_serving.stores.base import check_version


class PublishError(Exception):
    """The local files cannot be published as given."""


def collect(sources: list[Path]) -> list[tuple[str, Path]]:
    """(path in the version, local file) for every FILE argument; folders contribute their tree."""
    found: list[tuple[str, Path]] = []
    for source in sources:
        if source.is_dir():
            found += [(p.relative_to(source).as_posix(), p) for p in sorted(source.rglob("*")) if p.is_file()]
        elif source.is_file():
            found.append((source.name, source))
        else:
            raise PublishError(f"{source}: no such file or folder")
    names = [name for name, _ in found]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise PublishError(f"two files would be published as {duplicates[0]!r}")
    if not found:
        raise PublishError("nothing to publish: the folders given are empty")
    return found


def hash_file(name: str, path: Path) -> FileEntry:
    """The manifest entry of a local file published as `name`: size and sha256, read in 1 MiB steps."""
    hasher = hashlib.sha256()
    size = 0
    with path.open("rb") as stream:
        while block := stream.read(1024 * 1024):
            hasher.update(block)
            size += len(block)
    try:
        return FileEntry(path=name, size=size, sha256=hasher.hexdigest())
    except ValidationError as exc:
        raise PublishError(f"{path}: cannot be published as {name!r}: {exc.errors()[0]['msg']}") from None


def publish_version(
    store: Store, *, version: str, sources: list[Path], model_format: ModelFormat, entrypoint: str | None
) -> str:
    """Upload the files, then the manifest; return the version digest."""
    check_version(version)
    files = collect(sources)
    entries = [hash_file(name, local) for name, local in files]
    if sum(entry.size for entry in entries) == 0:
        raise PublishError("every file is empty; refusing to publish a model with no bytes")
    main_file = entrypoint or (files[0][0] if sources[0].is_file() else None)
    if main_file is None:
        raise PublishError("the first FILE is a folder: name the main file with --entrypoint")
    data = build_manifest(version=version, model_format=model_format, entrypoint=main_file, files=entries)
    if store.exists(version):
        raise ConflictError(f"version {version} already exists at {store.uri}; versions are immutable")
    for name, local in files:
        store.upload(version, name, local)
    store.publish_manifest(version, data)
    return digest(data)


def main(args: argparse.Namespace) -> int:
    """CLI adapter: progress on stderr, the digest as the last stdout line, exit 1 on any refusal."""
    try:
        store = open_store(args.uri)
        result = publish_version(
            store,
            version=args.version,
            sources=[Path(name) for name in args.files],
            model_format=args.format,
            entrypoint=args.entrypoint,
        )
    except (StoreError, ManifestError, PublishError, OSError) as exc:
        print(f"publish failed: {scrub(str(exc))}", file=sys.stderr)
        return 1
    print(f"published {args.version} to {store.uri}", file=sys.stderr)
    print(result)
    return 0
