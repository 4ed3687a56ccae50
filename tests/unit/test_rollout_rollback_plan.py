"""`modelapp rollback`'s planning (`plan_rollback`): a ModelApp as read in, the merge patch out.

Design notes: the ModelApps are dicts shaped like API server answers, with `status.revisions` as the
operator writes them; the I/O half (`rollback`) is exercised against the real cluster in
tests/integration/test_rollback.py.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from modelapp_operator.names import ANN_RETRY, ANN_ROLLBACK
from modelapp_operator.rollback import RollbackError, plan_rollback

NOW = "2026-11-24T12:00:00Z"


def _entry(revision: int, image: str, version: str, outcome: str, available: bool = True) -> dict[str, Any]:
    entry = {"revision": revision, "image": image, "uri": "s3://models/iris", "model": version, "outcome": outcome}
    return {**entry, "availableAt": NOW} if available else entry


def _app(image: str, version: str, revisions: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "metadata": {"name": "iris", "namespace": "ml", "resourceVersion": "42"},
        "spec": {"image": image, "model": {"uri": "s3://models/iris", "version": version}},
        "status": {"revisions": revisions},
    }


HISTORY = [
    _entry(1, "app:1.0", "1", "Superseded"),
    _entry(2, "app:1.1", "1", "Superseded"),
    _entry(3, "app:1.2-broken", "1", "Failed", available=False),
    _entry(4, "app:1.3", "2", "Available"),
]


def test_default_target_is_the_last_good_pair_before_the_spec() -> None:
    plan = plan_rollback(_app("app:1.3", "2", HISTORY), to=None, reason="accuracy dropped", now=NOW)
    assert plan.revision == 2 and plan.target.image == "app:1.1"
    assert plan.patch["spec"] == {"image": "app:1.1", "model": {"uri": "s3://models/iris", "version": "1",
                                                                "sha256": None}}  # fmt: skip
    assert plan.patch["metadata"]["resourceVersion"] == "42"
    note = json.loads(plan.patch["metadata"]["annotations"][ANN_ROLLBACK])
    assert note == {"from": "app:1.3,2", "to": "app:1.1,1", "reason": "accuracy dropped", "at": NOW}
    assert ANN_RETRY not in plan.patch["metadata"]["annotations"]


def test_explicit_revision_and_a_quarantined_one_is_a_retry() -> None:
    assert plan_rollback(_app("app:1.3", "2", HISTORY), to=1, reason="r", now=NOW).target.image == "app:1.0"
    retry = plan_rollback(_app("app:1.3", "2", HISTORY), to=3, reason="r", now=NOW)
    assert retry.patch["metadata"]["annotations"][ANN_RETRY] == "app:1.2-broken,1"


@pytest.mark.parametrize(
    ("app", "to", "message"),
    [
        (_app("app:1.3", "2", []), None, "ModelApp ml/iris has no recorded revisions yet"),
        (_app("app:1.3", "2", HISTORY), 9, "ModelApp ml/iris has no revision 9; known: 1 (image app:1.0 with model "
                                           "version 1, Superseded), 2 (image app:1.1"),
        (_app("app:1.3", "2", HISTORY), 4, "ModelApp ml/iris: revision 4 is what the spec already names"),
        (_app("app:1.3", "2", [HISTORY[2], HISTORY[3]]), None, "ModelApp ml/iris has no earlier good revision"),
        (_app("APP", "2", HISTORY), None, "ModelApp ml/iris has an invalid spec: spec.image: not an image reference"),
    ],
)  # fmt: skip
def test_clear_errors(app: dict[str, Any], to: int | None, message: str) -> None:
    with pytest.raises(RollbackError) as info:
        plan_rollback(app, to=to, reason="r", now=NOW)
    assert str(info.value).startswith(message)
