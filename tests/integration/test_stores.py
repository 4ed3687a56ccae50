"""The store contract against real servers: Azurite, moto's S3 server and a local folder.

Design notes: every test runs on all three backends through the `room` fixture (a fresh
container, bucket or folder, plus a raw `put` that writes an object behind the store's back,
to plant partial versions, malformed manifests and short blobs). Request counts are read from
`Store.stats.requests`, which each backend increments from its HTTP client's own send hook, so
the discovery cost documented in `stores/base.py` is checked against real traffic.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from modelapp_serving.manifest import MANIFEST_NAME, FileEntry, build_manifest, digest
from modelapp_serving.publish import publish_version
from modelapp_serving.stores import (
    ConflictError,
    IntegrityError,
    NotFoundError,
    Store,
    StoreConfigError,
    TransferSettings,
    open_store,
)
from tests.fixtures.azurite import AzureContainer
from tests.fixtures.s3 import S3Bucket

SMALL = TransferSettings(chunk_size=64 * 1024, workers=3, window=4, attempts=3, backoff_seconds=0.01)


@dataclass
class Room:
    """A fresh place for versions: `uri`/`env` for `open_store`, `put` to write raw objects."""

    kind: str
    uri: str
    env: dict[str, str]
    put: Callable[[str, bytes], None]

    def store(self, settings: TransferSettings = SMALL) -> Store:
        return open_store(self.uri, env=self.env, settings=settings)


@pytest.fixture(params=["azure", "s3", "file"])
def room(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Room]:
    if request.param == "azure":
        container: AzureContainer = request.getfixturevalue("azure_container")

        def put_blob(key: str, data: bytes) -> None:
            container.client.upload_blob(f"models/{key}", data, overwrite=True)

        yield Room("azure", container.uri("models"), container.env, put_blob)
    elif request.param == "s3":
        bucket: S3Bucket = request.getfixturevalue("s3_bucket")

        def put_object(key: str, data: bytes) -> None:
            bucket.client.put_object(Bucket=bucket.name, Key=f"models/{key}", Body=data)

        yield Room("s3", bucket.uri("models"), bucket.env, put_object)
    else:
        root = tmp_path / "store" / "models"

        def put(key: str, data: bytes) -> None:
            (root / key).parent.mkdir(parents=True, exist_ok=True)
            (root / key).write_bytes(data)

        yield Room("file", f"file://{root}", {}, put)


def publish(room: Room, version: str, payload: bytes, tmp_path: Path) -> str:
    source = tmp_path / f"src-{version}" / "model.onnx"
    source.parent.mkdir(parents=True, exist_ok=True)
    source.write_bytes(payload)
    return publish_version(room.store(), version=version, sources=[source], model_format="onnx", entrypoint=None)


def manifest_for(version: str, payload: bytes) -> bytes:
    entry = FileEntry(path="model.onnx", size=len(payload), sha256=hashlib.sha256(payload).hexdigest())
    return build_manifest(version=version, model_format="onnx", entrypoint="model.onnx", files=[entry])


def test_list_versions_returns_only_complete_versions(room: Room, tmp_path: Path) -> None:
    for version in ("1", "2", "10"):
        publish(room, version, f"model {version}".encode(), tmp_path)
    room.put("3/model.onnx", b"uploaded, manifest not yet")
    room.put(f"4/{MANIFEST_NAME}", b"{not json")
    room.put(f"5/{MANIFEST_NAME}", manifest_for("6", b"x"))  # names another version
    room.put(f"bad name!/{MANIFEST_NAME}", manifest_for("1", b"x"))
    assert room.store().list_versions() == ["1", "10", "2"]


def test_discovery_costs_one_listing_plus_one_get_per_candidate(room: Room, tmp_path: Path) -> None:
    for version in ("1", "2", "3"):
        publish(room, version, b"weights", tmp_path)
    store = room.store()
    assert store.list_versions() == ["1", "2", "3"]
    assert store.stats.requests == 1 + 3
    store.list_versions()
    assert store.stats.requests == 1 + 3 + 1  # complete versions are immutable: manifests not read again

    newest_first: Callable[[Sequence[str]], Sequence[str]] = lambda names: sorted(names, key=int, reverse=True)  # noqa: E731
    fresh = room.store()
    assert fresh.list_versions(rank=newest_first, limit=1) == ["3"]
    assert fresh.stats.requests == 2


def test_download_in_parallel_ranges_matches_the_bytes(room: Room, tmp_path: Path) -> None:
    payload = bytes(range(256)) * 4099  # ~1 MiB, not a multiple of the 64 KiB chunk
    publish(room, "1", payload, tmp_path)
    store = room.store()
    with (tmp_path / "out").open("wb") as sink:
        sha = store.download("1", "model.onnx", sink, len(payload))
    assert sha == hashlib.sha256(payload).hexdigest()
    assert (tmp_path / "out").read_bytes() == payload
    assert store.stats.requests >= len(payload) // SMALL.chunk_size


def test_publish_is_create_only(room: Room, tmp_path: Path) -> None:
    first = publish(room, "1", b"one", tmp_path)
    store = room.store()
    assert store.exists("1") and not store.exists("2")
    assert digest(store.read_manifest("1")) == first
    with pytest.raises(ConflictError):
        publish(room, "1", b"two", tmp_path)
    with pytest.raises(ConflictError):  # the manifest write itself refuses, even past an exists() check
        store.publish_manifest("1", manifest_for("1", b"two"))
    assert digest(store.read_manifest("1")) == first


def test_missing_manifest_and_missing_version_are_not_found(room: Room) -> None:
    room.put("3/model.onnx", b"orphan")
    store = room.store()
    for version in ("3", "404"):
        with pytest.raises(NotFoundError):
            store.read_manifest(version)
        assert not store.is_complete(version)


@pytest.mark.parametrize(("stored", "expected", "reason"), [(b"", 100, "empty"), (b"short", 100, "5 bytes")])
def test_wrong_size_fails_before_streaming(
    room: Room, tmp_path: Path, stored: bytes, expected: int, reason: str
) -> None:
    room.put("1/model.onnx", stored)
    with (tmp_path / "out").open("wb") as sink, pytest.raises(IntegrityError, match=reason):
        room.store().download("1", "model.onnx", sink, expected)
    assert (tmp_path / "out").stat().st_size == 0


def test_azure_needs_credentials_and_a_container(azure_container: AzureContainer) -> None:
    with pytest.raises(StoreConfigError, match="AZURE_STORAGE_CONNECTION_STRING"):
        open_store(azure_container.uri(), env={})
    missing = open_store("azureblob://no-such-container/models", env=azure_container.env)
    with pytest.raises(NotFoundError, match="ContainerNotFound"):
        missing.list_versions()
