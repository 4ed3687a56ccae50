"""Rollout safety against the real local cluster: history, automatic rollback, quarantine, restarts, CLI.

Design notes: each test gets a fresh namespace and its own `modelapp run --standalone` subprocess (no
peering, so a restarted operator does not wait for the killed one's keep-alive to expire). kwok makes
pods Ready, except pods whose image tag ends in `-broken`, which stay not-Ready: the real Deployment
controller then reports ProgressDeadlineExceeded after `progressDeadlineSeconds` (10 s here, the CRD
minimum), which is the failure the operator reacts to. A background poller records the ready replicas
of the good ReplicaSet during the whole broken rollout, to prove the old pods never stopped serving.
Smoke tests need real servers: they are covered by tests/integration/test_rollback_smoke.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests

from modelapp_operator import kube
from modelapp_operator.bump import Quarantine
from modelapp_operator.names import ANN_RETRY
from tests.fixtures.net import free_port
from tests.fixtures.operator import OperatorProcess, wait_for

pytestmark = pytest.mark.integration

RunOperator = Callable[..., OperatorProcess]
GOOD = "localhost:5000/iris-app:1.0.0"
NEWER = "localhost:5000/iris-app:1.1.0"
BROKEN = "localhost:5000/iris-app:1.0.1-broken"
DEADLINE = 10
IMAGE = "modelapp.io/image"


def _app(namespace: str, image: str, version: str = "1", **rollout: Any) -> dict[str, Any]:
    return {
        "apiVersion": "modelapp.io/v1alpha1",
        "kind": "ModelApp",
        "metadata": {"name": "iris", "namespace": namespace},
        "spec": {"image": image, "model": {"uri": "file:///opt/models/iris", "version": version}, "replicas": 2,
                 "service": {"type": "ClusterIP"}, "rollout": {"progressDeadlineSeconds": DEADLINE, **rollout}},
    }  # fmt: skip


def _kubectl_row(namespace: str) -> dict[str, str]:
    """The ModelApp's row as `kubectl get ma -o wide` gets it: the API server's Table, every column."""
    api = kube.api_client()
    params = api.param_serialize(
        "GET", f"/apis/modelapp.io/v1alpha1/namespaces/{namespace}/modelapps",
        header_params={"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io"}, auth_settings=["BearerToken"],
    )  # fmt: skip
    response = api.call_api(*params)
    table = json.loads(response.read())  # type: ignore[no-untyped-call]
    (row,) = table["rows"]
    return dict(zip([c["name"] for c in table["columnDefinitions"]], row["cells"], strict=True))


def _get(namespace: str) -> dict[str, Any]:
    return kube.get("ModelApp", "iris", namespace) or {}


def _cond(app: dict[str, Any], kind: str) -> dict[str, Any]:
    return next((c for c in (app.get("status") or {}).get("conditions", []) if c["type"] == kind), {})


def _entry(app: dict[str, Any], image: str) -> dict[str, Any]:
    return next((e for e in (app.get("status") or {}).get("revisions", []) if e["image"] == image), {})


def _serving(namespace: str, image: str) -> dict[str, Any] | None:
    """The app once `image` is Ready as the spec's pair."""
    app = _get(namespace)
    ok = _cond(app, "Ready").get("status") == "True" and _entry(app, image).get("outcome") == "Available"
    return app if ok and app["status"].get("observedGeneration") == app["metadata"]["generation"] else None


def _template_image(namespace: str) -> str:
    template = (kube.get("Deployment", "iris", namespace) or {}).get("spec", {}).get("template", {})
    return str(template.get("metadata", {}).get("annotations", {}).get("modelapp.io/image"))


def _rolled_back(namespace: str) -> dict[str, Any] | None:
    app = _get(namespace)
    done = _cond(app, "RolledBack").get("status") == "True" and _cond(app, "Ready").get("reason") == "RolledBack"
    return app if done and _template_image(namespace) != BROKEN else None


def _events(namespace: str, reason: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = kube._call("GET", f"/api/v1/namespaces/{namespace}/events")["items"]
    return [e for e in items if e.get("reason") == reason and e["involvedObject"].get("name") == "iris"]


class ReadyWatch:
    """Polls the ReplicaSets whose pods run `image`; remembers the fewest ready replicas seen."""

    def __init__(self, namespace: str, image: str) -> None:
        self.namespace, self.image, self.lowest, self.samples = namespace, image, 10**6, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        path = f"/apis/apps/v1/namespaces/{self.namespace}/replicasets"
        while not self._stop.wait(0.2):
            sets = kube._call("GET", path)["items"]
            mine = [rs for rs in sets if rs["spec"]["template"]["metadata"]["annotations"].get(IMAGE) == self.image]
            ready = sum(rs.get("status", {}).get("readyReplicas", 0) for rs in mine)
            self.lowest, self.samples = min(self.lowest, ready), self.samples + 1

    def __enter__(self) -> ReadyWatch:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


@pytest.fixture
def good_app(run_operator: RunOperator, namespace: str) -> Iterator[OperatorProcess]:
    """An operator with metrics on 127.0.0.1, and iris serving GOOD with 2 replicas."""
    port = free_port()
    op = run_operator(namespace, "--standalone", "--metrics-port", str(port), "--metrics-address", "127.0.0.1")
    op.metrics_url = f"http://127.0.0.1:{port}/metrics"  # type: ignore[attr-defined]
    kube.apply(_app(namespace, GOOD))
    wait_for("GOOD serving", lambda: _serving(namespace, GOOD), timeout=90)
    yield op


def test_a_good_pair_is_recorded_available(good_app: OperatorProcess, namespace: str) -> None:
    app = _get(namespace)
    (entry,) = app["status"]["revisions"]
    assert entry["revision"] == 1 and entry["outcome"] == "Available" and entry["model"] == "1"
    assert entry["uri"] == "file:///opt/models/iris" and entry["at"] and entry["availableAt"]
    assert app["status"]["effective"] == {"image": GOOD, "uri": "file:///opt/models/iris", "model": "1",
                                          "source": "Spec"}  # fmt: skip
    assert _cond(app, "RolledBack")["status"] == "False"
    wait_for("RolloutSucceeded posted (kopf posts Events in the background)",
             lambda: _events(namespace, "RolloutSucceeded"))


def test_broken_pair_is_rolled_back_quarantined_and_skipped(good_app: OperatorProcess, namespace: str) -> None:
    with ReadyWatch(namespace, GOOD) as watch:
        kube.apply(_app(namespace, BROKEN))
        wait_for("broken pair Progressing", lambda: _entry(_get(namespace), BROKEN).get("outcome") == "Progressing")
        app = wait_for("automatic rollback", lambda: _rolled_back(namespace), timeout=DEADLINE + 60)
        wait_for("GOOD available again", lambda: _entry(_get(namespace), GOOD).get("outcome") == "Available")
    assert watch.samples > 10 and watch.lowest == 2, "the good ReplicaSet kept both ready pods throughout"
    assert app["spec"]["image"] == BROKEN, "the spec stays as the user wrote it"
    failed = _entry(app, BROKEN)
    assert failed["outcome"] == "Failed" and failed["reason"] == "ProgressDeadlineExceeded"
    rolled = _cond(app, "RolledBack")
    assert rolled["reason"] == "ProgressDeadlineExceeded" and "quarantined" in rolled["message"]
    assert app["status"]["effective"]["source"] == "LastGood" and app["status"]["effective"]["image"] == GOOD
    assert _cond(app, "Degraded")["status"] == "True"
    row = _kubectl_row(namespace)  # one row, one pair: what serves; the spec's pair only in -o wide
    assert (row["Ready"], row["Image"], row["Model"]) == ("False", GOOD, "1"), row
    assert (row["Spec-Image"], row["Applied"]) == (BROKEN, "LastGood"), row
    wait_for("Warning Event", lambda: [e for e in _events(namespace, "RolledBack") if e["type"] == "Warning"])
    # the nightly bump reads the same history: the failed pair is never proposed again
    assert Quarantine.from_status(app["status"]).blocks(BROKEN, "1")
    assert not Quarantine.from_status(app["status"]).blocks(NEWER, "1")
    text = requests.get(good_app.metrics_url, timeout=5).text  # type: ignore[attr-defined]
    assert f'modelapp_rollbacks_total{{kind="auto",namespace="{namespace}"}} 1.0' in text
    assert f'modelapp_rollouts_failed_total{{namespace="{namespace}",reason="ProgressDeadlineExceeded"}} 1.0' in text

    # re-applying the quarantined pair is refused: nothing rolls out, the condition says why
    kube.apply(_app(namespace, NEWER))
    wait_for("NEWER serving", lambda: _serving(namespace, NEWER), timeout=90)
    assert _cond(_get(namespace), "RolledBack")["status"] == "False"
    kube.apply(_app(namespace, BROKEN))
    app = wait_for("quarantined pair refused", lambda: _rolled_back(namespace), timeout=30)
    assert _template_image(namespace) == NEWER and "retry-quarantined" in _cond(app, "Ready")["message"]
    assert _entry(app, BROKEN)["outcome"] == "Failed" and _entry(app, NEWER)["outcome"] == "Available"


def test_without_auto_rollback_the_app_is_degraded(good_app: OperatorProcess, namespace: str) -> None:
    kube.apply(_app(namespace, BROKEN, autoRollback=False))

    def degraded() -> dict[str, Any] | None:
        app = _get(namespace)
        return app if _cond(app, "Degraded").get("reason") == "ProgressDeadlineExceeded" else None

    app = wait_for("Degraded", degraded, timeout=DEADLINE + 60)
    assert _template_image(namespace) == BROKEN, "no rollback"
    assert _entry(app, BROKEN)["outcome"] == "Failed" and _cond(app, "Ready")["status"] == "False"
    assert _cond(app, "RolledBack")["status"] == "False" and not _events(namespace, "RolledBack")


def test_operator_killed_mid_rollout_finishes_the_rollback(run_operator: RunOperator, namespace: str,
                                                         good_app: OperatorProcess) -> None:  # fmt: skip
    kube.apply(_app(namespace, BROKEN))
    wait_for("broken pair Progressing", lambda: _entry(_get(namespace), BROKEN).get("outcome") == "Progressing")
    good_app.stop(kill=True)

    def deadline_exceeded() -> bool:
        conditions = (kube.get("Deployment", "iris", namespace) or {}).get("status", {}).get("conditions", [])
        return any(c.get("reason") == "ProgressDeadlineExceeded" for c in conditions)

    wait_for("the Deployment missing its deadline with no operator", deadline_exceeded, timeout=DEADLINE + 60)
    assert _template_image(namespace) == BROKEN
    run_operator(namespace, "--standalone")
    app = wait_for("the restarted operator rolls back", lambda: _rolled_back(namespace), timeout=60)
    assert _entry(app, BROKEN)["outcome"] == "Failed"


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    # not from the repository root, whose `operator/` folder would shadow the standard library's module
    return subprocess.run([sys.executable, "-m", "modelapp_operator.cli", *args], capture_output=True, text=True,
                          timeout=60, check=False, cwd=tempfile.gettempdir())  # fmt: skip


def test_modelapp_rollback_returns_to_the_last_good_pair(good_app: OperatorProcess, namespace: str) -> None:
    kube.apply(_app(namespace, NEWER, version="2"))
    wait_for("NEWER serving", lambda: _serving(namespace, NEWER), timeout=90)
    done = _cli("rollback", "iris", "-n", namespace, "--reason", "accuracy dropped")
    assert done.returncode == 0, done.stderr
    assert "rolled back to revision 1" in done.stdout
    app = wait_for("GOOD serving again", lambda: _serving(namespace, GOOD), timeout=90)
    assert app["spec"]["image"] == GOOD and app["spec"]["model"]["version"] == "1"
    left = _entry(app, NEWER)
    assert (left["outcome"], left["reason"], left["message"]) == ("RolledBack", "ManualRollback", "accuracy dropped")
    wait_for("the note is removed", lambda: "rollout.modelapp.io/rollback" not in
             (_get(namespace)["metadata"].get("annotations") or {}))  # fmt: skip
    # and forward again by number; then the errors
    assert _cli("rollback", "iris", "-n", namespace, "--to", str(left["revision"])).returncode == 0
    wait_for("NEWER serving again", lambda: _serving(namespace, NEWER), timeout=90)
    missing = _cli("rollback", "nope", "-n", namespace)
    assert missing.returncode == 1 and f"ModelApp {namespace}/nope not found" in missing.stderr
    unknown = _cli("rollback", "iris", "-n", namespace, "--to", "99")
    assert unknown.returncode == 1 and "has no revision 99; known: 3 (image" in unknown.stderr


def test_retry_annotation_tries_a_quarantined_pair_once_more(good_app: OperatorProcess, namespace: str) -> None:
    kube.apply(_app(namespace, BROKEN))
    wait_for("automatic rollback", lambda: _rolled_back(namespace), timeout=DEADLINE + 60)
    first = _entry(_get(namespace), BROKEN)["revision"]
    kube.patch("ModelApp", "iris", namespace, {"metadata": {"annotations": {ANN_RETRY: f"{BROKEN},1"}}})

    def retried() -> dict[str, Any] | None:
        app = _get(namespace)
        entry = _entry(app, BROKEN)
        return app if entry.get("revision", first) > first and _template_image(namespace) == BROKEN else None

    app = wait_for("the pair rolled out again", retried, timeout=30)
    assert _entry(app, BROKEN)["reason"] in ("RetryRequested", "ProgressDeadlineExceeded")
    wait_for("the annotation is spent", lambda: ANN_RETRY not in (_get(namespace)["metadata"].get("annotations") or {}))
    app = wait_for("quarantined again after failing again", lambda: _rolled_back(namespace), timeout=DEADLINE + 60)
    assert _entry(app, BROKEN)["outcome"] == "Failed" and _template_image(namespace) == GOOD
