"""Prometheus metrics of the operator, served by `modelapp run --metrics-port PORT` (off by default).

Counters move on *transitions* recorded in `status.revisions` (rollout.Transition), which are computed
from the persisted history: a restarted operator does not count a rollout twice (its counters start at
zero, as Prometheus counters do after a restart).

- `modelapp_rollouts_started_total{namespace}`: a pair began rolling out (new, re-deployed or retried).
- `modelapp_rollouts_succeeded_total{namespace}`: a rolling pair became fully available.
- `modelapp_rollouts_failed_total{namespace, reason}`: ProgressDeadlineExceeded, SmokeTestFailed, ...
- `modelapp_rollbacks_total{namespace, kind}`: `auto` (the operator went back to the last good pair) or
  `manual` (`modelapp rollback`).
- `modelapp_bumps_observed_total{namespace}`: a rollout began for a spec change `modelapp bump` wrote: the
  app's `modelapp.io/bumped-at` annotation is newer than every rollout start already in `status.revisions`
  (bump skips apps whose rollout has not settled, so its timestamp follows the previous start).
- `modelapp_reconcile_errors_total{handler}` and `modelapp_reconcile_duration_seconds{handler}`.
Labels stay low-cardinality: no ModelApp names (Events carry those).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server

from modelapp_operator.names import (
    ANN_BUMPED_AT,
    OUTCOME_AVAILABLE,
    OUTCOME_FAILED,
    OUTCOME_PROGRESSING,
    OUTCOME_ROLLED_BACK,
)
from modelapp_operator.revisions import parse_revisions
from modelapp_operator.rollout import Transition

REGISTRY = CollectorRegistry(auto_describe=True)

ROLLOUTS_STARTED = Counter(
    "modelapp_rollouts_started_total", "Pairs that began rolling out.", ["namespace"], registry=REGISTRY
)
ROLLOUTS_SUCCEEDED = Counter(
    "modelapp_rollouts_succeeded_total", "Rolling pairs that became fully available.", ["namespace"], registry=REGISTRY
)
ROLLOUTS_FAILED = Counter(
    "modelapp_rollouts_failed_total", "Rolling pairs that failed.", ["namespace", "reason"], registry=REGISTRY
)
ROLLBACKS = Counter(
    "modelapp_rollbacks_total", "Returns to an earlier pair (auto or manual).", ["namespace", "kind"], registry=REGISTRY
)
BUMPS_OBSERVED = Counter(
    "modelapp_bumps_observed_total", "Rollouts started by a `modelapp bump` patch.", ["namespace"], registry=REGISTRY
)
RECONCILE_ERRORS = Counter(
    "modelapp_reconcile_errors_total", "Handler runs that raised.", ["handler"], registry=REGISTRY
)
RECONCILE_DURATION = Histogram(
    "modelapp_reconcile_duration_seconds",
    "Duration of handler runs.",
    ["handler"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
    registry=REGISTRY,
)


def serve(port: int, address: str) -> None:
    """Serve /metrics on address:port in a daemon thread."""
    start_http_server(port, addr=address, registry=REGISTRY)


def record(namespace: str, transitions: Iterable[Transition], *, rolled_back: bool) -> None:
    """Count what one decision changed."""
    for t in transitions:
        if _starts(t):
            ROLLOUTS_STARTED.labels(namespace).inc()
        elif t.after == OUTCOME_AVAILABLE and t.before == OUTCOME_PROGRESSING:
            ROLLOUTS_SUCCEEDED.labels(namespace).inc()
        elif t.after == OUTCOME_FAILED:
            ROLLOUTS_FAILED.labels(namespace, t.reason or "Unknown").inc()
        elif t.after == OUTCOME_ROLLED_BACK:
            ROLLBACKS.labels(namespace, "manual").inc()
    if rolled_back:
        ROLLBACKS.labels(namespace, "auto").inc()


def started_by_bump(transitions: Iterable[Transition], *, bumped_at: str | None, earlier: Iterable[str]) -> bool:
    """A rollout (not a rollback) began in this decision and the bump's timestamp is newer than every rollout
    start recorded before it (`earlier`: the `at` of the revisions the decision started from; both are
    `%Y-%m-%dT%H:%M:%SZ`, so they compare as text). Pure: the decision's inputs say it all, restarts too."""
    started = any(_starts(t) for t in transitions)
    return bool(started and bumped_at) and all(str(bumped_at) > at for at in earlier)


def _starts(t: Transition) -> bool:
    """A pair began rolling out: new, re-deployed or retried, not the last good pair coming back."""
    return t.after == OUTCOME_PROGRESSING and t.before != OUTCOME_PROGRESSING and t.reason != "RollingBack"


def record_bump(namespace: str, transitions: Iterable[Transition], *, app: Mapping[str, Any]) -> None:
    """Count a rollout that a bump caused; `app` is the ModelApp the decision was made from."""
    earlier = [entry.at for entry in parse_revisions(app.get("status"))]
    bumped_at = ((app.get("metadata") or {}).get("annotations") or {}).get(ANN_BUMPED_AT)
    if started_by_bump(transitions, bumped_at=bumped_at, earlier=earlier):
        BUMPS_OBSERVED.labels(namespace).inc()


@contextmanager
def timed(handler: str) -> Iterator[None]:
    """Observe the duration of a handler run; count it as an error when it raises."""
    started = time.perf_counter()
    try:
        yield
    except Exception:
        RECONCILE_ERRORS.labels(handler).inc()
        raise
    finally:
        RECONCILE_DURATION.labels(handler).observe(time.perf_counter() - started)
