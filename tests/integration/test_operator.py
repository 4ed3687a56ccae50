"""The operator against the real local cluster (kube-apiserver, controller-manager, scheduler, kwok).

Design notes: each test gets a fresh namespace and its own `modelapp run --namespace NS` subprocess;
everything is observed through the API server, polling with deadlines. kwok marks pods Ready, so the
Deployment controller really rolls out ReplicaSets and the garbage collector really deletes children.
The serving image never runs (kwok pods are fake), so these tests are about the control plane: children,
owner references, status, rollouts, drift repair, GC, restarts, peering and bad input.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from modelapp_operator import kube
from tests.fixtures.operator import OperatorProcess, wait_for

pytestmark = pytest.mark.integration

RunOperator = Callable[..., OperatorProcess]


def _app(name: str, namespace: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "modelapp.io/v1alpha1",
        "kind": "ModelApp",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"image": "localhost:5000/iris-app:1.0.0", "model": {"uri": "file:///opt/models/iris", "version": "1"},
                 "service": {"type": "ClusterIP"}, **spec},
    }  # fmt: skip


def _ready(name: str, namespace: str) -> dict[str, Any] | None:
    app = kube.get("ModelApp", name, namespace) or {}
    status = app.get("status") or {}
    ready = next((c for c in status.get("conditions", []) if c["type"] == "Ready"), None)
    current = status.get("observedGeneration") == app.get("metadata", {}).get("generation")
    return app if ready and ready["status"] == "True" and current else None


def _replicasets(namespace: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = kube._call("GET", f"/apis/apps/v1/namespaces/{namespace}/replicasets")["items"]
    return items


class _Follow:
    """A watch of one kind in the namespace, in a thread: `seen` gets (monotonic time, what `pick` took from the
    object) for every event whose pick is new (None: skipped). `stop()` ends it."""

    def __init__(self, namespace: str, kind: str, pick: Callable[[dict[str, Any]], Any]) -> None:
        import functools
        import threading

        from kubernetes import client, watch

        self.seen: list[tuple[float, Any]] = []
        self._stream = watch.Watch()
        self._stopped = False
        self.started = threading.Event()
        api = kube.api_client()
        if kind == "ModelApp":
            lister: Callable[..., Any] = client.CustomObjectsApi(api).list_namespaced_custom_object
            args: tuple[str, ...] = ("modelapp.io", "v1alpha1", namespace, "modelapps")
        else:
            lister, args = client.AppsV1Api(api).list_namespaced_deployment, (namespace,)

        @functools.wraps(lister)  # the watch reads the return type from its docstring
        def listing(*args: Any, **kwargs: Any) -> Any:
            answer = lister(*args, **kwargs)
            self.started.set()  # the API server answered the watch: every later change is seen
            return answer

        def follow() -> None:
            import time

            from kubernetes.client.exceptions import ApiException

            while not self._stopped:
                try:
                    for event in self._stream.stream(listing, *args, timeout_seconds=60):
                        obj = event["object"]  # a typed API's watch gives models: back to the API server's JSON
                        value = pick(obj if isinstance(obj, dict) else api.sanitize_for_serialization(obj))
                        if value is not None and (not self.seen or self.seen[-1][1] != value):
                            self.seen.append((time.monotonic(), value))
                    return
                except ApiException as e:  # 429 "storage is (re)initializing": a kind's watch cache not ready yet
                    if e.status != 429:  # (a fresh cluster, a test run on its own)
                        return
                    time.sleep(0.2)
                except Exception:  # the stream ends when the test stops it or the namespace goes
                    return

        threading.Thread(target=follow, daemon=True).start()

    def stop(self) -> None:
        self._stopped = True
        self._stream.stop()


def _status(obj: dict[str, Any]) -> dict[str, Any] | None:
    status: dict[str, Any] | None = obj.get("status") or None
    return status


def test_create_gives_owned_children_and_ready(run_operator: RunOperator, namespace: str) -> None:
    run_operator(namespace)
    kube.apply(_app("iris", namespace, replicas=2))
    app = wait_for("iris Ready", lambda: _ready("iris", namespace), timeout=90)
    for kind in ("Deployment", "Service", "PodDisruptionBudget"):
        child = kube.get(kind, "iris", namespace)
        assert child is not None, kind
        refs = child["metadata"]["ownerReferences"]
        assert refs == [{"apiVersion": "modelapp.io/v1alpha1", "kind": "ModelApp", "name": "iris",
                         "uid": app["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}]  # fmt: skip
    status = app["status"]
    assert status["readyReplicas"] == 2 and status["model"] == {"version": "1"}
    assert status["url"] == f"http://iris.{namespace}.svc:80/v2/models/iris" and status["urlSource"] == "ClusterDNS"
    dep = kube.get("Deployment", "iris", namespace)
    assert dep is not None
    init = dep["spec"]["template"]["spec"]["initContainers"][0]
    assert init["name"] == "fetch-model" and init["args"][:3] == ["fetch", "--uri", "file:///opt/models/iris"]
    managers = {m["manager"] for m in dep["metadata"]["managedFields"] if m["operation"] == "Apply"}
    assert managers == {"modelapp-operator"}


def test_spec_change_rolls_out_a_new_replicaset(run_operator: RunOperator, namespace: str) -> None:
    run_operator(namespace)
    kube.apply(_app("iris", namespace))
    wait_for("iris Ready", lambda: _ready("iris", namespace), timeout=90)
    before = {rs["metadata"]["name"] for rs in _replicasets(namespace)}
    kube.apply(_app("iris", namespace, model={"uri": "file:///opt/models/iris", "version": "2"}))

    def rolled_out() -> bool:
        app = _ready("iris", namespace)
        return bool(app and app["status"]["model"] == {"version": "2"})

    wait_for("version 2 Ready", rolled_out, timeout=90)
    dep = kube.get("Deployment", "iris", namespace)
    assert dep is not None
    assert dep["spec"]["template"]["metadata"]["annotations"]["modelapp.io/model-version"] == "2"
    after = {rs["metadata"]["name"] for rs in _replicasets(namespace)}
    assert after - before, "a new ReplicaSet"


def test_deleted_and_edited_children_are_restored(run_operator: RunOperator, namespace: str) -> None:
    run_operator(namespace)
    kube.apply(_app("iris", namespace))
    wait_for("iris Ready", lambda: _ready("iris", namespace), timeout=90)
    old_uid = (kube.get("Service", "iris", namespace) or {})["metadata"]["uid"]
    kube.delete("Service", "iris", namespace)
    wait_for("Service recreated", lambda: (kube.get("Service", "iris", namespace) or {}).get("metadata", {}).get("uid")
             not in (None, old_uid))  # fmt: skip
    kube._call("PATCH", f"/apis/apps/v1/namespaces/{namespace}/deployments/iris", body={"spec": {"replicas": 4}},
               content_type="application/merge-patch+json")  # fmt: skip
    wait_for("replicas restored", lambda: (kube.get("Deployment", "iris", namespace) or {})["spec"]["replicas"] == 1)
    kube.delete("Deployment", "iris", namespace)
    wait_for("Deployment recreated and Ready", lambda: kube.get("Deployment", "iris", namespace)
             and _ready("iris", namespace), timeout=90)  # fmt: skip


def test_deleting_the_modelapp_garbage_collects_children(run_operator: RunOperator, namespace: str) -> None:
    run_operator(namespace)
    kube.apply(_app("iris", namespace, replicas=2))
    wait_for("iris Ready", lambda: _ready("iris", namespace), timeout=90)
    assert kube.get("ModelApp", "iris", namespace)["metadata"].get("finalizers") in (None, [])  # type: ignore[index]
    kube.delete("ModelApp", "iris", namespace)
    for kind in ("Deployment", "Service", "PodDisruptionBudget"):
        wait_for(f"{kind} garbage-collected", lambda k=kind: kube.get(k, "iris", namespace) is None, timeout=90)


def test_restart_mid_reconcile_converges(run_operator: RunOperator, namespace: str) -> None:
    first = run_operator(namespace)
    wait_for("operator started", lambda: "Activity 'configure' succeeded" in first.text())
    kube.apply(_app("iris", namespace, replicas=3))
    wait_for("reconcile started", lambda: kube.get("Deployment", "iris", namespace), timeout=30, interval=0.05)
    first.stop(kill=True)
    kube.apply(_app("iris", namespace, replicas=2, model={"uri": "file:///opt/models/iris", "version": "5"}))
    run_operator(namespace)

    def converged() -> bool:
        app = _ready("iris", namespace)
        return bool(app and app["status"]["model"] == {"version": "5"} and app["status"]["readyReplicas"] == 2)

    # the killed replica's keep-alive may outrank the new one for up to MODELAPP_PEERING_LIFETIME (30 s)
    wait_for("converged after restart", converged, timeout=150)


def test_two_replicas_only_one_acts(run_operator: RunOperator, namespace: str) -> None:
    low = run_operator(namespace, "--priority", "10")
    wait_for("first replica running", lambda: "Activity 'configure' succeeded" in low.text())
    high = run_operator(namespace, "--priority", "20")
    wait_for("low replica pauses", lambda: "Pausing operations in favour of" in low.text(), timeout=60)
    kube.apply(_app("iris", namespace))
    wait_for("iris Ready", lambda: _ready("iris", namespace), timeout=90)
    assert "Handler 'reconcile' succeeded" in high.text()
    assert "Handler 'reconcile'" not in low.text()
    peering = kube.get("KopfPeering", "modelapp", namespace)
    assert peering is not None and len(peering["status"]) == 2


BAD_SPECS: list[tuple[str, dict[str, Any]]] = [
    ("missing image", {"image": None}),
    ("bad sha256", {"model": {"uri": "file:///m", "version": "1", "sha256": "ABC"}}),
    ("negative replicas", {"replicas": -1}),
    ("unknown policy", {"updates": {"model": {"policy": "newest"}}}),
    ("wrong type", {"replicas": "three"}),
    ("wrong service type", {"service": {"type": "Ingress"}}),
    ("bad uri", {"model": {"uri": "http://example.com", "version": "1"}}),
    ("huge image", {"image": "a" * 600}),
    ("version latest", {"model": {"uri": "file:///m", "version": "latest"}}),
]


def test_invalid_modelapps_are_rejected_and_others_undisturbed(run_operator: RunOperator, namespace: str) -> None:
    op = run_operator(namespace)
    kube.apply(_app("good", namespace))
    wait_for("good Ready", lambda: _ready("good", namespace), timeout=90)
    for what, override in [*BAD_SPECS, ("huge name", {})]:
        body = _app("x" * 70 if what == "huge name" else "bad", namespace)
        body["spec"] = {k: v for k, v in {**body["spec"], **override}.items() if v is not None}
        with pytest.raises(kube.ApiError) as info:  # a plain create, like `kubectl create -f`
            kube._call("POST", f"/apis/modelapp.io/v1alpha1/namespaces/{namespace}/modelapps", body=body,
                       content_type="application/json")  # fmt: skip
        assert info.value.status == 422, what
        assert "spec." in str(info.value) or "metadata.name" in str(info.value), what  # names the field
    good = _ready("good", namespace)
    assert good is not None and good["status"]["readyReplicas"] == 1
    assert op.process.poll() is None and "Traceback" not in op.text()


def test_a_child_the_api_server_refuses_is_a_condition_not_a_retry_loop(run_operator: RunOperator,
                                                                          namespace: str) -> None:  # fmt: skip
    """requests above limits pass the spec and the CRD (neither compares quantities) but the API server refuses
    the Deployment: the ModelApp says so (ChildRejected, with the server's words), the operator does not
    retry it until the spec changes, and a good app beside it is undisturbed."""
    op = run_operator(namespace)
    kube.apply(_app("good", namespace))
    kube.apply(_app("greedy", namespace, resources={"requests": {"cpu": "2"}, "limits": {"cpu": "1"}}))
    ready = wait_for("greedy says ChildRejected", lambda: next(
        (c for c in ((kube.get("ModelApp", "greedy", namespace) or {}).get("status") or {}).get("conditions", [])
         if c["type"] == "Ready" and c["reason"] == "ChildRejected"), None), timeout=90)  # fmt: skip
    assert ready["status"] == "False" and "must be less than or equal to cpu limit" in ready["message"]
    wait_for("good Ready", lambda: _ready("good", namespace), timeout=90)
    kube.apply(_app("greedy", namespace, resources={"requests": {"cpu": "1"}, "limits": {"cpu": "1"}}))
    wait_for("greedy Ready once fixed", lambda: _ready("greedy", namespace), timeout=90)
    assert op.process.poll() is None and "Traceback" not in op.text()


def test_status_counts_catch_up_and_count_only_writes_are_spaced(run_operator: RunOperator, namespace: str) -> None:
    """Pods that no node takes (a nodeSelector nothing matches): the Deployment moves 0 -> 3 updated and stays
    there. The first status (it says only "under way") may wait the interval; a count-only change within
    STATUS_PROGRESS_SECONDS of the last write waits, and a pass then writes it: status ends saying 3 updated,
    and no two writes of counts alone came closer than the interval (pacing.py; the watch's own delivery
    jitter is allowed for)."""
    import itertools
    import time

    from modelapp_operator.pacing import STATUS_PROGRESS_SECONDS

    run_operator(namespace)
    stream = _Follow(namespace, "ModelApp", _status)
    writes = stream.seen
    assert stream.started.wait(30), "the watch started"
    kube.apply(_app("iris", namespace, replicas=3, pod={"nodeSelector": {"modelapp.io/test": "nowhere"}}))

    def caught_up() -> dict[str, Any] | None:
        status = writes[-1][1] if writes else {}
        return status if status.get("updatedReplicas") == 3 and status.get("replicas") == 3 else None

    status = wait_for("status says 3 updated", caught_up, timeout=60)
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "False" and ready["reason"] == "RollingOut"
    assert "0/3 available, 3 updated" in ready["message"]
    time.sleep(STATUS_PROGRESS_SECONDS + 1)  # anything still put off has been written by now
    stream.stop()
    count_only = [(b[0] - a[0]) for a, b in itertools.pairwise(writes)
                  if set(b[1]) == set(a[1]) and b[1].get("revisions") == a[1].get("revisions")
                  and [(c["type"], c["status"], c["reason"]) for c in b[1]["conditions"]]
                  == [(c["type"], c["status"], c["reason"]) for c in a[1]["conditions"]]]  # fmt: skip
    assert all(gap >= STATUS_PROGRESS_SECONDS - 0.5 for gap in count_only), (count_only, len(writes))
    assert writes[-1][1] == status, "nothing changed after the counts caught up"


def test_a_quick_first_rollout_is_one_status_write_with_its_history_and_events(run_operator: RunOperator,
                                                                             namespace: str) -> None:  # fmt: skip
    """A new ModelApp whose Deployment is available within STATUS_PROGRESS_SECONDS of the first pass: its first
    status ("under way") is held (pacing.py) and the Ready write says both, so the API server gets one status
    write where it got two, and nothing of what the second said is lost: the revision history records the
    rollout as started and then available. The Events say what each write says: RolloutSucceeded alone with
    the one write (the status never said the rollout was under way), RolloutStarted too when the held status was
    written at the end of the interval.
    kwok makes pods Ready at once, but a busy machine can make the controllers slower than the interval: then
    the held status is written at its end, never sooner, and Ready follows."""
    import time

    from modelapp_operator.pacing import STATUS_PROGRESS_SECONDS

    run_operator(namespace)
    # when the Deployment was first seen (the pass that applied it held the status), and every status written
    deployment = _Follow(namespace, "Deployment", lambda obj: obj["metadata"]["uid"])
    streams = [deployment, _Follow(namespace, "ModelApp", _status)]
    writes = streams[1].seen
    assert all(stream.started.wait(30) for stream in streams), "the watches started"
    kube.apply(_app("iris", namespace))
    app = wait_for("iris Ready", lambda: _ready("iris", namespace), timeout=90)

    def events() -> dict[str, int] | None:
        items = kube._call("GET", f"/api/v1/namespaces/{namespace}/events")["items"]
        counts: dict[str, int] = {}
        for e in items:
            if e["involvedObject"]["kind"] == "ModelApp":
                counts[e["reason"]] = counts.get(e["reason"], 0) + e.get("count", 1)
        return counts if counts.get("RolloutSucceeded") else None

    posted = wait_for("RolloutSucceeded posted", events, timeout=30)
    time.sleep(STATUS_PROGRESS_SECONDS + 1)  # anything still to write or post has been by now
    for stream in streams:
        stream.stop()
    revisions = app["status"]["revisions"]
    assert [(r["revision"], r["outcome"]) for r in revisions] == [(1, "Available")], revisions
    assert revisions[0]["at"] <= revisions[0]["availableAt"], revisions
    conditions = {c["type"]: c["status"] for c in writes[0][1]["conditions"]}
    if conditions["Ready"] != "True":  # the controllers were slower than the interval: held to its end
        after = writes[0][0] - deployment.seen[0][0]
        assert after >= STATUS_PROGRESS_SECONDS - 0.5, (after, conditions)
        assert len(writes) >= 2 and writes[-1][1] == app["status"]
        assert events() == posted == {"RolloutStarted": 1, "RolloutSucceeded": 1}, "each write's news"
    else:
        assert [s for _, s in writes] == [app["status"]], "one write said both"
        assert events() == posted == {"RolloutSucceeded": 1}, "its one write's news: the rollout's outcome"


def test_in_a_burst_a_first_status_waits_longer_and_is_written_once_at_its_end(run_operator: RunOperator,
                                                                               namespace: str) -> None:  # fmt: skip
    """20 new ModelApps at once whose pods no node takes (their first rollouts never end): once BURST_FIRSTS first
    statuses were held in the namespace within BURST_WINDOW_SECONDS, the next ones are a burst's (pacing.py) and
    wait up to FIRST_STATUS_BURST_SECONDS instead of STATUS_PROGRESS_SECONDS, each written at the end of its own
    wait, none sooner than the short one and none lost: every ModelApp ends with a status saying its rollout is
    under way."""
    from modelapp_operator.pacing import BURST_FIRSTS, FIRST_STATUS_BURST_SECONDS, STATUS_PROGRESS_SECONDS

    run_operator(namespace)
    deployments = _Follow(namespace, "Deployment", lambda obj: obj["metadata"]["name"])
    statuses = _Follow(namespace, "ModelApp", lambda obj: obj["metadata"]["name"] if obj.get("status") else None)
    assert deployments.started.wait(30) and statuses.started.wait(30), "the watches started"
    names = [f"app-{i:02d}" for i in range(20)]
    for name in names:
        kube.apply(_app(name, namespace, pod={"nodeSelector": {"modelapp.io/test": "nowhere"}}))

    def first(follow: _Follow) -> dict[str, float]:
        seen: dict[str, float] = {}
        for at, name in list(follow.seen):
            seen.setdefault(name, at)
        return seen

    wait_for("every ModelApp has a status", lambda: len(first(statuses)) == len(names) or None,
             timeout=FIRST_STATUS_BURST_SECONDS + 30)  # fmt: skip
    for follow in (deployments, statuses):
        follow.stop()
    applied, written = first(deployments), first(statuses)
    waited = {name: round(written[name] - applied[name], 1) for name in names}
    assert all(w >= STATUS_PROGRESS_SECONDS - 0.5 for w in waited.values()), waited
    assert all(w <= FIRST_STATUS_BURST_SECONDS + 5 for w in waited.values()), waited
    long = [name for name, w in waited.items() if w >= FIRST_STATUS_BURST_SECONDS - 5]
    assert long and len(long) <= len(names) - BURST_FIRSTS, waited
    for name in names:
        status = (kube.get("ModelApp", name, namespace) or {}).get("status") or {}
        conditions = {c["type"]: (c["status"], c["reason"]) for c in status.get("conditions", [])}
        assert conditions["Ready"] == ("False", "RollingOut") and conditions["Progressing"][0] == "True", conditions
