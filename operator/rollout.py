"""Rollout decisions: pure functions of the spec, the revision history in status, and one observation of
the Deployment. No I/O, no kopf (docs/rollouts.md is the user-facing contract).

A *pair* is what a revision is made of: (image, model uri, model version, model sha256). The spec names
the pair the user wants; `status.revisions` records every pair deployed, oldest first, with its outcome:

- `Progressing` while its pods roll out; `Available` once the Deployment running it is fully available
  (and its smoke test, if any, passed); `Superseded` when another pair replaced it; `RolledBack` when
  `modelapp rollback` moved away from it; `Failed` when it missed its progress deadline or failed its
  smoke test.
- With `spec.rollout.autoRollback` a `Failed` pair is *quarantined*: while the spec names it, the operator
  applies the *last good pair* instead (the newest earlier pair that was available and did not fail), and
  `modelapp bump` never proposes it (bump reads `{image, model, outcome}` of these entries). The spec is
  never changed by the operator. A spec naming another pair is tried normally; the annotation
  `rollout.modelapp.io/retry-quarantined: "<image>,<model version>"` clears the quarantine of that pair once.
- Without autoRollback a failed pair stays applied and the app is Degraded.

All rollout state lives in `status.revisions` (and the two annotations), so a restarted operator takes
the same decisions: the *effective pair* (what to apply) is derived from the history every time, never
kept in memory. Observations only move entries forward (Progressing -> Available | Failed); a stale
Deployment event can therefore never revive a superseded or failed pair, so decisions do not flap.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from modelapp_operator.names import (
    ANN_RETRY,
    ANN_ROLLBACK,
    DEGRADED,
    OUTCOME_AVAILABLE,
    OUTCOME_FAILED,
    OUTCOME_PROGRESSING,
    OUTCOME_ROLLED_BACK,
    OUTCOME_SUPERSEDED,
    PROGRESSING,
    READY,
    ROLLED_BACK,
)
from modelapp_operator.revisions import SETTINGS_CHANGED, Pair, Revision, find, last_good, settings_digest
from modelapp_operator.spec import ModelAppSpec
from modelapp_operator.status import Condition, Rollout, read_rollout

#: Entries kept in `status.revisions`: the newest ones that are not quarantined, plus quarantined ones.
REVISION_LIMIT = 20
QUARANTINE_LIMIT = 20

Source = Literal["Spec", "LastGood"]


@dataclass(frozen=True)
class SmokeVerdict:
    """The result of the smoke test against the pods of one pair."""

    passed: bool
    message: str


@dataclass(frozen=True)
class Transition:
    """An entry whose outcome changed in this decision (for Events and metrics)."""

    pair: Pair
    before: str | None  # None: the entry is new
    after: str
    reason: str
    message: str


@dataclass(frozen=True)
class Observation:
    """What one decision is taken from: the spec, the recorded history, the Deployment as last seen, the
    ModelApp's annotations, the time, and the smoke test's verdict when one was just run. `version_examples`:
    the spec's model version carries acceptance examples, which are its smoke test when the spec names none."""

    spec: ModelAppSpec
    revisions: Sequence[Revision]
    deployment: Mapping[str, Any] | None
    annotations: Mapping[str, str]
    now: str
    smoke: SmokeVerdict | None = None
    version_examples: bool = False

    def with_smoke(self, verdict: SmokeVerdict) -> Observation:
        return dataclasses.replace(self, smoke=verdict)


@dataclass(frozen=True)
class Decision:
    """What to apply and what to record, for one observation."""

    effective: Pair
    source: Source
    revisions: list[Revision]
    conditions: list[Condition]
    transitions: list[Transition] = field(default_factory=list)
    smoke_due: bool = False  # the effective pair is fully available and awaits its smoke test
    spent: tuple[str, ...] = ()  # annotations that have done their job: remove them

    @property
    def rolled_back(self) -> bool:
        """A transition in this decision moved traffic away from a failed pair (the Event's moment)."""
        return self.source == "LastGood" and any(t.after == OUTCOME_FAILED for t in self.transitions)


def decide(seen: Observation) -> Decision:
    """The effective pair and the new history for one observation (see the module docstring)."""
    spec, now = seen.spec, seen.now
    wanted = Pair.from_spec(spec)
    revs = [e.model_copy() for e in seen.revisions]
    before = {e.pair: e.outcome for e in revs}
    spent: tuple[str, ...] = (ANN_RETRY,) if _retry(revs, wanted, seen.annotations.get(ANN_RETRY), now) else ()
    spent += (ANN_ROLLBACK,) if _record_manual_rollback(revs, wanted, seen.annotations.get(ANN_ROLLBACK)) else ()
    observed = Pair.from_template(seen.deployment)
    rollout = read_rollout(seen.deployment, observed.apply_to(spec)) if seen.deployment and observed else None
    smoke_due = False
    if observed is not None and rollout is not None and rollout.current:
        tested = observed == wanted and (spec.rollout.smoke_test is not None or seen.version_examples)
        smoke_due = _observe(revs, observed, rollout, spec=spec, smoke=seen.smoke, now=now, tested=tested)
    index = find(revs, wanted)
    failed = index is not None and revs[index].quarantined
    good = last_good(revs, besides=wanted) if failed and spec.rollout.auto_rollback else None
    effective = good if good is not None else wanted
    source: Source = "LastGood" if good is not None else "Spec"
    _ensure(revs, effective, now, rolling_back=source == "LastGood", settings=settings_digest(spec))
    revs = _trim(revs, keep={wanted, effective})
    transitions = [Transition(e.pair, before.get(e.pair), e.outcome, e.reason, e.message)
                   for e in revs if before.get(e.pair) != e.outcome]  # fmt: skip
    smoke_due = smoke_due and observed == effective
    conditions = _conditions(revs, wanted, effective, source, smoke_due)
    return Decision(effective, source, revs, conditions, transitions, smoke_due, spent)


def _retry(revs: list[Revision], wanted: Pair, handle: str | None, now: str) -> bool:
    """Clear the quarantine of the spec's pair when the annotation names it; True: remove the annotation."""
    if not handle or handle.strip() != wanted.handle:
        return False
    index = find(revs, wanted)
    if index is not None and revs[index].quarantined:
        entry = revs.pop(index)
        revs.append(entry.model_copy(update={
            "revision": _next_number([*revs, entry]), "at": now, "outcome": OUTCOME_PROGRESSING, "smoke_test": None,
            "reason": "RetryRequested", "message": f"retry requested by annotation {ANN_RETRY}",
        }))  # fmt: skip
    return True  # done now, or already done before a restart: either way the annotation is spent


#: The longest rollback note read: `modelapp rollback` writes {from, to, reason} in far less.
MAX_NOTE_CHARS = 4096


def _record_manual_rollback(revs: list[Revision], wanted: Pair, raw: str | None) -> bool:
    """`modelapp rollback` left a note {from, to, reason}: the pair it left becomes RolledBack.

    True when the note is spent (recorded now, or it no longer matches the spec): remove it, so that a
    later return to the same pair by other means is not mistaken for this rollback.
    """
    if not raw:
        return False
    if len(raw) > MAX_NOTE_CHARS:
        return True  # not a note `modelapp rollback` writes: spent unread
    try:
        note = json.loads(raw)
    except (ValueError, RecursionError):  # whoever may edit the ModelApp may write it: nested deep, anything
        return True
    if not isinstance(note, Mapping) or note.get("to") != wanted.handle or note.get("from") == wanted.handle:
        return True
    for entry in revs:
        if entry.pair.handle == note.get("from") and entry.outcome in (
            OUTCOME_PROGRESSING, OUTCOME_AVAILABLE, OUTCOME_SUPERSEDED,
        ):  # fmt: skip
            entry.settle(OUTCOME_ROLLED_BACK, "ManualRollback", str(note.get("reason") or "modelapp rollback"))
    return True


def _observe(revs: list[Revision], pair: Pair, rollout: Rollout, *, spec: ModelAppSpec, smoke: SmokeVerdict | None,
             now: str, tested: bool) -> bool:  # fmt: skip
    """Move the observed pair's entry forward from facts; True when its smoke test is due (`tested`: the pair
    is the spec's and has a smoke test, the ModelApp's or its version's examples).

    Only a rolling pair moves; a failed one too while it stays applied (no rollback): it may still recover.
    """
    index = find(revs, pair)
    if index is None:
        return False
    entry = revs[index]
    held = entry.quarantined and spec.rollout.auto_rollback and last_good(revs, besides=pair) is not None
    if entry.outcome not in (OUTCOME_PROGRESSING, OUTCOME_FAILED) or held:
        return False
    if rollout.complete:
        if tested and entry.smoke_test is None:
            if smoke is None:
                return True
            entry.smoke_test = "Passed" if smoke.passed else "Failed"
            if not smoke.passed:
                entry.settle(OUTCOME_FAILED, "SmokeTestFailed", smoke.message)
        if entry.smoke_test != "Failed":
            entry.settle(OUTCOME_AVAILABLE, "Available", f"{pair.describe()} is fully available")
            entry.available_at = entry.available_at or now
    elif rollout.failure and entry.outcome == OUTCOME_PROGRESSING and not _stale(revs, entry, rollout.failure):
        reason, message = rollout.failure
        entry.settle(OUTCOME_FAILED, reason, message)
    return False


def _stale(revs: Sequence[Revision], entry: Revision, failure: tuple[str, str]) -> bool:
    """The failure is one another pair already failed with: after a rollback the Deployment keeps its
    `ProgressDeadlineExceeded` condition (naming the failed pair's ReplicaSet) until the failed pods are gone,
    so while the last good pair rolls back it still reads as failed. Not this pair's failure."""
    return any(other is not entry and other.quarantined and (other.reason, other.message) == failure for other in revs)


def _next_number(revs: Sequence[Revision]) -> int:
    return max((e.revision for e in revs), default=0) + 1


def _ensure(revs: list[Revision], effective: Pair, now: str, *, rolling_back: bool, settings: str = "") -> None:
    """The effective pair has an entry (new ones are Progressing); other live entries are Superseded.

    `settings` (revisions.settings_digest of the spec) is recorded with a new rollout; an entry still rolling
    out whose settings differ from the spec's is marked SETTINGS_CHANGED, so a failure that may be the
    settings' own doing never counts against the pair beyond its namespace (fleet.evidence_of)."""
    index = find(revs, effective)
    if index is None:
        revs.append(Revision.new(_next_number(revs), effective, at=now, outcome=OUTCOME_PROGRESSING,
                                 reason="RollingOut", message=f"rolling out {effective.describe()}",
                                 settings=settings))  # fmt: skip
    elif revs[index].outcome in (OUTCOME_SUPERSEDED, OUTCOME_ROLLED_BACK):
        number, entry = _next_number(revs), revs.pop(index)
        if rolling_back:  # the last good pair comes back: it keeps its number and place
            entry.settle(OUTCOME_PROGRESSING, "RollingBack", f"rolling back to {effective.describe()}")
            revs.insert(index, entry)
        else:  # the spec names an older pair again: a new revision of it
            entry.settle(OUTCOME_PROGRESSING, "RollingOut", f"rolling out {effective.describe()}")
            revs.append(entry.model_copy(update={"revision": number, "at": now, "settings": settings}))
    for entry in revs:
        if entry.pair != effective and entry.outcome in (OUTCOME_PROGRESSING, OUTCOME_AVAILABLE):
            entry.settle(OUTCOME_SUPERSEDED, "Replaced", f"replaced by {effective.describe()}")
        elif entry.pair == effective and entry.outcome == OUTCOME_PROGRESSING and entry.settings != settings:
            entry.settings = SETTINGS_CHANGED


def _trim(revs: list[Revision], *, keep: set[Pair]) -> list[Revision]:
    """Bound the history: the newest REVISION_LIMIT entries, plus up to QUARANTINE_LIMIT quarantined ones."""
    failed = [e for e in revs if e.quarantined]
    others = [e for e in revs if not e.quarantined]
    kept_ids = {id(e) for e in others[-REVISION_LIMIT:]} | {id(e) for e in failed[-QUARANTINE_LIMIT:]}
    kept_ids |= {id(e) for e in revs if e.pair in keep}
    return [e for e in revs if id(e) in kept_ids]


def _conditions(revs: Sequence[Revision], wanted: Pair, effective: Pair, source: Source,
                smoke_due: bool) -> list[Condition]:  # fmt: skip
    """Conditions that replace the plain Deployment reading when the history says more than it does."""
    index = find(revs, wanted)
    entry = revs[index] if index is not None else None
    if source == "LastGood":
        reason = (entry.reason if entry else "") or OUTCOME_FAILED
        why = entry.message if entry else ""
        message = (f"{wanted.describe()} failed ({reason}: {why}) and is quarantined; serving the last good pair, "
                   f"{effective.describe()}. Name a newer pair in the spec, or annotate "
                   f"{ANN_RETRY}={wanted.handle!r} to try it again.")  # fmt: skip
        rolling = find(revs, effective)
        back = revs[rolling].outcome if rolling is not None else None
        return [
            Condition(ROLLED_BACK, "True", reason, message),
            Condition(READY, "False", OUTCOME_ROLLED_BACK if back == OUTCOME_AVAILABLE else "RollingBack", message),
            Condition(PROGRESSING, "False", OUTCOME_ROLLED_BACK, message)
            if back == OUTCOME_AVAILABLE
            else Condition(PROGRESSING, "True", "RollingBack", message),
            Condition(DEGRADED, "True", reason, message),
        ]
    conditions = [Condition(ROLLED_BACK, "False", "NoRollback", "the spec's pair is the one applied")]
    if entry is not None and entry.quarantined:
        reason, why = entry.reason or OUTCOME_FAILED, entry.message
        message = f"{wanted.describe()} failed ({reason}: {why}); autoRollback is off or there is no good pair"
        conditions += [Condition(READY, "False", reason, message), Condition(PROGRESSING, "False", reason, message),
                       Condition(DEGRADED, "True", reason, message)]  # fmt: skip
    elif smoke_due:
        conditions.append(Condition(READY, "False", "SmokeTestPending", "waiting for the smoke test's verdict"))
    return conditions


def effective_status(decision: Decision) -> dict[str, str]:
    """`status.effective`: the pair applied and why."""
    pair = decision.effective
    out = {"image": pair.image, "uri": pair.uri, "model": pair.version, "source": decision.source}
    return {**out, "sha256": pair.sha256} if pair.sha256 else out


__all__ = [
    "Decision", "Observation", "Pair", "Revision", "SmokeVerdict", "Transition", "decide", "effective_status",
    "last_good",
]  # fmt: skip
