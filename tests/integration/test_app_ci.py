"""hack/app-ci.sh, the build half of the recipe, run on examples/app as an app team's CI would.

Design notes: every component is real. The serving image is built as the other image tests build it;
the registry is Debian's docker-registry with htpasswd auth on 127.0.0.1 (Docker treats loopback
registries as insecure, so plain HTTP needs no daemon change); the model store is Azurite, holding
versions published with `modelapp-serving publish` from the model the example's own
tools/export_model.py trains. Each test works on a copy of examples/app (some break it on purpose)
and pushes to a fresh repository. What is checked is what a team relies on: the app's tests ran in
the image; the pushed manifest is there, by the printed digest, for the pusher and not for anonymous;
the baked variant, pulled back from the registry, holds the newest complete version (not a newer
half-published one), verified, and answers predictions through the app's own pre/post-processing;
a refused login or a failing test pushes nothing; the password is never printed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from modelapp_operator.registry import DockerConfig, RegistryClient, parse_image
from modelapp_operator.signatures import LABEL, parse_accepts
from modelapp_serving.card import parse_signature
from tests.fixtures.azurite import AzureContainer
from tests.fixtures.images import Container, Image, docker
from tests.fixtures.registry import PUSHER, Registry

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "hack" / "app-ci.sh"
EXAMPLE = REPO / "examples" / "app"
MANIFEST_TYPES = ", ".join(
    ["application/vnd.docker.distribution.manifest.v2+json", "application/vnd.oci.image.manifest.v1+json"]
)
# Three flowers of the iris data set, one per species.
FLOWERS = {"setosa": [5.1, 3.5, 1.4, 0.2], "versicolor": [7.0, 3.2, 4.7, 1.4], "virginica": [6.3, 3.3, 6.0, 2.5]}


@dataclass(frozen=True)
class Run:
    code: int
    stdout: str
    stderr: str

    @property
    def outputs(self) -> dict[str, str]:
        return dict(line.split("=", 1) for line in self.stdout.splitlines() if "=" in line)


@pytest.fixture
def app_repo(tmp_path: Path) -> Path:
    """A fresh copy of examples/app, as a team's fork."""
    target = tmp_path / "app"
    shutil.copytree(EXAMPLE, target, ignore=shutil.ignore_patterns("__pycache__"))
    return target


@pytest.fixture
def local_tags() -> Iterator[list[str]]:
    """Image references a test made; removed from the Docker engine afterwards (disk is shared)."""
    tags: list[str] = []
    yield tags
    for tag in tags:
        subprocess.run(["docker", "rmi", "--force", tag], capture_output=True, timeout=120, check=False)


def run_ci(registry: Registry, serving: Image, app: Path, *args: str, **env: str) -> Run:
    environment = {
        **os.environ,
        "APP_DIR": str(app),
        "SERVING_IMAGE": serving.name,
        "IMAGE": f"{registry.host}/{registry.fresh_repository('iris-app')}",
        "TAG": "1.0.0",
        "REGISTRY_USERNAME": PUSHER[0],
        "REGISTRY_PASSWORD": PUSHER[1],
        **env,
    }
    result = subprocess.run(
        ["bash", str(SCRIPT), *args], env=environment, capture_output=True, text=True, timeout=1200, check=False
    )
    return Run(result.returncode, result.stdout, result.stderr)


def manifest(registry: Registry, reference: str, *, auth: tuple[str, str] | None) -> requests.Response:
    """GET the manifest of `host/repo:tag` (or `@digest`) straight from the registry API."""
    name, _, ref = reference.removeprefix(f"{registry.host}/").partition("@")
    repository, _, tag = name.rpartition(":")
    return requests.get(
        f"{registry.url}/v2/{repository}/manifests/{ref or tag}", auth=auth, timeout=10,
        headers={"Accept": MANIFEST_TYPES},
    )  # fmt: skip


def publish(container: AzureContainer, folder: Path, version: str) -> str:
    """Publish `folder/model.json` as `version` with the serving command line; returns the version digest."""
    command = [sys.executable, "-m", "modelapp_serving.cli", "publish", "--uri", container.uri("iris")]
    command += ["--version", version, "--format", "custom", str(folder / "model.json")]
    result = subprocess.run(
        command, env={**os.environ, **container.env}, cwd=folder, capture_output=True, text=True, timeout=120,
        check=True,
    )  # fmt: skip
    return result.stdout.strip().splitlines()[-1]


@pytest.fixture
def published(azure_container: AzureContainer, tmp_path: Path) -> dict[str, str]:
    """Versions 9 and 10 of the example's trained model, and a half-published 11 (files, no manifest)."""
    folder = tmp_path / "model"
    subprocess.run([sys.executable, str(EXAMPLE / "tools" / "export_model.py"), "--out", str(folder)],
                   check=True, capture_output=True, timeout=300, cwd=tmp_path)  # fmt: skip
    digests = {version: publish(azure_container, folder, version) for version in ("9", "10")}
    azure_container.client.upload_blob("iris/11/model.json", (folder / "model.json").read_bytes())
    return digests


def wait_ready(container: Container, url: str, deadline_seconds: float = 120.0) -> None:
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


def pull_back(registry: Registry, reference: str, config: Path) -> None:
    """Forget the local copy and pull `reference` from the registry, logged in with a config of our own."""
    subprocess.run(
        ["docker", "--config", str(config), "login", "--username", PUSHER[0], "--password-stdin", registry.host],
        input=PUSHER[1], capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    docker("rmi", reference.partition("@")[0])
    subprocess.run(["docker", "--config", str(config), "pull", reference], capture_output=True, timeout=300, check=True)


def test_release_pushes_the_tested_image_and_a_baked_variant_that_serves(  # noqa: PLR0917 -- one fixture per real component
    registry_basic: Registry,
    serving_image: Image,
    app_repo: Path,
    azure_container: AzureContainer,
    published: dict[str, str],
    run_container: Callable[..., Container],
    local_tags: list[str],
    tmp_path: Path,
) -> None:
    runner_config = tmp_path / "runner-docker-config"  # the CI runner's own Docker config
    runner_config.mkdir()
    run = run_ci(registry_basic, serving_image, app_repo, MODEL_URI=azure_container.uri("iris"),
                 DOCKER_CONFIG=str(runner_config), **azure_container.env)  # fmt: skip
    out = run.outputs
    local_tags += [out.get("image", "").partition("@")[0], out.get("baked_image", "").partition("@")[0]]
    assert run.code == 0, run.stderr[-4000:]
    # The app's own tests ran, inside the image.
    assert "Ran 7 tests" in run.stderr and "\nOK" in run.stderr, run.stderr[-4000:]
    # No secret in what CI would log.
    for secret in (PUSHER[1], azure_container.env["AZURE_STORAGE_CONNECTION_STRING"].split("AccountKey=")[1][:20]):
        assert secret not in run.stdout + run.stderr
    assert list(runner_config.iterdir()) == []  # the push login never outlives the run

    # The pushed image is in the registry under the printed digest; anonymous is refused.
    image, digest = out["image"].split("@")
    assert image.endswith(":1.0.0") and digest.startswith("sha256:")
    for reference in (image, out["image"]):
        reply = manifest(registry_basic, reference, auth=PUSHER)
        assert reply.status_code == 200, reply.text
        assert reply.headers["Docker-Content-Digest"] == digest
    assert manifest(registry_basic, image, auth=None).status_code == 401
    # The image declares the signatures the app accepts (its signatures.json), as the bump reads them.
    client = RegistryClient(config=DockerConfig.from_json(registry_basic.docker_config(PUSHER)))
    for pushed in (out["image"], out["baked_image"]):
        ref = parse_image(pushed)
        assert ref.digest is not None
        label = client.image_labels(ref, ref.digest)[LABEL]
        assert parse_accepts(label) == (parse_signature((app_repo / "signatures.json").read_bytes()),)

    # The newest complete version was baked (10 > 9 in version order; 11 has no manifest yet).
    assert (out["model_version"], out["model_sha256"]) == ("10", published["10"])
    assert out["model_uri"] == "file:///opt/models/iris"
    baked, baked_digest = out["baked_image"].split("@")
    assert baked.endswith(":1.0.0-model.10")
    assert manifest(registry_basic, baked, auth=PUSHER).headers["Docker-Content-Digest"] == baked_digest

    # Pulled back from the registry, the baked image serves the model from its own file system, as a pod runs it.
    pull_back(registry_basic, out["baked_image"], tmp_path / "docker-config")
    local_tags.append(out["baked_image"])  # pulled by digest: removed by digest
    container = run_container(
        "--user", "1000:1000", "--read-only", "--tmpfs", "/tmp", "--cap-drop", "ALL",
        "--publish", "127.0.0.1::8080", out["baked_image"],
        "serve", "--model-dir", "/opt/models/iris/10", "--name", "iris", "--port", "8080", "--workers", "1",
        "--sha256", out["model_sha256"],
    )  # fmt: skip
    url = f"http://127.0.0.1:{container.port(8080)}"
    wait_ready(container, url)
    body = {"inputs": [{"name": "measurements", "datatype": "FP32", "shape": [3, 4], "data": list(FLOWERS.values())}]}
    reply = requests.post(f"{url}/v2/models/iris/infer", json=body, timeout=30)
    assert reply.status_code == 200, reply.text
    outputs = {item["name"]: item for item in reply.json()["outputs"]}
    assert outputs["label"]["datatype"] == "BYTES"
    assert outputs["label"]["data"] == list(FLOWERS)
    assert all(0.5 < p <= 1.0 for p in outputs["probability"]["data"])
    # The app's pre-processing refuses millimetres with its own reason, as a 400.
    bad = {"inputs": [{"name": "measurements", "datatype": "FP32", "shape": [1, 4], "data": [51, 35, 14, 2]}]}
    refused = requests.post(f"{url}/v2/models/iris/infer", json=bad, timeout=30)
    assert refused.status_code == 400 and "centimetres" in refused.text, refused.text
    assert requests.get(f"{url}/version", timeout=5).json()["sha256"] == published["10"]


def test_wrong_password_fails_at_login_and_pushes_nothing(
    registry_basic: Registry, serving_image: Image, app_repo: Path, local_tags: list[str]
) -> None:
    wrong = f"not-{uuid.uuid4().hex}"
    target = f"{registry_basic.host}/{registry_basic.fresh_repository('iris-app')}"
    local_tags.append(f"{target}:1.0.0")
    run = run_ci(registry_basic, serving_image, app_repo, IMAGE=target, REGISTRY_PASSWORD=wrong)
    assert run.code != 0
    assert "app-ci: error: login:" in run.stderr and "REGISTRY_PASSWORD" in run.stderr, run.stderr[-2000:]
    assert wrong not in run.stdout + run.stderr
    assert run.stdout == ""
    assert manifest(registry_basic, f"{target}:1.0.0", auth=PUSHER).status_code == 404


def test_failing_app_tests_push_nothing(
    registry_basic: Registry, serving_image: Image, app_repo: Path, local_tags: list[str]
) -> None:
    # A real regression in the app's post-processing: probabilities no longer normalised.
    processing = app_repo / "src" / "iris_app" / "processing.py"
    source = processing.read_text()
    assert "return exp / exp.sum(axis=1, keepdims=True)" in source
    processing.write_text(source.replace("return exp / exp.sum(axis=1, keepdims=True)", "return exp"))
    target = f"{registry_basic.host}/{registry_basic.fresh_repository('iris-app')}"
    local_tags.append(f"{target}:1.0.0")
    run = run_ci(registry_basic, serving_image, app_repo, IMAGE=target)
    assert run.code != 0
    assert "FAILED" in run.stderr and "app-ci: error: test:" in run.stderr, run.stderr[-2000:]
    assert "nothing was pushed" in run.stderr and run.stdout == ""
    assert "login:" not in run.stderr  # it never got as far as the registry
    tags = requests.get(f"{registry_basic.url}/v2/{target.split('/', 1)[1]}/tags/list", auth=PUSHER, timeout=10)
    assert tags.status_code == 404, tags.text


def _wheel(tmp_path: Path, name: str, requires: str) -> None:
    """Build a real wheel of a one-module project (pip, setuptools; offline) into tmp_path/wheels."""
    project = tmp_path / f"{name}-src"
    module = name.replace("-", "_")
    (project / module).mkdir(parents=True)
    (project / module / "__init__.py").write_text("CM_PER_INCH = 2.54\n")
    (project / "pyproject.toml").write_text(
        f'[project]\nname = "{name}"\nversion = "1.0"\ndependencies = ["{requires}"]\n'
        '[build-system]\nrequires = ["setuptools"]\nbuild-backend = "setuptools.build_meta"\n'
    )
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-index", "--no-build-isolation",
         "--wheel-dir", str(tmp_path / "wheels"), str(project)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip


def test_app_dependencies_come_from_the_wheelhouse_against_the_runtimes_packages(
    registry_basic: Registry, serving_image: Image, app_repo: Path, local_tags: list[str], tmp_path: Path
) -> None:
    """A dependency that needs numpy gets the runtime's numpy (not a second copy); one that needs
    another numpy fails the build, naming the build step."""
    _wheel(tmp_path, "iris-units", "numpy>=1.20")
    _wheel(tmp_path, "needs-old-numpy", "numpy<1.0")
    for wheel in (tmp_path / "wheels").iterdir():
        shutil.copy(wheel, app_repo / "wheels")
    (app_repo / "requirements.txt").write_text("iris-units==1.0\n")
    target = f"{registry_basic.host}/{registry_basic.fresh_repository('iris-app')}"
    local_tags.append(f"{target}:1.0.0")

    run = run_ci(registry_basic, serving_image, app_repo, "--no-push", IMAGE=target)
    assert run.code == 0, run.stderr[-4000:]
    assert "not pushed (--no-push)" in run.stderr and run.stdout == ""
    where = docker(
        "run", "--rm", "--entrypoint", "python3", f"{target}:1.0.0", "-c",
        "import iris_units, numpy, os; "
        "print(iris_units.__file__, numpy.__file__, *os.listdir('/opt/app/site-packages'))",
    ).split()  # fmt: skip
    assert where[0] == "/opt/app/site-packages/iris_units/__init__.py"
    assert where[1].startswith("/opt/venv/")
    assert not any(name.startswith("numpy") for name in where[2:]), where

    (app_repo / "requirements.txt").write_text("needs-old-numpy==1.0\n")
    stopped_before = set(docker("ps", "-aq", "--filter", "status=exited").split())
    refused = run_ci(registry_basic, serving_image, app_repo, "--no-push", IMAGE=target)
    assert refused.code != 0
    assert "app-ci: error: build:" in refused.stderr and "numpy" in refused.stderr, refused.stderr[-3000:]
    left = set(docker("ps", "-aq", "--filter", "status=exited").split()) - stopped_before
    assert not left, f"the failed build left its step's container behind: {left}"


@pytest.mark.parametrize(
    ("unset", "named"),
    [("SERVING_IMAGE", "SERVING_IMAGE is not set"), ("IMAGE", "IMAGE is not set"), ("TAG", "TAG is not set"),
     ("REGISTRY_PASSWORD", "REGISTRY_PASSWORD is not set")],
)  # fmt: skip
def test_missing_inputs_are_named_before_anything_runs(
    registry_basic: Registry, serving_image: Image, app_repo: Path, unset: str, named: str
) -> None:
    run = run_ci(registry_basic, serving_image, app_repo, **{unset: ""})
    assert run.code != 0 and named in run.stderr and "build:" not in run.stderr, run.stderr


def test_bad_inputs_say_what_to_do(registry_basic: Registry, serving_image: Image, app_repo: Path) -> None:
    cases = {
        "IMAGE": ("iris-app", "must start with its registry host"),
        "TAG": ("1.0.0/../x", "not a valid image tag"),
        "MODEL_URI": ("https://example.invalid/models", "must be azureblob://container/prefix"),
        "APP_TESTS": ("no-such-folder", "never pushed untested"),
    }
    for variable, (value, message) in cases.items():
        run = run_ci(registry_basic, serving_image, app_repo, **{variable: value})
        assert run.code != 0 and message in run.stderr, (variable, run.stderr)


def test_versions_lists_complete_versions_newest_first(
    azure_container: AzureContainer, published: dict[str, str], tmp_path: Path
) -> None:
    """The listing app-ci.sh bakes from: 10 before 9, the half-published 11 left out; none is an error."""

    def versions(uri: str, *extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "modelapp_serving.cli", "versions", "--uri", uri, *extra],
            env={**os.environ, **azure_container.env}, cwd=tmp_path, capture_output=True, text=True, timeout=60,
            check=False,
        )  # fmt: skip

    listed = versions(azure_container.uri("iris"))
    assert (listed.returncode, listed.stdout.split()) == (0, ["10", "9"]), listed.stderr
    assert versions(azure_container.uri("iris"), "--limit", "1").stdout.split() == ["10"]
    empty = versions(azure_container.uri("nothing-here"))
    assert empty.returncode == 1 and empty.stdout == ""
    assert "no complete version under" in empty.stderr and "modelapp-manifest.json" in empty.stderr
