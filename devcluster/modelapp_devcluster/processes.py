"""Detached processes with pid files: start, check, stop, and say how one ended.

A component is started in its own session (so it outlives `modelapp-cluster up` and a terminal's
Ctrl-C), with stdout and stderr in its log file and, in its pid file, its pid and its start time
(field 22 of `/proc/<pid>/stat`, fixed at fork and unchanged by exec).

Why the start time and not the command line: right after `Popen` returns, the child has closed
its close-on-exec pipe but the kernel may not have set up the new program's arguments yet, so
`/proc/<pid>/cmdline` reads empty for a moment. Comparing it with the binary's name then says
"not running" for a process that is starting: that was the false "kube-scheduler exited:" (with
an empty log) of issue 11. (pid, start time) names one process for good, across exec and against
pid reuse. Processes this Python process started are also asked directly (`Popen.poll`), which
gives their exit code; a pid file without a start time (an older run's) falls back to the name.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from modelapp_devcluster.errors import ClusterError

_children: dict[int, tuple[subprocess.Popen[bytes], int | None]] = {}
"""The processes started from here, by pid, with their start time: kept so that their exit status
is ours to read (an unreferenced Popen lands in subprocess's own list, whose next Popen() reaps it
and drops the code)."""


@dataclass(frozen=True)
class PidFile:
    """What a pid file holds: the pid and, when written by this version, the process's start time."""

    pid: int
    started: int | None = None

    def render(self) -> str:
        return f"{self.pid}\n" if self.started is None else f"{self.pid} {self.started}\n"

    @classmethod
    def parse(cls, text: str) -> PidFile | None:
        words = text.split()
        try:
            if len(words) == 1:
                return cls(int(words[0]))
            if len(words) == 2:
                return cls(int(words[0]), int(words[1]))
        except ValueError:
            return None
        return None


def start(argv: list[str], *, log: Path, pid_file: Path, env: dict[str, str]) -> int:
    """Start `argv` detached; returns its pid (also written, with its start time, to `pid_file`)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as out:
        try:
            proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                    start_new_session=True, close_fds=True)
        except OSError as err:  # exec failed: missing, not executable, wrong architecture
            raise ClusterError(f"cannot start {argv[0]}: {err.strerror or err}; run `modelapp-cluster build` "
                               "to build it again") from err
    started = start_time(proc.pid)
    _children[proc.pid] = (proc, started)
    tmp = pid_file.with_suffix(".tmp")
    tmp.write_text(PidFile(proc.pid, started).render())
    tmp.replace(pid_file)  # readers never see a half-written file
    return proc.pid


def read_pid(pid_file: Path) -> int | None:
    record = read(pid_file)
    return record.pid if record else None


def read(pid_file: Path) -> PidFile | None:
    try:
        return PidFile.parse(pid_file.read_text())
    except OSError:
        return None


def start_time(pid: int) -> int | None:
    """Field 22 of /proc/<pid>/stat (clock ticks after boot), or None when the process is gone."""
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def _state(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def exit_code(pid: int) -> int | None:
    """The exit code of a process started from here that has ended (negative: the signal), else None."""
    child = _children.get(pid)
    return None if child is None else child[0].poll()


def is_running(pid: int | None, binary: str, *, started: int | None = None) -> bool:
    """True when `pid` is alive, not a zombie, and is the process that was started.

    Identity, strongest first: our own child (its exit status decides), the start time from the pid
    file, and for an old pid file without one the program's file name in /proc/<pid>/cmdline.
    """
    if pid is None or pid <= 0:
        return False
    child = _children.get(pid)
    if child is not None and (started is None or started == child[1]):
        return child[0].poll() is None
    state = _state(pid)
    if state is None or state == "Z":
        return False
    if started is not None:
        return start_time(pid) == started
    try:
        argv0 = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0", 1)[0].decode(errors="replace")
    except OSError:
        return False
    return Path(argv0).name == Path(binary).name


def is_running_from(pid_file: Path, binary: str) -> bool:
    record = read(pid_file)
    return record is not None and is_running(record.pid, binary, started=record.started)


def rss_kib(pid: int) -> int:
    """Resident memory of `pid` in KiB (0 when it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def stop(pid: int, binary: str, *, started: int | None = None, timeout: float = 20.0) -> None:
    """SIGTERM, wait up to `timeout`, then SIGKILL. A process that is already gone is fine."""
    if not is_running(pid, binary, started=started):
        return
    for signo, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signo)
        deadline, delay = time.monotonic() + wait, 0.01
        while time.monotonic() < deadline:
            if not is_running(pid, binary, started=started):
                return
            time.sleep(delay)
            delay = min(delay * 2, 0.2)
    raise ClusterError(f"{binary} (pid {pid}) did not stop after SIGKILL; is it stuck in the kernel (`cat "
                       f"/proc/{pid}/stack`)? Stop it by hand, then run the command again")


def describe_exit(code: int | None) -> str:
    """How a process ended, for a message: `exit code 1`, `killed by SIGKILL`, or unknown."""
    if code is None:
        return "exit code unknown (not started by this command)"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def log_tail(log: Path, lines: int = 5) -> str:
    """The last non-empty lines of a component's log, joined on one line for an error message."""
    try:
        text = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return f"no log at {log}"
    if not text:
        return f"its log {log} is empty"
    return f"last lines of {log}: " + " | ".join(line[:300] for line in text[-lines:])
