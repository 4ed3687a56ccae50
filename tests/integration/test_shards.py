"""Two operator shards sharing one namespace's fleet, on the real local cluster (kwok nodes).

Design notes: each shard is a real `modelapp run --shard NAME` subprocess with its own peering object;
shard `a` also takes unlabelled ModelApps (`--shard-default`). How many ModelApps a shard handled is read from
kopf's own log lines (`Handler 'reconcile' succeeded`), what happened from the API server.
The move test relabels a ModelApp while a broken rollout is in flight (kwok keeps `-broken` pods
not-Ready, the Deployment controller reports ProgressDeadlineExceeded after 10 s): the rollout is lost if
nobody rolls it back, and doubled if both shards act (two rollbacks, two failure entries or Events). Then
the ModelApp moves back with a good bump, which the first shard must roll out.
A shard's own write answered before a move but read after it (its worker thread held up) must not make it take
the ModelApp back: the test holds shard `a`'s status answers for a few seconds with a `sitecustomize` on its
PYTHONPATH (a delay the real threads only show under load: once in CI).
Namespace shards (`--namespace` lists that do not overlap, a peering each; the chart's `operator.shards[].namespaces`)
need no label: each process is started on its own namespace and must handle exactly the ModelApps there, labelled
or not, with no kopf state on the other's.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from modelapp_devcluster import LocalCluster
from modelapp_operator import kube
from modelapp_operator.names import LABEL_SHARD
from tests.fixtures.cluster import fresh_namespace
from tests.fixtures.operator import OperatorProcess, wait_for

pytestmark = pytest.mark.integration

RunOperator = Callable[..., OperatorProcess]
GOOD = "localhost:5000/iris-app:1.0.0"
NEWER = "localhost:5000/iris-app:1.1.0"
BROKEN = "localhost:5000/iris-app:1.0.1-broken"
DEADLINE = 10


def _app(name: str, namespace: str, image: str = GOOD, shard: str | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "modelapp.io/v1alpha1",
        "kind": "ModelApp",
        "metadata": {"name": name, "namespace": namespace, "labels": {LABEL_SHARD: shard} if shard else {}},
        "spec": {"image": image, "model": {"uri": "file:///opt/models/iris", "version": "1"}, "replicas": 2,
                 "service": {"type": "ClusterIP"}, "rollout": {"progressDeadlineSeconds": DEADLINE}},
    }  # fmt: skip


def _relabel(name: str, namespace: str, shard: str, **spec: Any) -> None:
    body: dict[str, Any] = {"metadata": {"labels": {LABEL_SHARD: shard}}, **({"spec": spec} if spec else {})}
    kube.patch("ModelApp", name, namespace, body)


def _get(name: str, namespace: str) -> dict[str, Any]:
    return kube.get("ModelApp", name, namespace) or {}


def _cond(app: dict[str, Any], kind: str) -> dict[str, Any]:
    return next((c for c in (app.get("status") or {}).get("conditions", []) if c["type"] == kind), {})


def _entries(app: dict[str, Any], image: str) -> list[dict[str, Any]]:
    return [e for e in (app.get("status") or {}).get("revisions", []) if e["image"] == image]


def _serving(name: str, namespace: str, image: str) -> dict[str, Any] | None:
    app = _get(name, namespace)
    status = app.get("status") or {}
    ok = _cond(app, "Ready").get("status") == "True" and status.get("observedGeneration") == app["metadata"].get(
        "generation") and any(e.get("outcome") == "Available" for e in _entries(app, image))  # fmt: skip
    return app if ok else None


def _reconciles(op: OperatorProcess) -> int:
    """ModelApps this replica handled (kopf logs each handler's success; no other writes re-trigger it here)."""
    return sum("Handler 'reconcile" in line and "succeeded" in line for line in op.text().splitlines())


def _events(namespace: str, name: str, reason: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = kube._call("GET", f"/api/v1/namespaces/{namespace}/events")["items"]
    return [e for e in items if e.get("reason") == reason and e["involvedObject"].get("name") == name]


def _posted_once(namespace: str, reason: str, what: str, about: str = "") -> None:
    """`iris` has exactly one Event of `reason` (mentioning `about`). kopf posts Events from a background task
    after the status write that the test waited for: wait for the first, then give a second copy time to come."""

    def posted() -> list[dict[str, Any]]:
        return [e for e in _events(namespace, "iris", reason) if about in e.get("message", "")]

    wait_for(f"{reason} posted", posted, timeout=30)
    time.sleep(2)
    assert len(posted()) == 1, what


@pytest.fixture
def shards(run_operator: RunOperator, namespace: str) -> dict[str, OperatorProcess]:
    ops = {"a": run_operator(namespace, "--shard", "a", "--shard-default"),
           "b": run_operator(namespace, "--shard", "b")}  # fmt: skip
    for op in ops.values():
        wait_for("shard started", lambda o=op: "Activity 'configure' succeeded" in o.text(), timeout=60)
    return ops


def test_each_shard_handles_its_own_and_the_default_the_unlabelled(shards: dict[str, OperatorProcess],
                                                                   namespace: str) -> None:  # fmt: skip
    kube.apply(_app("one", namespace, shard="a"))
    kube.apply(_app("two", namespace, shard="b"))
    kube.apply(_app("three", namespace))
    for name in ("one", "two", "three"):
        wait_for(f"{name} Ready", lambda n=name: _serving(n, namespace, GOOD), timeout=90)
    assert (_reconciles(shards["a"]), _reconciles(shards["b"])) == (2, 1), "a: one and three; b: two"
    for shard in ("a", "b"):
        assert kube.get("KopfPeering", f"modelapp-shard-{shard}", namespace) is not None, "a peering per shard"
    kopf_keys = {k for k in _get("two", namespace)["metadata"].get("annotations", {}) if k.startswith("modelapp.io/")}
    assert kopf_keys == set(), "kopf's diff-base is in memory (operator/diffbase.py): nothing written to the object"


def test_a_rollout_in_flight_moves_to_the_other_shard_and_back(shards: dict[str, OperatorProcess],
                                                               namespace: str) -> None:  # fmt: skip
    kube.apply(_app("iris", namespace, shard="a"))
    wait_for("GOOD serving on shard a", lambda: _serving("iris", namespace, GOOD), timeout=90)
    kube.apply(_app("iris", namespace, image=BROKEN, shard="a"))
    wait_for("the broken rollout started on shard a",
             lambda: any(e["outcome"] == "Progressing" for e in _entries(_get("iris", namespace), BROKEN)))  # fmt: skip
    _relabel("iris", namespace, "b")  # mid-rollout: shard b must finish it (here: roll it back), shard a must not

    def rolled_back() -> dict[str, Any] | None:
        app = _get("iris", namespace)
        return app if _cond(app, "RolledBack").get("status") == "True" else None

    app = wait_for("automatic rollback by shard b", rolled_back, timeout=DEADLINE + 90)
    (failed,) = _entries(app, BROKEN)
    assert failed["outcome"] == "Failed" and failed["reason"] == "ProgressDeadlineExceeded"
    assert "Rolled back" in shards["b"].text() and "Rolled back" not in shards["a"].text()
    wait_for("GOOD available again", lambda: any(e["outcome"] == "Available" for e in
                                                  _entries(_get("iris", namespace), GOOD)))  # fmt: skip
    _posted_once(namespace, "RolledBack", "rolled back once, by one shard")

    _relabel("iris", namespace, "a", image=NEWER)  # back to shard a, with a good bump in the same write
    app = wait_for("NEWER serving, rolled out by shard a", lambda: _serving("iris", namespace, NEWER), timeout=90)
    deployment = kube.get("Deployment", "iris", namespace) or {}
    assert deployment["spec"]["template"]["metadata"]["annotations"]["modelapp.io/image"] == NEWER
    assert [e["outcome"] for e in _entries(app, NEWER)] == ["Available"], "one rollout, recorded once"
    _posted_once(namespace, "RolloutSucceeded", "NEWER's success posted once", about="1.1.0")


#: Loaded by the held-up shard's Python at start: the answer to the first status write of a pass in a child thread
#: (one started by a Deployment event, not by kopf's handler) during the broken rollout reaches the engine 3 s late;
#: the hook says so in the file $HELD_MARK when it starts holding. kopf runs a ModelApp's own handlers and events in
#: order, so only such a pass can read an answer after the event that moved its ModelApp away.
LATE_STATUS_ANSWER = """
import os
import threading
import time
from pathlib import Path
from modelapp_operator import kube

_patch_status = kube.patch_status


def patch_status(name, namespace, patch):
    answer = _patch_status(name, namespace, patch)
    mark = Path(os.environ["HELD_MARK"])
    revisions = (answer or {}).get("status", {}).get("revisions") or []
    if (threading.current_thread().name.startswith("modelapp-child") and not mark.exists()
            and any("-broken" in r["image"] and r["outcome"] == "Progressing" for r in revisions)):
        mark.write_text(name)
        time.sleep(3)
    return answer


kube.patch_status = patch_status
"""


def test_an_answer_read_after_the_move_does_not_take_the_modelapp_back(run_operator: RunOperator, namespace: str,
                                                                       tmp_path: Path) -> None:  # fmt: skip
    hook = tmp_path / "late-answers"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(LATE_STATUS_ANSWER)
    held = tmp_path / "held"
    a = run_operator(namespace, "--shard", "a", env={"PYTHONPATH": str(hook), "HELD_MARK": str(held)})
    b = run_operator(namespace, "--shard", "b")
    for op in (a, b):
        wait_for("shard started", lambda o=op: "Activity 'configure' succeeded" in o.text(), timeout=60)
    kube.apply(_app("iris", namespace, shard="a"))
    wait_for("GOOD serving on shard a", lambda: _serving("iris", namespace, GOOD), timeout=90)
    kube.apply(_app("iris", namespace, image=BROKEN, shard="a"))
    wait_for("the broken rollout started on shard a",
             lambda: any(e["outcome"] == "Progressing" for e in _entries(_get("iris", namespace), BROKEN)))  # fmt: skip
    wait_for("shard a holding an answer", held.exists, timeout=30)
    _relabel("iris", namespace, "b")  # while shard a's child thread still holds the answer to its status write

    def rolled_back() -> dict[str, Any] | None:
        app = _get("iris", namespace)
        return app if _cond(app, "RolledBack").get("status") == "True" else None

    wait_for("automatic rollback by shard b", rolled_back, timeout=DEADLINE + 90)
    wait_for("GOOD available again", lambda: any(e["outcome"] == "Available" for e in
                                                  _entries(_get("iris", namespace), GOOD)))  # fmt: skip
    time.sleep(5)  # shard a saw the same deadline: give a wrong second rollback the time to show (it took < 1 s)
    assert "Rolled back" in b.text() and "Rolled back" not in a.text(), "only the shard it moved to acts"
    _posted_once(namespace, "RolledBack", "rolled back once, by one shard")


def test_a_modelapp_of_no_running_shard_is_left_alone(shards: dict[str, OperatorProcess], namespace: str) -> None:
    kube.apply(_app("orphan", namespace, shard="c"))
    kube.apply(_app("canary", namespace, shard="b"))
    wait_for("canary Ready", lambda: _serving("canary", namespace, GOOD), timeout=90)
    assert kube.get("Deployment", "orphan", namespace) is None and not _get("orphan", namespace).get("status")
    annotations = _get("orphan", namespace)["metadata"].get("annotations", {})
    assert not any(k.startswith("modelapp.io/") for k in annotations), "no kopf state on a ModelApp nobody handles"
    _relabel("orphan", namespace, "b")
    wait_for("orphan Ready once its shard runs it", lambda: _serving("orphan", namespace, GOOD), timeout=90)


def test_namespace_shards_each_handle_only_their_own_namespace(run_operator: RunOperator, namespace: str,
                                                               kube_cluster: LocalCluster) -> None:  # fmt: skip
    with fresh_namespace(kube_cluster) as other:
        ops = {namespace: run_operator(namespace, "--peering", "modelapp-ns-a"),
               other: run_operator(other, "--peering", "modelapp-ns-b")}  # fmt: skip
        for op in ops.values():
            wait_for("shard started", lambda o=op: "Activity 'configure' succeeded" in o.text(), timeout=60)
        kube.apply(_app("one", namespace))
        kube.apply(_app("two", other, shard="b"))  # a shard label means nothing to a namespace shard
        kube.apply(_app("three", other))
        wait_for("one Ready", lambda: _serving("one", namespace, GOOD), timeout=90)
        for name in ("two", "three"):
            wait_for(f"{name} Ready", lambda n=name: _serving(n, other, GOOD), timeout=90)
        assert (_reconciles(ops[namespace]), _reconciles(ops[other])) == (1, 2), "each its own namespace's"
        assert kube.get("KopfPeering", "modelapp-ns-a", namespace) is not None
        assert kube.get("KopfPeering", "modelapp-ns-b", other) is not None
        assert kube.get("KopfPeering", "modelapp-ns-a", other) is None, "a peering only where its shard watches"
        assert f"/{other}/" not in ops[namespace].text() and f"[{other}/" not in ops[namespace].text()
