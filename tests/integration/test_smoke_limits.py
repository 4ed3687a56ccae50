"""The smoke test reads a tenant's pod as hostile input (issue 10): bounded size, bounded time.

Design notes: the pod's server is the tenant's own code, so a hand-written server on 127.0.0.1 that
misbehaves is exactly what a hostile app image can run: an endless answer, a trickle of one byte at a time,
a body larger than any golden answer, and one that never answers. Each must end in a failed verdict within
the smoke test's budget, never an exception, a hang or unbounded memory.
"""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterator

import pytest

from modelapp_operator import smoke
from modelapp_operator.spec import SmokeTest

pytestmark = pytest.mark.integration

TEST = SmokeTest.model_validate({"inputs": [{"shape": [1, 1], "data": [1.0]}], "expected": [{"data": [0]}],
                                 "timeoutSeconds": 2})  # fmt: skip


class Hostile(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:
        return

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        mode = self.server.mode  # type: ignore[attr-defined]
        if mode == "silent":
            time.sleep(30)
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        if mode == "huge":
            self.send_header("Content-Length", str(64 * 1024 * 1024))
            self.end_headers()
            chunk = b" " * 65536
            for _ in range(1024):
                self.wfile.write(chunk)
            return
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        deadline = time.monotonic() + 30
        piece = b"1\r\n \r\n" if mode == "trickle" else b"10000\r\n" + b" " * 65536 + b"\r\n"
        while time.monotonic() < deadline:  # endless or trickling, bounded here so the server ends too
            try:
                self.wfile.write(piece)
                self.wfile.flush()
            except OSError:
                return
            if mode == "trickle":
                time.sleep(0.2)


@pytest.fixture
def hostile() -> Iterator[http.server.ThreadingHTTPServer]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hostile)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(("mode", "why"), [
    ("endless", "larger than"), ("trickle", "did not end within"), ("huge", "larger than"), ("silent", "timed out"),
])  # fmt: skip
def test_a_hostile_pod_gets_a_failed_verdict_within_the_budget(hostile: http.server.ThreadingHTTPServer,
                                                               mode: str, why: str) -> None:  # fmt: skip
    hostile.mode = mode  # type: ignore[attr-defined]
    url = f"http://127.0.0.1:{hostile.server_address[1]}"
    begun = time.monotonic()
    verdict = smoke.run(TEST, "app", smoke.http_transport(url), deadline=time.monotonic() + 8)
    took = time.monotonic() - begun
    assert not verdict.passed and why in verdict.message.lower(), verdict.message
    assert took < 12, f"{mode}: {took:.1f}s"
