"""Dockerfile.serving and Dockerfile.operator really build, and the images really run.

Design notes: both images are built once per session by a real Docker engine from the locally made
Debian base image (no registry is reachable), from wheels built on the host and installed offline.
The serving image is run the way the operator's pod runs it: as uid 1000, read-only root
filesystem, /tmp a tmpfs, the model folder mounted where `fetch` leaves it, and a pinned digest;
its port is published on 127.0.0.1 only and the test calls `/v2/models/iris/infer` from the host,
comparing predictions with the scikit-learn estimator the ONNX model came from. The operator image
must start its command line as uid 1000 and, since the bump runs from it, list versions in Azurite and
the S3 server (host network, so the container reaches their 127.0.0.1 ports). Size ceilings guard
against an accidental fat layer (a compiler toolchain, pip caches, the wheelhouse left in the final
stage).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import requests

from modelapp_serving.publish import publish_version
from modelapp_serving.stores import open_store
from tests.fixtures.azurite import AzureContainer
from tests.fixtures.images import Container, Image, docker
from tests.fixtures.models import Iris, ModelDir
from tests.fixtures.s3 import S3Bucket

pytestmark = pytest.mark.integration

MiB = 1024 * 1024
RunContainer = Callable[..., Container]


def image_config(image: Image) -> dict[str, object]:
    config: dict[str, object] = json.loads(docker("image", "inspect", "--format", "{{json .Config}}", image.name))
    return config


def wait_ready(container: Container, url: str, deadline_seconds: float = 120.0) -> None:
    """Poll the readiness endpoint until 200; fail early with the logs if the container died."""
    deadline = time.monotonic() + deadline_seconds
    while time.monotonic() < deadline:
        if not container.running():
            raise AssertionError(f"the container exited:\n{container.logs()}")
        try:
            if requests.get(f"{url}/v2/health/ready", timeout=2).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"not ready within {deadline_seconds}s:\n{container.logs()}")


@pytest.mark.parametrize(
    ("fixture", "entrypoint"), [("serving_image", "modelapp-serving"), ("operator_image", "modelapp")]
)
def test_image_is_non_root_with_its_entrypoint(request: pytest.FixtureRequest, fixture: str, entrypoint: str) -> None:
    image: Image = request.getfixturevalue(fixture)
    config = image_config(image)
    assert config["User"] == "1000:1000"
    assert config["Entrypoint"] == [entrypoint]
    assert docker("run", "--rm", "--entrypoint", "id", image.name).strip() == (
        "uid=1000(modelapp) gid=1000(modelapp) groups=1000(modelapp)"
    )
    # The wheels are cp311: the interpreter in the image must be CPython 3.11, and no pip is left.
    version = docker(
        "run", "--rm", "--entrypoint", "python3", image.name, "-c", "import sys; print(sys.version_info[:2])"
    )
    assert version.strip() == "(3, 11)"
    assert docker("run", "--rm", "--entrypoint", "sh", image.name, "-c", "ls /opt/venv/bin").split().count("pip") == 0


def test_operator_image_runs_its_command_line(operator_image: Image) -> None:
    out = docker("run", "--rm", "--read-only", operator_image.name, "--help")
    assert out.startswith("usage: modelapp")
    assert operator_image.size_bytes < 400 * MiB, f"{operator_image.size_bytes / MiB:.0f} MiB"


@pytest.mark.parametrize("room", ["azure_container", "s3_bucket"])
def test_operator_image_opens_every_object_store(
    request: pytest.FixtureRequest, operator_image: Image, room: str, tmp_path: Path
) -> None:
    """The bump runs from this image and lists the stores ModelApps name: azureblob:// and s3:// too.

    Without the `stores` extra the first such app ended a bump run with ModuleNotFoundError.
    """
    store_room: AzureContainer | S3Bucket = request.getfixturevalue(room)
    uri = store_room.uri("team/iris")
    source = tmp_path / "model.onnx"
    source.write_bytes(b"tiny")
    for version in ("3", "10"):
        publish_version(open_store(uri, env=store_room.env), version=version, sources=[source],
                        model_format="onnx", entrypoint=None)  # fmt: skip
    listing = "import sys; from modelapp_serving.stores import open_store as s; print(s(sys.argv[1]).list_versions())"
    env = [arg for key, value in store_room.env.items() for arg in ("--env", f"{key}={value}")]
    out = docker(
        "run", "--rm", "--read-only", "--network", "host", *env, "--entrypoint", "python3", operator_image.name,
        "-c", listing, uri,
    )  # fmt: skip
    assert out.strip() == "['10', '3']"


def test_serving_image_serves_a_model_from_the_host(
    serving_image: Image, run_container: RunContainer, onnx_model_dir: ModelDir, iris: Iris
) -> None:
    container = run_container(
        "--user", "1000:1000",
        "--read-only", "--tmpfs", "/tmp",
        "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
        "--volume", f"{onnx_model_dir.path}:/mnt/models/model:ro",
        "--publish", "127.0.0.1::8080",
        serving_image.name,
        "serve", "--model-dir", "/mnt/models/model", "--name", "iris", "--port", "8080",
        "--workers", "1", "--sha256", onnx_model_dir.digest,
    )  # fmt: skip
    url = f"http://127.0.0.1:{container.port(8080)}"
    wait_ready(container, url)

    body = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [150, 4], "data": iris.features.tolist()}]}
    reply = requests.post(f"{url}/v2/models/iris/infer", json=body, timeout=30)
    assert reply.status_code == 200, reply.text
    assert reply.json()["outputs"][0]["data"] == iris.estimator.predict(iris.features).tolist()
    version = requests.get(f"{url}/version", timeout=5).json()
    assert (version["version"], version["sha256"]) == ("7", onnx_model_dir.digest)
    # A client mistake is a 4xx with a JSON message, also in the image.
    bad = requests.post(f"{url}/v2/models/iris/infer", data=b"{not json", timeout=10,
                        headers={"Content-Type": "application/json"})  # fmt: skip
    assert bad.status_code == 400
    assert serving_image.size_bytes < 800 * MiB, f"{serving_image.size_bytes / MiB:.0f} MiB"


def test_serving_image_refuses_a_wrong_pin(
    serving_image: Image, run_container: RunContainer, onnx_model_dir: ModelDir
) -> None:
    """Fail closed in the image too: a digest mismatch exits non-zero and never serves."""
    container = run_container(
        "--user", "1000:1000", "--read-only", "--tmpfs", "/tmp",
        "--volume", f"{onnx_model_dir.path}:/mnt/models/model:ro",
        serving_image.name,
        "serve", "--model-dir", "/mnt/models/model", "--name", "iris", "--sha256", "0" * 64,
    )  # fmt: skip
    exit_code = docker("wait", container.name, timeout=120).strip()
    assert exit_code != "0"
    logs = container.logs()
    assert "does not match" in logs and onnx_model_dir.digest in logs, logs
