"""The Flask app: every row of the route table (`routes.py`) as a Flask route, built by an app factory.

No app exists at import time. `create_app(...)` (what gunicorn calls in each worker) resolves the
model, starts loading it in the background and returns the app at once; `build_app(...)` wires an
existing dataplane (tests use it). Every error goes through `errors.to_response`, so each body is
JSON `{"error": ...}`. Request bodies follow `routes.body_format` (JSON, or OIP's binary tensor
extension; anything else a 415); over `max_body_bytes` is a 413 before reading. The model calls are
usually answered by the fast path in front (`fastpath.py`), built from the same table.

Under `serve` the app sits behind two listeners, the public port and the metrics port: each request
reaches only the rows of its listener (`routes.hidden`); any other is the same JSON 404 as a path no
row has, counted under the `unmatched` label. With `MODELAPP_AUTH_TOKEN` in the environment (a ModelApp's
`spec.auth`), a public request other than the health probes needs the bearer token (`auth.py`): a 401 first.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

from flask import Flask, Response, g, request
from werkzeug.exceptions import HTTPException, NotFound

from modelapp_serving import codecs
from modelapp_serving.auth import Authenticator, wsgi_headers
from modelapp_serving.dataplane import DataPlane
from modelapp_serving.errors import error_headers, to_response
from modelapp_serving.fastpath import ListenerOf, ModelCallPath, every_row, listener_by_port
from modelapp_serving.metrics import Metrics
from modelapp_serving.models import resolve_model
from modelapp_serving.readiness import WorkerReadiness
from modelapp_serving.routes import (
    JSON,
    NO_BODY,
    ROUTES,
    UNMATCHED,
    Body,
    BodyKind,
    Route,
    Served,
    body_format,
    hidden,
    method_label,
    needs_token,
    read_body,
)

DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024


def create_app(
    *,
    model_dir: Path,
    name: str,
    sha256: str | None = None,
    model_class: str | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    metrics_port: int = 0,
) -> Flask:
    """The app for one model folder; the model loads in a background thread (readiness says when).

    `metrics_port` is the port of the metrics listener (0: none, so `/metrics` is answered nowhere);
    every other port is public.

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
    app = build_app(dataplane, metrics, max_body_bytes=max_body_bytes, listener_of=listener_by_port(metrics_port),
                    auth=Authenticator.from_env(os.environ))  # fmt: skip
    dataplane.start_loading()
    return app


def _view(route: Route, served: Served, max_body_bytes: int) -> Callable[..., Response]:
    """A Flask view for one row of the route table: read the body by the shared rules, call the handler."""

    def view(**params: str) -> Response:
        body = NO_BODY
        if route.body is not BodyKind.NONE:
            header_length = body_format(
                route.body,
                content_type=request.headers.get("Content-Type", ""),
                encoding=request.headers.get("Content-Encoding"),
                header_length=request.headers.get("Inference-Header-Content-Length"),
            )
            data = read_body(request.environ["wsgi.input"], request.environ.get("CONTENT_LENGTH"), limit=max_body_bytes)
            body = Body(data, header_length)
        reply = route.handler(served, params, body)
        return Response(reply.payload, content_type=reply.content_type, headers=list(reply.headers))

    return view


def _observe_requests(app: Flask, metrics: Metrics, listener_of: ListenerOf, auth: Authenticator | None) -> None:
    """One sample per request Flask answers; the labels come from the route table (or `unmatched`).

    A row hidden from the request's listener is refused here, before Flask's own routing answer
    (a 405 for another method would tell that the rule exists); then, with authentication on, a request
    without the token (any method, any path but the open probes) gets its 401 before anything is read.
    """

    @app.before_request
    def start_clock() -> None:
        g.started = time.perf_counter()
        g.hidden = hidden(request.path, listener_of(request.environ))
        if g.hidden:
            raise NotFound()
        if auth is not None and needs_token(request.path, listener_of(request.environ)):
            auth.check(wsgi_headers(request.environ))

    @app.after_request
    def observe(response: Response) -> Response:
        matched = request.url_rule is not None and not g.get("hidden", False)
        rule = request.url_rule.rule if matched and request.url_rule is not None else UNMATCHED
        started = g.get("started", time.perf_counter())
        metrics.observe_request(
            endpoint=rule,
            method=method_label(request.method),
            code=response.status_code,
            seconds=time.perf_counter() - started,
        )
        return response


def build_app(
    dataplane: DataPlane,
    metrics: Metrics,
    *,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    listener_of: ListenerOf = every_row,
    auth: Authenticator | None = None,
) -> Flask:
    """A new Flask app around `dataplane`: every row of the route table, the fast path in front.

    `listener_of` tells each request's listener; the default, one socket answering every row, is
    for callers without sockets (the Flask test client), never for `serve`. `auth`: the accepted tokens,
    None for no authentication.
    """
    app = Flask("modelapp_serving")
    app.config["MAX_CONTENT_LENGTH"] = max_body_bytes

    @app.errorhandler(HTTPException)
    @app.errorhandler(Exception)
    def on_error(exc: Exception) -> Response:
        status, body = to_response(exc)
        return Response(codecs.dumps(body), status=status, mimetype=JSON, headers=error_headers(exc))

    served = Served(dataplane, metrics, auth)
    for route in ROUTES:
        app.add_url_rule(
            route.rule, endpoint=route.rule, view_func=_view(route, served, max_body_bytes), methods=[route.method]
        )
    _observe_requests(app, metrics, listener_of, auth)
    app.wsgi_app = ModelCallPath(  # type: ignore[method-assign]
        app.wsgi_app, served, max_body_bytes=max_body_bytes, listener_of=listener_of
    )
    return app
