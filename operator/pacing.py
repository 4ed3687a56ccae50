"""When a ModelApp's status is written: at once, or a moment later.

Every status write is a custom resource update that the API server decodes, merges and tracks field
ownership for (~7 ms of its CPU), and a watch event to every ModelApp watcher (this operator, the garbage
collector, any `kubectl get -w`). In a burst of creates these writes, 2.3 per app, were most of what the
operator adds to the API server's work (docs/scaling.md). Two kinds of write may wait up to
STATUS_PROGRESS_SECONDS:

- **A change that only counts progress** (`status.progress_only`: replica numbers, a condition's message),
  within the interval after the ModelApp's last status write.
- **A new ModelApp's first status, while it says only that its first rollout is under way**
  (`status.under_way`). It is held in memory and laid over the ModelApp for the passes that follow
  (`overlay`), so they decide from it as if it were written (its revision entry, its transition times), and
  the first pass that has more to say (Ready, a failure, a refusal) or the pass at the end of the interval
  writes it, with whatever is true then. In a burst the Deployment is often available within the interval,
  and one write then says both.

Nothing else waits: a transition, a failure, the status of a bumped ModelApp. In the interval a reader sees
what it sees of a ModelApp the operator has not reached yet: no status (kstatus and `kubectl wait` treat that
as not yet ready). A held status is lost if the process ends: the next pass decides again from the
cluster (a pass is level-based), and the `RolloutStarted` Event, posted when the status was held, may come
twice.

The engine (engine.py) asks `plan` for every status it computes and does what the plan says; the pacer only
keeps times and held statuses, per (namespace, name), and does no I/O. One pass at a time per ModelApp
(`turns.Turns`) calls it for that key; the event loop may `forget` a key at any time.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from modelapp_operator import status

#: How long a status that only counts progress, or a new ModelApp's first status that only says "under way",
#: may wait (seconds).
STATUS_PROGRESS_SECONDS = 2.0

Key = tuple[str, str]  # (namespace, name)
Obj = Mapping[str, Any]


@dataclass(frozen=True)
class Plan:
    """What to do with a computed status: write `patch` now, or (`wait`) have a pass in that many seconds;
    neither: nothing changed."""

    patch: dict[str, Any] | None = None
    wait: float | None = None


@dataclass(frozen=True)
class _Held:
    uid: str
    status: dict[str, Any]
    since: float


class StatusPacer:
    """Per ModelApp: when its status was last written, and its first status while held."""

    def __init__(self, interval: float = STATUS_PROGRESS_SECONDS, *, clock: Callable[[], float] = time.monotonic):
        self.interval = interval
        self._clock = clock
        self._written_at: dict[Key, float] = {}
        self._held: dict[Key, _Held] = {}

    def overlay(self, key: Key, app: Obj) -> Obj:
        """The ModelApp as the last decision left it: its held first status laid over it. A held status goes
        when the ModelApp is another one of that name (uid) or has a status of its own by now."""
        held = self._held.get(key)
        if held is None:
            return app
        if app.get("status") or (app.get("metadata") or {}).get("uid") != held.uid:
            self._held.pop(key, None)
            return app
        return {**app, "status": held.status}

    def plan(self, key: Key, uid: str, *, old: Obj, new: dict[str, Any]) -> Plan:
        """`old`: the status the pass decided from (as `overlay` gave it), `new`: the status it computed."""
        now = self._clock()
        held = self._held.get(key)
        if held is not None and held.uid != uid:
            self._held.pop(key, None)
            held = None
        patch = self.patch_for(key, old, new)
        if not patch:
            return Plan()
        if held is not None or not old:  # the first status: held while it only says "under way"
            since = held.since if held is not None else now
            left = since + self.interval - now
            if left > 0 and status.under_way(new):
                self._held[key] = _Held(uid, new, since)
                return Plan(wait=left)
            return Plan(patch=patch)
        last = self._written_at.get(key)
        left = 0.0 if last is None else last + self.interval - now
        if left > 0 and status.progress_only(old, patch):
            return Plan(wait=left)
        return Plan(patch=patch)

    def patch_for(self, key: Key, old: Obj, new: Mapping[str, Any]) -> dict[str, Any] | None:
        """The merge patch that makes the API server's status `new`: against `old`, or, while the first status
        is held (the API server has none), the held status and `new` together."""
        held = self._held.get(key)
        return status.status_patch({}, {**old, **new}) if held is not None else status.status_patch(old, new)

    def wrote(self, key: Key) -> None:
        """A status write for this ModelApp was answered: nothing is held any more."""
        self._written_at[key] = self._clock()
        self._held.pop(key, None)

    def holding(self, key: Key) -> bool:
        return key in self._held

    def forget(self, key: Key) -> None:
        """The ModelApp is gone or moved to another shard."""
        self._written_at.pop(key, None)
        self._held.pop(key, None)


__all__ = ["STATUS_PROGRESS_SECONDS", "Plan", "StatusPacer"]
