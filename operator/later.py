"""Work to run after a delay, at most one pending per key: one thread and a heap, not a thread per wait.

Why: a status write that only counts progress is put off for a moment (engine.py, `STATUS_PROGRESS_SECONDS`),
so in a burst of 1,000 creates up to 1,000 such waits are pending at once. A `threading.Timer` each would be
1,000 threads; here they are heap entries, and what is due is handed to `submit` (the engine's child pool),
so a slow pass never delays another key's work. Pure thread coordination, no I/O.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections.abc import Callable, Hashable
from typing import Any

Submit = Callable[[Callable[[], None]], Any]


class Later:
    """`call(key, delay, fn)`: `fn` is submitted once `delay` seconds have passed, unless one is pending for `key`
    already (the earlier one stays: it will see what the later one would have seen)."""

    def __init__(self, submit: Submit, *, name: str = "modelapp-later") -> None:
        self._submit = submit
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, Hashable, Callable[[], None]]] = []
        self._pending: set[Hashable] = set()
        self._order = itertools.count()  # ties in time keep the order of the calls; keys are never compared
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def call(self, key: Hashable, delay: float, fn: Callable[[], None]) -> bool:
        """True when scheduled; False when `key` already has one pending."""
        with self._cond:
            if key in self._pending:
                return False
            self._pending.add(key)
            heapq.heappush(self._heap, (time.monotonic() + max(0.0, delay), next(self._order), key, fn))
            self._cond.notify()
            return True

    def pending(self, key: Hashable) -> bool:
        with self._cond:
            return key in self._pending

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._heap or self._heap[0][0] > time.monotonic():
                    self._cond.wait(self._heap[0][0] - time.monotonic() if self._heap else None)
                _, _, key, fn = heapq.heappop(self._heap)
                self._pending.discard(key)  # from here a new call for `key` schedules again
            self._submit(fn)


__all__ = ["Later"]
