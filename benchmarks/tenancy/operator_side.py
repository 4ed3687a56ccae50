"""A good app's create -> Ready with and without hostile ModelApps watched by the same operator.

Contracts of the measurement:
- One `modelapp run` subprocess watches three namespaces: `quiet` (good apps only), `hostile` (the
  hostile ModelApps) and `crowded` (good apps created while the hostile ones are there).
- A sample is one good ModelApp created, then waited for: from just before the create request to the
  first watch event that shows Ready=True at the current generation. Apps are created one at a time.
- Phase order: every quiet sample; the hostile apps (waited for until each has a Ready condition); every
  crowded sample; every churned sample (the attacker edits its apps all along); the hostile apps deleted,
  then quiet samples again ("after"), so drift of the shared machine shows as a gap between the two quiet
  phases. The load average is recorded per phase.
- No smoke test anywhere: on kwok a pod's IP is a made-up 10.x address, and a smoke test would send
  traffic there (directly, or through the API server's pod proxy). Only 127.0.0.1 is ever a target.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.operator import scenarios
from benchmarks.operator.measure import percentile
from benchmarks.operator.watch import Obj, Watcher
from kubernetes import client

GROUP, VERSION, PLURAL = "modelapp.io", "v1alpha1", "modelapps"
MODELAPPS = f"{GROUP}/{VERSION}/{PLURAL}"

#: A whole pattern Python's `re` backtracks on exponentially against "aaaa...ab"; RE2 matches it in linear time.
CATASTROPHIC = "(a+)+"


def _updates(**image: str) -> dict[str, Any]:
    return {"updates": {"image": {"policy": "semver:^1.4", **image}}}


def _affinity(**kinds: Any) -> dict[str, Any]:
    return {"pod": {"affinity": kinds}}


#: Specs the CRD accepts and the operator refuses (InvalidSpec), each a way a tenant might probe. (A tagFilter
#: RE2 refuses, e.g. a backreference, was one until 26ec8d4: the CRD's CEL now refuses it when it is applied.)
INVALID = {
    # A pod term reaching into another tenant's namespace (scheduling as a side channel).
    "reach": _affinity(
        podAffinity={
            "requiredDuringSchedulingIgnoredDuringExecution": [
                {
                    "labelSelector": {"matchLabels": {"app": "payments"}},
                    "topologyKey": "kubernetes.io/hostname",
                    "namespaces": ["another-tenant"],
                }
            ]
        }
    ),
    # An unknown field under affinity (the CRD keeps it; server-side apply would answer 500).
    "unknown": _affinity(
        nodeAffinity={
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 1, "preference": {"matchExpressions": [{"key": "zone", "operator": "Exists"}]}, "sneaky": 1}
            ]
        }
    ),
}


@dataclass(frozen=True)
class Hostile:
    """One hostile ModelApp: its name, its kind and the spec overrides it carries."""

    name: str
    kind: str
    extra: dict[str, Any] = field(default_factory=dict)
    #: A Service of this name, not owned by the app, created first (the name a NameTaken app claims).
    takes_service: bool = False


def hostile_apps(count: int) -> list[Hostile]:
    """`count` hostile apps, a third NameTaken, a third invalid (the three kinds in turn), the rest catastrophic."""
    found: list[Hostile] = []
    for index in range(count):
        kind = ("name-taken", "invalid", "catastrophic-filter")[index % 3]
        if kind == "name-taken":
            found.append(Hostile(f"payments-{index}", kind, takes_service=True))
        elif kind == "invalid":
            which = list(INVALID)[(index // 3) % len(INVALID)]
            found.append(Hostile(f"invalid-{which}-{index}", f"invalid ({which})", INVALID[which]))
        else:
            found.append(Hostile(f"regex-{index}", kind, _updates(tagFilter=CATASTROPHIC)))
    return found


def foreign_service(name: str) -> dict[str, Any]:
    """Another app's Service: no owner, its own selector."""
    spec = {"type": "ClusterIP", "selector": {"app": "other"}, "ports": [{"port": 80, "targetPort": 9000}]}
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "labels": {"team": "other"}},
        "spec": spec,
    }


def ready(obj: Obj) -> bool:
    status = obj.get("status") or {}
    current = status.get("observedGeneration") == obj["metadata"].get("generation")
    return current and any(c["type"] == "Ready" and c["status"] == "True" for c in status.get("conditions") or [])


def ready_reason(obj: Obj) -> str | None:
    """The Ready condition's reason ("True" when Ready), None before the operator wrote one."""
    for condition in (obj.get("status") or {}).get("conditions") or []:
        if condition["type"] == "Ready":
            return "Ready" if condition["status"] == "True" else str(condition.get("reason"))
    return None


def good_samples(api: client.ApiClient, namespace: str, count: int, *, timeout: float, pace: float = 0.0,
                 prefix: str = "good") -> list[float]:  # fmt: skip
    """`count` good apps created one at a time, at most one every `pace` seconds (so that a phase spans the
    hostile apps' retry interval); seconds from create to Ready for each."""
    custom = client.CustomObjectsApi(api)
    watcher = Watcher(api, MODELAPPS, namespace).start()
    try:
        found = []
        for index in range(count):
            name = f"{prefix}-{index:02d}"
            t0 = time.monotonic()
            custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL,
                                                   scenarios.body(name, scenarios.app_spec()))  # fmt: skip
            found.append(watcher.first(name, ready, after=t0, timeout=timeout) - t0)
            time.sleep(max(0.0, t0 + pace - time.monotonic()))
        return found
    finally:
        watcher.stop()


class EventCounter:
    """Counts watch events on the hostile namespace's ModelApps (each one a write the operator made)."""

    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        self.count = 0
        self.latest: dict[str, Obj] = {}
        self._lock = threading.Lock()
        self._watcher = Watcher(api, MODELAPPS, namespace, keep=False)
        self._watcher.listen(self._seen)

    def _seen(self, _: float, kind: str, obj: Obj) -> None:
        with self._lock:
            self.count += 1
            self.latest[obj["metadata"]["name"]] = obj

    def start(self) -> EventCounter:
        self._watcher.start()
        return self

    def stop(self) -> None:
        self._watcher.stop()

    def reasons(self) -> dict[str, str | None]:
        with self._lock:
            return {name: ready_reason(obj) for name, obj in self.latest.items()}


class Churn:
    """The attacker at work: edits the hostile apps' specs in turn (replicas 2, then 1, ...: a new generation each
    time, so each edit is a reconcile) at `rate` edits a second, from one thread, until stopped."""

    def __init__(self, api: client.ApiClient, namespace: str, names: list[str], rate: float) -> None:
        self._custom, self._namespace, self._names, self._rate = client.CustomObjectsApi(api), namespace, names, rate
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.edits = self.refused = 0

    def __enter__(self) -> Churn:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        index = 0
        while not self._stop.wait(1 / self._rate):
            name = self._names[index % len(self._names)]
            patch = {"spec": {"replicas": 2 - (index // len(self._names)) % 2}}
            try:
                self._custom.patch_namespaced_custom_object(GROUP, VERSION, self._namespace, PLURAL, name, patch)
                self.edits += 1
            except client.ApiException:
                self.refused += 1
            index += 1


def create_hostile(api: client.ApiClient, namespace: str, apps: list[Hostile]) -> None:
    custom, core = client.CustomObjectsApi(api), client.CoreV1Api(api)
    for app in apps:
        if app.takes_service:
            core.create_namespaced_service(namespace, foreign_service(app.name))
        body = scenarios.body(app.name, scenarios.app_spec() | app.extra)
        custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)


def summary(values: list[float]) -> dict[str, float]:
    return {"n": len(values), "p50_ms": 1000 * percentile(values, 0.5), "p95_ms": 1000 * percentile(values, 0.95),
            "max_ms": 1000 * max(values), "load_avg_1m": os.getloadavg()[0]}  # fmt: skip


def run(api: client.ApiClient, namespaces: dict[str, str], *, good: int, hostile: int, pace: float,
        churn_rate: float, workdir: Path, log: Any) -> dict[str, Any]:  # fmt: skip
    """The phases against an operator already watching `namespaces` (quiet, hostile, crowded, churned)."""
    results: dict[str, Any] = {}
    log("warm-up: 3 good apps (not counted)")
    good_samples(api, namespaces["quiet"], 3, timeout=120, prefix="warm")
    log(f"operator phase 1: {good} good apps, one at a time, no hostile app present")
    results["quiet"] = summary(good_samples(api, namespaces["quiet"], good, timeout=120, pace=pace))
    log(f"  {results['quiet']}")

    apps = hostile_apps(hostile)
    log(f"operator phase 2: {len(apps)} hostile apps ({', '.join(sorted({a.kind for a in apps}))})")
    counter = EventCounter(api, namespaces["hostile"]).start()
    create_hostile(api, namespaces["hostile"], apps)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and None in [counter.reasons().get(a.name) for a in apps]:
        time.sleep(0.5)
    settled = counter.reasons()
    if None in [settled.get(a.name) for a in apps]:
        raise SystemExit(f"hostile apps without a Ready condition after 120 s: {settled}; see {workdir}/operator.log")

    log(f"operator phase 3: {good} good apps, one at a time, beside the hostile ones")
    events_before, t0 = counter.count, time.monotonic()
    results["crowded"] = summary(good_samples(api, namespaces["crowded"], good, timeout=120, pace=pace))
    results["crowded"]["hostile_events"] = counter.count - events_before
    results["crowded"]["seconds"] = time.monotonic() - t0
    log(f"  {results['crowded']}")

    log(f"operator phase 4: {good} good apps, while the attacker edits the hostile apps ({churn_rate:g}/s)")
    events_before, t0 = counter.count, time.monotonic()
    with Churn(api, namespaces["hostile"], [a.name for a in apps], churn_rate) as churn:
        results["churned"] = summary(good_samples(api, namespaces["churned"], good, timeout=120, pace=pace,
                                                  prefix="good"))  # fmt: skip
    results["churned"] |= {"hostile_events": counter.count - events_before, "seconds": time.monotonic() - t0,
                           "edits": churn.edits, "edits_refused": churn.refused}  # fmt: skip
    log(f"  {results['churned']}")

    log(f"operator phase 5: hostile apps deleted, then {good} good apps again (the machine's drift)")
    custom = client.CustomObjectsApi(api)
    for app in apps:
        custom.delete_namespaced_custom_object(GROUP, VERSION, namespaces["hostile"], PLURAL, app.name)
    deadline = time.monotonic() + 120
    while custom.list_namespaced_custom_object(GROUP, VERSION, namespaces["hostile"], PLURAL)["items"]:
        if time.monotonic() > deadline:
            raise SystemExit(f"hostile apps still there 120 s after their deletion; see {workdir}/operator.log")
        time.sleep(0.5)
    results["after"] = summary(good_samples(api, namespaces["after"], good, timeout=120, pace=pace))
    log(f"  {results['after']}")
    final = counter.reasons()
    counter.stop()
    by_kind: dict[str, dict[str, int]] = {}
    for app in apps:
        reasons = by_kind.setdefault(app.kind, {})
        reasons[str(final.get(app.name))] = reasons.get(str(final.get(app.name)), 0) + 1
    results["hostile"] = by_kind
    return results
