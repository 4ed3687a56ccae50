"""`modelapp-serving publish` then `fetch`, through the real command line, on every backend.

Design notes: the commands run in-process through `modelapp_serving.cli.main` with the
environment the pod would have (set with monkeypatch), and once as a real subprocess to check
the exit code and the stdout/stderr split an init container produces. The round trip proves
the contract: publish prints the version digest last; fetch with that pin lays out DEST with
the manifest and every file at its path, byte for byte.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from modelapp_serving import cli
from modelapp_serving.manifest import MANIFEST_NAME, digest, read_manifest
from tests.fixtures.azurite import AzureContainer
from tests.fixtures.s3 import S3Bucket

CREDENTIAL_VARIABLES = (
    "AZURE_STORAGE_CONNECTION_STRING",
    "AZURE_STORAGE_ACCOUNT_URL",
    "AZURE_STORAGE_SAS_TOKEN",
    "AWS_ENDPOINT_URL",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_DEFAULT_REGION",
)


@dataclass
class Cli:
    """Runs `modelapp-serving` in-process with exactly the given credential variables set."""

    monkeypatch: pytest.MonkeyPatch
    capsys: pytest.CaptureFixture[str]

    def __call__(self, argv: list[str], env: dict[str, str]) -> tuple[int, str, str]:
        for name in CREDENTIAL_VARIABLES:
            self.monkeypatch.delenv(name, raising=False)
        for name, value in env.items():
            self.monkeypatch.setenv(name, value)
        code = cli.main(argv)
        out, err = self.capsys.readouterr()
        return code, out, err


@pytest.fixture
def run(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Cli:
    return Cli(monkeypatch, capsys)


def model_files(tmp_path: Path) -> tuple[Path, Path]:
    """A model file and a folder of extras, as a data scientist would have them."""
    model = tmp_path / "src" / "model.onnx"
    extras = tmp_path / "src" / "extras"
    (extras / "tokenizer").mkdir(parents=True)
    model.write_bytes(os.urandom(300_000))
    (extras / "labels.txt").write_text("setosa\nversicolor\nvirginica\n")
    (extras / "tokenizer" / "vocab.json").write_text('{"a": 1}')
    return model, extras


@pytest.fixture(params=["azure", "s3", "file"])
def location(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, dict[str, str]]:
    if request.param == "azure":
        container: AzureContainer = request.getfixturevalue("azure_container")
        return container.uri("models/iris"), container.env
    if request.param == "s3":
        bucket: S3Bucket = request.getfixturevalue("s3_bucket")
        return bucket.uri("models/iris"), bucket.env
    return f"file://{tmp_path}/store/iris", {}


def test_publish_then_fetch_round_trip(location: tuple[str, dict[str, str]], tmp_path: Path, run: Cli) -> None:
    uri, env = location
    model, extras = model_files(tmp_path)
    code, out, err = run(["publish", "--uri", uri, "--version", "7", str(model), str(extras)], env)
    assert code == 0, err
    pinned = out.strip().splitlines()[-1]
    assert len(pinned) == 64

    dest = tmp_path / "mnt" / "models" / "model"
    argv = ["fetch", "--uri", uri, "--version", "7", "--dest", str(dest), "--sha256", pinned.upper()]
    code, out, err = run(argv, env)
    assert code == 0, err
    assert out.strip() == pinned
    manifest, fetched_digest = read_manifest(dest)
    assert fetched_digest == pinned == digest((dest / MANIFEST_NAME).read_bytes())
    assert manifest.entrypoint == "model.onnx"
    assert sorted(entry.path for entry in manifest.files) == ["labels.txt", "model.onnx", "tokenizer/vocab.json"]
    assert (dest / "model.onnx").read_bytes() == model.read_bytes()
    assert (dest / "tokenizer" / "vocab.json").read_text() == '{"a": 1}'
    assert [p.name for p in dest.parent.iterdir()] == ["model"]  # no staging folder left behind


def test_publish_refuses_an_existing_version(azure_container: AzureContainer, tmp_path: Path, run: Cli) -> None:
    model, _ = model_files(tmp_path)
    argv = ["publish", "--uri", azure_container.uri(), "--version", "1", str(model)]
    assert run(argv, azure_container.env)[0] == 0
    before = azure_container.client.download_blob(f"models/1/{MANIFEST_NAME}").readall()
    model.write_bytes(b"different weights")
    code, out, err = run(argv, azure_container.env)
    assert code == 1
    assert out == ""
    assert err.startswith("publish failed:") and "already exists" in err
    assert azure_container.client.download_blob(f"models/1/{MANIFEST_NAME}").readall() == before


def test_fetch_env_variables_configure_the_init_container(
    azure_container: AzureContainer, tmp_path: Path, run: Cli
) -> None:
    model, _ = model_files(tmp_path)
    code, out, _ = run(["publish", "--uri", azure_container.uri(), "--version", "2", str(model)], azure_container.env)
    assert code == 0
    env = {
        **azure_container.env,
        "MODELAPP_MODEL_URI": azure_container.uri(),
        "MODELAPP_MODEL_VERSION": "2",
        "MODELAPP_MODEL_DIR": str(tmp_path / "dest"),
        "MODELAPP_MODEL_SHA256": out.split()[-1],
    }
    code, fetched, err = run(["fetch"], env)
    assert code == 0, err
    assert fetched.strip() == out.split()[-1]
    assert (
        hashlib.sha256((tmp_path / "dest" / "model.onnx").read_bytes()).hexdigest()
        == hashlib.sha256(model.read_bytes()).hexdigest()
    )


def test_fetch_as_a_process_fails_with_one_line_and_exit_1(azure_container: AzureContainer, tmp_path: Path) -> None:
    env = {key: value for key, value in os.environ.items() if key not in CREDENTIAL_VARIABLES}
    env.update(azure_container.env)
    dest = tmp_path / "dest"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "modelapp_serving.cli",
            "fetch",
            "--uri",
            azure_container.uri(),
            "--version",
            "9",
            "--dest",
            str(dest),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith("fetch failed:") and "not found" in result.stderr
    assert not dest.exists()
