"""A tenant's app users against a real `serve`: malformed, oversized, slow and made-up requests.

Design notes: every test talks to a real `modelapp-serving serve` (gunicorn, 2 workers of 2 threads,
so a handful of connections is all it takes to hold every thread of the old gthread worker) over
raw sockets, because the attacks are below what an HTTP library lets a caller send: partial heads,
trickled bodies, chunked bodies, invented methods, non-ASCII digits in headers. Each attack is
checked for its answer (a 4xx with a JSON error, never a 5xx) and for what it must not cost: the
health endpoints stay answerable while it lasts, the metrics gain no series per invented method,
a worker's memory does not balloon. The timeouts are shortened by environment so the held-open
cases finish in seconds.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
import requests

from tests.fixtures.models import Iris, ModelDir, ServeProcess

pytestmark = pytest.mark.integration

Start = Callable[..., ServeProcess]
LIMIT = 4 << 20
ENV = {
    "MODELAPP_THREADS": "2",
    "MODELAPP_MAX_BODY_BYTES": str(LIMIT),
    "MODELAPP_HEADER_TIMEOUT": "4",
    "MODELAPP_READ_TIMEOUT": "4",
}
INFER = "/v2/models/iris/infer"


@pytest.fixture
def server(serve_process: Start, onnx_model_dir: ModelDir) -> Iterator[ServeProcess]:
    started = serve_process(onnx_model_dir, "iris", ["--workers", "2"], ENV)
    started.wait_ready()
    yield started
    assert started.process.poll() is None, started.log()


def address(server: ServeProcess) -> tuple[str, int]:
    host, port = server.url.removeprefix("http://").split(":")
    return host, int(port)


def exchange(server: ServeProcess, raw: bytes, *, timeout: float = 10.0) -> tuple[int, dict[str, str], bytes]:
    """Send `raw` on a fresh connection, read one response: status, headers (lower-case), body."""
    with socket.create_connection(address(server), timeout=timeout) as sock:
        sock.sendall(raw)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        length = int(headers.get("content-length", "0"))
        while len(body) < length:
            chunk = sock.recv(65536)
            if not chunk:
                break
            body += chunk
        return status, headers, body


def post(path: str, body: bytes, headers: dict[str, str] | None = None) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: test", f"Content-Length: {len(body)}", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    return "\r\n".join(lines).encode("latin-1") + b"\r\n\r\n" + body


def assert_client_error(answer: tuple[int, dict[str, str], bytes], status: int, words: str) -> None:
    code, headers, body = answer
    assert code == status, body
    assert headers["content-type"] == "application/json"
    assert words in json.loads(body)["error"]


def assert_healthy(server: ServeProcess, *, within: float = 2.0) -> None:
    """Liveness and readiness answer 200, each within `within` seconds, on fresh connections."""
    for path in ("/v2/health/live", "/v2/health/ready"):
        started = time.monotonic()
        reply = requests.get(f"{server.url}{path}", timeout=within, headers={"Connection": "close"})
        assert reply.status_code == 200, (path, reply.text)
        assert time.monotonic() - started < within


def test_malformed_binary_header_length_is_400(server: ServeProcess) -> None:
    header = {"Content-Type": "application/octet-stream"}
    for value in ("\u00b2", "-1", "1e3", " ", "0x10"):
        answer = exchange(server, post(INFER, b"{}", {**header, "Inference-Header-Content-Length": value}))
        assert_client_error(answer, 400, "Inference-Header-Content-Length")
    answer = exchange(server, post(INFER, b"{}", {**header, "Inference-Header-Content-Length": "9" * 40}))
    assert_client_error(answer, 400, "does not fit")


@pytest.mark.parametrize("shape", [[0, 10**30], [0, 2**63], [0, 2**62, 2**62], [2**40, 0, 2**40], [0] + [2**31] * 31])
def test_a_shape_with_a_zero_and_huge_dimensions_is_400(server: ServeProcess, shape: list[int]) -> None:
    tensor = {"name": "input", "datatype": "FP32", "shape": shape, "data": []}
    answer = exchange(server, post(INFER, json.dumps({"inputs": [tensor]}).encode()))
    assert_client_error(answer, 400, "shape")
    binary = {"name": "input", "datatype": "FP32", "shape": shape, "parameters": {"binary_data_size": 0}}
    header = json.dumps({"inputs": [binary]}).encode()
    extension = {"Inference-Header-Content-Length": str(len(header)), "Content-Type": "application/octet-stream"}
    assert_client_error(exchange(server, post(INFER, header, extension)), 400, "shape")


def chunked(body: bytes, piece: int = 4096) -> bytes:
    parts = [b"%x\r\n%s\r\n" % (len(body[i : i + piece]), body[i : i + piece]) for i in range(0, len(body), piece)]
    return b"".join(parts) + b"0\r\n\r\n"


def chunked_post(path: str, body: bytes) -> bytes:
    head = f"POST {path} HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    return head.encode() + chunked(body)


def test_a_chunked_body_is_counted_and_refused_past_the_limit(server: ServeProcess, iris: Iris) -> None:
    over = b'{"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}], "pad": "'
    over += b"x" * LIMIT + b'"}'
    assert_client_error(exchange(server, chunked_post(INFER, over)), 413, "size limit")
    assert_client_error(exchange(server, chunked_post("/score", over)), 413, "size limit")
    row = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 4], "data": iris.features[0].tolist()}]}
    status, _, body = exchange(server, chunked_post(INFER, json.dumps(row).encode()))
    assert status == 200, body
    assert json.loads(body)["outputs"][0]["data"] == iris.estimator.predict(iris.features[:1]).tolist()


def test_made_up_methods_share_one_metric_label(server: ServeProcess) -> None:
    methods = [f"X{i}METHOD" for i in range(30)]
    for method in methods:
        request = f"{method} {INFER} HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        assert_client_error(exchange(server, request.encode()), 405, "method not allowed")
        request = f"{method} /nothing/{method} HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        assert_client_error(exchange(server, request.encode()), 404, "no such endpoint")
    text = requests.get(f"{server.metrics_url}/metrics", timeout=5).text
    assert not [method for method in methods if method in text]
    series = [line for line in text.splitlines() if line.startswith("modelapp_requests_total{")]
    assert any('method="other"' in line and 'code="405"' in line for line in series), series
    assert sum(float(line.rsplit(" ", 1)[1]) for line in series if 'method="other"' in line) == 2 * len(methods)
    assert all('endpoint="/nothing' not in line for line in series)


def hold_open(stack: ExitStack, server: ServeProcess, first_bytes: bytes) -> socket.socket:
    sock = stack.enter_context(socket.create_connection(address(server), timeout=10))
    sock.sendall(first_bytes)
    return sock


def test_held_open_connections_do_not_stall_the_probes(server: ServeProcess, iris: Iris) -> None:
    """Slowloris: partial heads, and complete heads with a trickled body, many more than threads."""
    body = json.dumps({"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 4], "data": [1, 2, 3, 4]}]})
    with ExitStack() as stack:
        held = [hold_open(stack, server, b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\nX-Slow") for _ in range(40)]
        head = f"POST {INFER} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        held += [hold_open(stack, server, head + body[:10].encode()) for _ in range(40)]
        big = f"POST {INFER} HTTP/1.1\r\nHost: x\r\nContent-Length: {LIMIT}\r\n\r\n".encode()
        held += [hold_open(stack, server, big + b"[" * 1000) for _ in range(2)]
        # bodies too large for the gate: streamed by a thread, at most threads - 1 of them per worker
        held += [hold_open(stack, server, big + b"[" * 70_000) for _ in range(8)]
        time.sleep(0.5)
        for _ in range(3):
            for sock in held:
                sock.sendall(b"a")  # trickle: every connection stays active
            assert_healthy(server)
            row = {
                "inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 4], "data": iris.features[0].tolist()}]
            }
            assert requests.post(f"{server.url}{INFER}", json=row, timeout=5).status_code == 200
            time.sleep(0.5)
    assert_healthy(server)


def test_a_request_not_received_in_time_is_closed_or_answered_408(server: ServeProcess) -> None:
    with socket.create_connection(address(server), timeout=20) as sock:
        sock.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n")
        started = time.monotonic()
        assert sock.recv(1024) == b""  # the header timeout (4 s) closes it
        assert 3 < time.monotonic() - started < 15
    with socket.create_connection(address(server), timeout=20) as sock:
        sock.sendall(f"POST /score HTTP/1.1\r\nHost: x\r\nContent-Length: {LIMIT}\r\n\r\n".encode() + b"{" * 70000)
        started = time.monotonic()
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
        assert data.startswith(b"HTTP/1.1 408 "), data[:200]
        assert b"within" in data
        assert time.monotonic() - started < 15


def worker_rss_kib(server: ServeProcess) -> int:
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        if fields.get("PPid", "").strip() == str(server.process.pid):
            total = max(total, int(fields.get("VmHWM", "0 kB").split()[0]))
    return total


def test_many_tiny_json_containers_are_refused_before_parsing(server: ServeProcess) -> None:
    before = worker_rss_kib(server)
    for body in (b"[" + b"[]," * (LIMIT // 3 - 2) + b"[]]", b'{"inputs":[' + b"{}," * (LIMIT // 3 - 8) + b"{}]}"):
        assert len(body) <= LIMIT
        assert_client_error(exchange(server, post(INFER, body)), 400, "too many")
    score = b'{"input":[' + b"[]," * (LIMIT // 3 - 8) + b"[]]}"
    assert_client_error(exchange(server, post("/score", score)), 400, "too many")
    assert worker_rss_kib(server) - before < 50_000, "a worker's peak memory grew by more than 50 MB"
    assert_healthy(server)


def test_a_client_expecting_100_continue_gets_it_at_once(server: ServeProcess, iris: Iris) -> None:
    """curl sends `Expect: 100-continue` for bodies over 1 KiB and waits for the go-ahead."""
    row = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [150, 4], "data": iris.features.tolist()}]}
    body = json.dumps(row).encode()
    head = f"POST {INFER} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\nExpect: 100-continue\r\n"
    with socket.create_connection(address(server), timeout=10) as sock:
        sock.sendall(head.encode() + b"Connection: close\r\n\r\n")
        sock.settimeout(2)
        assert sock.recv(1024).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        sock.settimeout(10)
        sock.sendall(body)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    final = data[data.index(b"HTTP/1.1 2") :] if b"HTTP/1.1 2" in data else data
    assert final.startswith(b"HTTP/1.1 200 "), data[:300]
    reply = json.loads(final.partition(b"\r\n\r\n")[2])
    assert reply["outputs"][0]["data"] == iris.estimator.predict(iris.features).tolist()


def test_pipelined_requests_are_all_answered(server: ServeProcess) -> None:
    """Requests sent back to back on one connection: the gate starts each from the bytes read ahead."""
    request = b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n"
    with socket.create_connection(address(server), timeout=10) as sock:
        sock.sendall(request * 3 + request.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n"))
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    assert data.count(b"HTTP/1.1 200 OK") == 4, data
    assert data.count(b'{"live":true}') == 4
