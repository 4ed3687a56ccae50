"""A rollback must not fail on the deadline of the pair it rolls back from (pure, `rollout.decide`).

Design notes: no I/O. After a failed rollout the Deployment controller keeps its Progressing condition at
`ProgressDeadlineExceeded` (its message names the failed pair's ReplicaSet) until it sees progress again,
which it only does once the failed ReplicaSet is scaled down. In that window the template is already the
last good pair's and the rollout is not complete (the failed pod still counts), so the condition reads as
if the good pair had failed too: seen on the dev cluster (kwok, one replica) by the fleet breaker's test,
where the good pair was then quarantined and the broken one kept. Shapes as in tests/unit/test_rollout.py.
"""

from __future__ import annotations

from typing import Any

from modelapp_operator import builders
from modelapp_operator.revisions import Revision
from modelapp_operator.rollout import Observation, decide
from modelapp_operator.spec import ModelAppSpec, parse_spec

NOW = "2026-12-02T14:00:00Z"
GOOD, BROKEN = "example.com/app:1.0", "example.com/app:1.1-broken"
STALE = 'ReplicaSet "a0-864dd48bbc" has timed out progressing.'


def spec(image: str) -> ModelAppSpec:
    return parse_spec({"image": image, "model": {"uri": "file:///m", "version": "1"}, "replicas": 1})


def deployment(of: ModelAppSpec, *, updated: int, total: int, message: str | None) -> dict[str, Any]:
    conditions = [{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
                   "message": message}] if message else []  # fmt: skip
    return {"metadata": {"generation": 3},
            "spec": {"replicas": 1, "template": {"metadata": {"annotations": builders.template_annotations(of)}}},
            "status": {"observedGeneration": 3, "replicas": total, "updatedReplicas": updated, "readyReplicas": 1,
                       "availableReplicas": 1, "conditions": conditions}}  # fmt: skip


def step(of: ModelAppSpec, revisions: list[Revision], seen: dict[str, Any] | None) -> list[Revision]:
    return decide(Observation(spec=of, revisions=revisions, deployment=seen, annotations={}, now=NOW)).revisions


def test_the_good_pair_rolling_back_ignores_the_failed_pairs_deadline() -> None:
    good, broken = spec(GOOD), spec(BROKEN)
    history = step(good, step(good, [], None), deployment(good, updated=1, total=1, message=None))
    history = step(broken, history, deployment(good, updated=1, total=1, message=None))  # the bump moved it
    history = step(broken, history, deployment(broken, updated=1, total=2, message=STALE))  # deadline: failed
    assert [(e.image, e.outcome) for e in history] == [(GOOD, "Progressing"), (BROKEN, "Failed")]
    # The template is the good pair again, the failed pod still counts, the condition is the old one.
    history = step(broken, history, deployment(good, updated=1, total=2, message=STALE))
    assert [(e.image, e.outcome) for e in history] == [(GOOD, "Progressing"), (BROKEN, "Failed")]
    history = step(broken, history, deployment(good, updated=1, total=1, message=None))
    assert [(e.image, e.outcome) for e in history] == [(GOOD, "Available"), (BROKEN, "Failed")]


def test_a_deadline_of_its_own_still_fails_the_pair() -> None:
    good, broken = spec(GOOD), spec(BROKEN)
    history = step(good, step(good, [], None), deployment(good, updated=1, total=1, message=None))
    history = step(broken, history, deployment(good, updated=1, total=1, message=None))
    history = step(broken, history, deployment(broken, updated=1, total=2, message='ReplicaSet "x-1" timed out'))
    assert history[-1].outcome == "Failed" and history[-1].message == 'ReplicaSet "x-1" timed out'
