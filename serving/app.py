"""The Flask app: thin REST adapters from HTTP to the dataplane, built by an app factory.

No app exists at import time. `create_app(...)` (what gunicorn calls in each worker) resolves the
model, starts loading it in the background and returns the app at once; `build_app(...)` wires an
existing dataplane (tests use it). Every error goes through `errors.to_response`, so each body is
JSON `{"error": ...}`. Request bodies: JSON (a missing Content-Type is taken as JSON, as OIP clients
often send none), or OIP's binary tensor extension when `Inference-Header-Content-Length` is set;
anything else is a 415, a compressed body too; over `max_body_bytes` is a 413 before reading.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from flask import Flask, Response, g, request
from werkzeug.exceptions import HTTPException

from modelapp_serving import codecs
from modelapp_serving.dataplane import DataPlane
from modelapp_serving.errors import InvalidInput, ModelNotFound, ModelNotReady, UnsupportedMediaType, to_response
from modelapp_serving.fastpath import ModelCallPath
from modelapp_serving.metrics import Metrics
from modelapp_serving.models import resolve_model
from modelapp_serving.readiness import WorkerReadiness

DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024
JSON = "application/json"
_BINARY_TYPES = ("", "application/octet-stream", JSON)


def create_app(
    *,
    model_dir: Path,
    name: str,
    sha256: str | None = None,
    model_class: str | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
) -> Flask:
    """The app for one model folder; the model loads in a background thread (readiness says when).

    Under `serve` (MODELAPP_READY_DIR set) this worker reports its loaded model to the server's
    readiness folder, and readiness waits for every worker (`readiness.py`).
    """
    model, info = resolve_model(model_dir, name=name, pinned_sha256=sha256, model_class=model_class)
    metrics = Metrics(model=info.name, version=info.version)
    workers = WorkerReadiness.from_env(os.environ)
    master = os.getppid()
    dataplane = DataPlane(
        model,
        info,
        on_inference=metrics.inference.observe,
        on_loaded=None if workers is None else lambda: workers.mark_ready(os.getpid(), master),
        others_ready=None if workers is None else lambda: workers.all_ready(master),
    )
    app = build_app(dataplane, metrics, max_body_bytes=max_body_bytes)
    dataplane.start_loading()
    return app


def _json(payload: Any, status: int = 200) -> Response:
    return Response(codecs.dumps(payload), status=status, mimetype=JSON)


def _read_body() -> tuple[bytes, int | None]:
    """The request body and the binary extension's JSON header length (None for plain JSON)."""
    if request.headers.get("Content-Encoding", "identity").lower() != "identity":
        raise UnsupportedMediaType("compressed request bodies are not supported")
    mimetype = request.mimetype
    raw_length = request.headers.get("Inference-Header-Content-Length")
    if raw_length is None:
        if mimetype and mimetype != JSON and not mimetype.endswith("+json"):
            raise UnsupportedMediaType(f"content type {mimetype!r} is not supported; send application/json")
        return request.get_data(cache=False), None
    if mimetype not in _BINARY_TYPES:
        raise UnsupportedMediaType(f"content type {mimetype!r} is not supported with binary tensors")
    if not raw_length.isdigit():
        raise InvalidInput("Inference-Header-Content-Length must be a number")
    return request.get_data(cache=False), int(raw_length)


def _check_version(dataplane: DataPlane, name: str, version: str | None) -> None:
    if version is not None and version != dataplane.info.version:
        raise ModelNotFound(f"{name}/versions/{version}")


def _register_health(app: Flask, dataplane: DataPlane) -> None:
    @app.get("/v2/health/live")
    def live() -> Response:
        return _json({"live": True})

    @app.get("/v2/health/ready")
    def ready() -> Response:
        dataplane.require_server_ready()
        return _json({"ready": True})

    @app.get("/v2")
    def server_metadata() -> Response:
        return _json(dataplane.server_metadata())

    @app.get("/version")
    def version() -> Response:
        return _json(dataplane.version())


def _register_v2(app: Flask, dataplane: DataPlane) -> None:
    @app.get("/v2/models/<name>")
    @app.get("/v2/models/<name>/versions/<version>")
    def model_metadata(name: str, version: str | None = None) -> Response:
        _check_version(dataplane, name, version)
        return _json(dataplane.model_metadata(name))

    @app.get("/v2/models/<name>/ready")
    @app.get("/v2/models/<name>/versions/<version>/ready")
    def model_ready(name: str, version: str | None = None) -> Response:
        _check_version(dataplane, name, version)
        if not dataplane.model_ready(name):
            raise ModelNotReady(dataplane.load_error or f"model {name!r} is still loading")
        return _json({"name": name, "ready": True})

    @app.post("/v2/models/<name>/infer")
    @app.post("/v2/models/<name>/versions/<version>/infer")
    def infer(name: str, version: str | None = None) -> Response:
        _check_version(dataplane, name, version)
        body, header_length = _read_body()
        payload, json_length = dataplane.infer(name, body, header_length)
        if json_length is None:
            return Response(payload, mimetype=JSON)
        response = Response(payload, mimetype="application/octet-stream")
        response.headers["Inference-Header-Content-Length"] = str(json_length)
        return response


def _register_v1_and_recipe(app: Flask, dataplane: DataPlane) -> None:
    @app.get("/v1/models/<name>")
    def v1_status(name: str) -> Response:
        return _json({"name": name, "ready": dataplane.model_ready(name)})

    @app.post("/v1/models/<name>:predict")
    def v1_predict(name: str) -> Response:
        body, _ = _read_body()
        return Response(dataplane.predict_v1(name, body), mimetype=JSON)

    @app.post("/score")
    def score() -> Response:
        body, _ = _read_body()
        return Response(dataplane.score(body), mimetype=JSON)


def _register_metrics(app: Flask, metrics: Metrics) -> None:
    @app.get("/metrics")
    def metrics_text() -> Response:
        body, content_type = metrics.render()
        return Response(body, content_type=content_type)

    @app.before_request
    def start_clock() -> None:
        g.started = time.perf_counter()

    @app.after_request
    def observe(response: Response) -> Response:
        rule = request.url_rule.rule if request.url_rule is not None else "unmatched"
        started = g.get("started", time.perf_counter())
        metrics.observe_request(
            endpoint=rule, method=request.method, code=response.status_code, seconds=time.perf_counter() - started
        )
        return response


def build_app(dataplane: DataPlane, metrics: Metrics, *, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES) -> Flask:
    """Wire the routes of every protocol onto a new Flask app around `dataplane`."""
    app = Flask("modelapp_serving")
    app.config["MAX_CONTENT_LENGTH"] = max_body_bytes

    @app.errorhandler(HTTPException)
    @app.errorhandler(Exception)
    def on_error(exc: Exception) -> Response:
        status, body = to_response(exc)
        return _json(body, status)

    _register_health(app, dataplane)
    _register_v2(app, dataplane)
    _register_v1_and_recipe(app, dataplane)
    _register_metrics(app, metrics)
    app.wsgi_app = ModelCallPath(  # type: ignore[method-assign]
        app.wsgi_app, dataplane, metrics, max_body_bytes=max_body_bytes
    )
    return app
