"""What one `modelapp bump` run did, and how it is shown: the rows, the breaker's rollouts and trips, the
table a person reads and the JSON a script reads.

Pure: dataclasses in, text out; no I/O but the stream it is handed. The planning (`bump`) makes the rows,
the breaker's loop (`breaker`) adds rollouts and trips; this module decides only the exit code and the words.

Contract: the table and the JSON are the command's interface (docs/updates.md, docs/rollouts.md); the JSON's
`rows` are `Row`'s fields in their order, so a field added to `Row` is added to the JSON.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Literal, TextIO

Result = Literal["planned", "patched", "unchanged", "failed", "skipped", "held"]
RESULTS: tuple[Result, ...] = ("planned", "patched", "failed", "skipped", "held", "unchanged")


@dataclass(frozen=True)
class Row:
    """One line of the plan: an app's field, from -> to, why, and what happened."""

    namespace: str
    name: str
    field: str
    old: str
    new: str
    reason: str
    result: Result


def with_result(row: Row, result: Result, reason: str | None = None) -> Row:
    """The row with another result (and reason, when given)."""
    return Row(row.namespace, row.name, row.field, row.old, row.new, reason or row.reason, result)


@dataclass(frozen=True)
class Rollout:
    """An app the bump patched under `--max-rollouts`, and how its rollout ended.

    verdict: Ready | Failed (rolled back, or Degraded without autoRollback) | TimedOut (neither within
    `--rollout-timeout`) | Changed (someone else changed or deleted the app meanwhile) | Unobserved (no
    operator has ever written its status: nothing to wait for)."""

    namespace: str
    name: str
    batch: int
    image: str
    model: str
    verdict: str
    reason: str
    message: str
    seconds: float


@dataclass(frozen=True)
class Trip:
    """The breaker tripped on one rollout: the rest of `namespace` is held back, or every namespace when the
    failure is evidence that counts beyond its own (cluster scope, attributable: see fleet.py)."""

    namespace: str
    name: str
    verdict: str
    reason: str
    message: str
    everywhere: bool

    def holds(self, namespace: str) -> bool:
        return self.everywhere or namespace == self.namespace

    def describe(self) -> str:
        where = "every namespace" if self.everywhere else f"namespace {self.namespace}"
        why = f"{self.verdict}, {self.reason}" if self.reason else self.verdict
        return (
            f"held back: the rollout of {self.namespace}/{self.name} ended {why} ({self.message[:200]}); "
            f"the breaker holds {where} for this run"
        )


@dataclass
class Outcome:
    rows: list[Row] = field(default_factory=list)
    registry_requests: int = 0
    storage_requests: int = 0
    max_rollouts: int = 0
    rollouts: list[Rollout] = field(default_factory=list)
    trips: list[Trip] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        """0 done; 2 some rows failed; 3 the breaker tripped (rows held back); 1 is main's: nothing done."""
        if self.trips:
            return 3
        return 2 if any(row.result == "failed" for row in self.rows) else 0

    def counts(self) -> dict[str, int]:
        """Rows per result (one row per app and field)."""
        return {result: sum(1 for row in self.rows if row.result == result) for result in RESULTS}


def render_table(outcome: Outcome, out: TextIO) -> None:
    headers = ("APP", "FIELD", "FROM", "TO", "RESULT", "WHY")
    lines = [(f"{r.namespace}/{r.name}", r.field, r.old, r.new or "-", r.result, r.reason) for r in outcome.rows]
    widths = [max([len(h)] + [len(line[i]) for line in lines]) for i, h in enumerate(headers[:-1])]
    for line in [headers, *lines]:
        print("  ".join(cell.ljust(width) for cell, width in zip(line[:-1], widths, strict=True)), line[-1], file=out)
    counts = outcome.counts()
    changed = counts["planned"] + counts["patched"]
    print(
        f"\n{changed} change(s), {counts['failed']} failure(s); "
        f"{outcome.registry_requests} registry and {outcome.storage_requests} storage request(s)",
        file=out,
    )
    print(", ".join(f"{result} {counts[result]}" for result in RESULTS[:5]), file=out)
    if outcome.rollouts:
        print(f"\nrollouts (at most {outcome.max_rollouts} at once, each batch waited for):", file=out)
        for r in outcome.rollouts:
            why = f" ({r.reason})" if r.reason else ""
            print(f"  batch {r.batch}  {r.namespace}/{r.name}  {r.image} model {r.model}: {r.verdict}{why} "
                  f"after {r.seconds:.0f}s", file=out)  # fmt: skip
    for trip in outcome.trips:
        why = f"{trip.verdict}, {trip.reason}" if trip.reason else trip.verdict
        where = "every namespace" if trip.everywhere else f"namespace {trip.namespace}"
        print(f"breaker tripped by {trip.namespace}/{trip.name} ({why}): holds {where}", file=out)
    if outcome.trips:
        apps = len({(row.namespace, row.name) for row in outcome.rows if row.result == "held"})
        print(f"held back: {counts['held']} row(s) of {apps} app(s); exit code 3", file=out)


def render_json(outcome: Outcome, out: TextIO) -> None:
    body = {
        "rows": [asdict(row) for row in outcome.rows],
        "requests": {"registry": outcome.registry_requests, "storage": outcome.storage_requests},
        "counts": outcome.counts(),
        "breaker": {
            "maxRollouts": outcome.max_rollouts,
            "rollouts": [asdict(r) for r in outcome.rollouts],
            "trips": [{**asdict(t), "summary": t.describe()} for t in outcome.trips],
            "held": sorted({f"{r.namespace}/{r.name}" for r in outcome.rows if r.result == "held"}),
        },
        "exitCode": outcome.exit_code,
    }
    json.dump(body, out, indent=2)
    out.write("\n")


__all__ = ["RESULTS", "Outcome", "Result", "Rollout", "Row", "Trip", "render_json", "render_table", "with_result"]
