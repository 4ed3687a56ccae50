"""Readiness of the whole server, not of one worker: every gunicorn worker must be able to serve.

Why: each gunicorn worker listens on the same port (its own socket, `SO_REUSEPORT`) and the kernel
picks one per connection, so a request lands on any worker. If `/v2/health/ready` answered for the
worker that happened to receive the probe, the pod would be marked ready as soon as ONE worker had
loaded the model, and requests reaching the others would get 503 until they caught up (0.2-0.4 s
measured with 2 workers; longer for big models).

The contract, with the folder the server owns (`MODELAPP_READY_DIR`, made fresh by `serve` before
the workers fork, removed when it stops):

- a worker that has loaded its model writes a marker `<pid>` holding the master's pid (atomically:
  written aside, then renamed);
- the master removes a worker's marker when it reaps that worker (gunicorn's `child_exit`), so a
  worker restarted after a crash or a timeout is not counted until the new process has loaded;
- the server is ready when the number of markers naming a *live worker of this master* reaches the
  configured number of workers (`MODELAPP_READY_WORKERS`). A marker left behind by a process that
  died without being reaped, or whose pid now belongs to another process, does not count.

Without that folder (the Flask test client, a single embedded app) readiness is this process's own.
The counting is a pure function (`count_ready`); the folder and /proc reads are the only I/O here.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

READY_DIR_ENV = "MODELAPP_READY_DIR"
READY_WORKERS_ENV = "MODELAPP_READY_WORKERS"


def count_ready(markers: Iterable[tuple[int, int]], *, master: int, is_worker: Callable[[int, int], bool]) -> int:
    """How many markers `(worker pid, master pid)` name a live worker of `master` (pure but for `is_worker`).

    Duplicates count once; a marker from another master (a leftover of an earlier server) never counts.
    """
    live = {pid for pid, owner in markers if owner == master and is_worker(pid, master)}
    return len(live)


def parse_marker(name: str, content: str) -> tuple[int, int] | None:
    """A marker file's `(worker pid, master pid)`, or None for anything else in the folder (temp files)."""
    if not name.isdigit() or not content.strip().isdigit():
        return None
    return int(name), int(content.strip())


def parent_pid(pid: int) -> int | None:
    """The parent of `pid` from /proc (Linux), or None when the process is gone or /proc is absent."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses; the fields after its last ")" do not.
    fields = stat.rpartition(")")[2].split()
    return int(fields[1]) if len(fields) > 1 and fields[1].isdigit() else None


def is_worker_of(pid: int, master: int) -> bool:
    """True when `pid` is alive and a child of `master` (a recycled pid belongs to someone else)."""
    if Path("/proc/self/stat").exists():
        return parent_pid(pid) == master
    try:  # no /proc: liveness is the best we can check
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass(frozen=True, slots=True)
class WorkerReadiness:
    """The markers folder of one server and the number of workers it runs."""

    folder: Path
    workers: int

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> WorkerReadiness | None:
        """The server's readiness folder when running under `serve`, else None (single-process readiness)."""
        folder, workers = env.get(READY_DIR_ENV), env.get(READY_WORKERS_ENV, "")
        if not folder or not workers.isdigit() or int(workers) <= 0:
            return None
        return cls(Path(folder), int(workers))

    def mark_ready(self, pid: int, master: int) -> None:
        """Called by a worker once its model is loaded: write its marker atomically."""
        aside = self.folder / f".{pid}.tmp"
        aside.write_text(str(master))
        os.replace(aside, self.folder / str(pid))

    def clear(self, pid: int) -> None:
        """Called by the master when it reaps worker `pid`: that worker no longer counts."""
        (self.folder / str(pid)).unlink(missing_ok=True)

    def markers(self) -> list[tuple[int, int]]:
        found = []
        for path in self.folder.iterdir():
            try:
                parsed = parse_marker(path.name, path.read_text())
            except OSError:  # removed between the listing and the read: a worker just exited
                continue
            if parsed is not None:
                found.append(parsed)
        return found

    def all_ready(self, master: int) -> bool:
        """True when every configured worker of `master` has loaded the model and is alive."""
        try:
            markers = self.markers()
        except OSError:
            return False
        return count_ready(markers, master=master, is_worker=is_worker_of) >= self.workers
