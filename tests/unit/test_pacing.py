"""A new ModelApp's first status, while it says only that its first rollout is under way, is held up to
STATUS_PROGRESS_SECONDS and laid over the ModelApp for the passes that follow (pacing.py); anything that
says more is written at once, and a held status is never lost to a write that says more.

Design notes: the statuses are the operator's own (`status.compute_status` from a real `rollout.decide`),
and the clock is the test's, so the interval is exact. The engine's side against the real API server
(one write instead of two, the history and Events intact) is tests/integration/test_operator.py.
"""

from __future__ import annotations

from typing import Any

import pytest

from modelapp_operator import rollout, status
from modelapp_operator.pacing import StatusPacer
from modelapp_operator.spec import parse_spec

KEY = ("ml", "iris")
UID = "uid-1"
SPEC = parse_spec({"image": "r/iris:1", "model": {"uri": "file:///opt/models/iris", "version": "1"}})


def _deployment(*, available: int) -> dict[str, Any]:
    """The Deployment as its controller reports a one-replica rollout of SPEC's pair."""
    from modelapp_operator import builders

    manifest = builders.build_deployment("iris", "ml", SPEC, builders.BuildContext(serving_image="s:1"))
    return {**manifest, "metadata": {**manifest["metadata"], "generation": 1},
            "status": {"observedGeneration": 1, "replicas": 1, "updatedReplicas": 1, "readyReplicas": available,
                       "availableReplicas": available,
                       "conditions": [{"type": "Available", "status": "True" if available else "False"},
                                      {"type": "Progressing", "status": "True",
                                       "reason": "NewReplicaSetAvailable" if available else "ReplicaSetUpdated"}]}}


def _status(old: dict[str, Any], deployment: dict[str, Any] | None, now: str = "2026-12-04T20:00:00Z",
            ) -> dict[str, Any]:  # fmt: skip
    """One pass's status: the decision from `old`'s history, as engine._write_status computes it."""
    return _decided(old, deployment, now)[0]


def _decided(old: dict[str, Any], deployment: dict[str, Any] | None, now: str = "2026-12-04T20:00:00Z",
             ) -> tuple[dict[str, Any], tuple[rollout.Transition, ...]]:  # fmt: skip
    """One pass's status and the transitions it records (what the engine announces with it)."""
    from modelapp_operator.revisions import parse_revisions

    seen = rollout.Observation(spec=SPEC, revisions=parse_revisions(old), deployment=deployment, annotations={},
                               now=now)  # fmt: skip
    decision = rollout.decide(seen)
    return status.compute_status(name="iris", namespace="ml", generation=1, spec=SPEC, deployment=deployment,
                                 service=None, old=old, now=now, overrides=decision.conditions,
                                 extra={"revisions": [r.to_status() for r in decision.revisions],
                                        "effective": rollout.effective_status(decision)}), \
        tuple(decision.transitions)  # fmt: skip


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def _app(status_: dict[str, Any] | None = None, uid: str = UID) -> dict[str, Any]:
    return {"metadata": {"name": "iris", "namespace": "ml", "uid": uid}, **({"status": status_} if status_ else {})}


def test_under_way_is_a_rollout_with_nothing_amiss() -> None:
    first = _status({}, None)
    assert status.under_way(first), first["conditions"]
    assert status.under_way(_status({}, _deployment(available=0)))
    assert not status.under_way(_status(first, _deployment(available=1))), "Ready: more to say"

    def with_(kind: str, value: str) -> dict[str, Any]:
        return {"conditions": [{**c, "status": value} if c["type"] == kind else c for c in first["conditions"]]}

    assert not status.under_way(with_("Degraded", "True"))
    assert not status.under_way(with_("RolledBack", "True"))
    assert not status.under_way(with_("Progressing", "False"))
    assert not status.under_way(with_("ModelResolved", "Unknown")), "every other condition must be True"
    blocked = status.blocked_status(generation=1, reason="NameTaken", message="m", old={}, now="t")
    assert not status.under_way(blocked)


def test_a_first_status_under_way_is_held_then_one_write_says_both(clock: Clock) -> None:
    pacer = StatusPacer(2.0, clock=clock)
    first = _status({}, None)
    plan = pacer.plan(KEY, UID, old={}, new=first)
    assert plan.patch is None and plan.wait == 2.0, plan
    assert pacer.holding(KEY)
    app = pacer.overlay(KEY, _app())
    assert app["status"] == first, "the next pass decides from the held status"

    clock.now += 0.5  # the Deployment is being rolled out: still only under way
    rolling = _status(app["status"], _deployment(available=0))
    plan = pacer.plan(KEY, UID, old=app["status"], new=rolling)
    assert plan.patch is None and plan.wait == pytest.approx(1.5), "held from the first time, not re-armed"

    clock.now += 0.7  # available within the interval: Ready, written at once, with everything
    app = pacer.overlay(KEY, _app())
    ready = _status(app["status"], _deployment(available=1), now="2026-12-04T20:00:01Z")
    plan = pacer.plan(KEY, UID, old=app["status"], new=ready)
    assert plan.wait is None and plan.patch == ready, "the whole status: the API server has none yet"
    revisions = plan.patch["revisions"]
    assert [(r["revision"], r["outcome"]) for r in revisions] == [(1, "Available")], revisions
    held_at = next(c for c in first["conditions"] if c["type"] == "ModelResolved")["lastTransitionTime"]
    assert next(c for c in ready["conditions"] if c["type"] == "ModelResolved")["lastTransitionTime"] == held_at
    assert revisions[0]["at"] == first["revisions"][0]["at"], "the rollout started when the held status says"
    pacer.wrote(KEY)
    assert not pacer.holding(KEY)


def test_a_held_status_is_written_at_the_end_of_the_interval(clock: Clock) -> None:
    pacer = StatusPacer(2.0, clock=clock)
    first = _status({}, None)
    assert pacer.plan(KEY, UID, old={}, new=first).wait == 2.0
    clock.now += 2.0
    app = pacer.overlay(KEY, _app())
    plan = pacer.plan(KEY, UID, old=app["status"], new=_status(app["status"], _deployment(available=0)))
    assert plan.wait is None and plan.patch is not None and plan.patch["revisions"][0]["outcome"] == "Progressing"


def test_what_is_not_a_new_rollout_under_way_is_written_at_once(clock: Clock) -> None:
    pacer = StatusPacer(2.0, clock=clock)
    blocked = status.blocked_status(generation=1, reason="NameTaken", message="m", old={}, now="t")
    assert pacer.plan(KEY, UID, old={}, new=blocked).patch == blocked, "a first status that says something is wrong"
    ready = _status(_status({}, None), _deployment(available=1))
    bumped = {**_status({}, None), "observedGeneration": 2}
    plan = pacer.plan(KEY, UID, old=ready, new=bumped)
    assert plan.patch is not None and plan.wait is None, "a ModelApp that has a status: its change at once"
    assert not pacer.holding(KEY)


def test_a_write_that_says_more_carries_the_held_status(clock: Clock) -> None:
    """The blocked and invalid-spec writes (engine._blocked, engine._parse) patch with `patch_for`: while the
    first status is held the API server has none, so the held status goes with them."""
    pacer = StatusPacer(2.0, clock=clock)
    first = _status({}, None)
    pacer.plan(KEY, UID, old={}, new=first)
    blocked = status.blocked_status(generation=1, reason="NameTaken", message="m", old=first, now="t")
    patch = pacer.patch_for(KEY, first, blocked)
    assert patch is not None and patch["revisions"] == first["revisions"]
    assert patch["conditions"] == blocked["conditions"]
    pacer.wrote(KEY)
    assert pacer.patch_for(KEY, {**first, **blocked}, blocked) is None, "once written, a patch is a difference again"


def test_the_overlay_is_only_for_the_same_modelapp_without_a_status(clock: Clock) -> None:
    pacer = StatusPacer(2.0, clock=clock)
    first = _status({}, None)
    pacer.plan(KEY, UID, old={}, new=first)
    assert pacer.overlay(KEY, _app(uid="uid-2")) == _app(uid="uid-2"), "deleted and re-created: another ModelApp"
    assert not pacer.holding(KEY)
    pacer.plan(KEY, UID, old={}, new=first)
    theirs = {"observedGeneration": 1}
    assert pacer.overlay(KEY, _app(theirs)) == _app(theirs), "a status written since is what counts"
    assert not pacer.holding(KEY)
    pacer.plan(KEY, UID, old={}, new=first)
    pacer.forget(KEY)
    assert not pacer.holding(KEY) and pacer.overlay(KEY, _app()) == _app()


def test_in_a_burst_a_first_status_waits_longer_in_that_namespace_only(clock: Clock) -> None:
    pacer = StatusPacer(2.0, burst_interval=30.0, burst_firsts=3, burst_window=5.0, clock=clock)
    first = _status({}, None)

    def hold(namespace: str, name: str) -> float | None:
        return pacer.plan((namespace, name), f"uid-{name}", old={}, new=first).wait

    assert [hold("ml", f"app-{i}") for i in range(5)] == [2.0, 2.0, 2.0, 30.0, 30.0], "three held within 5 s: a burst"
    assert hold("other", "iris") == 2.0, "another namespace: no burst"

    clock.now += 2.0  # the first three are written at the end of their interval; the burst goes on
    for i in range(3):
        app = pacer.overlay(("ml", f"app-{i}"), _app(uid=f"uid-app-{i}"))
        plan = pacer.plan(("ml", f"app-{i}"), f"uid-app-{i}", old=app["status"], new=app["status"])
        assert plan.patch is not None and plan.wait is None
        pacer.wrote(("ml", f"app-{i}"))
    assert hold("ml", "app-5") == 30.0, "held within the last 5 s, written or not: still a burst"

    clock.now += 27.0  # a burst's held status keeps its own end, 30 s after it was first held
    app = pacer.overlay(("ml", "app-3"), _app(uid="uid-app-3"))
    plan = pacer.plan(("ml", "app-3"), "uid-app-3", old=app["status"],
                      new=_status(app["status"], _deployment(available=0)))  # fmt: skip
    assert plan.patch is None and plan.wait == pytest.approx(1.0)
    clock.now += 1.0
    ready = _status(app["status"], _deployment(available=1))
    plan = pacer.plan(("ml", "app-3"), "uid-app-3", old=app["status"], new=ready)
    assert plan.patch == ready, "Ready within the longer interval: one write says both"
    assert hold("ml", "late") == 2.0, "nothing held in the last 5 s: the burst is over"


def test_a_trickle_of_new_modelapps_is_never_a_burst(clock: Clock) -> None:
    """One new ModelApp every 2 s, each rollout slower than the interval (so each stays held or is written
    late): the namespace holds many at once, but a burst is the rate of new ones, not how many are held."""
    pacer = StatusPacer(2.0, burst_interval=30.0, burst_firsts=3, burst_window=5.0, clock=clock)
    first = _status({}, None)
    waits = []
    for i in range(10):
        waits.append(pacer.plan(("ml", f"app-{i}"), f"uid-{i}", old={}, new=first).wait)
        clock.now += 2.0
    assert waits == [2.0] * 10, waits
    assert pacer.plan(("ml", "quick-1"), "uid-q1", old={}, new=first).wait == 2.0
    assert pacer.plan(("ml", "quick-2"), "uid-q2", old={}, new=first).wait == 30.0, "then three within 5 s"


def test_only_a_first_status_under_way_counts_towards_a_burst(clock: Clock) -> None:
    pacer = StatusPacer(2.0, burst_interval=30.0, burst_firsts=1, burst_window=5.0, clock=clock)
    blocked = status.blocked_status(generation=1, reason="NameTaken", message="m", old={}, now="t")
    for i in range(3):
        assert pacer.plan(("ml", f"bad-{i}"), f"uid-{i}", old={}, new=blocked).patch == blocked
    first = _status({}, None)
    assert pacer.plan(("ml", "good"), "uid-g", old={}, new=first).wait == 2.0, "refusals are written, not held"
    held = pacer.overlay(("ml", "good"), _app(uid="uid-g"))["status"]
    assert pacer.plan(("ml", "good"), "uid-g", old=held, new=_status(held, _deployment(available=0))).wait == 2.0
    assert pacer.plan(("ml", "next"), "uid-n", old={}, new=first).wait == 30.0, "one first hold, counted once"


def test_a_namespace_with_no_first_hold_in_the_window_is_dropped(clock: Clock) -> None:
    """The pacer keeps recent first-hold times per namespace; a namespace that had none in the window is dropped
    (at most once a window, on the next first hold anywhere), so many namespaces over a long run cost nothing."""
    pacer = StatusPacer(2.0, burst_interval=30.0, burst_firsts=3, burst_window=5.0, clock=clock)
    first = _status({}, None)
    for i in range(50):
        pacer.plan((f"team-{i}", "iris"), f"uid-{i}", old={}, new=first)
    assert len(pacer._firsts) == 50
    clock.now += 5.0
    pacer.plan(("ml", "iris"), "uid-ml", old={}, new=first)
    assert list(pacer._firsts) == ["ml"], "the namespaces with nothing in the last 5 s went"
    for i in range(3):
        clock.now += 1.0
        pacer.plan((f"team-{i}", "late"), f"uid-late-{i}", old={}, new=first)
    assert set(pacer._firsts) == {"ml", "team-0", "team-1", "team-2"}, "not swept again within the window"
    assert pacer.plan(("ml", "next"), "uid-next", old={}, new=first).wait == 2.0


def _posted(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """The Events the engine posts, as (type, reason)."""
    from modelapp_operator import engine

    posted: list[tuple[str, str]] = []
    monkeypatch.setattr(engine.kopf, "event", lambda _obj, *, type, reason, message: posted.append((type, reason)))
    return posted


def test_the_news_of_a_held_status_go_with_its_write_and_a_quick_rollout_posts_its_outcome_alone(
        clock: Clock, monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """A held status records nothing yet, so its Events wait for it: the write that says Ready announces the
    rollout's start and its end together, and the engine posts the outcome alone (one Event, not two)."""
    from modelapp_operator.engine import _announce

    posted = _posted(monkeypatch)
    pacer = StatusPacer(2.0, clock=clock)
    first, started = _decided({}, None)
    assert [(t.before, t.after) for t in started] == [(None, "Progressing")], started
    plan = pacer.plan(KEY, UID, old={}, new=first, news=started)
    assert plan.wait == 2.0 and plan.news == (), "held: nothing to announce yet"
    clock.now += 0.5
    app = pacer.overlay(KEY, _app())
    ready, ended = _decided(app["status"], _deployment(available=1), now="2026-12-04T20:00:01Z")
    assert [(t.before, t.after) for t in ended] == [("Progressing", "Available")], ended
    plan = pacer.plan(KEY, UID, old=app["status"], new=ready, news=ended)
    assert plan.patch == ready and plan.news == started + ended
    again = pacer.plan(KEY, UID, old=app["status"], new=ready, news=ended)
    assert again.news == started + ended, "the write failed: the next try carries the held news again"
    pacer.wrote(KEY)
    assert pacer.news(KEY) == (), "written: nothing held"
    _announce(_app(ready), plan.news)
    assert posted == [("Normal", "RolloutSucceeded")], posted


def test_a_rollout_still_under_way_at_the_end_of_the_interval_posts_its_start_with_the_write(
        clock: Clock, monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    from modelapp_operator.engine import _announce

    posted = _posted(monkeypatch)
    pacer = StatusPacer(2.0, clock=clock)
    first, started = _decided({}, None)
    assert pacer.plan(KEY, UID, old={}, new=first, news=started).news == ()
    clock.now += 2.0
    app = pacer.overlay(KEY, _app())
    rolling, none = _decided(app["status"], _deployment(available=0))
    plan = pacer.plan(KEY, UID, old=app["status"], new=rolling, news=none)
    assert plan.patch is not None and plan.news == started
    pacer.wrote(KEY)
    _announce(_app(rolling), plan.news)
    assert posted == [("Normal", "RolloutStarted")], posted
    ready, ended = _decided(rolling, _deployment(available=1), now="2026-12-04T20:00:05Z")
    plan = pacer.plan(KEY, UID, old=rolling, new=ready, news=ended)
    assert plan.patch is not None and plan.news == ended, "once written, a status's news go at once"
    _announce(_app(ready), plan.news)
    assert posted == [("Normal", "RolloutStarted"), ("Normal", "RolloutSucceeded")], posted


def test_a_start_is_left_out_only_for_an_outcome_after_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """The spec moved from A to B and back to A within the hold: A's second start has no outcome after it (A is
    under way again when the status is written), so it is posted; the starts that ended are not."""
    from modelapp_operator.engine import _announce
    from modelapp_operator.revisions import Pair

    posted = _posted(monkeypatch)
    a, b = Pair("r/iris:1", "file:///m", "1"), Pair("r/iris:1", "file:///m", "2")

    def moved(pair: Pair, before: str | None, after: str) -> rollout.Transition:
        return rollout.Transition(pair=pair, before=before, after=after, reason="r", message="m")

    _announce(_app(), (moved(a, None, "Progressing"), moved(a, "Progressing", "Superseded"),
                       moved(b, None, "Progressing"), moved(b, "Progressing", "Superseded"),
                       moved(a, "Superseded", "Progressing")))  # fmt: skip
    assert posted == [("Normal", "RolloutStarted")], posted


def test_a_write_that_says_more_announces_the_held_news(clock: Clock, monkeypatch: pytest.MonkeyPatch) -> None:
    """engine._blocked writes with `patch_for`, outside `plan`: the held status goes with its write, and with it
    the news that the rollout had started, announced once; a second blocked write has none to announce."""
    from modelapp_operator import engine as engine_mod
    from modelapp_operator.settings import OperatorConfig

    posted = _posted(monkeypatch)
    patches: list[dict[str, Any]] = []
    monkeypatch.setattr(engine_mod.kube, "patch_status", lambda name, namespace, patch: patches.append(patch) or {
        "metadata": {"name": name, "namespace": namespace, "uid": UID, "resourceVersion": str(len(patches))},
        "status": patch})  # fmt: skip
    engine = engine_mod.Engine(OperatorConfig())
    engine.pacer = StatusPacer(2.0, clock=clock)
    first, started = _decided({}, None)
    assert engine.pacer.plan(KEY, UID, old={}, new=first, news=started).wait == 2.0
    assert engine.pacer.news(KEY) == started
    for _ in range(2):
        app = engine.pacer.overlay(KEY, _app())
        engine._blocked(app, "NameTaken", "the Service iris is not this ModelApp's", retry=None, everything=False)
    assert posted == [("Normal", "RolloutStarted")], posted
    assert patches[0]["revisions"] == first["revisions"], "the held status went with the first write"
    assert not engine.pacer.holding(KEY)
