"""`fetch` fails closed: every fault of the issue against Azurite, DEST never half-written.

Design notes: a version is published for real, then damaged behind the store's back (a
tampered, emptied or truncated blob; a deleted, malformed or borrowed manifest; a manifest
with escaping paths) or fetched wrongly (bad pin, bad key, bad SAS, non-empty DEST). Each
case checks the exit code, the single scrubbed stderr line, that DEST is absent and that no
staging folder is left. Connection cuts come from `cut_proxy`, a real TCP proxy in front of
Azurite (the one fault Azurite cannot produce): a few cuts are retried, cuts that still let
ranges through are resumed range by range, and a cut on every attempt fails closed. One
case puts the same proxy in front of moto's S3 server, where botocore leaves body cuts to us.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import pytest
from azure.storage.blob import ContainerSasPermissions, generate_container_sas

from modelapp_serving.fetch import fetch_version
from modelapp_serving.manifest import MANIFEST_NAME
from modelapp_serving.publish import publish_version
from modelapp_serving.stores import TransferSettings, TransientError, open_store
from tests.fixtures.azurite import ACCOUNT, ACCOUNT_KEY, AzureContainer, CutProxy
from tests.fixtures.s3 import S3Bucket
from tests.integration.test_fetch_cli import Cli

WRONG_KEY = base64.b64encode(b"not the account key, 64 bytes long....................").decode()


@pytest.fixture
def published(azure_container: AzureContainer, tmp_path: Path) -> tuple[AzureContainer, str, bytes]:
    """Version 1 of a 2 MiB model, published through the store; returns (container, digest, weights)."""
    weights = os.urandom(2 * 1024 * 1024)
    source = tmp_path / "src" / "model.onnx"
    source.parent.mkdir()
    source.write_bytes(weights)
    store = open_store(azure_container.uri(), env=azure_container.env)
    pinned = publish_version(store, version="1", sources=[source], model_format="onnx", entrypoint=None)
    return azure_container, pinned, weights


@dataclass
class Fetch:
    """`modelapp-serving fetch` of a container's `models` prefix: (exit code, stderr)."""

    cli: Cli

    def __call__(
        self,
        container: AzureContainer,
        dest: Path,
        *,
        version: str = "1",
        pin: str | None = None,
        env: dict[str, str] | None = None,
    ) -> tuple[int, str]:
        argv = ["fetch", "--uri", container.uri(), "--version", version, "--dest", str(dest)]
        code, out, err = self.cli([*argv, "--sha256", pin] if pin else argv, env or container.env)
        assert out == "" or code == 0
        return code, err


@pytest.fixture
def fetch(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Fetch:
    return Fetch(Cli(monkeypatch, capsys))


def assert_failed_closed(code: int, err: str, dest: Path, reason: str) -> None:
    assert code == 1
    assert err.startswith("fetch failed: ") and err.count("\n") == 1, err
    assert reason in err, err
    assert not dest.exists()
    assert not [p for p in dest.parent.iterdir() if ".partial-" in p.name]


def test_pin_mismatch(published: tuple[AzureContainer, str, bytes], tmp_path: Path, fetch: Fetch) -> None:
    container, _, _ = published
    code, err = fetch(container, tmp_path / "dest", pin="0" * 64)
    assert_failed_closed(code, err, tmp_path / "dest", "manifest digest mismatch")
    code, err = fetch(container, tmp_path / "dest", pin="abc")
    assert_failed_closed(code, err, tmp_path / "dest", "64 hex digits")


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (lambda weights: bytes([weights[0] ^ 1]) + weights[1:], "sha256 mismatch"),
        (lambda weights: b"", "is empty (0 bytes)"),
        (lambda weights: weights[: len(weights) // 2], "1048576 bytes; the manifest says 2097152"),
    ],
    ids=["tampered", "zero-byte", "truncated"],
)
def test_damaged_blob(
    published: tuple[AzureContainer, str, bytes], tmp_path: Path, damage: object, reason: str, fetch: Fetch
) -> None:
    container, pinned, weights = published
    assert callable(damage)
    container.client.upload_blob("models/1/model.onnx", damage(weights), overwrite=True)
    code, err = fetch(container, tmp_path / "dest", pin=pinned)
    assert_failed_closed(code, err, tmp_path / "dest", reason)


def test_missing_version_and_missing_manifest(
    published: tuple[AzureContainer, str, bytes], tmp_path: Path, fetch: Fetch
) -> None:
    container, _, _ = published
    code, err = fetch(container, tmp_path / "dest", version="2")
    assert_failed_closed(code, err, tmp_path / "dest", "not found (BlobNotFound)")
    container.client.delete_blob(f"models/1/{MANIFEST_NAME}")
    code, err = fetch(container, tmp_path / "dest")
    assert_failed_closed(code, err, tmp_path / "dest", f"{MANIFEST_NAME}: not found")


@pytest.mark.parametrize(
    ("manifest", "reason"),
    [
        (b'{"schema": "modelapp.io/manifest/v1", "version": "1"', "not valid JSON"),
        (b'{"schema": "modelapp.io/manifest/v1", "version": "1"}', "manifest is invalid at entrypoint"),
        (b"x" * (1024 * 1024 + 1), "over the 1048576 byte limit"),
    ],
    ids=["truncated-json", "missing-fields", "oversized"],
)
def test_malformed_manifest(
    published: tuple[AzureContainer, str, bytes], tmp_path: Path, manifest: bytes, reason: str, fetch: Fetch
) -> None:
    container, _, _ = published
    container.client.upload_blob(f"models/1/{MANIFEST_NAME}", manifest, overwrite=True)
    code, err = fetch(container, tmp_path / "dest")
    assert_failed_closed(code, err, tmp_path / "dest", reason)


def test_manifest_borrowed_from_another_version(
    published: tuple[AzureContainer, str, bytes], tmp_path: Path, fetch: Fetch
) -> None:
    container, pinned, weights = published
    manifest = container.client.download_blob(f"models/1/{MANIFEST_NAME}").readall()
    container.client.upload_blob("models/2/model.onnx", weights)
    container.client.upload_blob(f"models/2/{MANIFEST_NAME}", manifest)
    code, err = fetch(container, tmp_path / "dest", version="2", pin=pinned)
    assert_failed_closed(code, err, tmp_path / "dest", "manifest names version '1', not '2'")


@pytest.mark.parametrize("path", ["../escaped.bin", "/tmp/escaped.bin", "sub/../../escaped.bin", "a\\..\\b"])
def test_path_traversal_in_manifest(azure_container: AzureContainer, tmp_path: Path, path: str, fetch: Fetch) -> None:
    payload = b"evil"
    entry = {"path": path, "size": len(payload), "sha256": hashlib.sha256(payload).hexdigest()}
    manifest = {"schema": "modelapp.io/manifest/v1", "version": "1", "entrypoint": path, "files": [entry]}
    azure_container.client.upload_blob("models/1/escaped.bin", payload)
    azure_container.client.upload_blob(f"models/1/{MANIFEST_NAME}", json.dumps(manifest).encode())
    dest = tmp_path / "deep" / "dest"
    code, err = fetch(azure_container, dest)
    assert_failed_closed(code, err, dest, "manifest is invalid at files.0.path")
    assert not list(tmp_path.rglob("escaped.bin"))


def test_dest_not_empty_is_left_alone(
    published: tuple[AzureContainer, str, bytes], tmp_path: Path, fetch: Fetch
) -> None:
    container, pinned, weights = published
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "previous.onnx").write_bytes(b"older model")
    code, err = fetch(container, dest, pin=pinned)
    assert code == 1 and "not empty" in err
    assert [p.name for p in dest.iterdir()] == ["previous.onnx"]
    (dest / "previous.onnx").unlink()  # an existing EMPTY folder is fine (an emptyDir mount point)
    code, err = fetch(container, dest, pin=pinned)
    assert code == 0, err
    assert (dest / "model.onnx").read_bytes() == weights


def test_wrong_account_key(published: tuple[AzureContainer, str, bytes], tmp_path: Path, fetch: Fetch) -> None:
    container, _, _ = published
    env = {"AZURE_STORAGE_CONNECTION_STRING": container.azurite.connection_string(key=WRONG_KEY)}
    code, err = fetch(container, tmp_path / "dest", env=env)
    assert_failed_closed(code, err, tmp_path / "dest", "refused the credentials")
    assert WRONG_KEY not in err and WRONG_KEY[:12] not in err


def sas(container: AzureContainer, key: str) -> str:
    expiry = datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=1)
    permission = ContainerSasPermissions(read=True, list=True)
    return generate_container_sas(ACCOUNT, container.name, account_key=key, permission=permission, expiry=expiry)


def test_sas_token_read_only_works_and_a_forged_one_is_refused_unlogged(
    published: tuple[AzureContainer, str, bytes], tmp_path: Path, fetch: Fetch
) -> None:
    container, pinned, weights = published
    good = {
        "AZURE_STORAGE_ACCOUNT_URL": container.azurite.account_url,
        "AZURE_STORAGE_SAS_TOKEN": sas(container, ACCOUNT_KEY),
    }
    code, err = fetch(container, tmp_path / "ok", pin=pinned, env=good)
    assert code == 0, err
    assert (tmp_path / "ok" / "model.onnx").read_bytes() == weights

    forged_token = sas(container, WRONG_KEY)
    forged = {**good, "AZURE_STORAGE_SAS_TOKEN": "?" + forged_token}
    code, err = fetch(container, tmp_path / "dest", env=forged)
    assert_failed_closed(code, err, tmp_path / "dest", "refused the credentials")
    signature = dict(part.split("=", 1) for part in forged_token.split("&"))["sig"]
    assert signature not in err and forged_token not in err


def proxied(container: AzureContainer, proxy: CutProxy) -> dict[str, str]:
    return {"AZURE_STORAGE_CONNECTION_STRING": container.azurite.connection_string(port=proxy.port)}


CUT_SETTINGS = TransferSettings(chunk_size=256 * 1024, workers=1, window=2, attempts=3, backoff_seconds=0.01)


def test_a_few_cuts_are_retried(
    published: tuple[AzureContainer, str, bytes], cut_proxy: CutProxy, tmp_path: Path
) -> None:
    container, pinned, weights = published
    cut_proxy.cut_after, cut_proxy.cuts_left = 100_000, 4  # every connection dies mid-range, four times
    store = open_store(container.uri(), env=proxied(container, cut_proxy), settings=CUT_SETTINGS)
    result = fetch_version(store, version="1", dest=tmp_path / "dest", pinned=pinned)
    assert result.digest == pinned
    assert (tmp_path / "dest" / "model.onnx").read_bytes() == weights
    assert cut_proxy.cuts == 4
    assert store.stats.retries >= 1  # the SDK gives up after 3 tries; our range retry took over


def test_every_connection_cut_still_resumes_range_by_range(
    published: tuple[AzureContainer, str, bytes], cut_proxy: CutProxy, tmp_path: Path
) -> None:
    container, pinned, weights = published
    cut_proxy.cut_after = 600_000  # every connection dies after ~2 ranges; a single-stream GET never finishes
    settings = TransferSettings(chunk_size=256 * 1024, workers=2, window=4, attempts=4, backoff_seconds=0.01)
    store = open_store(container.uri(), env=proxied(container, cut_proxy), settings=settings)
    fetch_version(store, version="1", dest=tmp_path / "dest", pinned=pinned)
    assert (tmp_path / "dest" / "model.onnx").read_bytes() == weights
    assert cut_proxy.cuts >= 2


def test_a_persistent_cut_fails_closed(
    published: tuple[AzureContainer, str, bytes], cut_proxy: CutProxy, tmp_path: Path
) -> None:
    container, pinned, _ = published
    cut_proxy.cut_after = 100_000  # every connection, every attempt: no range can complete
    store = open_store(container.uri(), env=proxied(container, cut_proxy), settings=CUT_SETTINGS)
    dest = tmp_path / "dest"
    with pytest.raises(TransientError, match="gave up after 3 attempts"):
        fetch_version(store, version="1", dest=dest, pinned=pinned)
    assert not dest.exists()
    assert not [p for p in tmp_path.iterdir() if ".partial-" in p.name]
    assert cut_proxy.cuts >= 3


def test_s3_cuts_are_retried_too(s3_bucket: S3Bucket, tmp_path: Path) -> None:
    """The same engine behind boto3: botocore does not retry a body cut, the range retry does."""
    weights = os.urandom(1024 * 1024)
    source = tmp_path / "model.onnx"
    source.write_bytes(weights)
    pinned = publish_version(
        open_store(s3_bucket.uri(), env=s3_bucket.env), version="1", sources=[source], model_format="onnx",
        entrypoint=None,
    )  # fmt: skip
    proxy = CutProxy(upstream=s3_bucket.server.port, cut_after=100_000, cuts_left=3)
    proxy.start()
    try:
        env = {**s3_bucket.env, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{proxy.port}"}
        settings = TransferSettings(chunk_size=256 * 1024, workers=1, window=2, attempts=4, backoff_seconds=0.01)
        store = open_store(s3_bucket.uri(), env=env, settings=settings)
        fetch_version(store, version="1", dest=tmp_path / "dest", pinned=pinned)
    finally:
        proxy.stop()
    assert (tmp_path / "dest" / "model.onnx").read_bytes() == weights
    assert proxy.cuts == 3
    assert store.stats.retries == 3
