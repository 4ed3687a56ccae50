"""A status change that only counts progress is written at most every STATUS_PROGRESS_SECONDS per ModelApp
(pacing.py; a new ModelApp's first status held while it says only "under way" is tests/unit/test_pacing.py).

Design notes: in a burst of creates on a fast cluster, the Deployment's status moves 0/1 -> 1 updated -> 1/1
available within a second or two; the middle write ("rolling out: 0/1 available, 1 updated") was about a
quarter of the burst's status PATCHes beyond the two that say something (the first status, Ready), each a
CRD update the API server validates and tracks field ownership for, and a watch event to every ModelApp
watcher. What may wait is only what no reader decides on: counts and condition messages. A transition
(status, reason or generation of any condition, a revision's outcome, the first status) is written at once,
and a count that waited is written by a pass at the end of the interval, so status never stays behind.
`later.Later` runs those passes: one thread and a heap (a thread per wait would be 1,000 threads in a burst).
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import pytest

from modelapp_operator import status
from modelapp_operator.later import Later

RUNNING = [{"type": "Ready", "status": "False", "reason": "RollingOut", "message": "0/1 available, 0 updated",
            "lastTransitionTime": "t0", "observedGeneration": 1}]  # fmt: skip


def _with(message: str, *, status_: str = "False", reason: str = "RollingOut", generation: int = 1) -> list[Any]:
    return [{**RUNNING[0], "message": message, "status": status_, "reason": reason,
             "observedGeneration": generation}]  # fmt: skip


def test_counts_and_messages_are_progress_a_transition_is_not() -> None:
    old = {"conditions": RUNNING, "replicas": 0, "updatedReplicas": 0, "observedGeneration": 1}
    assert status.progress_only(old, {"conditions": _with("0/1 available, 1 updated"), "updatedReplicas": 1})
    assert status.progress_only(old, {"replicas": 1})
    assert not status.progress_only(old, {"conditions": _with("1/1 available", status_="True", reason="Available")})
    assert not status.progress_only(old, {"conditions": _with("x", reason="ProgressDeadlineExceeded")})
    assert not status.progress_only(old, {"conditions": _with("x", generation=2), "observedGeneration": 2})
    assert not status.progress_only(old, {"revisions": [], "replicas": 1}), "a revision's outcome is history"
    assert not status.progress_only(old, {"url": "http://x"})
    assert not status.progress_only({}, {"replicas": 1}), "a first status is no count change"


def test_later_runs_each_key_once_at_the_earliest_time_asked() -> None:
    ran: list[tuple[str, float]] = []
    done = threading.Event()
    later = Later(lambda key, fn: fn())
    t0 = time.monotonic()

    def note(key: str) -> Any:
        def run() -> None:
            ran.append((key, time.monotonic() - t0))
            if len(ran) == 2:
                done.set()
        return run

    assert later.call("b", 0.30, note("b"))
    assert later.call("a", 0.20, note("a-first"))
    assert not later.call("a", 0.50, note("a-later")), "one pending per key: a later time adds nothing"
    assert later.call("a", 0.10, note("a")), "an earlier time moves it"
    assert later.pending("a")
    assert done.wait(5)
    time.sleep(0.3)  # past the moved entry's old time: it must not run as well
    assert [k for k, _ in ran] == ["a", "b"], ran
    assert 0.09 <= ran[0][1] < 0.2 and ran[1][1] >= 0.29
    assert not later.pending("a")
    assert later.call("a", 0, note("a")), "once run, the key can be scheduled again"


def test_a_slow_job_does_not_hold_the_others() -> None:
    release, fast = threading.Event(), threading.Event()
    later = Later(lambda key, fn: threading.Thread(target=fn, daemon=True).start())
    later.call("slow", 0, release.wait)
    later.call("fast", 0.05, fast.set)
    assert fast.wait(5)
    release.set()


@pytest.mark.parametrize("gap", [0.0, 5.0])
def test_the_engine_puts_off_a_count_only_write_and_a_pass_writes_it(monkeypatch: pytest.MonkeyPatch,
                                                                    gap: float) -> None:  # fmt: skip
    """The engine's side, with the API module replaced by a recorder (the real API server's side, that status
    ends up true, is tests/integration/test_operator.py)."""
    from modelapp_operator import engine as engine_mod
    from modelapp_operator.settings import OperatorConfig

    patches: list[dict[str, Any]] = []
    passes: list[str] = []
    counts = {"conditions": _with("0/1 available, 1 updated"), "replicas": 1}
    stored = {"metadata": {"name": "iris", "namespace": "ml", "resourceVersion": "2"}, "status": counts}
    monkeypatch.setattr(engine_mod.kube, "patch_status",
                        lambda name, namespace, patch: patches.append(patch) or stored)  # fmt: skip
    monkeypatch.setattr(engine_mod.status, "compute_status", lambda **_: counts)
    monkeypatch.setattr(engine_mod.rollout, "effective_status", lambda _: None)
    engine = engine_mod.Engine(OperatorConfig())
    engine.pacer = engine_mod.pacing.StatusPacer(0.2)
    monkeypatch.setattr(engine, "converge", lambda **kw: passes.append(kw["name"]))
    app = {"metadata": {"name": "iris", "namespace": "ml", "generation": 1},
           "status": {"conditions": RUNNING, "replicas": 0}}  # fmt: skip
    decision = engine_mod.rollout.Decision.__new__(engine_mod.rollout.Decision)
    object.__setattr__(decision, "revisions", [])
    object.__setattr__(decision, "conditions", [])
    object.__setattr__(decision, "transitions", [])
    engine.pacer._written_at[("ml", "iris")] = time.monotonic() - gap
    logger = logging.getLogger("test")
    assert engine._write_status(app, None, decision, None, None, logger=logger) == ()  # type: ignore[arg-type]
    if gap:
        assert patches == [counts], "the last write was long ago: written at once"
        return
    assert patches == [], "within the interval: put off"
    deadline = time.monotonic() + 5
    while not passes and time.monotonic() < deadline:
        time.sleep(0.02)
    assert passes == ["iris"], "a pass at the end of the interval writes what is true then"
    engine.forget("ModelApp", "ml", "iris")
    assert ("ml", "iris") not in engine.pacer._written_at, "a deleted ModelApp leaves nothing behind"
