"""`serve` spreads connections over its workers, and refuses a port another process holds.

Design notes: each gunicorn worker binds its own sockets (`SO_REUSEPORT`, issue 13), so the kernel
hashes new connections over the workers; with one shared socket the worker that woke first took
about 15 of 16 (benchmarks/README.md). The split is read from /proc, as the benchmark does: the
established server-side sockets on the port, and which worker (a child of `serve`) holds each. With
32 connections and 2 workers, a worker holding fewer than 4 has a chance of about 1 in 10^6 under an
even hash, and was the common case before. Because the workers bind, not the master, a port held by
another process must stop `serve` at once with a reason (exit 2), not leave workers failing to bind.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.fixtures.models import ModelDir, ServeProcess

pytestmark = pytest.mark.integration

Start = Callable[..., ServeProcess]
REQUEST = b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n"


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat[stat.rfind(")") + 2 :].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def established_inodes(port: int) -> set[str]:
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[3] == "01" and int(fields[1].rsplit(":", 1)[1], 16) == port:
            inodes.add(f"socket:[{fields[9]}]")
    return inodes


def connections_per_worker(server: ServeProcess) -> list[int]:
    port = int(server.url.rsplit(":", 1)[1])
    wanted = established_inodes(port)
    counts = []
    for pid in children(server.process.pid):
        fds = Path(f"/proc/{pid}/fd")
        counts.append(sum(1 for fd in fds.iterdir() if os.readlink(fd) in wanted))
    return sorted(counts, reverse=True)


def test_connections_are_spread_over_the_workers(serve_process: Start, onnx_model_dir: ModelDir) -> None:
    server = serve_process(onnx_model_dir, "iris", ["--workers", "2"])
    server.wait_ready()
    port = int(server.url.rsplit(":", 1)[1])
    clients = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(32)]
    try:
        for client in clients:  # one answered request each: every connection has been accepted
            client.sendall(REQUEST)
            assert client.recv(4096).startswith(b"HTTP/1.1 200 ")
        counts = connections_per_worker(server)
        assert sum(counts) == 32, counts
        assert len([count for count in counts if count]) == 2, counts
        assert min(count for count in counts if count) >= 4, f"connections per worker: {counts}"
    finally:
        for client in clients:
            client.close()


def test_a_port_another_process_holds_stops_serve_with_the_reason(onnx_model_dir: ModelDir) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        command = [sys.executable, "-m", "modelapp_serving.cli", "serve", "--model-dir", str(onnx_model_dir.path)]
        command += ["--name", "iris", "--host", "127.0.0.1", "--port", str(port), "--metrics-port", "0"]
        started = time.monotonic()
        done = subprocess.run(command, capture_output=True, text=True, timeout=60, cwd=onnx_model_dir.path.parent)
    assert done.returncode == 2, done.stderr
    assert f"127.0.0.1:{port}" in done.stderr
    assert "another process holds that port" in done.stderr
    assert time.monotonic() - started < 30
