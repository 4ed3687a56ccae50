"""Whether an address can be listened on, and who holds it when not: checked before anything starts.

A component that finds its port taken exits with "bind: address already in use" somewhere in its
log; checking first turns that into one line naming the port, what it is for and the process that
holds it (from /proc/net/tcp and the holders' open sockets, visible for this user's processes or
for root). `listening_inodes` is the pure part.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
from pathlib import Path

NOT_HERE = "not an address of this machine"


def bind_problem(host: str, port: int) -> str | None:
    """None when `host:port` can be bound now, else why not: "in use", NOT_HERE, or the OS's words.

    SO_REUSEADDR, as every server we start sets it (Go's net.Listen does): without it, the connections a
    component just stopped left in TIME_WAIT make a free port look taken for a minute after `down`."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as err:
            if err.errno == errno.EADDRNOTAVAIL:
                return NOT_HERE
            return "in use" if err.errno == errno.EADDRINUSE else (err.strerror or str(err))
    return None


def listening_inodes(proc_net_tcp: str, port: int) -> set[int]:
    """Socket inodes listening on `port` in the text of /proc/net/tcp or tcp6."""
    inodes = set()
    for line in proc_net_tcp.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 10 or fields[3] != "0A":  # 0A: TCP_LISTEN
            continue
        if int(fields[1].rsplit(":", 1)[1], 16) == port:
            inodes.add(int(fields[9]))
    return inodes


def port_owner(port: int) -> str | None:
    """`pid N (name)` of the process listening on `port`, when this user may see it; else None."""
    inodes: set[int] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            inodes |= listening_inodes(Path(table).read_text(), port)
    if not inodes:
        return None
    wanted = {f"socket:[{inode}]" for inode in inodes}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            for fd in (proc / "fd").iterdir():
                with contextlib.suppress(OSError):
                    if os.readlink(fd) in wanted:
                        return f"pid {proc.name} ({(proc / 'comm').read_text().strip()})"
    return None


def listen_problem(host: str, port: int) -> str | None:
    """`bind_problem` with the holder named: "in use by pid 42 (nginx)"."""
    problem = bind_problem(host, port)
    if problem == "in use":
        owner = port_owner(port)
        return f"in use by {owner}" if owner else "in use"
    return problem
