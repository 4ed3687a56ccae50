"""The one route table: Flask and the fast path are both built from it and answer alike.

Design notes: the table (`routes.ROUTES`) is the contract, so the tests check what is derived from
it rather than restating routes: Flask's URL map holds exactly the table's rows (rule and method),
each rule's regular expression agrees with Flask's matching on real and near-miss paths, and the
fast path and Flask (the same app with the fast path bypassed) give byte-identical answers and the
same metric labels for a set of model calls, good and bad. The model is the real iris ONNX model.
Listeners: `/metrics` is internal, hidden from the public listener for every method; the listener
comes from the connection's own socket (real loopback sockets here), never from the client's headers.
"""

from __future__ import annotations

import re
import socket
from typing import Any

import pytest
from flask import Flask
from werkzeug.test import Client

from modelapp_serving.app import build_app
from modelapp_serving.dataplane import DataPlane
from modelapp_serving.fastpath import LISTENER_KEY, ModelCallPath, listener_by_port
from modelapp_serving.metrics import Metrics
from modelapp_serving.models import resolve_model
from modelapp_serving.routes import MODEL_CALLS, ROUTES, BodyKind, Listener, hidden, rule_pattern
from tests.fixtures.models import ModelDir


@pytest.fixture
def app(onnx_model_dir: ModelDir) -> Flask:
    model, info = resolve_model(onnx_model_dir.path, name="iris", pinned_sha256=None, model_class=None)
    model.load()
    metrics = Metrics(model="iris", version=info.version)
    return build_app(DataPlane(model, info, on_inference=metrics.inference.observe), metrics, max_body_bytes=1 << 20)


def test_flask_serves_exactly_the_table(app: Flask) -> None:
    served = {
        (rule.rule, method)
        for rule in app.url_map.iter_rules()
        if rule.endpoint != "static"
        for method in rule.methods or ()
        if method not in ("HEAD", "OPTIONS")
    }
    assert served == {(route.rule, route.method) for route in ROUTES}
    assert len({(route.method, route.rule) for route in ROUTES}) == len(ROUTES)


def test_the_fast_path_takes_the_rows_with_a_body() -> None:
    assert {route.rule for route in MODEL_CALLS} == {
        "/v2/models/<name>/infer",
        "/v2/models/<name>/versions/<version>/infer",
        "/v1/models/<name>:predict",
        "/score",
    }
    assert all(route.method == "POST" and route.body is not BodyKind.NONE for route in MODEL_CALLS)


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/v2/models/iris", "/v2/models/<name>"),
        ("/v2/models/iris/versions/7/ready", "/v2/models/<name>/versions/<version>/ready"),
        ("/v1/models/a.b-c", "/v1/models/<name>"),
        ("/v2/models/", None),
        ("/v2/models/a/b", None),
        ("/v2x", None),
        ("/version/", None),
    ],
)
def test_rule_patterns_match_one_segment_per_parameter(path: str, expected: str | None) -> None:
    rules = [route.rule for route in ROUTES if route.method == "GET" and route.pattern.fullmatch(path)]
    assert rules == ([] if expected is None else [expected])


def test_rule_pattern_escapes_the_static_parts() -> None:
    assert rule_pattern("/v1/models/<name>:predict").pattern == re.escape("/v1/models/") + "(?P<name>[^/]+):predict"
    assert rule_pattern("/v1/models/<name>:predict").fullmatch("/v1/models/x:predictX") is None


ROW = {"name": "input", "datatype": "FP32", "shape": [1, 4], "data": [5.1, 3.5, 1.4, 0.2]}
CALLS: list[tuple[str, dict[str, Any]]] = [
    ("/v2/models/iris/infer", {"json": {"id": "a", "inputs": [ROW]}}),
    ("/v2/models/iris/infer", {"json": {"inputs": [ROW], "outputs": [{"name": "label"}]}}),
    ("/v2/models/iris/versions/7/infer", {"json": {"inputs": []}}),
    ("/v2/models/iris/versions/8/infer", {"json": {"inputs": []}}),
    ("/v2/models/other/infer", {"json": {}}),
    ("/v2/models/iris/infer", {"data": b"{oops", "content_type": "application/json"}),
    ("/v1/models/iris:predict", {"json": {"instances": [[5.1, 3.5, 1.4, 0.2]]}}),
    ("/v1/models/iris:predict", {"json": {"instances": [[1, 2], [3]]}}),
    ("/score", {"json": {"input": [[6.7, 3.0, 5.2, 2.3]]}}),
    ("/score", {"json": {"nope": 1}}),
]


def _answer(app: Flask, *, fast: bool, path: str, kwargs: dict[str, Any]) -> tuple[int, bytes, str, str]:
    """One call through the fast path (which must answer it itself) or straight to Flask."""
    wsgi = app.wsgi_app
    assert isinstance(wsgi, ModelCallPath)
    flask_calls: list[str] = []
    flask = wsgi.inner

    def recording(environ: dict[str, Any], start_response: Any) -> Any:
        flask_calls.append(environ["PATH_INFO"])
        return flask(environ, start_response)

    wsgi.inner = recording
    response = Client(wsgi if fast else recording).post(path, **kwargs)
    assert flask_calls == ([] if fast else [path])
    wsgi.inner = flask
    metrics = app.test_client().get("/metrics").get_data(as_text=True)
    counted = [
        line for line in metrics.splitlines() if line.startswith("modelapp_requests_total{") and "/metrics" not in line
    ]
    return response.status_code, response.get_data(), response.headers["Content-Type"], "\n".join(counted)


@pytest.mark.parametrize(("path", "kwargs"), CALLS)
def test_fast_path_and_flask_answer_alike(onnx_model_dir: ModelDir, path: str, kwargs: dict[str, Any]) -> None:
    answers = []
    for fast in (True, False):
        model, info = resolve_model(onnx_model_dir.path, name="iris", pinned_sha256=None, model_class=None)
        model.load()
        metrics = Metrics(model="iris", version=info.version)
        app = build_app(DataPlane(model, info), metrics, max_body_bytes=1 << 20)
        answers.append(_answer(app, fast=fast, path=path, kwargs=kwargs))
    fast_answer, flask_answer = answers
    assert fast_answer == flask_answer
    status, body, content_type, counted = fast_answer
    assert content_type == "application/json"
    assert f'code="{status}"' in counted
    assert body.startswith(b"{")


# --- listeners: /metrics on the metrics port only -------------------------------------------------


def test_only_metrics_is_internal_and_no_rule_is_both() -> None:
    assert {(route.method, route.rule) for route in ROUTES if route.internal} == {("GET", "/metrics")}
    internal = {route.rule for route in ROUTES if route.internal}
    assert internal.isdisjoint({route.rule for route in ROUTES if not route.internal})
    assert not any(route.internal for route in MODEL_CALLS)


@pytest.mark.parametrize(
    ("path", "public", "metrics"),
    [
        ("/metrics", True, False),
        ("/v2/health/live", False, True),
        ("/v2/models/iris/infer", False, True),
        ("/version", False, True),
        ("/metrics/", False, False),  # no row at all: Flask's own 404 on either
        ("/nothing", False, False),
    ],
)
def test_hidden_by_listener(path: str, public: bool, metrics: bool) -> None:
    assert hidden(path, Listener.PUBLIC) is public
    assert hidden(path, Listener.METRICS) is metrics
    assert hidden(path, Listener.ONLY) is False


def _on(app: Flask, listener: Listener) -> Client:
    return Client(lambda environ, start: app.wsgi_app(environ | {LISTENER_KEY: listener}, start))


def test_public_listener_answers_metrics_like_a_path_no_row_has(onnx_model_dir: ModelDir) -> None:
    model, info = resolve_model(onnx_model_dir.path, name="iris", pinned_sha256=None, model_class=None)
    model.load()
    metrics = Metrics(model="iris", version=info.version)
    app = build_app(DataPlane(model, info), metrics, listener_of=listener_by_port(9090))
    public = _on(app, Listener.PUBLIC)
    unknown = public.get("/nothing")
    for method in ("GET", "POST", "HEAD", "PUT"):
        reply = public.open("/metrics", method=method)
        assert (reply.status_code, reply.headers["Content-Type"]) == (404, "application/json"), method
        if method != "HEAD":
            assert reply.get_data() == unknown.get_data()
    assert public.get("/v2/health/live").status_code == 200
    on_metrics = _on(app, Listener.METRICS)
    assert on_metrics.get("/v2/health/live").status_code == 404
    assert on_metrics.post("/score", json={"input": [[5.1, 3.5, 1.4, 0.2]]}).status_code == 404
    text = on_metrics.get("/metrics").get_data(as_text=True)
    probes = [line for line in text.splitlines() if 'endpoint="unmatched"' in line and "requests_total" in line]
    assert sum(float(line.rsplit(" ", 1)[1]) for line in probes) == 7  # 1 + 4 + 2: none counted as a row
    assert 'endpoint="/metrics"' not in "".join(line for line in text.splitlines() if 'code="404"' in line)


def test_the_listener_is_the_connections_local_port() -> None:
    """Real sockets: the accepted connection's own port decides; no socket, or port 0, is public."""
    with socket.create_server(("127.0.0.1", 0)) as public, socket.create_server(("127.0.0.1", 0)) as internal:
        metrics_port = internal.getsockname()[1]
        listener = listener_by_port(metrics_port)
        found = {}
        for name, server in (("public", public), ("metrics", internal)):
            with socket.create_connection(server.getsockname()[:2]) as _client:
                accepted, _ = server.accept()
                with accepted:
                    environ = {"gunicorn.socket": accepted, "SERVER_PORT": str(metrics_port)}
                    found[name] = listener(environ)
                    assert environ[LISTENER_KEY] is found[name]
                    assert listener_by_port(0)({"gunicorn.socket": accepted}) is Listener.PUBLIC
        assert found == {"public": Listener.PUBLIC, "metrics": Listener.METRICS}
    assert listener({"SERVER_PORT": str(metrics_port), "HTTP_HOST": f"x:{metrics_port}"}) is Listener.PUBLIC
