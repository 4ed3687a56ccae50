"""The breaker's loop (`modelapp_operator.breaker.run`) without a cluster: what it asks of `apply` and what it
reports for an app a trip holds back.

Design notes: no I/O. `apply` is the seam between the loop and the planning (`bump._apply` in a real run);
here it is a plain function that records its calls and answers literal rows, so only the loop's own decisions
are under test. Waiting for rollouts (`settle`) reads the API server and is tested against a real one in
tests/integration/test_fleet_breaker.py; with `max_rollouts=0` the loop never waits.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from modelapp_operator import breaker, fleet
from modelapp_operator.report import Outcome, Row, Trip


def app(namespace: str, name: str) -> dict[str, Any]:
    return {"metadata": {"namespace": namespace, "name": name}}


class Planner:
    """Answers a planned image change and an unchanged model for every app, and records how it was called."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, bool, bool]] = []

    def __call__(self, obj: Mapping[str, Any], *, dry_run: bool,
                 started: Callable[[Mapping[str, Any]], None] | None) -> list[Row]:  # fmt: skip
        namespace, name = breaker.app_key(obj)
        self.calls.append((f"{namespace}/{name}", dry_run, started is not None))
        return [Row(namespace, name, "image", "app:1.0.0", "app:1.1.0", "newest 1.1.0", "planned"),
                Row(namespace, name, "model", "7", "", "7 is the newest", "unchanged")]  # fmt: skip


def test_an_app_a_trip_holds_is_planned_only_and_its_changes_are_held() -> None:
    trip = Trip("ml", "canary", "Failed", "ProgressDeadlineExceeded", "timed out", everywhere=False)
    outcome, planner = Outcome(trips=[trip]), Planner()
    breaker.run([app("ml", "b"), app("other", "c")], planner, outcome, fleet.Fleet(), dry_run=False, max_rollouts=0,
                timeout=1.0)  # fmt: skip
    assert planner.calls == [("ml/b", True, False), ("other/c", False, False)]
    held, other = outcome.rows[:2], outcome.rows[2:]
    assert [r.result for r in held] == ["held", "unchanged"]
    assert held[0].reason == trip.describe() and held[1].reason == "7 is the newest"
    assert [r.result for r in other] == ["planned", "unchanged"]  # another namespace: not held
    assert outcome.rollouts == [] and outcome.exit_code == 3


def test_a_trip_that_counts_everywhere_holds_every_namespace() -> None:
    trip = Trip("ml", "canary", "Failed", "SmokeTestFailed", "wrong answer", everywhere=True)
    outcome, planner = Outcome(trips=[trip]), Planner()
    breaker.run([app("a", "x"), app("b", "y")], planner, outcome, fleet.Fleet(), dry_run=False, max_rollouts=0,
                timeout=1.0)  # fmt: skip
    assert [dry for _, dry, _ in planner.calls] == [True, True]
    assert [r.result for r in outcome.rows if r.field == "image"] == ["held", "held"]


def test_without_a_cap_nothing_is_collected_to_wait_for() -> None:
    outcome, planner = Outcome(), Planner()
    breaker.run([app("ml", "a")], planner, outcome, fleet.Fleet(), dry_run=True, max_rollouts=0, timeout=1.0)
    assert planner.calls == [("ml/a", True, False)]  # no `started`: the loop will not wait for this app
    assert outcome.exit_code == 0


def test_a_patched_app_is_remembered_with_the_pair_and_generation_the_patch_made() -> None:
    model = {"uri": "s3://m/p", "version": "8", "sha256": "ab" * 32}
    meta = {"namespace": "ml", "name": "a", "generation": 4}
    patched = {"metadata": meta, "spec": {"image": "app:1.1.0", "model": model}}
    started = breaker.Started.of(patched)
    assert (started.namespace, started.name, started.image, started.model, started.uri, started.sha256,
            started.generation) == ("ml", "a", "app:1.1.0", "8", "s3://m/p", "ab" * 32, 4)  # fmt: skip
    assert breaker.Started.of({"metadata": {"name": "b"}, "spec": {}}).generation == 0
