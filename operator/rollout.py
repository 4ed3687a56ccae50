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

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from modelapp_operator import builders
from modelapp_operator.spec import ModelAppSpec
from modelapp_operator.status import DEGRADED, PROGRESSING, READY, ROLLED_BACK, Condition, Rollout, read_rollout

PROGRESSING_ = "Progressing"
AVAILABLE = "Available"
FAILED = "Failed"
ROLLEDBACK = "RolledBack"
SUPERSEDED = "Superseded"

#: User-facing annotations. Not under `modelapp.io/`: kopf ignores every annotation with the prefix of
#: its own storage when it computes diffs, and these must trigger a reconcile.
ANN_RETRY = "rollout.modelapp.io/retry-quarantined"
ANN_ROLLBACK = "rollout.modelapp.io/rollback"

#: Entries kept in `status.revisions`: the newest ones that are not quarantined, plus quarantined ones.
REVISION_LIMIT = 20
QUARANTINE_LIMIT = 20

Entry = dict[str, Any]
Source = Literal["Spec", "LastGood"]


@dataclass(frozen=True)
class Pair:
    """One (image, model) pair; equality is identity of a revision."""

    image: str
    uri: str
    version: str
    sha256: str = ""

    @classmethod
    def from_spec(cls, spec: ModelAppSpec) -> Pair:
        return cls(spec.image, spec.model.uri, spec.model.version, spec.model.sha256 or "")

    @classmethod
    def from_entry(cls, entry: Mapping[str, Any]) -> Pair:
        return cls(str(entry.get("image", "")), str(entry.get("uri", "")), str(entry.get("model", "")),
                   str(entry.get("sha256") or ""))  # fmt: skip

    @classmethod
    def from_template(cls, deployment: Mapping[str, Any] | None) -> Pair | None:
        """The pair a Deployment's pod template runs (its revision annotations), if it has them."""
        template = ((deployment or {}).get("spec") or {}).get("template") or {}
        ann = (template.get("metadata") or {}).get("annotations") or {}
        if builders.ANN_IMAGE not in ann or builders.ANN_MODEL_VERSION not in ann:
            return None
        return cls(ann[builders.ANN_IMAGE], ann.get(builders.ANN_MODEL_URI, ""), ann[builders.ANN_MODEL_VERSION],
                   ann.get(builders.ANN_MODEL_SHA256, ""))  # fmt: skip

    @property
    def handle(self) -> str:
        """`<image>,<model version>`: how a user names the pair (retry annotation, messages)."""
        return f"{self.image},{self.version}"

    def describe(self) -> str:
        return f"image {self.image} with model version {self.version}"

    def apply_to(self, spec: ModelAppSpec) -> ModelAppSpec:
        """The spec with this pair in place of its own (every other setting is the spec's)."""
        model = spec.model.model_copy(update={"uri": self.uri, "version": self.version, "sha256": self.sha256 or None})
        return spec.model_copy(update={"image": self.image, "model": model})

    def as_entry(self) -> Entry:
        entry: Entry = {"image": self.image, "uri": self.uri, "model": self.version}
        if self.sha256:
            entry["sha256"] = self.sha256
        if "@sha256:" in self.image:
            entry["imageDigest"] = self.image.rsplit("@", 1)[1]
        return entry


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
class Decision:
    """What to apply and what to record, for one observation."""

    effective: Pair
    source: Source
    revisions: list[Entry]
    conditions: list[Condition]
    transitions: list[Transition] = field(default_factory=list)
    smoke_due: bool = False  # the effective pair is fully available and awaits its smoke test
    spent: tuple[str, ...] = ()  # annotations that have done their job: remove them

    @property
    def rolled_back(self) -> bool:
        """A transition in this decision moved traffic away from a failed pair (the Event's moment)."""
        return self.source == "LastGood" and any(t.after == FAILED for t in self.transitions)


def find(revisions: Sequence[Mapping[str, Any]], pair: Pair) -> int | None:
    """Index of the entry of `pair`, if recorded."""
    return next((i for i, e in enumerate(revisions) if Pair.from_entry(e) == pair), None)


def last_good(revisions: Sequence[Mapping[str, Any]], *, besides: Pair) -> Pair | None:
    """The newest pair other than `besides` that was fully available and is not quarantined."""
    for entry in reversed(revisions):
        pair = Pair.from_entry(entry)
        if pair != besides and entry.get("availableAt") and entry.get("outcome") not in (FAILED,):
            return pair
    return None


def quarantined(revisions: Sequence[Mapping[str, Any]]) -> list[Pair]:
    """Pairs that failed a rollout (what bump's `Quarantine.from_status` reads too)."""
    return [Pair.from_entry(e) for e in revisions if e.get("outcome") == FAILED]


def decide(*, spec: ModelAppSpec, revisions: Sequence[Mapping[str, Any]], deployment: Mapping[str, Any] | None,
           annotations: Mapping[str, str], now: str, smoke: SmokeVerdict | None = None) -> Decision:  # fmt: skip
    """The effective pair and the new history for one observation (see the module docstring)."""
    wanted = Pair.from_spec(spec)
    revs = [dict(e) for e in revisions]
    before = {Pair.from_entry(e): e.get("outcome") for e in revs}
    spent: tuple[str, ...] = (ANN_RETRY,) if _retry(revs, wanted, annotations.get(ANN_RETRY), now) else ()
    spent += (ANN_ROLLBACK,) if _record_manual_rollback(revs, wanted, annotations.get(ANN_ROLLBACK)) else ()
    observed = Pair.from_template(deployment)
    rollout = read_rollout(deployment, observed.apply_to(spec)) if deployment and observed else None
    smoke_due = False
    if observed is not None and rollout is not None and rollout.current:
        smoke_due = _observe(revs, observed, rollout, spec=spec, smoke=smoke, now=now, wanted=observed == wanted)
    auto = spec.rollout.auto_rollback
    index = find(revs, wanted)
    failed = index is not None and revs[index].get("outcome") == FAILED
    good = last_good(revs, besides=wanted) if failed and auto else None
    effective = good if good is not None else wanted
    source: Source = "LastGood" if good is not None else "Spec"
    _ensure(revs, effective, now, rolling_back=source == "LastGood")
    revs = _trim(revs, keep={wanted, effective})
    transitions = [
        Transition(p, before.get(p), str(e["outcome"]), str(e.get("reason", "")), str(e.get("message", "")))
        for e in revs if before.get(p := Pair.from_entry(e)) != e["outcome"]
    ]  # fmt: skip
    smoke_due = smoke_due and observed == effective
    conditions = _conditions(revs, wanted, effective, source, smoke_due)
    return Decision(effective, source, revs, conditions, transitions, smoke_due, spent)


def _retry(revs: list[Entry], wanted: Pair, handle: str | None, now: str) -> bool:
    """Clear the quarantine of the spec's pair when the annotation names it; True: remove the annotation."""
    if not handle or handle.strip() != wanted.handle:
        return False
    index = find(revs, wanted)
    if index is not None and revs[index].get("outcome") == FAILED:
        number = _next_number(revs)
        entry = {k: v for k, v in revs.pop(index).items() if k not in ("smokeTest",)}
        revs.append({**entry, "revision": number, "at": now, "outcome": PROGRESSING_,
                     "reason": "RetryRequested", "message": f"retry requested by annotation {ANN_RETRY}"})  # fmt: skip
    return True  # done now, or already done before a restart: either way the annotation is spent


def _record_manual_rollback(revs: list[Entry], wanted: Pair, raw: str | None) -> bool:
    """`modelapp rollback` left a note {from, to, reason}: the pair it left becomes RolledBack.

    True when the note is spent (recorded now, or it no longer matches the spec): remove it, so that a
    later return to the same pair by other means is not mistaken for this rollback.
    """
    if not raw:
        return False
    try:
        note = json.loads(raw)
    except ValueError:
        return True
    if not isinstance(note, Mapping) or note.get("to") != wanted.handle or note.get("from") == wanted.handle:
        return True
    for entry in revs:
        if Pair.from_entry(entry).handle == note.get("from") and entry.get("outcome") in (
            PROGRESSING_, AVAILABLE, SUPERSEDED,
        ):  # fmt: skip
            entry.update(outcome=ROLLEDBACK, reason="ManualRollback",
                         message=str(note.get("reason") or "modelapp rollback")[:1024])  # fmt: skip
    return True


def _observe(revs: list[Entry], pair: Pair, rollout: Rollout, *, spec: ModelAppSpec, smoke: SmokeVerdict | None,
             now: str, wanted: bool) -> bool:  # fmt: skip
    """Move the observed pair's entry forward from facts; True when its smoke test is due.

    Only a rolling pair moves; a failed one too while it stays applied (no rollback): it may still recover.
    """
    index = find(revs, pair)
    entry = revs[index] if index is not None else {}
    outcome = entry.get("outcome")
    held = outcome == FAILED and spec.rollout.auto_rollback and last_good(revs, besides=pair) is not None
    if outcome not in (PROGRESSING_, FAILED) or held:
        return False
    if rollout.complete:
        test = spec.rollout.smoke_test if wanted else None
        if test is not None and "smokeTest" not in entry:
            if smoke is None:
                return True
            entry["smokeTest"] = "Passed" if smoke.passed else "Failed"
            if not smoke.passed:
                entry.update(outcome=FAILED, reason="SmokeTestFailed", message=smoke.message[:1024])
        if entry.get("smokeTest") != "Failed":
            entry.update(outcome=AVAILABLE, reason="Available", message=f"{pair.describe()} is fully available")
            entry.setdefault("availableAt", now)
    elif rollout.failure and outcome == PROGRESSING_:
        reason, message = rollout.failure
        entry.update(outcome=FAILED, reason=reason[:128], message=message[:1024])
    return False


def _next_number(revs: Sequence[Mapping[str, Any]]) -> int:
    return max((int(e.get("revision") or 0) for e in revs), default=0) + 1


def _ensure(revs: list[Entry], effective: Pair, now: str, *, rolling_back: bool) -> None:
    """The effective pair has an entry (new ones are Progressing); other live entries are Superseded."""
    index = find(revs, effective)
    if index is None:
        revs.append({"revision": _next_number(revs), **effective.as_entry(), "at": now, "outcome": PROGRESSING_,
                     "reason": "RollingOut", "message": f"rolling out {effective.describe()}"})  # fmt: skip
    elif revs[index].get("outcome") in (SUPERSEDED, ROLLEDBACK):
        number, entry = _next_number(revs), revs.pop(index)
        if rolling_back:  # the last good pair comes back: it keeps its number and place
            revs.insert(index, {**entry, "outcome": PROGRESSING_, "reason": "RollingBack",
                                "message": f"rolling back to {effective.describe()}"})  # fmt: skip
        else:  # the spec names an older pair again: a new revision of it
            revs.append({**entry, "revision": number, "at": now, "outcome": PROGRESSING_,
                         "reason": "RollingOut", "message": f"rolling out {effective.describe()}"})  # fmt: skip
    for entry in revs:
        if Pair.from_entry(entry) != effective and entry.get("outcome") in (PROGRESSING_, AVAILABLE):
            entry.update(outcome=SUPERSEDED, reason="Replaced", message=f"replaced by {effective.describe()}")


def _trim(revs: list[Entry], *, keep: set[Pair]) -> list[Entry]:
    """Bound the history: the newest REVISION_LIMIT entries, plus up to QUARANTINE_LIMIT quarantined ones."""
    failed = [e for e in revs if e.get("outcome") == FAILED]
    others = [e for e in revs if e.get("outcome") != FAILED]
    kept_ids = {id(e) for e in others[-REVISION_LIMIT:]} | {id(e) for e in failed[-QUARANTINE_LIMIT:]}
    kept_ids |= {id(e) for e in revs if Pair.from_entry(e) in keep}
    return [e for e in revs if id(e) in kept_ids]


def _conditions(revs: Sequence[Mapping[str, Any]], wanted: Pair, effective: Pair, source: Source,
                smoke_due: bool) -> list[Condition]:  # fmt: skip
    """Conditions that replace the plain Deployment reading when the history says more than it does."""
    index = find(revs, wanted)
    entry: Mapping[str, Any] = revs[index] if index is not None else {}
    if source == "LastGood":
        reason, why = str(entry.get("reason") or FAILED), str(entry.get("message") or "")
        message = (f"{wanted.describe()} failed ({reason}: {why}) and is quarantined; serving the last good pair, "
                   f"{effective.describe()}. Name a newer pair in the spec, or annotate "
                   f"{ANN_RETRY}={wanted.handle!r} to try it again.")  # fmt: skip
        rolling = find(revs, effective)
        back = revs[rolling].get("outcome") if rolling is not None else None
        return [
            Condition(ROLLED_BACK, "True", reason, message),
            Condition(READY, "False", ROLLEDBACK if back == AVAILABLE else "RollingBack", message),
            Condition(PROGRESSING, "False", ROLLEDBACK, message)
            if back == AVAILABLE
            else Condition(PROGRESSING, "True", "RollingBack", message),
            Condition(DEGRADED, "True", reason, message),
        ]
    conditions = [Condition(ROLLED_BACK, "False", "NoRollback", "the spec's pair is the one applied")]
    if entry.get("outcome") == FAILED:
        reason, why = str(entry.get("reason") or FAILED), str(entry.get("message") or "")
        message = f"{wanted.describe()} failed ({reason}: {why}); autoRollback is off or there is no good pair"
        conditions += [Condition(READY, "False", reason, message), Condition(PROGRESSING, "False", reason, message),
                       Condition(DEGRADED, "True", reason, message)]  # fmt: skip
    elif smoke_due:
        conditions.append(Condition(READY, "False", "SmokeTestPending", "waiting for the smoke test's verdict"))
    return conditions


def effective_status(decision: Decision) -> dict[str, Any]:
    """`status.effective`: the pair applied and why."""
    pair = decision.effective
    out: dict[str, Any] = {"image": pair.image, "uri": pair.uri, "model": pair.version, "source": decision.source}
    return {**out, "sha256": pair.sha256} if pair.sha256 else out


__all__ = ["Decision", "Pair", "SmokeVerdict", "Transition", "decide", "effective_status", "last_good", "quarantined"]
