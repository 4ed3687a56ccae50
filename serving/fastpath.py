"""A lean WSGI path for the model-call routes and the probes, mounted in front of Flask (`app.wsgi_app`).

Why: py-spy on a worker under wrk (one iris row per request, `--gil`, so CPU only) put about 30 %
of a request's CPU in Flask's machinery -- request context, URL routing, `before/after_request`
hooks, `Request`/`Response` objects -- against 37 % in scikit-learn's `predict` itself. The rows of
the route table that carry a body (`routes.MODEL_CALLS`) are matched here with their regular
expression and answered directly by the same handlers, the same content-type rules, the same error
mapping (`errors.to_response`) and the same metric labels as Flask's routes, all from `routes.py`;
so are the open probes (`GET /v2/health/live`, `/v2/health/ready`: no body, no token). Under `serve`
the worker answers these rows on its event loop without WSGI (`inline.py`, through `plan` and `respond`).

The contract: this path only takes the plain case -- the row's method, a `Content-Length` within the
body limit, and a body the content-type rules accept. Anything else (another method, a chunked body,
a body over the limit, a body the rules refuse) goes to Flask untouched, which owns those answers
(405, 413, 415, 400), so every error answer is made in one place and behaves exactly as before.

Every request passes here first, so this is also where its listener is told (`listener_by_port`) and
kept in the environ for Flask: the model calls are public rows, so a request on the metrics port
goes to Flask, which answers only the internal rows there (`routes.hidden`). With authentication on, a
model call's token is checked here before its body is read (no model call is an open row; the probes are).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from modelapp_serving import codecs
from modelapp_serving.auth import wsgi_headers
from modelapp_serving.errors import ServingError, error_headers, to_response
from modelapp_serving.routes import (
    JSON,
    MODEL_CALLS,
    NO_BODY,
    ROUTES,
    Body,
    BodyKind,
    Listener,
    Route,
    Served,
    body_format,
    decimal,
    method_label,
    read_body,
)

StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]

ListenerOf = Callable[[dict[str, Any]], Listener]

_STATUS_LINES = {status.value: f"{status.value} {status.phrase}" for status in HTTPStatus}
LISTENER_KEY = "modelapp.listener"  # the environ key holding the request's Listener

# The rows this path answers: the model calls, and the open probes (GET, no body, no token), which the
# kubelet sends every few seconds and which must not wait behind Flask's machinery under load.
FAST_ROWS: tuple[Route, ...] = MODEL_CALLS + tuple(
    route for route in ROUTES if route.open and route.body is BodyKind.NONE
)


def every_row(_environ: dict[str, Any]) -> Listener:
    """One socket answering every row: an app built without the split (the Flask test client)."""
    return Listener.ONLY


def listener_by_port(metrics_port: int) -> ListenerOf:
    """The listener of a request under gunicorn: the local port of its own connection.

    Why the socket and not `SERVER_PORT` or `Host`: a client writes its `Host` header, and gunicorn
    derives `SERVER_*` from it on some sockets; the port the connection was accepted on is the
    kernel's word. Port 0 (no metrics listener), no socket, or a socket that cannot tell: public,
    so a doubt never opens an internal row.
    """

    def listener(environ: dict[str, Any]) -> Listener:
        known = environ.get(LISTENER_KEY)
        if isinstance(known, Listener):
            return known
        sock = environ.get("gunicorn.socket")
        found = Listener.PUBLIC
        if metrics_port and sock is not None:
            try:
                address = sock.getsockname()
            except OSError:
                address = None
            if isinstance(address, tuple) and len(address) >= 2 and address[1] == metrics_port:
                found = Listener.METRICS
        environ[LISTENER_KEY] = found
        return found

    return listener


def body_plan(environ: dict[str, Any], *, max_body_bytes: int, binary_allowed: bool) -> tuple[int, int | None] | None:
    """(body length, binary header length) when this path may take the request, else None (pure).

    None sends the request to Flask: it answers every case this path does not handle.
    """
    length = decimal(environ.get("CONTENT_LENGTH") or "")
    if length is None or length > max_body_bytes:
        return None
    if not binary_allowed and "HTTP_INFERENCE_HEADER_CONTENT_LENGTH" in environ:
        return None  # rare (a binary header on a JSON-only route): Flask answers it
    try:
        header_length = body_format(
            BodyKind.TENSORS if binary_allowed else BodyKind.JSON,
            content_type=environ.get("CONTENT_TYPE", ""),
            encoding=environ.get("HTTP_CONTENT_ENCODING"),
            header_length=environ.get("HTTP_INFERENCE_HEADER_CONTENT_LENGTH"),
        )
    except ServingError:
        return None
    return length, header_length


@dataclass(frozen=True, slots=True)
class Planned:
    """A request this path takes: its row, path parameters, and (body length, binary header length)."""

    route: Route
    params: dict[str, str]
    body_length: int
    header_length: int | None


class ModelCallPath:
    """WSGI middleware: model calls and probes answered here, everything else passed to `inner` (Flask).

    `plan` (does this path take the request?) and `respond` (its answer as status, headers and body)
    are apart so that a server may call them without WSGI's `start_response` (`inline.py`).
    """

    def __init__(
        self, inner: WsgiApp, served: Served, *, max_body_bytes: int, listener_of: ListenerOf = every_row
    ) -> None:
        self.inner = inner
        self.served = served
        self.max_body_bytes = max_body_bytes
        self.listener_of = listener_of

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        planned = self.plan(environ)
        if planned is None:
            return self.inner(environ, start_response)
        status, headers, payload = self.respond(environ, planned)
        start_response(status_line(status), headers)
        return [payload]

    def plan(self, environ: dict[str, Any]) -> Planned | None:
        """The row this path answers the request by, or None: Flask answers it (pure but for the listener)."""
        if self.listener_of(environ) is Listener.METRICS:
            return None
        method = environ.get("REQUEST_METHOD")
        path = environ.get("PATH_INFO", "")
        for route in FAST_ROWS:
            if route.method != method:
                continue
            match = route.pattern.fullmatch(path)
            if match is None:
                continue
            if route.body is BodyKind.NONE:
                return Planned(route, match.groupdict(), 0, None)
            plan = body_plan(environ, max_body_bytes=self.max_body_bytes, binary_allowed=route.body is BodyKind.TENSORS)
            if plan is None:
                return None
            return Planned(route, match.groupdict(), *plan)
        return None

    def respond(self, environ: dict[str, Any], planned: Planned) -> tuple[int, list[tuple[str, str]], bytes]:
        """Read the body, call the handler, map any error; one metrics sample. Status, headers, body."""
        started = time.perf_counter()
        route = planned.route
        headers: list[tuple[str, str]]
        try:
            if self.served.auth is not None and not route.open:
                self.served.auth.check(wsgi_headers(environ))
            body = NO_BODY
            if route.body is not BodyKind.NONE:
                data = read_body(environ["wsgi.input"], str(planned.body_length), limit=self.max_body_bytes)
                body = Body(data, planned.header_length)
            reply = route.handler(self.served, planned.params, body)
            status, payload = 200, reply.payload
            headers = [("Content-Type", reply.content_type), *reply.headers]
        except Exception as exc:
            status, error = to_response(exc)
            payload, headers = codecs.dumps(error), [("Content-Type", JSON), *error_headers(exc)]
        headers.append(("Content-Length", str(len(payload))))
        self.served.metrics.observe_request(
            endpoint=route.rule, method=method_label(route.method), code=status, seconds=time.perf_counter() - started
        )
        return status, headers, payload


def status_line(status: int) -> str:
    """WSGI's status string for a code: `200 OK`."""
    return _STATUS_LINES.get(status, f"{status} Error")
