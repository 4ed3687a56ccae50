"""examples/app stays coherent: its manifests render, they name the class its Dockerfile sets, and its
own unit tests pass here too (tests/integration/test_app_ci.py runs them inside the built image).

Design notes: the example is an app team's repository, not a package of ours, so its code is put on
the import path for these tests only (monkeypatch), and its unittest suite runs in-process.
"""

from __future__ import annotations

import re
import unittest
from pathlib import Path

import pytest
import yaml

from modelapp_operator.commands import render_text

APP = Path(__file__).resolve().parents[2] / "examples" / "app"
MANIFESTS = sorted(APP.glob("modelapp*.yaml"))


def _model_apps(path: Path) -> list[dict[str, object]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc["kind"] == "ModelApp"]


def test_there_are_two_manifests() -> None:
    assert [path.name for path in MANIFESTS] == ["modelapp-baked.yaml", "modelapp.yaml"]


@pytest.mark.parametrize("manifest", MANIFESTS, ids=lambda path: path.name)
def test_manifest_renders_with_the_class_the_image_sets(manifest: Path) -> None:
    rendered = list(yaml.safe_load_all(render_text(manifest.read_text(), source=manifest.name, namespace="ml",
                                                   serving_image="example.com/modelapp-serving:1")))  # fmt: skip
    deployment = next(doc for doc in rendered if doc["kind"] == "Deployment")
    (fetch,) = deployment["spec"]["template"]["spec"]["initContainers"]
    (app,) = _model_apps(manifest)
    # A file:// model is fetched by the app image itself (the baked copy), else by the serving image.
    baked = app["spec"]["model"]["uri"].startswith("file://")  # type: ignore[index]
    assert fetch["image"] == (app["spec"]["image"] if baked else "example.com/modelapp-serving:1")  # type: ignore[index]
    image_class = re.search(r"^ENV MODELAPP_MODEL_CLASS=(\S+)$", (APP / "Dockerfile").read_text(), re.MULTILINE)
    assert image_class is not None
    assert app["spec"]["modelClass"] == image_class.group(1)  # type: ignore[index]


def test_baked_manifest_serves_from_the_folder_app_ci_bakes_into() -> None:
    (app,) = _model_apps(APP / "modelapp-baked.yaml")
    spec = app["spec"]
    assert spec["model"]["uri"] == "file:///opt/models/iris"  # type: ignore[index]
    assert spec["image"].endswith(f":1.0.0-model.{spec['model']['version']}")  # type: ignore[index]


def test_the_apps_own_tests_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(APP / "src"))
    suite = unittest.defaultTestLoader.discover(str(APP / "tests"), top_level_dir=str(APP / "tests"))
    result = unittest.TestResult()
    suite.run(result)
    assert result.testsRun >= 7
    assert not result.failures and not result.errors, result.failures + result.errors


SCRIPT = (APP.parents[1] / "hack" / "app-ci.sh").read_text()
REQUIRED = {"APP_DIR", "SERVING_IMAGE", "IMAGE", "TAG", "REGISTRY_USERNAME", "REGISTRY_PASSWORD", "MODEL_URI"}


def _template(path: Path) -> tuple[set[str], list[tuple[str, dict[str, str]]]]:
    """Variables set for the whole pipeline, and (script, step env) of every step that runs a script."""
    document = yaml.safe_load(path.read_text())
    if "jobs" in document:  # GitHub Actions
        pipeline = set(document.get("env", {}))
        steps = document["jobs"]["release"]["steps"]
    else:  # Azure Pipelines
        pipeline = {item["name"] for item in document.get("variables", []) if "name" in item}
        steps = document["steps"]
    found = []
    for step in steps:
        script = step.get("run") or step.get("bash")
        if script is not None:
            found.append((str(script), {str(key): str(value) for key, value in (step.get("env") or {}).items()}))
    return pipeline, found


@pytest.mark.parametrize("template", [".github/workflows/release.yaml", "azure-pipelines.yml"])
def test_ci_templates_build_only_through_app_ci(template: str) -> None:
    pipeline, steps = _template(APP / template)
    for script, _ in steps:
        assert not re.search(r"\bdocker\b", script), f"{template}: a step builds or pushes by itself: {script}"
    calls = [(script, env) for script, env in steps if "modelapp/hack/app-ci.sh" in script]
    assert len(calls) == 2  # the pull-request build and the release
    for _, env in calls:
        # Every variable handed to the script is one it reads (a rename there breaks the template here).
        for name in env:
            assert re.search(rf"\b{name}\b", SCRIPT), (template, name)
    (release, release_env), *_ = [(script, env) for script, env in calls if "--no-push" not in script]
    given = pipeline | set(release_env) | ({"TAG"} if 'TAG="' in release else set())
    assert given >= REQUIRED, REQUIRED - given
