"""What the inline worker must not cost: a slow model never holds the probes, a client that does not
read its answers never holds the loop, and the loop's answers are the threads' answers.

Design notes: a real `serve` (gunicorn, the inline worker, 1 worker so that every connection meets
the same loop) over raw sockets. The loop answers model calls itself only while they are quick; a
model taking 0.4 s per call must move to the threads after four such answers, so that the liveness
probe, answered on the loop, keeps answering in well under that while calls are in flight. A client
that pipelines many answers' worth of requests and reads nothing fills its socket: the rest of the
answer goes to a thread (bounded by the send timeout), and the loop keeps answering others; when
the client reads at last, every answer is there, whole and in order. Every other contract of the
worker (slow clients, 408, limits, metrics, readiness, the spread) is held by the other test_serve_*
modules, unchanged, which all run this worker.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.fixtures.models import DoublingModel, Iris, ModelDir, ServeProcess, write_version

pytestmark = pytest.mark.integration

Start = Callable[..., ServeProcess]
INFER = "/v2/models/iris/infer"


class SleepyModel(DoublingModel):
    """A user model whose every call takes 0.4 s (releasing the GIL, as a native model or I/O would)."""

    def predict(self, inputs: Any) -> Any:
        time.sleep(0.4)
        return super().predict(inputs)


def address(server: ServeProcess) -> tuple[str, int]:
    host, port = server.url.removeprefix("http://").split(":")
    return host, int(port)


def test_a_slow_model_goes_to_the_threads_and_the_probes_stay_quick(serve_process: Start, tmp_path: Path) -> None:
    model = write_version(tmp_path / "model", {"factor.txt": b"2"}, model_format="custom", entrypoint="factor.txt")
    server = serve_process(
        model, "slow", ["--model-class", "tests.integration.test_serve_inline:SleepyModel", "--workers", "1"]
    )
    server.wait_ready()
    url = f"{server.url}/v2/models/slow/infer"
    body = {"inputs": [{"name": "x", "datatype": "FP64", "shape": [2], "data": [1.0, 3.0]}]}
    for _ in range(4):  # on the loop: four answers over the budget, each of them, move the row to the threads
        assert requests.post(url, json=body, timeout=10).json()["outputs"][0]["data"] == [2.0, 6.0]
    answers: list[int] = []
    calls = [
        threading.Thread(target=lambda: answers.append(requests.post(url, json=body, timeout=30).status_code))
        for _ in range(3)
    ]
    for call in calls:
        call.start()
    time.sleep(0.1)  # the calls are in
    waits = []
    for _ in range(5):
        started = time.monotonic()
        assert requests.get(f"{server.url}/v2/health/live", timeout=5).status_code == 200
        waits.append(time.monotonic() - started)
    for call in calls:
        call.join()
    assert answers == [200, 200, 200]
    assert max(waits) < 0.2, f"liveness waited {max(waits):.2f} s behind a 0.4 s model call"
    assert "answers take" in server.log() and "handled by threads" in server.log()


def test_a_client_that_does_not_read_holds_only_itself(
    serve_process: Start, onnx_model_dir: ModelDir, iris: Iris
) -> None:
    server = serve_process(onnx_model_dir, "iris", ["--workers", "1"])
    server.wait_ready()
    rows = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [150, 4], "data": iris.features.tolist()}]}
    body = json.dumps(rows).encode()
    request = f"POST {INFER} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body
    count = 1000  # ~9 KB answers: far more than the two sockets' buffers hold
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        sock.settimeout(30)
        sock.connect(address(server))
        sending = threading.Thread(target=lambda: sock.sendall(request * count))
        sending.start()
        time.sleep(1.0)  # nothing read: the server's writes to this socket fill up
        for _ in range(5):  # the loop still answers everyone else
            started = time.monotonic()
            assert requests.get(f"{server.url}/v2/health/live", timeout=5).status_code == 200
            assert requests.post(f"{server.url}{INFER}", data=body, timeout=5).status_code == 200
            assert time.monotonic() - started < 1.0
        answers = read_answers(sock, count)
        sending.join()
    assert {status for status, _ in answers} == {b"HTTP/1.1 200 OK"}
    assert len({payload for _, payload in answers}) == 1  # every answer whole, and the same
    assert json.loads(answers[0][1])["outputs"][0]["data"] == iris.estimator.predict(iris.features).tolist()


def read_answers(sock: socket.socket, count: int) -> list[tuple[bytes, bytes]]:
    """`count` responses from `sock`: (status line, body) each, by their Content-Length."""
    data, answers = b"", []
    while len(answers) < count:
        end = data.find(b"\r\n\r\n")
        if end >= 0:
            lines = data[:end].split(b"\r\n")
            fields = {
                name.strip().lower(): value.strip() for name, _, value in (line.partition(b":") for line in lines[1:])
            }
            length = int(fields[b"content-length"])
            if len(data) >= end + 4 + length:
                answers.append((lines[0], data[end + 4 : end + 4 + length]))
                data = data[end + 4 + length :]
                continue
        chunk = sock.recv(1 << 20)
        assert chunk, f"the server closed after {len(answers)} of {count} answers"
        data += chunk
    return answers
