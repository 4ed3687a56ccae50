"""The bump's planning against the fleet quarantine, with a real registry (no API server needed).

Design notes: `plan_app` takes ModelApps as the API server returns them, so the evidence is a literal
`status.revisions` entry (the operator writes real ones in tests/integration/test_fleet_breaker.py). The
registry is Debian's docker-registry: pushing the same bytes gives the same manifest digest in any
repository, which is what lets a digest that failed under one name be recognised under another.
"""

from __future__ import annotations

from typing import Any

import pytest

from modelapp_operator.bump import plan_app
from modelapp_operator.discovery import ModelCatalog, StoreKey, TagCatalog
from modelapp_operator.fleet import Fleet
from modelapp_operator.registry import RegistryClient
from modelapp_serving.stores import Store, open_store
from tests.fixtures.registry import Registry

pytestmark = pytest.mark.integration

BROKEN_BYTES = b"the broken base image layer"


def app(namespace: str, name: str, image: str, revisions: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    spec = {"image": image, "model": {"uri": "file:///opt/models/iris", "version": "1"},
            "updates": {"image": {"policy": "semver:^1.0"}, "model": {"policy": "pinned"}}}  # fmt: skip
    obj: dict[str, Any] = {"metadata": {"namespace": namespace, "name": name, "resourceVersion": "7"}, "spec": spec}
    if revisions:
        obj["status"] = {"revisions": revisions}
    return obj


def failed_on(namespace: str, good: str, bad: str, digest: str) -> dict[str, Any]:
    """An app that ran `good`, moved to `bad` (pinned to `digest`) alone and missed its progress deadline."""
    uri = "file:///opt/models/iris"
    return app(namespace, "canary", good, [
        {"revision": 1, "image": good, "uri": uri, "model": "1", "outcome": "Superseded", "at": "2026-12-02T10:00:00Z",
         "availableAt": "2026-12-02T10:01:00Z", "settings": "5" * 64},
        {"revision": 2, "image": bad, "imageDigest": digest, "uri": uri, "model": "1", "outcome": "Failed",
         "reason": "ProgressDeadlineExceeded", "message": "ReplicaSet has timed out progressing.",
         "at": "2026-12-02T10:02:00Z", "settings": "5" * 64},
    ])  # fmt: skip


def catalogs(registry: Registry) -> tuple[TagCatalog, ModelCatalog]:
    def opener(key: StoreKey) -> Store:
        return open_store(key.uri)

    return TagCatalog(RegistryClient(insecure=[registry.host])), ModelCatalog(opener)


def test_a_failed_digest_is_held_back_under_another_repository_and_tag(registry_anonymous: Registry) -> None:
    first, second = registry_anonymous.fresh_repository(), registry_anonymous.fresh_repository()
    registry_anonymous.push(first, "1.0.0")
    digest = registry_anonymous.push(first, "1.1.0", BROKEN_BYTES)
    registry_anonymous.push(second, "1.0.0")
    assert registry_anonymous.push(second, "1.4.0", BROKEN_BYTES) == digest  # the same image, another name
    host = registry_anonymous.host
    evidence = failed_on("team-x", f"{host}/{first}:1.0.0", f"{host}/{first}:1.1.0@{digest}", digest)
    other = app("team-x", "iris", f"{host}/{second}:1.0.0")
    tags, models = catalogs(registry_anonymous)

    plan = plan_app(other, tags=tags, models=models, quarantined=Fleet.of([evidence, other]))
    image = next(r for r in plan.rows if r.field == "image")
    assert plan.patch is None and image.result == "held"
    assert "failed in team-x/canary (ProgressDeadlineExceeded" in image.reason

    # Elsewhere the same evidence counts only in cluster scope (it is attributable: image alone, deadline).
    tenant_y = app("team-y", "iris", f"{host}/{second}:1.0.0")
    free = plan_app(tenant_y, tags=tags, models=models, quarantined=Fleet.of([evidence]))
    assert next(r for r in free.rows if r.field == "image").new == f"{host}/{second}:1.4.0"
    held = plan_app(tenant_y, tags=tags, models=models, quarantined=Fleet.of([evidence], scope="cluster"))
    assert held.patch is None and next(r for r in held.rows if r.field == "image").result == "held"


def test_a_newer_good_tag_is_still_taken_past_the_quarantined_one(registry_anonymous: Registry) -> None:
    repository = registry_anonymous.fresh_repository()
    registry_anonymous.push(repository, "1.0.0")
    digest = registry_anonymous.push(repository, "1.1.0", BROKEN_BYTES + b"2")
    registry_anonymous.push(repository, "1.0.5")
    host = registry_anonymous.host
    evidence = failed_on("ns", f"{host}/{repository}:1.0.0", f"{host}/{repository}:1.1.0@{digest}", digest)
    other = app("ns", "iris", f"{host}/{repository}:1.0.0")
    tags, models = catalogs(registry_anonymous)
    plan = plan_app(other, tags=tags, models=models, quarantined=Fleet.of([evidence]))
    image = next(r for r in plan.rows if r.field == "image")
    assert image.result == "planned" and image.new == f"{host}/{repository}:1.0.5"
    assert "passed over image" in image.reason
