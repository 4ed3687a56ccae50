"""Detached processes with pid files: start, check, stop.

A component is started in its own session (so it outlives `modelapp-cluster up` and a terminal's
Ctrl-C), with stdout and stderr in its log file and its pid in a pid file. A pid counts as ours
only while `/proc/<pid>/cmdline` still names the same binary (pids get reused) and the process is
not a zombie (a parent that started it and has not reaped it yet, e.g. a pytest session).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

from modelapp_devcluster.errors import ClusterError


def start(argv: list[str], *, log: Path, pid_file: Path, env: dict[str, str]) -> int:
    """Start `argv` detached; returns its pid (also written to `pid_file`)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                start_new_session=True, close_fds=True)
    pid_file.write_text(f"{proc.pid}\n")
    return proc.pid


def read_pid(pid_file: Path) -> int | None:
    try:
        return int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return None


def _reap(pid: int) -> None:
    """Collect the exit status if `pid` is our own child, so it does not linger as a zombie."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def is_running(pid: int | None, binary: str) -> bool:
    """True when `pid` is alive, not a zombie, and runs `binary` (compared by file name)."""
    if pid is None or pid <= 0:
        return False
    _reap(pid)
    proc = Path(f"/proc/{pid}")
    try:
        argv0 = (proc / "cmdline").read_bytes().split(b"\0", 1)[0].decode(errors="replace")
        state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z" and Path(argv0).name == Path(binary).name


def rss_kib(pid: int) -> int:
    """Resident memory of `pid` in KiB (0 when it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def stop(pid: int, binary: str, *, timeout: float = 20.0) -> None:
    """SIGTERM, wait up to `timeout`, then SIGKILL. A process that is already gone is fine."""
    if not is_running(pid, binary):
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not is_running(pid, binary):
            return
        time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if not is_running(pid, binary):
            return
        time.sleep(0.1)
    raise ClusterError(f"{binary} (pid {pid}) did not stop after SIGKILL")


def log_tail(log: Path, lines: int = 3) -> str:
    """The last lines of a component's log, joined on one line for an error message."""
    try:
        text = log.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "(no log)"
    return " | ".join(line.strip()[:300] for line in text[-lines:])
