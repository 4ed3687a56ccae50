"""The fleet circuit breaker's loop in `modelapp bump`: apps in batches, each batch waited for, a failure holds
back the rest (docs/rollouts.md, "The fleet circuit breaker").

`run` walks the apps in order and hands each to the caller's `apply` (plan and patch one app: `bump`). With
`max_rollouts` N > 0 it collects the apps `apply` patched; after N of them it waits for their rollouts (`settle`):
each app is read until `fleet.rollout_result` has a verdict for the pair and generation the patch made, or the
batch's deadline passes (TimedOut). A rollout that ends Failed or TimedOut is a `Trip`: every later app of its
namespace, or of every namespace when its evidence counts beyond it (cluster scope, attributable: fleet.py), is
planned but not patched, its changes reported `held` with the trip's words. With N = 0 nothing is waited for.

Contracts:
- An app is read with one GET per poll while it is pending; an API error is a warning on stderr and the app is
  read again next round (a blip of the API server is not a verdict).
- The batch number of a rollout counts batches across the run (1, 2, ...); `seconds` runs from its patch.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from modelapp_operator import fleet, kube
from modelapp_operator.names import KIND
from modelapp_operator.report import Outcome, Rollout, Row, Trip, with_result

#: How often a batch's apps are read while the bump waits for their rollouts.
POLL_SECONDS = 2.0


class ApplyFn(Protocol):
    """Plan one app and, unless `dry_run`, patch it; `started` hears of every app patched (the object the
    API server returned), so the loop can wait for its rollout."""

    def __call__(self, obj: Mapping[str, Any], *, dry_run: bool,
                 started: Callable[[Mapping[str, Any]], None] | None) -> list[Row]: ...  # fmt: skip


def app_key(obj: Mapping[str, Any]) -> tuple[str, str]:
    meta = obj.get("metadata", {})
    return (str(meta.get("namespace", "")), str(meta.get("name", "")))


def run(objs: Sequence[Mapping[str, Any]], apply: ApplyFn, outcome: Outcome, quarantined: fleet.Fleet, *,
        dry_run: bool, max_rollouts: int, timeout: float, poll: float = POLL_SECONDS) -> None:  # fmt: skip
    """Apply every app in order, into `outcome`; with `max_rollouts` > 0 in batches that are waited for, an app a
    trip holds planned only (its changes `held`)."""
    batch: list[Started] = []
    for obj in objs:
        trip = next((t for t in outcome.trips if t.holds(app_key(obj)[0])), None)
        if trip is not None:
            rows = apply(obj, dry_run=True, started=None)
            outcome.rows.extend(with_result(r, "held", trip.describe()) if r.result == "planned" else r for r in rows)
            continue
        started = (lambda patched: batch.append(Started.of(patched))) if max_rollouts > 0 else None
        outcome.rows.extend(apply(obj, dry_run=dry_run, started=started))
        if len(batch) >= max_rollouts > 0:
            settle(batch, outcome, quarantined, timeout=timeout, poll=poll)
    if batch:
        settle(batch, outcome, quarantined, timeout=timeout, poll=poll)


@dataclass(frozen=True)
class Started:
    """An app patched in the current batch: the pair the patch made and the generation it got."""

    namespace: str
    name: str
    image: str
    model: str
    uri: str
    sha256: str
    generation: int
    at: float

    @classmethod
    def of(cls, obj: Mapping[str, Any]) -> Started:
        """The app as the patch left it (the API server's answer), started now."""
        meta, spec = obj.get("metadata") or {}, obj.get("spec") or {}
        generation, model = meta.get("generation"), spec.get("model") or {}
        return cls(str(meta.get("namespace", "")), str(meta.get("name", "")), str(spec.get("image", "")),
                   str(model.get("version", "")), str(model.get("uri", "")), str(model.get("sha256") or ""),
                   generation if isinstance(generation, int) else 0, time.monotonic())  # fmt: skip


def settle(batch: list[Started], outcome: Outcome, quarantined: fleet.Fleet, *, timeout: float,
           poll: float) -> None:  # fmt: skip
    """Wait for every rollout of the batch (Ready, rolled back, or the deadline); a failure trips the breaker."""
    number = 1 + max((r.batch for r in outcome.rollouts), default=0)
    deadline = time.monotonic() + timeout
    pending = list(batch)
    batch.clear()
    while pending:
        for app in list(pending):
            try:
                obj = kube.get(KIND, app.name, app.namespace)
            except kube.ApiError as exc:  # a blip of the API server: read again next round
                print(f"modelapp bump: cannot read {app.namespace}/{app.name}: {exc}", file=sys.stderr)
                continue
            result = fleet.rollout_result(obj, image=app.image, version=app.model, generation=app.generation)
            if result is None:
                continue
            pending.remove(app)
            _record(outcome, app, number, result, travels=_travels(obj, quarantined, app))
        if pending and time.monotonic() >= deadline:
            for app in pending:
                message = f"neither Ready on the new pair nor rolled back within {timeout:.0f}s"
                _record(outcome, app, number, fleet.RolloutResult("TimedOut", message), travels=False)
            return
        if pending:
            time.sleep(poll)


def _travels(obj: Mapping[str, Any] | None, quarantined: fleet.Fleet, app: Started) -> bool:
    """The failed pair's evidence counts beyond its namespace (so the breaker holds every namespace)."""
    pair = fleet.image_ids(app.image) | fleet.model_ids(app.uri, app.model, app.sha256)
    evidence = fleet.evidence_of(obj) if obj is not None else []
    return any(quarantined.travels(e) and not e.ids.isdisjoint(pair) for e in evidence)


def _record(outcome: Outcome, app: Started, batch: int, result: fleet.RolloutResult, *, travels: bool) -> None:
    seconds = round(time.monotonic() - app.at, 1)
    outcome.rollouts.append(Rollout(app.namespace, app.name, batch, app.image, app.model, result.verdict,
                                    result.reason, result.message, seconds))  # fmt: skip
    if result.verdict in ("Failed", "TimedOut"):
        outcome.trips.append(Trip(app.namespace, app.name, result.verdict, result.reason, result.message,
                                  everywhere=travels and result.verdict == "Failed"))  # fmt: skip


__all__ = ["POLL_SECONDS", "ApplyFn", "Started", "app_key", "run", "settle"]
