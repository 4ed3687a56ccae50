"""A lean WSGI path for the model-call routes, mounted in front of Flask (`app.wsgi_app`).

Why: py-spy on a worker under wrk (one iris row per request, `--gil`, so CPU only) put about 30 %
of a request's CPU in Flask's machinery -- request context, URL routing, `before/after_request`
hooks, `Request`/`Response` objects -- against 37 % in scikit-learn's `predict` itself. The three
POST routes that call the model are matched here with one regular expression each and answered
directly through the same dataplane, the same error mapping (`errors.to_response`) and the same
metrics (same `endpoint` labels) as the Flask routes.

The contract: this path only takes the plain case -- POST, a `Content-Length` within the body limit,
no `Content-Encoding` (or `identity`), a JSON content type or none (or, for OIP, the binary tensor
extension with a numeric `Inference-Header-Content-Length`). Anything else (another method, a
chunked or compressed body, a body over the limit, another content type, a malformed header) goes
to Flask untouched, which owns those answers (405, 413, 415, 400), so every error mapping stays in
one place and behaves exactly as before.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import Any

from modelapp_serving import codecs
from modelapp_serving.dataplane import DataPlane
from modelapp_serving.errors import InvalidInput, ModelNotFound, to_response
from modelapp_serving.metrics import Metrics

StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]
# (payload, JSON header length when the payload carries binary tensors)
Handler = Callable[[DataPlane, re.Match[str], bytes, int | None], tuple[bytes, int | None]]

JSON = "application/json"
_STATUS_LINES = {status.value: f"{status.value} {status.phrase}" for status in HTTPStatus}
_BINARY_TYPES = frozenset({"", "application/octet-stream", JSON})


def _infer(
    dataplane: DataPlane, match: re.Match[str], body: bytes, header_length: int | None
) -> tuple[bytes, int | None]:
    name, version = match.group("name"), match.groupdict().get("version")
    if version is not None and version != dataplane.info.version:
        raise ModelNotFound(f"{name}/versions/{version}")
    return dataplane.infer(name, body, header_length)


def _predict_v1(dataplane: DataPlane, match: re.Match[str], body: bytes, _: int | None) -> tuple[bytes, int | None]:
    return dataplane.predict_v1(match.group("name"), body), None


def _score(dataplane: DataPlane, _match: re.Match[str], body: bytes, _: int | None) -> tuple[bytes, int | None]:
    return dataplane.score(body), None


# (path pattern, Flask's rule for the same route = the metrics label, handler, binary extension allowed)
ROUTES: tuple[tuple[re.Pattern[str], str, Handler, bool], ...] = (
    (re.compile(r"/v2/models/(?P<name>[^/]+)/infer"), "/v2/models/<name>/infer", _infer, True),
    (
        re.compile(r"/v2/models/(?P<name>[^/]+)/versions/(?P<version>[^/]+)/infer"),
        "/v2/models/<name>/versions/<version>/infer",
        _infer,
        True,
    ),
    (re.compile(r"/v1/models/(?P<name>[^/]+):predict"), "/v1/models/<name>:predict", _predict_v1, False),
    (re.compile(r"/score"), "/score", _score, False),
)


def body_plan(environ: dict[str, Any], *, max_body_bytes: int, binary_allowed: bool) -> tuple[int, int | None] | None:
    """(body length, binary header length) when this path may take the request, else None (pure).

    None sends the request to Flask: it answers every case this path does not handle.
    """
    length = environ.get("CONTENT_LENGTH") or ""
    if not length.isdigit() or int(length) > max_body_bytes:
        return None
    encoding = environ.get("HTTP_CONTENT_ENCODING")
    if encoding is not None and encoding.strip().lower() not in ("", "identity"):
        return None
    mimetype = environ.get("CONTENT_TYPE", "").partition(";")[0].strip().lower()
    header_length = environ.get("HTTP_INFERENCE_HEADER_CONTENT_LENGTH")
    if header_length is None:
        json_like = mimetype in ("", JSON) or mimetype.endswith("+json")
        return (int(length), None) if json_like else None
    if not binary_allowed or mimetype not in _BINARY_TYPES or not header_length.isdigit():
        return None
    return int(length), int(header_length)


class ModelCallPath:
    """WSGI middleware: model calls answered here, everything else passed to `inner` (Flask)."""

    def __init__(self, inner: WsgiApp, dataplane: DataPlane, metrics: Metrics, *, max_body_bytes: int) -> None:
        self.inner = inner
        self.dataplane = dataplane
        self.metrics = metrics
        self.max_body_bytes = max_body_bytes

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("REQUEST_METHOD") != "POST":
            return self.inner(environ, start_response)
        path = environ.get("PATH_INFO", "")
        for pattern, rule, handler, binary_allowed in ROUTES:
            match = pattern.fullmatch(path)
            if match is None:
                continue
            plan = body_plan(environ, max_body_bytes=self.max_body_bytes, binary_allowed=binary_allowed)
            if plan is None:
                break
            return self._answer(environ, start_response, rule=rule, handler=handler, match=match, plan=plan)
        return self.inner(environ, start_response)

    def _answer(
        self,
        environ: dict[str, Any],
        start_response: StartResponse,
        *,
        rule: str,
        handler: Handler,
        match: re.Match[str],
        plan: tuple[int, int | None],
    ) -> Iterable[bytes]:
        """Read the body, call the handler, map any error; one response and one metrics sample."""
        started = time.perf_counter()
        length, header_length = plan
        headers: list[tuple[str, str]]
        try:
            body = environ["wsgi.input"].read(length) if length else b""
            if len(body) != length:
                raise InvalidInput(f"the request body ended after {len(body)} of {length} bytes")
            payload, json_length = handler(self.dataplane, match, body, header_length)
            status = 200
            if json_length is None:
                headers = [("Content-Type", JSON)]
            else:
                headers = [("Content-Type", "application/octet-stream")]
                headers.append(("Inference-Header-Content-Length", str(json_length)))
        except Exception as exc:
            status, error = to_response(exc)
            payload, headers = codecs.dumps(error), [("Content-Type", JSON)]
        headers.append(("Content-Length", str(len(payload))))
        start_response(_STATUS_LINES.get(status, f"{status} Error"), headers)
        self.metrics.observe_request(endpoint=rule, method="POST", code=status, seconds=time.perf_counter() - started)
        return [payload]
