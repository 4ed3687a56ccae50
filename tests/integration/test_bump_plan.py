"""Bump planning against a real registry and a real model store, without an API server.

Design notes: `plan_app` takes a ModelApp object as the API server returns it, so these tests
hand it plain dicts and check the plan and the merge patch; the registry is Debian's
docker-registry (fixture) and the model versions are published with `modelapp-serving`'s own
`publish_version` into a `file://` store, the same code path as Azure and S3 above the backend.
The request-count test reads the registry's access log: one `tags/list` per repository per run,
however many ModelApps share it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from modelapp_operator.bump import plan_app
from modelapp_operator.discovery import ModelCatalog, StoreKey, TagCatalog
from modelapp_operator.registry import RegistryClient
from modelapp_serving.manifest import MANIFEST_NAME
from modelapp_serving.publish import publish_version
from modelapp_serving.stores import Store, open_store
from tests.fixtures.net import free_port
from tests.fixtures.registry import Registry

pytestmark = pytest.mark.integration


def publish(root: Path, *versions: str) -> dict[str, str]:
    """Publish tiny versions under `root`; returns version -> digest."""
    store = open_store(f"file://{root}")
    digests = {}
    for version in versions:
        source = root.parent / f"src-{root.name}-{version}" / "model.onnx"
        source.parent.mkdir(parents=True)
        source.write_bytes(f"model {version}".encode())
        digests[version] = publish_version(
            store, version=version, sources=[source], model_format="onnx", entrypoint=None
        )
    return digests


def app(name: str, image: str, uri: str, version: str, **updates: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {"image": image, "model": {"uri": uri, "version": version}}
    spec["updates"] = {
        "image": {"policy": updates.get("image_policy", "semver:^1.4")},
        "model": {"policy": updates.get("model_policy", "numeric")},
    }
    obj: dict[str, Any] = {"metadata": {"namespace": "ml", "name": name, "resourceVersion": "41"}, "spec": spec}
    if "revisions" in updates:
        obj["status"] = {"revisions": updates["revisions"]}
    return obj


def catalogs(**client: Any) -> tuple[TagCatalog, ModelCatalog]:
    def opener(key: StoreKey) -> Store:
        return open_store(key.uri)

    return TagCatalog(RegistryClient(**client)), ModelCatalog(opener)


def test_plan_moves_to_newest_allowed_and_pins_the_digest(registry_anonymous: Registry, tmp_path: Path) -> None:
    repository = registry_anonymous.fresh_repository()
    digests = {tag: registry_anonymous.push(repository, tag) for tag in ("1.4.2", "1.5.0", "2.0.0", "main")}
    models = tmp_path / "models"
    versions = publish(models, "7", "8")
    (models / "9").mkdir()  # still uploading: no manifest yet
    (models / "10").mkdir()
    (models / "10" / MANIFEST_NAME).write_text("{not json")  # broken manifest
    image = f"{registry_anonymous.host}/{repository}:1.4.2"
    tags, catalog = catalogs()
    plan = plan_app(app("iris", image, f"file://{models}", "7"), tags=tags, models=catalog)
    rows = {row.field: row for row in plan.rows}
    assert rows["image"].new == f"{registry_anonymous.host}/{repository}:1.5.0"
    assert rows["model"].new == "8"
    assert "ignored incomplete 10, 9" in rows["model"].reason
    assert plan.patch == {
        "metadata": {"resourceVersion": "41"},
        "spec": {"image": rows["image"].new, "model": {"version": "8", "sha256": versions["8"]}},
    }
    pinned = f"{registry_anonymous.host}/{repository}:1.4.2@{digests['1.4.2']}"
    plan = plan_app(app("iris", pinned, f"file://{models}", "8"), tags=tags, models=catalog)
    assert plan.rows[0].new == f"{registry_anonymous.host}/{repository}:1.5.0@{digests['1.5.0']}"
    assert plan.rows[1].new == ""
    assert "8 is the newest allowed" in plan.rows[1].reason


def test_one_listing_per_repository_and_location(registry_anonymous: Registry, tmp_path: Path) -> None:
    repositories = [registry_anonymous.fresh_repository() for _ in range(3)]
    for repository in repositories:
        for tag in ("1.4.0", "1.4.1"):
            registry_anonymous.push(repository, tag)
    locations = [tmp_path / f"models-{index}" for index in range(2)]
    for location in locations:
        publish(location, "1", "2")
    tags, catalog = catalogs()
    apps = [
        app(f"app-{i}", f"{registry_anonymous.host}/{repositories[i % 3]}:1.4.0", f"file://{locations[i % 2]}", "1")
        for i in range(30)
    ]
    plans = [plan_app(obj, tags=tags, models=catalog) for obj in apps]
    assert all(plan.patch is not None for plan in plans)
    for repository in repositories:
        assert registry_anonymous.request_count(f"/v2/{repository}/tags/list") == 1
        assert registry_anonymous.request_count(f"/v2/{repository}/manifests/1.4.1", method="HEAD") == 1
    # 3 listings + 3 digests, and the chosen image's manifest and config for its signature label, for 30 apps
    assert tags.client.requests_made == 12
    assert catalog.request_count() == 4  # 2 listings + the chosen version's manifest in each location


def test_quarantined_pair_is_not_proposed_again(registry_anonymous: Registry, tmp_path: Path) -> None:
    repository = registry_anonymous.fresh_repository()
    for tag in ("1.4.0", "1.4.1", "1.4.2"):
        registry_anonymous.push(repository, tag)
    models = tmp_path / "models"
    publish(models, "1", "2", "3")
    name = f"{registry_anonymous.host}/{repository}"
    failed = [
        {"revision": 1, "image": f"{name}:1.4.2", "model": "1", "sha256": "x", "outcome": "Failed"},
        {"revision": 2, "image": f"{name}:1.4.0", "model": "3", "outcome": "Failed"},
        {"revision": 3, "image": f"{name}:1.4.0", "model": "2", "outcome": "Available"},
    ]
    tags, catalog = catalogs()
    plan = plan_app(app("q", f"{name}:1.4.0", f"file://{models}", "1", revisions=failed), tags=tags, models=catalog)
    rows = {row.field: row for row in plan.rows}
    assert rows["image"].new == f"{name}:1.4.1"  # 1.4.2 failed with model 1
    assert rows["model"].new == "2"  # 3 failed with image 1.4.0
    assert "skipping quarantined 3" in rows["model"].reason


def test_registry_down_fails_the_image_row_only(tmp_path: Path) -> None:
    models = tmp_path / "models"
    publish(models, "1", "2")
    tags, catalog = catalogs(timeout=2)
    image = f"127.0.0.1:{free_port()}/app/down:1.4.0"
    plan = plan_app(app("down", image, f"file://{models}", "1"), tags=tags, models=catalog)
    rows = {row.field: row for row in plan.rows}
    assert rows["image"].result == "failed"
    assert "cannot reach" in rows["image"].reason
    assert rows["model"].new == "2"
    assert plan.failed
    assert plan.patch == {
        "metadata": {"resourceVersion": "41"},
        "spec": {"model": {"version": "2", "sha256": plan.patch["spec"]["model"]["sha256"]}},
    }


def test_invalid_policy_and_missing_location_are_reported(tmp_path: Path) -> None:
    tags, catalog = catalogs()
    bad = app("bad", "example.invalid/app:1.0.0", f"file://{tmp_path}/nowhere", "1", image_policy="newest")
    plan = plan_app(bad, tags=tags, models=catalog)
    assert plan.failed and plan.patch is None
    assert "not an update policy" in plan.rows[0].reason
    missing = app("gone", "example.invalid/app:1.0.0", f"file://{tmp_path}/nowhere", "1", image_policy="pinned")
    plan = plan_app(missing, tags=tags, models=catalog)
    rows = {row.field: row for row in plan.rows}
    assert rows["image"].reason == "pinned"
    assert rows["model"].result == "failed" and "not found" in rows["model"].reason
