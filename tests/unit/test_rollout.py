"""Rollout decisions (`modelapp_operator.rollout.decide`): history in, effective pair and new history out.

Design notes: Deployments are plain dicts shaped like what the API server returns (template annotations,
generation, status counts and conditions), built by `_deployment`; every test feeds one observation and
checks the decision, then feeds the decision's history back in as the next observation would. That is
exactly how the operator runs (status is the only memory), so "a restarted operator decides the same"
is the property `test_decisions_are_stable_when_repeated` checks for every state reached here.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from modelapp_operator import builders, rollout
from modelapp_operator.bump import Quarantine
from modelapp_operator.names import ANN_RETRY, ANN_ROLLBACK
from modelapp_operator.revisions import SETTINGS_CHANGED, Pair, Revision, settings_digest
from modelapp_operator.rollout import Observation, SmokeVerdict, decide
from modelapp_operator.spec import ModelAppSpec, parse_spec

NOW = "2026-11-24T12:00:00Z"
LATER = "2026-11-24T12:05:00Z"
GOOD, BROKEN, NEWER = "example.com/app:1.0", "example.com/app:1.1-broken", "example.com/app:1.2"
SMOKE = {"inputs": [{"shape": [1, 4], "data": [5.1, 3.5, 1.4, 0.2]}], "expected": [{"data": [0]}]}


def _spec(image: str, version: str = "1", **rollout_: Any) -> ModelAppSpec:
    return parse_spec({"image": image, "model": {"uri": "file:///m", "version": version}, "replicas": 2,
                       "rollout": rollout_})  # fmt: skip


def _deployment(spec: ModelAppSpec, *, ready: int = 2, failed: bool = False, observed: bool = True) -> dict[str, Any]:
    conditions = [{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
                   "message": "ReplicaSet has timed out progressing."}] if failed else []  # fmt: skip
    return {
        "metadata": {"generation": 3},
        "spec": {"replicas": spec.replicas,
                 "template": {"metadata": {"annotations": builders.template_annotations(spec)}}},
        "status": {"observedGeneration": 3 if observed else 2, "replicas": 2, "updatedReplicas": ready,
                   "readyReplicas": ready, "availableReplicas": ready, "conditions": conditions},
    }  # fmt: skip


def _step(spec: ModelAppSpec, revisions: list[Revision], deployment: dict[str, Any] | None,
          annotations: dict[str, str] | None = None, **kw: Any) -> rollout.Decision:  # fmt: skip
    return decide(Observation(spec=spec, revisions=revisions, deployment=deployment, annotations=annotations or {},
                              now=NOW, **kw))  # fmt: skip


def _entries(decision: rollout.Decision) -> list[dict[str, Any]]:
    """The history as status stores it."""
    return [r.to_status() for r in decision.revisions]


def _outcomes(decision: rollout.Decision) -> dict[str, str]:
    return {e.image: e.outcome for e in decision.revisions}


def _cond(decision: rollout.Decision, kind: str) -> tuple[str, str]:
    found = next(c for c in decision.conditions if c.type == kind)
    return found.status, found.reason


def _good_history() -> list[Revision]:
    spec = _spec(GOOD)
    first = _step(spec, [], None)
    return _step(spec, first.revisions, _deployment(spec)).revisions


def _failed_history() -> list[Revision]:
    broken = _spec(BROKEN)
    started = _step(broken, _good_history(), _deployment(_spec(GOOD)))
    return _step(broken, started.revisions, _deployment(broken, ready=0, failed=True)).revisions


def test_a_new_pair_is_progressing_then_available() -> None:
    spec = _spec(GOOD)
    first = _step(spec, [], None)
    assert first.effective == Pair.from_spec(spec) and first.source == "Spec"
    assert _entries(first) == [{"revision": 1, "image": GOOD, "uri": "file:///m", "model": "1", "at": NOW,
                                "outcome": "Progressing", "reason": "RollingOut",
                                "message": f"rolling out image {GOOD} with model version 1",
                                "settings": settings_digest(spec)}]  # fmt: skip
    rolling = _step(spec, first.revisions, _deployment(spec, ready=1))
    assert _outcomes(rolling) == {GOOD: "Progressing"} and not rolling.transitions
    done = _step(spec, rolling.revisions, _deployment(spec))
    assert _outcomes(done) == {GOOD: "Available"} and _entries(done)[0]["availableAt"] == NOW
    assert [(t.before, t.after) for t in done.transitions] == [("Progressing", "Available")]
    assert _cond(done, "RolledBack") == ("False", "NoRollback")


def test_each_rollout_records_its_settings_and_a_change_while_rolling_is_marked() -> None:
    """The settings a pair rolled out with (everything but the pair and the bump's policies) go with its entry;
    settings changed while it rolls make it `changed`, so its failure never travels (fleet.evidence_of)."""
    spec = _spec(GOOD)
    assert settings_digest(spec) == settings_digest(_spec(NEWER, "2"))  # the pair is not a setting
    assert settings_digest(spec) != settings_digest(parse_spec({**spec.model_dump(by_alias=True, exclude_none=True),
                                                                 "replicas": 3}))  # fmt: skip
    started = _step(_spec(NEWER), _good_history(), _deployment(spec))
    assert {e.image: e.settings for e in started.revisions} == {GOOD: settings_digest(spec),
                                                                 NEWER: settings_digest(spec)}  # fmt: skip
    moved = parse_spec({**_spec(NEWER).model_dump(by_alias=True, exclude_none=True),
                        "pod": {"nodeSelector": {"example.com/nowhere": "true"}}})  # fmt: skip
    rolling = _step(moved, started.revisions, _deployment(spec))
    assert {e.image: e.settings for e in rolling.revisions} == {GOOD: settings_digest(spec), NEWER: SETTINGS_CHANGED}


def test_an_unobserved_generation_decides_nothing() -> None:
    spec = _spec(GOOD)
    first = _step(spec, [], None)
    stale = _step(spec, first.revisions, _deployment(spec, failed=True, ready=0, observed=False))
    assert _outcomes(stale) == {GOOD: "Progressing"}


def test_missed_deadline_rolls_back_to_the_last_good_pair_and_quarantines() -> None:
    broken = _spec(BROKEN)
    started = _step(broken, _good_history(), _deployment(_spec(GOOD)))
    assert started.effective.image == BROKEN and _outcomes(started) == {GOOD: "Superseded", BROKEN: "Progressing"}
    failed = _step(broken, started.revisions, _deployment(broken, ready=0, failed=True))
    assert failed.effective == Pair.from_spec(_spec(GOOD)) and failed.source == "LastGood"
    assert _outcomes(failed) == {GOOD: "Progressing", BROKEN: "Failed"} and failed.rolled_back
    assert _entries(failed)[1]["reason"] == "ProgressDeadlineExceeded"
    assert _cond(failed, "RolledBack") == ("True", "ProgressDeadlineExceeded")
    assert _cond(failed, "Ready") == ("False", "RollingBack") and _cond(failed, "Degraded")[0] == "True"
    back = _step(broken, failed.revisions, _deployment(_spec(GOOD)))
    assert _outcomes(back) == {GOOD: "Available", BROKEN: "Failed"} and not back.rolled_back
    assert _cond(back, "Ready") == ("False", "RolledBack") and _cond(back, "Progressing") == ("False", "RolledBack")
    assert Quarantine.from_status({"revisions": _entries(back)}).blocks(BROKEN, "1"), "bump reads the same shape"


def test_a_stale_event_of_the_failed_pair_does_not_undo_the_rollback() -> None:
    revisions = _failed_history()
    again = _step(_spec(BROKEN), revisions, _deployment(_spec(BROKEN), ready=0, failed=True))
    assert again.source == "LastGood" and not again.transitions


def test_without_auto_rollback_the_failed_pair_stays_and_may_recover() -> None:
    broken = _spec(BROKEN, autoRollback=False)
    started = _step(broken, _good_history(), _deployment(_spec(GOOD)))
    failed = _step(broken, started.revisions, _deployment(broken, ready=0, failed=True))
    assert failed.source == "Spec" and failed.effective.image == BROKEN and not failed.rolled_back
    assert _outcomes(failed)[BROKEN] == "Failed" and _cond(failed, "Degraded") == ("True", "ProgressDeadlineExceeded")
    assert _cond(failed, "RolledBack")[0] == "False"
    recovered = _step(broken, failed.revisions, _deployment(broken))
    assert _outcomes(recovered)[BROKEN] == "Available"


def test_no_good_pair_to_return_to_keeps_the_spec_pair() -> None:
    broken = _spec(BROKEN)
    first = _step(broken, [], None)
    failed = _step(broken, first.revisions, _deployment(broken, ready=0, failed=True))
    assert failed.source == "Spec" and _outcomes(failed) == {BROKEN: "Failed"}
    assert _cond(failed, "Ready") == ("False", "ProgressDeadlineExceeded")


def test_a_newer_pair_is_tried_and_the_quarantined_one_refused() -> None:
    newer = _spec(NEWER)
    tried = _step(newer, _failed_history(), _deployment(_spec(GOOD)))
    assert tried.source == "Spec" and tried.effective.image == NEWER
    assert _outcomes(tried) == {GOOD: "Superseded", BROKEN: "Failed", NEWER: "Progressing"}
    done = _step(newer, tried.revisions, _deployment(newer))
    refused = _step(_spec(BROKEN), done.revisions, _deployment(newer))
    assert refused.source == "LastGood" and refused.effective.image == NEWER and not refused.rolled_back
    assert _outcomes(refused) == {GOOD: "Superseded", BROKEN: "Failed", NEWER: "Available"}
    message = next(c.message for c in refused.conditions if c.type == "Ready")
    assert "quarantined" in message and f"{ANN_RETRY}='{BROKEN},1'" in message


def test_the_retry_annotation_clears_the_quarantine_once() -> None:
    retry = {ANN_RETRY: f"{BROKEN},1"}
    cleared = _step(_spec(BROKEN), _failed_history(), _deployment(_spec(GOOD)), retry)
    assert cleared.source == "Spec" and cleared.spent == (ANN_RETRY,)
    entry = _entries(cleared)[-1]
    assert (entry["image"], entry["outcome"], entry["reason"], entry["revision"]) == (BROKEN, "Progressing",
                                                                                      "RetryRequested", 3)  # fmt: skip
    other = _step(_spec(BROKEN), _failed_history(), _deployment(_spec(GOOD)), {ANN_RETRY: f"{NEWER},1"})
    assert other.source == "LastGood" and other.spent == ()


def test_smoke_test_gates_availability() -> None:
    spec = _spec(GOOD, smokeTest=SMOKE)
    first = _step(spec, [], None)
    due = _step(spec, first.revisions, _deployment(spec))
    assert due.smoke_due and _outcomes(due) == {GOOD: "Progressing"}
    assert _cond(due, "Ready") == ("False", "SmokeTestPending")
    passed = _step(spec, first.revisions, _deployment(spec), smoke=SmokeVerdict(True, "ok"))
    assert _outcomes(passed) == {GOOD: "Available"} and _entries(passed)[0]["smokeTest"] == "Passed"
    assert not _step(spec, passed.revisions, _deployment(spec)).smoke_due, "a verdict is recorded once"


def test_a_failed_smoke_test_rolls_back() -> None:
    broken = _spec(BROKEN, smokeTest=SMOKE)
    started = _step(broken, _good_history(), _deployment(_spec(GOOD)))
    verdict = SmokeVerdict(False, "pod x: the first output: element 0 is 2, expected 0.0 (tolerance 1e-06)")
    failed = _step(broken, started.revisions, _deployment(broken), smoke=verdict)
    assert failed.source == "LastGood" and failed.rolled_back
    entry = _entries(failed)[-1]
    assert (entry["outcome"], entry["reason"], entry["smokeTest"]) == ("Failed", "SmokeTestFailed", "Failed")
    assert entry["message"] == verdict.message


def test_a_manual_rollback_note_marks_the_pair_left() -> None:
    newer = _spec(NEWER)
    done = _step(newer, (t := _step(newer, _good_history(), _deployment(_spec(GOOD)))).revisions, _deployment(newer))
    assert t.effective.image == NEWER
    note = {ANN_ROLLBACK: json.dumps({"from": f"{NEWER},1", "to": f"{GOOD},1", "reason": "accuracy dropped"})}
    back = _step(_spec(GOOD), done.revisions, _deployment(newer), note)
    assert _outcomes(back) == {GOOD: "Progressing", NEWER: "RolledBack"} and back.spent == (ANN_ROLLBACK,)
    assert _entries(back)[-1]["revision"] == 3, "going back to an older pair is a new revision of it"
    left = next(e for e in _entries(back) if e["image"] == NEWER)
    assert (left["reason"], left["message"]) == ("ManualRollback", "accuracy dropped")
    assert _step(_spec(GOOD), done.revisions, _deployment(newer), {ANN_ROLLBACK: "{oops"}).spent == (ANN_ROLLBACK,)


def test_history_is_bounded_but_keeps_quarantined_pairs() -> None:
    revisions = _failed_history()
    for n in range(30):
        spec = _spec(f"example.com/app:2.{n}")
        revisions = _step(spec, revisions, None).revisions
    images = [e.image for e in revisions]
    assert BROKEN in images and len(revisions) == rollout.REVISION_LIMIT + 1
    assert images[-1] == "example.com/app:2.29"


@pytest.mark.parametrize("history", ["good", "failed"])
def test_decisions_are_stable_when_repeated(history: str) -> None:
    """Feeding a decision's own history back in (a restart, a repeated event) changes nothing."""
    revisions = _good_history() if history == "good" else _failed_history()
    spec = _spec(GOOD if history == "good" else BROKEN)
    observed = _deployment(_spec(GOOD))
    first = _step(spec, revisions, observed)
    second = decide(Observation(spec=spec, revisions=first.revisions, deployment=observed, annotations={}, now=LATER))
    assert second.revisions == first.revisions and not second.transitions and second.effective == first.effective


@pytest.mark.parametrize("note", ["[" * 30_000 + "]" * 30_000, json.dumps({"reason": "x" * 5000}), "{"])
def test_a_rollback_note_that_is_not_one_is_spent_unread(note: str) -> None:
    """Whoever may edit the ModelApp may write the note: nested past the recursion limit, longer than any note
    `modelapp rollback` writes, or broken. None of it may raise out of a pass (kopf would retry for ever)."""
    decision = _step(_spec(GOOD), _good_history(), _deployment(_spec(GOOD)), {ANN_ROLLBACK: note})
    assert ANN_ROLLBACK in decision.spent and _outcomes(decision) == {GOOD: "Available"}
