"""Loaded by the operator's Python when `python -m benchmarks.operator --trace-memory DIR` starts it (this folder
first on its PYTHONPATH, PYTHONTRACEMALLOC set): on SIGUSR1 it writes what tracemalloc counts as allocated now,
and what grew since the first signal, by the allocating line and by its call stack, to DIR/PID-N.txt.

A diagnostic, not a measurement: tracemalloc slows every allocation and adds its own memory (the run's RSS and
times are not the operator's). The first signal is sent before the burst, the next ones at its end and after the
idle phase; the growth between them is what the fleet keeps, by where it was allocated.
"""

from __future__ import annotations

import os
import signal
import tracemalloc
from pathlib import Path
from types import FrameType

_FIRST: list[tracemalloc.Snapshot] = []
_DIR = Path(os.environ.get("MODELAPP_TRACE_DIR", "."))
_FILTERS = [tracemalloc.Filter(False, tracemalloc.__file__), tracemalloc.Filter(False, "<frozen importlib._bootstrap>")]


def _kib(size: int) -> str:
    return f"{size / 1024:,.1f} KiB"


def _write(signum: int, frame: FrameType | None) -> None:
    snapshot = tracemalloc.take_snapshot().filter_traces(_FILTERS)
    total = sum(s.size for s in snapshot.statistics("filename"))
    lines = [f"traced now: {_kib(total)} (process {os.getpid()}, signal {len(_FIRST)})", "", "## by line, now"]
    lines += [f"{_kib(s.size):>14} {s.count:>9,} {s.traceback[0]}" for s in snapshot.statistics("lineno")[:40]]
    if _FIRST:
        grown = snapshot.compare_to(_FIRST[0], "traceback")
        lines += ["", "## grown since the first signal, by call stack (innermost last)"]
        for diff in grown[:25]:
            lines.append(f"{_kib(diff.size_diff):>14} {diff.count_diff:>+9,} blocks")
            lines += [f"        {frame}" for frame in diff.traceback.format(most_recent_first=False)[-16:]]
    else:
        _FIRST.append(snapshot)
    (_DIR / f"{os.getpid()}-{len(list(_DIR.glob(f'{os.getpid()}-*.txt')))}.txt").write_text("\n".join(lines) + "\n")


if tracemalloc.is_tracing():
    signal.signal(signal.SIGUSR1, _write)
