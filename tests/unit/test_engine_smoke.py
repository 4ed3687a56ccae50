"""The engine runs smoke tests beside passes, never inside one (issue 10: no app holds the operator).

Design notes: `smokepool.SmokePool.verdict` is pure bookkeeping around a check function and a thread pool, so it
is tested with a check that blocks on an Event (standing in for a tenant's slow pods) and with `converge`
recorded instead of run. What matters: the caller never waits for the pods, one check runs per pair at a
time, the verdict is handed to exactly one pass, and a check that found no ready pod is tried again later.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from modelapp_operator import smokepool
from modelapp_operator.engine import Engine
from modelapp_operator.revisions import Pair
from modelapp_operator.rollout import SmokeVerdict
from modelapp_operator.settings import OperatorConfig
from modelapp_operator.spec import SmokeTest

TEST = SmokeTest.model_validate({"inputs": [{"shape": [1, 1], "data": [1.0]}], "expected": [{"data": [0]}]})
PAIR = Pair("r.example/app:1", "file:///m", "1")


class Recorder:
    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []
        self.called = threading.Event()

    def __call__(self, **kwargs: Any) -> None:
        self.calls.append(kwargs)
        self.called.set()


def _engine(check: Any) -> tuple[Engine, Recorder]:
    engine = Engine(OperatorConfig(), smoke_check=check)
    recorder = Recorder()
    engine.converge = recorder  # type: ignore[method-assign]
    return engine, recorder


def test_a_slow_check_never_holds_the_pass_and_runs_once_per_pair() -> None:
    release, started = threading.Event(), []

    def slow(name: str, namespace: str, test: SmokeTest, pair: Pair, transport: Any) -> SmokeVerdict:
        started.append(pair)
        release.wait(10)
        return SmokeVerdict(False, "pod p: HTTP 500")

    engine, converged = _engine(slow)
    begun = time.monotonic()
    assert engine.smokes.verdict("app", "ns", TEST, PAIR, logging.getLogger("t")) is None
    assert engine.smokes.verdict("app", "ns", TEST, PAIR, logging.getLogger("t")) is None
    assert time.monotonic() - begun < 1.0, "a pass never waits for the pods"
    release.set()
    assert converged.called.wait(10), "a pass is asked for once the verdict is in"
    assert len(started) == 1, "one check per pair at a time"
    assert converged.calls == [{"name": "app", "namespace": "ns", "logger": converged.calls[0]["logger"],
                                "everything": False}]  # fmt: skip
    verdict = engine.smokes.verdict("app", "ns", TEST, PAIR, logging.getLogger("t"))
    assert verdict == SmokeVerdict(False, "pod p: HTTP 500"), "the verdict goes to the next pass"
    engine.smokes.pool.shutdown(wait=True)


def test_no_ready_pod_is_tried_again_later(monkeypatch: Any) -> None:
    monkeypatch.setattr(smokepool, "SMOKE_RETRY_SECONDS", 0.1)
    engine, converged = _engine(lambda *args: None)
    assert engine.smokes.verdict("app", "ns", TEST, PAIR, logging.getLogger("t")) is None
    assert converged.called.wait(10), "a later pass is asked for"
    assert ("ns", "app", PAIR) not in engine.smokes._verdicts, "and it will start the check again"
    engine.smokes.pool.shutdown(wait=True)
