"""Work to run after a delay, at most one pending per key: one thread and a heap, not a thread per wait.

Why: the engine asks for "a pass of this ModelApp in a while" for several reasons (a status write that only
counts progress or a first status held, `pacing.py`; a token Secret or TLS Secret to look for again; a smoke test that
waits its turn), and in a burst of 1,000 creates up to 1,000 such waits are pending at once. A
`threading.Timer` each would be 1,000 threads; here they are heap entries, and what is due is handed to
`submit` with its key (the engine's child pool, which serves a namespace at a time: fairness.py), so a slow pass
never delays another key's work. One pending per key, at the earliest time asked: a pass serves every reason at
once, and a reason still unmet asks again in it.
Pure thread coordination, no I/O.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections.abc import Callable, Hashable
from typing import Any

#: Hands due work on: (its key, the work).
Submit = Callable[[Hashable, Callable[[], None]], Any]


class Later:
    """`call(key, delay, fn)`: `fn` is submitted once `delay` seconds have passed. When one is pending for `key`
    already, only the earlier of the two times is kept (with that call's `fn`)."""

    def __init__(self, submit: Submit, *, name: str = "modelapp-later") -> None:
        self._submit = submit
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, Hashable, Callable[[], None]]] = []
        self._due: dict[Hashable, float] = {}  # key -> when its pending call is due
        self._order = itertools.count()  # ties in time keep the order of the calls; keys are never compared
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def call(self, key: Hashable, delay: float, fn: Callable[[], None]) -> bool:
        """True when scheduled (or moved earlier); False when `key` already has one pending at or before then."""
        due = time.monotonic() + max(0.0, delay)
        with self._cond:
            if key in self._due and self._due[key] <= due:
                return False
            self._due[key] = due  # an entry already in the heap for `key` is now stale and skipped when popped
            heapq.heappush(self._heap, (due, next(self._order), key, fn))
            self._cond.notify()
            return True

    def pending(self, key: Hashable) -> bool:
        with self._cond:
            return key in self._due

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._heap or self._heap[0][0] > time.monotonic():
                    self._cond.wait(self._heap[0][0] - time.monotonic() if self._heap else None)
                due, _, key, fn = heapq.heappop(self._heap)
                if self._due.get(key) != due:
                    continue  # moved earlier by a later call: that entry ran or will run
                del self._due[key]  # from here a new call for `key` schedules again
            try:
                self._submit(key, fn)
            except RuntimeError:  # the pool is shut down: the operator is stopping
                return


__all__ = ["Later"]
