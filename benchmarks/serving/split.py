"""How a server's established connections are spread over its processes, read from /proc (Linux).

Why: a server with two workers only uses both cores when both hold connections; wrk opens its
connections once and keeps them (keep-alive), so who accepted them decides the round. This counts,
for one listening port, the established server-side sockets held by each process of the server's
session (the benchmark starts every server in a session of its own, so its workers, uvicorn's or
MLServer's children included, share that session id). No `ss` or psutil needed: `/proc/net/tcp{,6}`
maps sockets to ports and `/proc/<pid>/fd` maps processes to sockets.
"""

from __future__ import annotations

import os
from pathlib import Path

PROC = Path("/proc")
ESTABLISHED = "01"


def established_inodes(port: int, *, proc: Path = PROC) -> set[str]:
    """Socket inodes of established TCP connections whose local port is `port` (the server's side)."""
    inodes: set[str] = set()
    for table in ("tcp", "tcp6"):
        path = proc / "net" / table
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            fields = line.split()
            if len(fields) < 10:
                continue
            local, state, inode = fields[1], fields[3], fields[9]
            if state == ESTABLISHED and int(local.rsplit(":", 1)[1], 16) == port:
                inodes.add(inode)
    return inodes


def session_pids(session: int, *, proc: Path = PROC) -> list[int]:
    """Processes whose session id is `session` (field 6 of /proc/<pid>/stat)."""
    found = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name (field 2) is in parentheses and may hold spaces: split after it.
        fields = stat[stat.rfind(")") + 2 :].split()
        if len(fields) > 3 and int(fields[3]) == session:
            found.append(int(entry.name))
    return sorted(found)


def connection_split(port: int, session: int, *, proc: Path = PROC) -> dict[int, int]:
    """Per process of the session: how many established connections on `port` it holds (0s kept)."""
    wanted = {f"socket:[{inode}]" for inode in established_inodes(port, proc=proc)}
    split: dict[int, int] = {}
    for pid in session_pids(session, proc=proc):
        count = 0
        try:
            for fd in os.scandir(proc / str(pid) / "fd"):
                try:
                    if os.readlink(fd.path) in wanted:
                        count += 1
                except OSError:
                    continue
        except OSError:
            continue
        split[pid] = count
    return split


def worker_counts(split: dict[int, int], workers: int) -> list[int]:
    """The `workers` largest per-process counts, largest first (a master or helper holds none, so a
    worker left without connections shows as 0; MLServer's one HTTP front shows as `16/0`)."""
    counts = sorted(split.values(), reverse=True)[:workers]
    return counts + [0] * (workers - len(counts))


def session_threads(session: int, *, proc: Path = PROC) -> int:
    """Threads of all the session's processes: a server with more runnable threads gets a larger share
    of a contended machine's CPU, which the figures should show beside its requests/s."""
    total = 0
    for pid in session_pids(session, proc=proc):
        try:
            total += len(os.listdir(proc / str(pid) / "task"))
        except OSError:
            continue
    return total


def session_cpu_seconds(session: int, *, proc: Path = PROC) -> float:
    """CPU time (user + system) used so far by the session's live processes, in seconds.

    Why: on a shared, overloaded machine requests/s also measures how much CPU a server manages to
    get (more runnable threads, a larger share); requests per CPU second does not.
    """
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in session_pids(session, proc=proc):
        try:
            stat = (proc / str(pid) / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return total / ticks
