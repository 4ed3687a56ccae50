"""`/metrics` lives on its own port, which no Service exposes; the public port never answers it.

Design notes: each test runs the real `modelapp-serving serve` (gunicorn, the gated gthread worker)
on two free loopback ports, the public one and the metrics one, and talks to it with real clients.
What a client on the public port must not learn is checked from its side: `/metrics` there is the
same JSON 404 as a path no row has, whatever its method (no 405 telling the rule exists) or its
`Host` header (the listener is the connection's own port). The metrics port answers `/metrics` and
nothing else, and still sees every inference the public port served, from every worker.
"""

from __future__ import annotations

import socket
from collections.abc import Callable

import pytest
import requests

from tests.fixtures.models import Iris, ModelDir, ServeProcess

Start = Callable[..., ServeProcess]
ROW = {"name": "input", "datatype": "FP32", "shape": [1, 4], "data": [5.1, 3.5, 1.4, 0.2]}


@pytest.fixture
def server(serve_process: Start, onnx_model_dir: ModelDir) -> ServeProcess:
    started = serve_process(onnx_model_dir, "iris", ["--workers", "2"])
    started.wait_ready()
    return started


def _raw(url: str, request: bytes) -> tuple[int, bytes]:
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def test_metrics_port_serves_the_models_series_and_counts_inference(server: ServeProcess, iris: Iris) -> None:
    with requests.Session() as session:
        for _ in range(6):
            reply = session.post(f"{server.url}/v2/models/iris/infer", json={"inputs": [ROW]}, timeout=10)
            assert reply.status_code == 200, reply.text
    reply = requests.get(f"{server.metrics_url}/metrics", timeout=5)
    assert reply.status_code == 200
    assert reply.headers["Content-Type"].startswith("text/plain")
    text = reply.text
    infer = [
        line
        for line in text.splitlines()
        if line.startswith("modelapp_requests_total{") and 'endpoint="/v2/models/<name>/infer"' in line
    ]
    assert len(infer) == 1 and 'model="iris"' in infer[0] and 'version="7"' in infer[0], infer
    assert float(infer[0].rsplit(" ", 1)[1]) == 6.0
    count = next(line for line in text.splitlines() if line.startswith("modelapp_inference_duration_seconds_count{"))
    assert float(count.rsplit(" ", 1)[1]) == 6.0


def test_public_port_answers_metrics_as_an_unknown_path(server: ServeProcess) -> None:
    unknown = requests.get(f"{server.url}/no-such-path", timeout=5)
    assert unknown.status_code == 404
    for method in ("GET", "POST", "HEAD", "OPTIONS", "DELETE"):
        reply = requests.request(method, f"{server.url}/metrics", timeout=5)
        assert reply.status_code == 404, (method, reply.status_code, reply.text)
        if method != "HEAD":
            assert reply.headers["Content-Type"] == "application/json"
            assert reply.json() == unknown.json()
    assert "modelapp_" not in requests.get(f"{server.url}/metrics", timeout=5).text
    # The Host header names the metrics port: the listener is the connection's, not the client's word.
    metrics_port = server.metrics_url.rsplit(":", 1)[1]
    spoofed = f"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1:{metrics_port}\r\nConnection: close\r\n\r\n".encode()
    status, body = _raw(server.url, spoofed)
    assert status == 404 and b"modelapp_" not in body, body[:300]
    # Those probes are counted, under the bounded `unmatched` label, never as `/metrics` answered.
    text = requests.get(f"{server.metrics_url}/metrics", timeout=5).text
    probes = [
        line
        for line in text.splitlines()
        if line.startswith("modelapp_requests_total{") and 'code="404"' in line and 'endpoint="unmatched"' in line
    ]
    assert sum(float(line.rsplit(" ", 1)[1]) for line in probes) >= 7, probes


def test_metrics_port_answers_nothing_else(server: ServeProcess, iris: Iris) -> None:
    for path in ("/v2/health/live", "/v2/health/ready", "/version", "/v2/models/iris"):
        reply = requests.get(f"{server.metrics_url}{path}", timeout=5)
        assert (reply.status_code, reply.headers["Content-Type"]) == (404, "application/json"), path
    reply = requests.post(f"{server.metrics_url}/v2/models/iris/infer", json={"inputs": [ROW]}, timeout=5)
    assert reply.status_code == 404 and "error" in reply.json()
    assert requests.post(f"{server.metrics_url}/score", json={"input": [ROW["data"]]}, timeout=5).status_code == 404
    # The probes and the model stay on the public port.
    assert requests.get(f"{server.url}/v2/health/ready", timeout=5).json() == {"ready": True}
    assert requests.get(f"{server.url}/version", timeout=5).json()["version"] == "7"
    reply = requests.post(f"{server.url}/score", json={"input": iris.features[:2].tolist()}, timeout=5)
    assert reply.json() == {"output": iris.estimator.predict(iris.features[:2]).tolist()}


def test_a_slow_client_on_the_public_port_does_not_hold_the_metrics_port(server: ServeProcess) -> None:
    """The gated worker polls both listeners: connections trickling on one leave the other answered."""
    host, port = server.url.removeprefix("http://").split(":")
    held = [socket.create_connection((host, int(port)), timeout=10) for _ in range(16)]
    try:
        for sock in held:
            sock.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n")  # never finished
        assert requests.get(f"{server.metrics_url}/metrics", timeout=5).status_code == 200
        assert requests.get(f"{server.url}/v2/health/live", timeout=5).status_code == 200
    finally:
        for sock in held:
            sock.close()


def test_metrics_port_zero_serves_metrics_nowhere(serve_process: Start, onnx_model_dir: ModelDir) -> None:
    server = serve_process(onnx_model_dir, "iris", ["--metrics-port", "0"])
    server.wait_ready()
    reply = requests.get(f"{server.url}/metrics", timeout=5)
    assert (reply.status_code, reply.headers["Content-Type"]) == (404, "application/json")
    assert "serving iris" in server.log() and "--metrics-port 0" in server.log()


@pytest.mark.parametrize(
    ("flags", "words"),
    [
        (["--port", "18123", "--metrics-port", "18123"], "--metrics-port 18123 is also --port: give /metrics a port"),
        (["--metrics-port", "70000"], "--metrics-port must be a port number (1-65535), or 0 for none; got 70000"),
        (["--metrics-port=-1"], "--metrics-port must be a port number"),
    ],
)
def test_bad_metrics_ports_exit_2_with_the_reason(
    serve_process: Start, onnx_model_dir: ModelDir, flags: list[str], words: str
) -> None:
    server = serve_process(onnx_model_dir, "iris", flags)
    assert server.process.wait(timeout=60) == 2
    assert words in server.log(), server.log()
