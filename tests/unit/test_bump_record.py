"""What a bump records and when it holds back: pure functions of bump.py and metrics.py.

Design notes: no I/O. `unsettled` decides from the object alone (metadata.generation, status) whether
bump may change the spec; the Event, the annotations and the "rollout caused by a bump" count are built
from plain values, so each case here is a literal ModelApp or Transition. The API-server side (the
Event exists, the annotations are set, a busy app's spec is untouched) is in tests/e2e/test_bump.py.
"""

from __future__ import annotations

from typing import Any

from modelapp_operator.bump import ANN_BUMP_REASON, AppPlan, Row, annotate, build_event, bump_message, unsettled
from modelapp_operator.metrics import ANN_BUMPED_AT, started_by_bump
from modelapp_operator.rollout import Pair, Transition

IMAGE, URI = "registry.example.com/iris:1.4.0", "file:///models/iris"


def app(generation: int = 2, **status: Any) -> dict[str, Any]:
    return {
        "metadata": {"namespace": "ns", "name": "iris", "generation": generation, "uid": "u-1"},
        "spec": {"image": IMAGE, "model": {"uri": URI, "version": "7"}},
        "status": status,
    }


def settled(**more: Any) -> dict[str, Any]:
    progressing = {"type": "Progressing", "status": "False", "reason": "Complete"}
    effective = {"image": IMAGE, "uri": URI, "model": "7", "source": "Spec"}
    return {"observedGeneration": 2, "conditions": [progressing], "effective": effective, **more}


def test_a_settled_app_or_one_never_reconciled_may_be_bumped() -> None:
    assert unsettled(app(**settled())) == ""
    assert unsettled(app()) == ""  # no status at all: no operator has seen it yet


def test_an_unobserved_generation_is_a_rollout_in_progress() -> None:
    assert "observedGeneration 1 < generation 2" in unsettled(app(**settled(observedGeneration=1)))


def test_progressing_true_is_a_rollout_in_progress() -> None:
    rolling = {"type": "Progressing", "status": "True", "reason": "RollingOut"}
    assert "Progressing=True, RollingOut" in unsettled(app(**settled(conditions=[rolling])))


def test_an_effective_pair_other_than_the_specs_is_in_progress_unless_the_spec_pair_is_quarantined() -> None:
    older = {"image": "registry.example.com/iris:1.3.0", "uri": URI, "model": "6", "source": "LastGood"}
    assert "not the spec's pair" in unsettled(app(**settled(effective=older)))
    failed = [{"revision": 2, "image": IMAGE, "uri": URI, "model": "7", "outcome": "Failed"}]
    assert unsettled(app(**settled(effective=older, revisions=failed))) == ""  # rolled back and settled


def test_the_message_names_each_planned_change_with_its_policy() -> None:
    rows = (
        Row("ns", "iris", "image", "r:1.4.0", "r:1.4.3", "newest", "planned"),
        Row("ns", "iris", "model", "7", "8", "newest", "planned"),
    )
    message = bump_message(rows, image_policy="semver:^1.4", model_policy="numeric")
    assert message == "image r:1.4.0 -> r:1.4.3 (policy semver:^1.4); model 7 -> 8 (policy numeric)"
    unchanged = (rows[0], Row("ns", "iris", "model", "7", "", "nothing newer", "unchanged"))
    assert bump_message(unchanged, image_policy="latest", model_policy="pinned") == (
        "image r:1.4.0 -> r:1.4.3 (policy latest)"
    )


def test_annotations_go_in_the_same_patch_as_the_spec_and_keep_the_resource_version() -> None:
    patch = {"metadata": {"resourceVersion": "42"}, "spec": {"model": {"version": "8", "sha256": "ab"}}}
    annotated = annotate(patch, now="2026-11-24T02:00:00Z", message="model 7 -> 8 (policy numeric)")
    assert annotated["spec"] == patch["spec"]
    assert annotated["metadata"] == {
        "resourceVersion": "42",
        "annotations": {ANN_BUMPED_AT: "2026-11-24T02:00:00Z", ANN_BUMP_REASON: "model 7 -> 8 (policy numeric)"},
    }


def test_the_event_is_a_normal_bumped_event_on_the_modelapp() -> None:
    plan = AppPlan("ns", "iris", "42", (), None, "model 7 -> 8 (policy numeric)", "u-1")
    event = build_event(plan, now="2026-11-24T02:00:00Z", instance="bump-pod")
    assert (event["type"], event["reason"], event["message"]) == ("Normal", "Bumped", plan.message)
    assert event["involvedObject"] == {
        "apiVersion": "modelapp.io/v1alpha1", "kind": "ModelApp", "name": "iris", "namespace": "ns", "uid": "u-1"
    }  # fmt: skip
    assert event["reportingComponent"] == event["source"]["component"] == "modelapp-bump"
    assert event["metadata"] == {"generateName": "iris.", "namespace": "ns"}


def start(before: str | None, reason: str = "RollingOut") -> Transition:
    return Transition(Pair(IMAGE, URI, "8"), before, "Progressing", reason, "rolling out")


def test_a_rollout_counts_as_bumped_when_the_bump_is_newer_than_every_earlier_start() -> None:
    earlier = ["2026-11-23T02:00:05Z", "2026-11-20T10:00:00Z"]
    assert started_by_bump([start(None)], bumped_at="2026-11-24T02:00:00Z", earlier=earlier)
    assert not started_by_bump([start(None)], bumped_at="2026-11-22T02:00:00Z", earlier=earlier)  # a user edit
    assert not started_by_bump([start(None)], bumped_at=None, earlier=earlier)
    assert not started_by_bump([], bumped_at="2026-11-24T02:00:00Z", earlier=earlier)  # nothing started
    rolling_back = start("Superseded", reason="RollingBack")
    assert not started_by_bump([rolling_back], bumped_at="2026-11-24T02:00:00Z", earlier=earlier)
