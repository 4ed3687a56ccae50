"""What `modelapp bump` says when the breaker trips: the table, the JSON and the exit code (pure).

Design notes: no I/O. An `Outcome` is built from literal rows, rollouts and trips, as `run_bump` makes them
(the real run against the cluster is tests/integration/test_fleet_breaker.py); the table and the JSON are
rendered into a string and read back as a person and a script would.
"""

from __future__ import annotations

import io
import json

from modelapp_operator.bump import Outcome, Rollout, Row, Trip, render_json, render_table

BROKEN = "registry.example.com/team/app:1.1.0"


def tripped() -> Outcome:
    trip = Trip("ml", "a", "Failed", "ProgressDeadlineExceeded", "ReplicaSet has timed out progressing.", False)
    rows = [
        Row("ml", "a", "image", "registry.example.com/team/app:1.0.0", BROKEN, "newest 1.1.0", "patched"),
        Row("ml", "b", "image", "registry.example.com/team/app:1.0.0", BROKEN, trip.describe(), "held"),
        Row("ml", "c", "image", "registry.example.com/team/app:1.0.0", BROKEN, trip.describe(), "held"),
        Row("other", "d", "image", "x:1", "", "registry unreachable", "failed"),
    ]
    rollout = Rollout("ml", "a", 1, BROKEN, "7", "Failed", "ProgressDeadlineExceeded", "timed out", 14.2)
    return Outcome(rows=rows, max_rollouts=1, rollouts=[rollout], trips=[trip])


def test_the_table_names_the_canary_that_failed_and_what_it_held_back() -> None:
    out = io.StringIO()
    render_table(tripped(), out)
    text = out.getvalue()
    assert "planned 0, patched 1, failed 1, skipped 0, held 2" in text
    assert f"batch 1  ml/a  {BROKEN} model 7: Failed (ProgressDeadlineExceeded) after 14s" in text
    assert "breaker tripped by ml/a (Failed, ProgressDeadlineExceeded): holds namespace ml" in text
    assert "held back: 2 row(s) of 2 app(s); exit code 3" in text
    held = [line for line in text.splitlines() if line.startswith(("ml/b", "ml/c"))]
    assert len(held) == 2 and all("held back: the rollout of ml/a ended Failed" in line for line in held)


def test_the_json_carries_the_breaker_and_a_trip_outranks_failed_rows() -> None:
    out = io.StringIO()
    render_json(tripped(), out)
    body = json.loads(out.getvalue())
    assert body["exitCode"] == 3 and body["counts"]["held"] == 2
    assert body["breaker"]["held"] == ["ml/b", "ml/c"] and body["breaker"]["maxRollouts"] == 1
    assert body["breaker"]["rollouts"][0]["verdict"] == "Failed"
    assert body["breaker"]["trips"][0]["summary"].startswith("held back: the rollout of ml/a")
    assert Outcome(rows=tripped().rows).exit_code == 2  # without the trip: some rows failed
