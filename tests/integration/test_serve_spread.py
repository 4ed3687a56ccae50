"""`serve` spreads connections over its workers, and refuses a port another process holds.

Design notes: each gunicorn worker binds its own sockets (`SO_REUSEPORT`, issue 13), so the kernel
hashes new connections over the workers; with one shared socket the worker that woke first took
about 15 of 16 (benchmarks/README.md). The mechanism is checked directly (a listening socket in each
worker, none in the master: before, one socket sat in all three), and its effect: the split is read
from /proc, as the benchmark does: the established server-side sockets on the port, and which worker
(a child of `serve`) holds each. With 32 connections and 2 workers, a worker holding fewer than 4
has a chance of about 1 in 10^6 under an even hash, and was the common case before. Because the
workers bind, not the master, a port held by another process must stop `serve` at once with a reason
(exit 2), not leave workers failing to bind.
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


def socket_inodes(port: int, state: str) -> set[str]:
    """Sockets on local `port` in a TCP state (01 established, 0A listening), as /proc/<pid>/fd names them."""
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[3] == state and int(fields[1].rsplit(":", 1)[1], 16) == port:
            inodes.add(f"socket:[{fields[9]}]")
    return inodes


def held_by_worker(server: ServeProcess, wanted: set[str]) -> dict[int, set[str]]:
    held = {}
    for pid in children(server.process.pid):
        held[pid] = {link for fd in Path(f"/proc/{pid}/fd").iterdir() if (link := os.readlink(fd)) in wanted}
    return held


def connections_per_worker(server: ServeProcess) -> list[int]:
    port = int(server.url.rsplit(":", 1)[1])
    held = held_by_worker(server, socket_inodes(port, "01"))
    return sorted((len(sockets) for sockets in held.values()), reverse=True)


def test_each_worker_listens_on_a_socket_of_its_own(serve_process: Start, onnx_model_dir: ModelDir) -> None:
    """The mechanism itself: with one shared socket (before), one listening socket sat in every
    worker and the master; now each worker holds its own and the master none."""
    server = serve_process(onnx_model_dir, "iris", ["--workers", "2"])
    server.wait_ready()
    listening = socket_inodes(int(server.url.rsplit(":", 1)[1]), "0A")
    held = held_by_worker(server, listening)
    assert len(listening) == 2, listening
    assert len(held) == 2 and all(len(sockets) == 1 for sockets in held.values()), held
    assert set.union(*held.values()) == listening
    master = {os.readlink(fd) for fd in Path(f"/proc/{server.process.pid}/fd").iterdir()}
    assert not master & listening


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
        done = subprocess.run(
            command, check=False, capture_output=True, text=True, timeout=60, cwd=onnx_model_dir.path.parent
        )
    assert done.returncode == 2, done.stderr
    assert f"127.0.0.1:{port}" in done.stderr
    assert "another process holds that port" in done.stderr
    assert time.monotonic() - started < 30


class CountingSocket(socket.socket):
    """A real socket that also records each `sendall`, to count the writes a response takes."""

    writes: list[bytes]

    def sendall(self, data: bytes, flags: int = 0) -> None:  # type: ignore[override]
        self.writes.append(bytes(data))
        super().sendall(data, flags)


def respond(request: bytes, status: str, headers: list[tuple[str, str]], body: list[bytes]) -> tuple[int, bytes]:
    """One request through gunicorn's parser and `OneWriteResponse` on a real socket pair: (writes, bytes read)."""
    from gunicorn import http
    from gunicorn.config import Config

    from modelapp_serving.worker import OneWriteResponse

    server_end, client_end = socket.socketpair()
    server = CountingSocket(fileno=server_end.detach())
    server.writes = []
    with server, client_end:
        client_end.sendall(request)
        cfg = Config()
        req = next(http.get_parser(cfg, server, ("127.0.0.1", 1)))
        response = OneWriteResponse(req, server, cfg)
        response.start_response(status, headers)
        for item in body:
            response.write(item)
        response.close()
        server.shutdown(socket.SHUT_WR)
        received = b""
        while chunk := client_end.recv(65536):
            received += chunk
    return len(server.writes), received


def test_a_response_goes_out_in_one_write() -> None:
    writes, received = respond(
        b"POST /score HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
        "200 OK",
        [("Content-Type", "application/json"), ("Content-Length", "13")],
        [b'{"output":[]}'],
    )
    assert writes == 1
    assert received.startswith(b"HTTP/1.1 200 OK\r\n")
    assert received.endswith(b'\r\n\r\n{"output":[]}')
    assert b"Content-Length: 13\r\n" in received


def test_a_head_answer_and_a_chunked_body_are_whole() -> None:
    writes, received = respond(
        b"HEAD /version HTTP/1.1\r\nHost: x\r\n\r\n", "200 OK", [("Content-Length", "2")], [b"{}"]
    )
    assert writes == 1  # the head alone, sent at close
    assert received.startswith(b"HTTP/1.1 200 OK\r\n") and received.endswith(b"\r\n\r\n")
    writes, received = respond(b"GET /x HTTP/1.1\r\nHost: x\r\n\r\n", "200 OK", [], [b"ab", b"cd"])
    assert received.endswith(b"\r\n\r\n2\r\nab\r\n2\r\ncd\r\n0\r\n\r\n"), received
    assert writes >= 3  # chunked: the head first, then each chunk and the end (no single write possible)
