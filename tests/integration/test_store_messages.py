"""Store messages name the location as the user wrote it, and say what to do.

Design notes: `Store.uri` once joined the container after the prefix (`azureblob://iris/models` for
`azureblob://models/iris`), so `publish`, `fetch` and every bump row pointed at a place that does not
exist. These tests read the messages users read: the `publish` line of the real command, and the errors
of a real Azurite (a missing container, a refused key) and the S3 server (a missing bucket), each for a
URI with a multi-segment prefix, where a reversed join cannot go unnoticed.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from modelapp_serving.stores import CredentialsError, NotFoundError, open_store
from tests.fixtures.azurite import ACCOUNT_KEY, AzureContainer
from tests.fixtures.s3 import S3Bucket

pytestmark = pytest.mark.integration


def test_uri_is_container_then_prefix(azure_container: AzureContainer, s3_bucket: S3Bucket) -> None:
    for uri, env in [
        (f"azureblob://{azure_container.name}/team/iris", azure_container.env),
        (f"azureblob://{azure_container.name}", azure_container.env),
        (f"s3://{s3_bucket.name}/team/iris", s3_bucket.env),
        ("file:///srv/models/iris", {}),
    ]:
        assert open_store(uri, env=env).uri == uri


def test_publish_says_where_it_published(azure_container: AzureContainer, tmp_path: Path) -> None:
    model = tmp_path / "model.onnx"
    model.write_bytes(b"not really onnx, publish does not care")
    uri = azure_container.uri("team/iris")
    done = subprocess.run(
        [sys.executable, "-m", "modelapp_serving.cli", "publish", "--uri", uri, "--version", "2", str(model)],
        capture_output=True, text=True, timeout=120, check=False, env={**os.environ, **azure_container.env},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert f"published 2 to {uri}" in done.stderr


def test_missing_container_error_names_the_uri(azure_container: AzureContainer) -> None:
    uri = "azureblob://no-such-container/team/iris"
    with pytest.raises(NotFoundError) as caught:
        open_store(uri, env=azure_container.env).list_versions()
    assert str(caught.value).startswith(f"{uri}: listing versions: not found"), caught.value


def test_refused_key_names_the_uri_and_the_fix(azure_container: AzureContainer) -> None:
    wrong_key = ACCOUNT_KEY[:-8] + "AAAAAAA="
    env = {"AZURE_STORAGE_CONNECTION_STRING": azure_container.env["AZURE_STORAGE_CONNECTION_STRING"].replace(
        ACCOUNT_KEY, wrong_key)}  # fmt: skip
    uri = azure_container.uri("team/iris")
    with pytest.raises(CredentialsError) as caught:
        open_store(uri, env=env).list_versions()
    message = str(caught.value)
    assert message.startswith(f"{uri}: listing versions:"), message
    assert "check the AZURE_STORAGE_* keys of the credentials Secret" in message
    assert wrong_key not in message and ACCOUNT_KEY not in message


def test_missing_bucket_error_names_the_uri(s3_bucket: S3Bucket) -> None:
    uri = "s3://no-such-bucket-here/team/iris"
    with pytest.raises(NotFoundError) as caught:
        open_store(uri, env=s3_bucket.env).list_versions()
    assert str(caught.value).startswith(f"{uri}: listing versions: not found"), caught.value


def test_a_missing_client_package_is_a_store_error_naming_the_extra(azure_container: AzureContainer) -> None:
    """What the bump in an image without the Azure SDK reports: a row's error, not a crash of the run."""
    code = (
        "import sys\n"
        "sys.modules['azure'] = None  # as if azure-storage-blob were not installed\n"
        "from modelapp_serving.stores import StoreConfigError, open_store\n"
        "try:\n"
        f"    open_store({azure_container.uri()!r}, env={{}})\n"
        "except StoreConfigError as exc:\n"
        "    print(exc)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert "azureblob:// needs azure-storage-blob and azure-identity" in done.stdout
    assert "install modelapp[stores]" in done.stdout
