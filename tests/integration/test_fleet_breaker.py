"""The fleet circuit breaker against the real local cluster, the real operator and a real registry.

Design notes: 20 ModelApps in a fresh namespace follow one image repository in Debian's docker-registry
(`semver:^1.0`, a tagFilter that reads `1.1.0-broken` as version 1.1.0) and are Ready on 1.0.0 under a
real `modelapp run --standalone`. Then `1.1.0-broken` is pushed: kwok keeps pods of an image ending in
`-broken` not-Ready, so the Deployment controller reports ProgressDeadlineExceeded after 10 s and the
operator rolls the app back and quarantines the pair, exactly as tests/integration/test_rollback.py makes a
failed rollout. `modelapp bump` runs as users run it (the console module, JSON output). "Tried it" is
counted from the cluster, not from the bump's report: the apps owning a ReplicaSet whose pod template
runs the broken image. The uncapped run is the side-by-side figure (every app tries it).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from modelapp_operator import kube
from modelapp_operator.fleet import ANN_QUARANTINE_CLEARED
from tests.fixtures.operator import OperatorProcess, wait_for
from tests.fixtures.registry import Registry

pytestmark = pytest.mark.integration

RunOperator = Callable[..., OperatorProcess]
APPS = 20
CAP = 2
TAG_FILTER = r"^(?P<version>\d+\.\d+\.\d+)(-broken)?$"


def _app(namespace: str, name: str, image: str) -> dict[str, Any]:
    return {
        "apiVersion": "modelapp.io/v1alpha1", "kind": "ModelApp", "metadata": {"name": name, "namespace": namespace},
        "spec": {"image": image, "model": {"uri": "file:///opt/models/iris", "version": "1"}, "replicas": 1,
                 "service": {"type": "ClusterIP"}, "rollout": {"progressDeadlineSeconds": 10},
                 "updates": {"image": {"policy": "semver:^1.0", "tagFilter": TAG_FILTER},
                             "model": {"policy": "pinned"}}},
    }  # fmt: skip


def _ready(namespace: str, image: str, count: int) -> bool:
    apps = kube.list_objects("ModelApp", namespace)
    good = [a for a in apps if a["spec"]["image"] == image and _cond(a, "Ready") == "True"
            and (a.get("status") or {}).get("observedGeneration") == a["metadata"]["generation"]]  # fmt: skip
    return len(good) == count


def _cond(app: dict[str, Any], kind: str) -> str:
    conditions = (app.get("status") or {}).get("conditions") or []
    return next((str(c.get("status")) for c in conditions if c.get("type") == kind), "")


def _tried(namespace: str, image: str) -> set[str]:
    """Apps that ever rolled pods of `image`: owners of a ReplicaSet whose template runs it."""
    sets = kube._call("GET", f"/apis/apps/v1/namespaces/{namespace}/replicasets")["items"]
    runs = [rs for rs in sets if rs["spec"]["template"]["metadata"]["annotations"].get("modelapp.io/image") == image]
    return {rs["metadata"]["labels"]["app.kubernetes.io/instance"] for rs in runs}


def _bump(kubeconfig: Path, registry: Registry, namespace: str, *extra: str) -> tuple[int, dict[str, Any], float]:
    command = [sys.executable, "-m", "modelapp_operator.cli", "bump", "--kubeconfig", str(kubeconfig),
               "--namespace", namespace, "--insecure-registry", registry.host, "-o", "json", *extra]  # fmt: skip
    started = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    assert done.stdout, done.stderr
    return done.returncode, json.loads(done.stdout), time.monotonic() - started


def _fleet(run_operator: RunOperator, namespace: str, registry: Registry, apps: int) -> tuple[str, str]:
    repository = registry.fresh_repository("fleet")
    registry.push(repository, "1.0.0")
    good = f"{registry.host}/{repository}:1.0.0"
    run_operator(namespace, "--standalone")
    for i in range(apps):
        kube.apply(_app(namespace, f"app-{i:02d}", good))
    wait_for(f"{apps} apps Ready on 1.0.0", lambda: _ready(namespace, good, apps), timeout=240, interval=1.0)
    registry.push(repository, "1.1.0-broken")
    return good, f"{registry.host}/{repository}:1.1.0-broken"


def test_a_broken_image_is_tried_by_the_cap_then_by_none(
    run_operator: RunOperator, modelapp_crds: Path, namespace: str, registry_anonymous: Registry
) -> None:
    good, broken = _fleet(run_operator, namespace, registry_anonymous, APPS)

    code, report, seconds = _bump(modelapp_crds, registry_anonymous, namespace, "--max-rollouts", str(CAP),
                                  "--rollout-timeout", "120")  # fmt: skip
    tried_first = _tried(namespace, broken)
    patched = {r["name"] for r in report["rows"] if r["field"] == "image" and r["result"] == "patched"}
    held = {r["name"] for r in report["rows"] if r["field"] == "image" and r["result"] == "held"}
    print(f"\nFIGURE capped run: {len(tried_first)} of {APPS} apps tried {broken.rsplit(':', 1)[1]} "
          f"(cap {CAP}), {len(held)} held back, exit {code}, {seconds:.0f}s")  # fmt: skip
    assert code == 3, report
    assert patched == tried_first and len(tried_first) == CAP
    assert held == {f"app-{i:02d}" for i in range(APPS)} - patched
    assert [r["verdict"] for r in report["breaker"]["rollouts"]] == ["Failed"] * CAP
    assert {r["reason"] for r in report["breaker"]["rollouts"]} == {"ProgressDeadlineExceeded"}
    trips = report["breaker"]["trips"]  # each failed canary of the batch is a trip of its own
    assert {t["name"] for t in trips} == patched
    assert all(not t["everywhere"] and "held back: the rollout of" in t["summary"] for t in trips)
    assert all("held back" in r["reason"] for r in report["rows"] if r["result"] == "held")
    for name in patched:  # the canaries are back on the good pair, the rest never left it
        app = kube.get("ModelApp", name, namespace) or {}
        assert _cond(app, "RolledBack") == "True" and app["status"]["effective"]["image"] == good
    assert all((kube.get("ModelApp", n, namespace) or {})["spec"]["image"] == good for n in held)

    code, report, _ = _bump(modelapp_crds, registry_anonymous, namespace, "--max-rollouts", str(CAP))
    rows = {r["name"]: r for r in report["rows"] if r["field"] == "image"}
    print(f"FIGURE next run: {len(_tried(namespace, broken)) - CAP} more apps tried it, "
          f"{sum(r['result'] == 'held' for r in rows.values())} held by the quarantine, exit {code}")  # fmt: skip
    assert code == 0 and report["breaker"]["rollouts"] == []
    assert _tried(namespace, broken) == tried_first
    assert {n for n, r in rows.items() if r["result"] == "held"} == held
    assert all("quarantined: image" in rows[n]["reason"] and "failed in" in rows[n]["reason"] for n in held)

    # The quarantine as the platform team sees it, then cleared: the bump would move the rest again.
    listing = subprocess.run([sys.executable, "-m", "modelapp_operator.cli", "quarantine", "list", "-n", namespace,
                              "--kubeconfig", str(modelapp_crds), "-o", "json"],
                             capture_output=True, text=True, timeout=60, check=True)  # fmt: skip
    evidence = json.loads(listing.stdout)["evidence"]
    assert {e["app"] for e in evidence} == patched and {e["ref"] for e in evidence} == {broken}
    assert all(e["countsFor"] == f"namespace {namespace}" for e in evidence)
    cleared = subprocess.run([sys.executable, "-m", "modelapp_operator.cli", "quarantine", "clear", broken,
                              "-n", namespace, "--kubeconfig", str(modelapp_crds)],
                             capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert cleared.returncode == 0, cleared.stderr
    for name in patched:
        annotations = (kube.get("ModelApp", name, namespace) or {})["metadata"]["annotations"]
        assert annotations[ANN_QUARANTINE_CLEARED] == broken
    code, report, _ = _bump(modelapp_crds, registry_anonymous, namespace, "--dry-run")
    planned = {r["name"] for r in report["rows"] if r["field"] == "image" and r["result"] == "planned"}
    assert code == 0 and planned == held


def test_without_a_cap_every_app_tries_it(
    run_operator: RunOperator, modelapp_crds: Path, namespace: str, registry_anonymous: Registry
) -> None:
    """The figure beside the capped one: today's bump (no --max-rollouts) moves every app at once."""
    _, broken = _fleet(run_operator, namespace, registry_anonymous, APPS)
    code, report, _ = _bump(modelapp_crds, registry_anonymous, namespace)
    assert code == 0 and sum(r["result"] == "patched" for r in report["rows"]) == APPS
    wait_for("every app rolled back", lambda: all(_cond(a, "RolledBack") == "True"
             for a in kube.list_objects("ModelApp", namespace)), timeout=240, interval=1.0)  # fmt: skip
    print(f"\nFIGURE uncapped run: {len(_tried(namespace, broken))} of {APPS} apps tried the broken image")
    assert len(_tried(namespace, broken)) == APPS


def test_cluster_scope_carries_an_attributable_failure_to_other_tenants_only_from_trusted_namespaces(
    run_operator: RunOperator, modelapp_crds: Path, namespace: str, registry_anonymous: Registry,
    kube_cluster: Any,
) -> None:  # fmt: skip
    """Tenant x's canary fails; tenant y is held in cluster scope, not in namespace scope, and not when only
    a third (platform) namespace is trusted as evidence."""
    other = f"{namespace}-y"
    kube_cluster.admin_client().create("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                                               "metadata": {"name": other}})  # fmt: skip
    try:
        good, broken = _fleet(run_operator, namespace, registry_anonymous, 1)
        kube.apply(_app(other, "app-00", good))  # no operator in y: the bump needs none to plan it
        code, _, _ = _bump(modelapp_crds, registry_anonymous, namespace, "--max-rollouts", "1",
                           "--rollout-timeout", "120")  # fmt: skip
        assert code == 3 and _tried(namespace, broken) == {"app-00"}

        def plan_y(*extra: str) -> dict[str, Any]:
            _, report, _ = _bump(modelapp_crds, registry_anonymous, other, "--dry-run", *extra)
            (row,) = [r for r in report["rows"] if r["field"] == "image"]
            return row

        assert plan_y()["result"] == "planned"  # namespace scope: x's failure is x's own
        held = plan_y("--quarantine-scope", "cluster", "--quarantine-from", namespace)
        assert held["result"] == "held" and f"failed in {namespace}/app-00" in held["reason"]
        assert plan_y("--quarantine-scope", "cluster", "--quarantine-from", "platform-canary")["result"] == "planned"
    finally:
        kube_cluster.admin_client().delete(f"/api/v1/namespaces/{other}")
