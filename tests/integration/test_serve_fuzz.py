"""Fuzzed HTTP against a real `serve`: whatever a client sends, never a 5xx, and the server stays well.

Design notes: hypothesis builds whole HTTP/1.1 requests -- a method (the table's, or invented), a
path (the table's rules with real, wrong and odd parameters, or arbitrary), the headers that steer
the body rules (Content-Type, Content-Encoding, Inference-Header-Content-Length, Content-Length or
chunked) with valid and invalid values, and a body that is either raw bytes or an OIP / KServe v1 /
`/score` document with wrong types, shapes, datatypes and nesting -- and sends each on a fresh
socket to one real `modelapp-serving serve` (2 gunicorn workers) for the whole module. Every answer
must be below 500; an answer from our app (JSON) must carry an `error` when it is a 4xx. The run is
bounded (max_examples, a per-request socket timeout); afterwards both probes answer 200, the log
holds no unexpected-error line, and the metric labels are still only the table's.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import re
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modelapp_serving.codecs import DATATYPES
from modelapp_serving.routes import METHODS, MODEL_CALLS, OTHER_METHOD, ROUTES, UNMATCHED
from tests.fixtures.models import ModelDir, ServeProcess, start_serve, stop_serve

pytestmark = pytest.mark.integration

LIMIT = 64 * 1024


@pytest.fixture(scope="module")
def server(onnx_model_dir: ModelDir) -> Iterator[ServeProcess]:
    env = {"MODELAPP_MAX_BODY_BYTES": str(LIMIT), "MODELAPP_READ_TIMEOUT": "5", "MODELAPP_HEADER_TIMEOUT": "5"}
    started = start_serve(onnx_model_dir, "iris", ["--workers", "2"], env)
    try:
        started.wait_ready()
        yield started
    finally:
        stop_serve(started)


# --- requests -----------------------------------------------------------------------------------

TOKEN = st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=1, max_size=12)
SEGMENT = st.one_of(
    st.sampled_from(["iris", "7", "8", "other", "iris:predict", "..", "%2F", "\u00e9"]),
    st.text(alphabet="abcxyz0189-._~%:;=", min_size=1, max_size=12),
)
# Header values: printable latin-1, never CR/LF (those would be a different request, not a bad one).
HEADER_TEXT = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"), max_size=30
)


@st.composite
def paths(draw: st.DrawFn) -> str:
    """Half the time a model call as a client means it (the attack surface), else any rule or path."""
    choice = draw(st.integers(0, 3))
    if choice <= 1:
        rule = draw(st.sampled_from([route.rule for route in MODEL_CALLS]))
        path = rule.replace("<name>", "iris").replace("<version>", "7")
    elif choice == 2:
        rule = draw(st.sampled_from([route.rule for route in ROUTES]))
        path = re.sub(r"<[a-z]+>", lambda _: draw(SEGMENT), rule)
    else:
        path = "/" + "/".join(draw(st.lists(SEGMENT, max_size=5)))
    return path.encode("utf-8").decode("latin-1")


JSON_LEAF = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=8),
)
JSON_ANY = st.recursive(
    JSON_LEAF,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=30,
)
DIMENSION = st.sampled_from([0, 1, 4, 2**31, 2**40, 2**63 - 1, 2**64, 10**30]) | st.integers(
    min_value=-2, max_value=2**64
)
SHAPE = st.lists(DIMENSION, max_size=6) | st.lists(DIMENSION, max_size=6) | JSON_ANY


@st.composite
def tensors(draw: st.DrawFn) -> dict[str, Any]:
    tensor: dict[str, Any] = {
        "name": draw(st.sampled_from(["input", "x", ""]) | JSON_LEAF),
        "datatype": draw(st.sampled_from([*DATATYPES, "FP8", "", "fp32"]) | JSON_LEAF),
        "shape": draw(SHAPE),
    }
    if draw(st.booleans()):
        tensor["data"] = draw(st.just([]) | st.lists(JSON_LEAF, max_size=12) | JSON_ANY)
    if draw(st.booleans()):
        tensor["parameters"] = {"binary_data_size": draw(st.integers(min_value=-1, max_value=64) | JSON_LEAF)}
    return {key: value for key, value in tensor.items() if draw(st.integers(0, 9)) > 0}


@st.composite
def documents(draw: st.DrawFn) -> Any:
    kind = draw(st.sampled_from(["oip", "v1", "score", "any"]))
    if kind == "oip":
        document: dict[str, Any] = {"inputs": draw(st.lists(tensors(), max_size=3) | JSON_ANY)}
        if draw(st.booleans()):
            document["outputs"] = draw(
                st.lists(
                    st.fixed_dictionaries({"name": st.sampled_from(["label", "probabilities", "nope"]) | JSON_LEAF})
                )
                | JSON_ANY
            )
        if draw(st.booleans()):
            document["parameters"] = draw(st.fixed_dictionaries({"binary_data_output": JSON_LEAF}) | JSON_ANY)
        if draw(st.booleans()):
            document["id"] = draw(JSON_LEAF)
        return document
    if kind in ("v1", "score"):
        key = "instances" if kind == "v1" else "input"
        return {key: draw(st.lists(st.lists(JSON_LEAF, min_size=4, max_size=4), max_size=4) | JSON_ANY)}
    return draw(JSON_ANY)


@st.composite
def requests_(draw: st.DrawFn) -> bytes:
    method = draw(st.just("POST") | st.just("POST") | st.sampled_from(sorted(METHODS)) | TOKEN)
    path = draw(paths())
    if draw(st.integers(0, 4)) == 0:
        body = draw(st.binary(max_size=300))
    else:
        body = json.dumps(draw(documents())).encode()
        if draw(st.integers(0, 5)) == 0:  # the binary extension: a JSON header, then raw bytes
            body += draw(st.binary(max_size=64))
    if draw(st.integers(0, 20)) == 0:
        body += b" " * (LIMIT + 1 - len(body))  # just over the limit
    headers = [("Host", "fuzz")]
    for name, values in (
        (
            "Content-Type",
            st.sampled_from(["application/json", "application/octet-stream", "text/plain", "application/x+json"]),
        ),
        ("Content-Encoding", st.sampled_from(["identity", "gzip", ""])),
        (
            "Inference-Header-Content-Length",
            st.integers(-3, len(body) + 3).map(str) | st.sampled_from(["\u00b2", "1e3", "9" * 30]),
        ),
    ):
        if draw(st.booleans()):
            headers.append((name, draw(values | HEADER_TEXT)))
    chunked = draw(st.integers(0, 4)) == 0
    if chunked:
        headers.append(("Transfer-Encoding", "chunked"))
        size = draw(st.integers(1, 4096))
        framed = b"".join(
            b"%x\r\n%s\r\n" % (len(body[i : i + size]), body[i : i + size]) for i in range(0, len(body), size)
        )
        body = framed + b"0\r\n\r\n"
    else:
        headers.append(("Content-Length", str(len(body))))
    headers.append(("Connection", "close"))
    head = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{name}: {value}\r\n" for name, value in headers)
    return head.encode("latin-1") + b"\r\n" + body


def answer(server: ServeProcess, raw: bytes) -> tuple[int, str, bytes]:
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=15) as sock:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(raw)  # the server may answer (413) and close before the whole body is sent
        data = b""
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 "), f"no HTTP answer to {raw[:200]!r}: {data[:200]!r}"
    status = int(head.split()[1])
    content_type = next(
        (
            line.split(b":", 1)[1].strip().decode()
            for line in head.split(b"\r\n")[1:]
            if line.lower().startswith(b"content-type:")
        ),
        "",
    )
    return status, content_type, body


@settings(max_examples=1000, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(raw=requests_())
def test_no_request_gets_a_5xx(server: ServeProcess, raw: bytes) -> None:
    status, content_type, body = answer(server, raw)
    assert status < 500, f"{status} for {raw[:300]!r}: {body[:300]!r}"
    if content_type == "application/json" and status >= 400 and not raw.startswith(b"HEAD "):
        assert "error" in json.loads(body)


def test_after_the_fuzz_the_server_is_well(server: ServeProcess) -> None:
    status, _, body = answer(server, b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert (status, json.loads(body)) == (200, {"live": True})
    status, _, body = answer(server, b"GET /v2/health/ready HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert (status, json.loads(body)) == (200, {"ready": True})
    assert server.process.poll() is None
    log = server.log()
    assert "unexpected error" not in log and "Traceback" not in log, log[-3000:]
    on_metrics_port = dataclasses.replace(server, url=server.metrics_url)
    _, _, metrics = answer(on_metrics_port, b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    labels = re.findall(rb'modelapp_requests_total\{code="\d+",endpoint="([^"]*)",method="([^"]*)"', metrics)
    assert labels, metrics[:500]
    assert {endpoint.decode() for endpoint, _ in labels} <= {route.rule for route in ROUTES} | {UNMATCHED}
    assert {method.decode() for _, method in labels} <= METHODS | {OTHER_METHOD}
