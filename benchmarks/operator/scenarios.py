"""The measured scenarios, each run side by side for the operator and for the baseline.

Contracts of the measurements:
- "applied" = the first watch event in which the API server shows the object (Deployment and Service);
  a latency sample is `max(both seen) - t0`, t0 taken just before the ModelApp create request.
- The baseline does the user's create too, then builds the children with the same builders and
  server-side applies them (owner references to the ModelApp it just created), in the same process.
- "Ready" = the ModelApp's Ready condition True at its current generation (operator); for the baseline,
  which writes no status, the Deployment's availableReplicas = replicas (the control plane's floor).
- "template updated" = the first Deployment event whose pod-template annotations carry the new revision.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from benchmarks.operator.measure import percentile
from benchmarks.operator.watch import Obj, Watcher
from kubernetes import client

from modelapp_operator import builders, kube
from modelapp_operator.names import LABEL_SHARD
from modelapp_operator.spec import parse_spec

GROUP, VERSION, PLURAL = "modelapp.io", "v1alpha1", "modelapps"
CTX = builders.BuildContext(serving_image="localhost:5000/modelapp-serving:bench")


def app_spec(version: str = "1") -> dict[str, Any]:
    return {
        "image": "localhost:5000/iris-app:1.0.0",
        "model": {"uri": "file:///opt/models/iris", "version": version},
        "service": {"type": "ClusterIP"},
        "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}},
    }


Labels = Callable[[int], dict[str, str]]


def body(name: str, spec: dict[str, Any], labels: dict[str, str] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, **({"labels": labels} if labels else {})}
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "ModelApp", "metadata": meta, "spec": spec}


def shard_labels(shards: int) -> Labels:
    """App number -> its labels: with several shards, app i goes to shard `s<i mod shards>` (both sides get
    the same labels, so the objects are the same size)."""
    if shards <= 1:
        return lambda _: {}
    return lambda i: {LABEL_SHARD: f"s{i % shards}"}


@dataclass
class Side:
    """One side of the comparison: a namespace and whether our own code must apply the children."""

    name: str
    namespace: str
    api: client.ApiClient
    baseline: bool
    labels: Labels = field(default=lambda _: {})
    deployments: Watcher = field(init=False)
    services: Watcher = field(init=False)

    def __post_init__(self) -> None:
        self.custom = client.CustomObjectsApi(self.api)
        self.deployments = Watcher(self.api, "apps/v1/deployments", self.namespace).start()
        self.services = Watcher(self.api, "v1/services", self.namespace).start()

    def stop(self) -> None:
        self.deployments.stop()
        self.services.stop()

    def create(self, name: str, spec: dict[str, Any], index: int = 0) -> None:
        create(self.custom, self.namespace, name, spec, baseline=self.baseline, labels=self.labels(index))

    def bump(self, name: str, version: str) -> dict[str, str]:
        """Patch spec.model.version; returns the template annotations the Deployment must then carry."""
        spec = app_spec(version)
        patched = self.custom.patch_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, name, {"spec": {"model": {"version": version}}}
        )
        if self.baseline:
            self._apply(name, spec, patched["metadata"]["uid"])
        return builders.template_annotations(parse_spec(spec))

    def _apply(self, name: str, spec: dict[str, Any], uid: str) -> None:
        apply_children(self.namespace, name, spec, uid)


def apply_children(namespace: str, name: str, spec: dict[str, Any], uid: str) -> None:
    """The baseline's stand-in for the operator: same builders, same server-side apply, same field manager."""
    for manifest in builders.build_children(name, namespace, parse_spec(spec), CTX).apply:
        kube.apply(builders.with_owner(manifest, name=name, uid=uid))


def create(custom: client.CustomObjectsApi, namespace: str, name: str, spec: dict[str, Any], *, baseline: bool,
           labels: dict[str, str] | None = None) -> None:  # fmt: skip
    """The user's create; the baseline then does the operator's job itself."""
    created = custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body(name, spec, labels))
    if baseline:
        apply_children(namespace, name, spec, created["metadata"]["uid"])


def create_latency(side: Side, name: str, index: int = 0, *, timeout: float = 60) -> float:
    t0 = time.monotonic()
    side.create(name, app_spec(), index)
    seen = [w.first(name, lambda _: True, after=t0, timeout=timeout) for w in (side.deployments, side.services)]
    return max(seen) - t0


def bump_latency(side: Side, name: str, version: str, *, timeout: float = 60) -> float:
    t0 = time.monotonic()
    wanted = side.bump(name, version)

    def carries(obj: Obj) -> bool:
        annotations = obj["spec"]["template"]["metadata"].get("annotations") or {}
        return all(annotations.get(k) == v for k, v in wanted.items())

    return side.deployments.first(name, carries, after=t0, timeout=timeout) - t0


def _ready(obj: Obj) -> bool:
    status = obj.get("status") or {}
    current = status.get("observedGeneration") == obj["metadata"].get("generation")
    return current and any(c["type"] == "Ready" and c["status"] == "True" for c in status.get("conditions", []))


def _available(obj: Obj) -> bool:
    status = obj.get("status") or {}
    return bool(status.get("availableReplicas")) and status.get("availableReplicas") == obj["spec"].get("replicas")


@dataclass
class Burst:
    total_s: float
    created_s: float
    done: int
    #: Milestone -> seconds after t0 at which each app first reached it: "applied" (its Deployment first seen),
    #: "available" (the Deployment's replicas all available), and for the operator "ready" (the ModelApp Ready).
    timeline: dict[str, list[float]] = field(default_factory=dict)
    #: "component reason" -> Events of that kind in the burst's namespaces (filled in by the caller).
    events: dict[str, int] = field(default_factory=dict)

    def milestones(self) -> dict[str, dict[str, float]]:
        """p50, p90 and the last app of each milestone, in seconds after t0 (where the burst's time went)."""
        return {name: {"n": len(times), "p50_s": round(percentile(times, 0.5), 2),
                       "p90_s": round(percentile(times, 0.9), 2), "last_s": round(max(times), 2)}
                for name, times in self.timeline.items() if times}  # fmt: skip


def burst(api: client.ApiClient, namespaces: list[str], count: int, *, baseline: bool, timeout: float,
          workers: int = 16, on_tick: Callable[[int], None] | None = None,
          labels: Labels | None = None) -> Burst:  # fmt: skip
    """Create `count` ModelApps at once (a pool of `workers` clients; app i in namespace i mod len(namespaces))
    and wait until all are Ready/available. Both sides also watch the Deployments, so the timeline says when
    each app's Deployment was applied and became available, and (operator) when its ModelApp said Ready."""
    done: set[str] = set()
    finished = threading.Event()
    lock = threading.Lock()
    first: dict[str, dict[str, float]] = {"applied": {}, "available": {}, "ready": {}}
    t0 = time.monotonic()

    def mark(milestone: str, at: float, name: str) -> None:
        with lock:
            first[milestone].setdefault(name, at - t0)
            if milestone == ("available" if baseline else "ready"):
                done.add(name)
                if len(done) >= count:
                    finished.set()

    def deployment(at: float, kind: str, obj: Obj) -> None:
        if kind != "DELETED":
            mark("applied", at, obj["metadata"]["name"])
            if _available(obj):
                mark("available", at, obj["metadata"]["name"])

    def modelapp(at: float, kind: str, obj: Obj) -> None:
        if kind != "DELETED" and _ready(obj):
            mark("ready", at, obj["metadata"]["name"])

    watchers = [Watcher(api, "apps/v1/deployments", namespace, keep=False) for namespace in namespaces]
    for watcher in watchers:
        watcher.listen(deployment)
    if not baseline:
        watchers += [Watcher(api, f"{GROUP}/{VERSION}/{PLURAL}", namespace, keep=False) for namespace in namespaces]
        for watcher in watchers[len(namespaces):]:
            watcher.listen(modelapp)
    for watcher in watchers:
        watcher.start()
    custom = client.CustomObjectsApi(api)
    t0 = time.monotonic()
    label = labels or (lambda _: {})
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(lambda i: create(custom, namespaces[i % len(namespaces)], f"app-{i:05d}", app_spec(),
                                       baseline=baseline, labels=label(i)), range(count)))  # fmt: skip
    created = time.monotonic() - t0
    deadline = t0 + timeout
    while not finished.wait(5) and time.monotonic() < deadline:
        if on_tick:
            on_tick(len(done))
    total = time.monotonic() - t0
    for watcher in watchers:
        watcher.stop()
    with lock:
        timeline = {milestone: sorted(times.values()) for milestone, times in first.items() if times}
    return Burst(total, created, len(done), timeline)
