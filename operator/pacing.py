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

  **In a burst the interval is longer**, FIRST_STATUS_BURST_SECONDS: when BURST_FIRSTS or more first
  statuses were held in the ModelApp's namespace within the last BURST_WINDOW_SECONDS (new ModelApps coming
  faster than one every 0.6 s; a trickle never counts as a burst). A burst slows the control plane (of 5,000
  created at once, a third of the Deployments took more than 2 s to become available, and each of those
  cost a second write, which slowed the burst further); a new ModelApp in a burst waits its turn anyway, and
  its first status is written when its rollout ends or FIRST_STATUS_BURST_SECONDS after it was first held.
  Counted per namespace (and per operator replica: a shard counts the ModelApps it serves): a tenant's burst
  lengthens only its own ModelApps' wait.

Nothing else waits: a transition, a failure, the status of a bumped ModelApp. In the interval a reader sees
what it sees of a ModelApp the operator has not reached yet: no status (kstatus and `kubectl wait` treat that
as not yet ready). A held status is lost if the process ends: the next pass decides again from the
cluster (a pass is level-based).

**The Events wait with the status.** A pass announces what its status records (engine.py: `RolloutStarted`,
`RolloutSucceeded`, ...), and a held status records nothing yet: the news of the passes that held it (`plan`'s
`news`) are kept with it and handed back with the write. So a first rollout that ends within the interval
posts its outcome alone (`RolloutSucceeded` or `RolloutFailed`, not `RolloutStarted` before it), as its one
status write says only that; one still under way at the end of the interval posts `RolloutStarted` then, with
the write that says so. A held status lost with the process takes its news with it: the next pass finds no
status and announces the rollout then.

The engine (engine.py) asks `plan` for every status it computes and does what the plan says; the pacer only
keeps times and held statuses, per (namespace, name), and does no I/O. One pass at a time per ModelApp
(`turns.Turns`) calls it for that key; the event loop may `forget` a key at any time. The times of the recent
first holds per namespace, which passes of different ModelApps share, are kept under a lock.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from modelapp_operator import status

#: How long a status that only counts progress, or a new ModelApp's first status that only says "under way",
#: may wait (seconds).
STATUS_PROGRESS_SECONDS = 2.0
#: How long a first status that only says "under way" may wait when its namespace is in a burst (seconds).
FIRST_STATUS_BURST_SECONDS = 30.0
#: A burst: this many first statuses held in one namespace within BURST_WINDOW_SECONDS.
BURST_FIRSTS = 8
BURST_WINDOW_SECONDS = 5.0

Key = tuple[str, str]  # (namespace, name)
Obj = Mapping[str, Any]


@dataclass(frozen=True)
class Plan:
    """What to do with a computed status: write `patch` now, or (`wait`) have a pass in that many seconds;
    neither: nothing changed. `news`: what to announce now (with the write, when there is one); while the
    first status is held, nothing (its news are kept with it)."""

    patch: dict[str, Any] | None = None
    wait: float | None = None
    news: tuple[Any, ...] = ()


@dataclass(frozen=True)
class _Held:
    uid: str
    status: dict[str, Any]
    until: float  # when it is written, whatever it says
    news: tuple[Any, ...] = ()  # what the passes that held it would have announced, oldest first


class StatusPacer:
    """Per ModelApp: when its status was last written, and its first status while held."""

    def __init__(self, interval: float = STATUS_PROGRESS_SECONDS, *,
                 burst_interval: float = FIRST_STATUS_BURST_SECONDS, burst_firsts: int = BURST_FIRSTS,
                 burst_window: float = BURST_WINDOW_SECONDS, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = interval
        self.burst_interval = max(burst_interval, interval)
        self.burst_firsts = burst_firsts
        self.burst_window = burst_window
        self._clock = clock
        self._written_at: dict[Key, float] = {}
        self._held: dict[Key, _Held] = {}
        self._firsts: dict[str, deque[float]] = {}  # namespace -> when its recent first holds began, oldest first
        self._lock = threading.Lock()  # for _firsts: passes of different ModelApps run at once
        self._swept = clock()  # when _firsts last dropped the namespaces with no first hold in the window

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

    def plan(self, key: Key, uid: str, *, old: Obj, new: dict[str, Any], news: Sequence[Any] = ()) -> Plan:
        """`old`: the status the pass decided from (as `overlay` gave it), `new`: the status it computed,
        `news`: what the pass would announce with it (the transitions `new` records)."""
        now = self._clock()
        held = self._held.get(key)
        if held is not None and held.uid != uid:
            self._held.pop(key, None)
            held = None
        patch = self.patch_for(key, old, new)
        if not patch:
            return Plan(news=tuple(news))
        if held is not None or not old:  # the first status: held while it only says "under way"
            kept = (held.news if held is not None else ()) + tuple(news)  # kept until `wrote`: a failed write
            if not status.under_way(new):                                # hands them to the next try
                return Plan(patch=patch, news=kept)
            until = held.until if held is not None else now + self._first_interval(key[0], now)
            if until > now:
                self._held[key] = _Held(uid, new, until, kept)
                return Plan(wait=until - now)
            return Plan(patch=patch, news=kept)
        last = self._written_at.get(key)
        left = 0.0 if last is None else last + self.interval - now
        if left > 0 and status.progress_only(old, patch):
            return Plan(wait=left, news=tuple(news))
        return Plan(patch=patch, news=tuple(news))

    def patch_for(self, key: Key, old: Obj, new: Mapping[str, Any]) -> dict[str, Any] | None:
        """The merge patch that makes the API server's status `new`: against `old`, or, while the first status
        is held (the API server has none), the held status and `new` together."""
        held = self._held.get(key)
        return status.status_patch({}, {**old, **new}) if held is not None else status.status_patch(old, new)

    def wrote(self, key: Key) -> None:
        """A status write for this ModelApp was answered: nothing is held any more."""
        self._written_at[key] = self._clock()
        self._held.pop(key, None)

    def news(self, key: Key) -> tuple[Any, ...]:
        """The news of the held status (none when nothing is held): for a write `plan` did not plan, which
        carries it (`patch_for`), to announce once written. Read before the write: the event loop may `forget`
        the key meanwhile."""
        held = self._held.get(key)
        return held.news if held is not None else ()

    def holding(self, key: Key) -> bool:
        return key in self._held

    def forget(self, key: Key) -> None:
        """The ModelApp is gone or moved to another shard."""
        self._written_at.pop(key, None)
        self._held.pop(key, None)

    def _first_interval(self, namespace: str, now: float) -> float:
        """How long a first status held now may wait: longer when the namespace is in a burst."""
        with self._lock:
            if now - self._swept >= self.burst_window:  # at most once a window: what is older tells nothing
                self._swept = now
                for stale in [ns for ns, times in self._firsts.items() if times[-1] <= now - self.burst_window]:
                    del self._firsts[stale]
            firsts = self._firsts.setdefault(namespace, deque())
            while firsts and firsts[0] <= now - self.burst_window:
                firsts.popleft()
            burst = len(firsts) >= self.burst_firsts
            firsts.append(now)
        return self.burst_interval if burst else self.interval


__all__ = ["BURST_FIRSTS", "BURST_WINDOW_SECONDS", "FIRST_STATUS_BURST_SECONDS", "STATUS_PROGRESS_SECONDS", "Plan",
           "StatusPacer"]
