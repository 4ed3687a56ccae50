"""Whose turn it is to converge a ModelApp: one pass at a time per ModelApp, in any thread.

Why: kopf runs a ModelApp's handlers one at a time, but child events (Deployment, Service, PDB) run in
threads of their own (engine.py), so two passes for the same ModelApp could otherwise interleave their
reads and writes. Pure thread coordination, no I/O.
"""

from __future__ import annotations

import threading

Key = tuple[str, str]


class Turns:
    """A ModelApp event (`wait=True`) waits for the running pass. A child event does not (a thread blocked
    on a busy ModelApp helps nobody, and a burst of creates would block every child thread): it asks the
    running pass to go once more (`more`), and that pass then reads what the event brought.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._running: set[Key] = set()
        self._again: set[Key] = set()

    def enter(self, key: Key, *, wait: bool) -> bool:
        """True: the caller has the turn. False: a pass is running and will go once more."""
        with self._cond:
            if key in self._running and not wait:
                self._again.add(key)
                return False
            while key in self._running:
                self._cond.wait()
            self._running.add(key)
            return True

    def more(self, key: Key) -> bool:
        """At the end of a pass: True (the turn is kept) when one more was asked for, else the turn ends."""
        with self._cond:
            if key in self._again:
                self._again.discard(key)
                return True
            self._running.discard(key)
            self._cond.notify_all()
            return False

    def leave(self, key: Key) -> None:
        """The pass failed: end the turn (a pending request stays for the next pass)."""
        with self._cond:
            self._running.discard(key)
            self._cond.notify_all()
