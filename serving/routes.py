"""The one route table of the serving HTTP surface, and the request rules every route shares.

Why one table: the Flask app (`app.py`) and the lean model-call path in front of it (`fastpath.py`)
answer the same routes. Each route is declared once here -- method, path rule, handler, what body
it takes -- and both are built from it: Flask registers every row, the fast path takes the rows
that carry a body. A row marked `internal` (`/metrics`) is answered only on the metrics port, never
on the public port behind the ModelApp's Service (`hidden`). With authentication on (`auth.py`), every
public path but the `open` rows (the health probes) needs the bearer token (`needs_token`).
The metrics `endpoint` label is the row's rule and the `method` label one of the table's methods
(else `other`), whichever path answers, so labels cannot drift apart and stay bounded whatever a
client sends. The rules both paths apply to a request -- the version check, the content-type rules,
reading the body within the limit -- live here once each.

Handlers are the thin layer between HTTP and the dataplane: path parameters and the body in, a
`Reply` out, domain errors raised (mapped to HTTP by `errors.to_response`, nowhere else). No Flask
and no WSGI here, so the table is the contract and both servers are adapters.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import IO, Any

from modelapp_serving import codecs
from modelapp_serving.auth import Authenticator
from modelapp_serving.dataplane import DataPlane
from modelapp_serving.errors import (
    BODY_OVER_LIMIT,
    InvalidInput,
    ModelNotFound,
    ModelNotReady,
    PayloadTooLarge,
    RequestTimeout,
    UnsupportedMediaType,
)
from modelapp_serving.metrics import Metrics

JSON = "application/json"
OCTET_STREAM = "application/octet-stream"
UNMATCHED = "unmatched"  # the endpoint label of a request no row matches
OTHER_METHOD = "other"  # the method label of a method no row declares
_BINARY_TYPES = frozenset({"", OCTET_STREAM, JSON})
_READ_CHUNK = 1 << 16


class Listener(enum.Enum):
    """The socket a request came in on: which rows it may reach (`hidden`)."""

    PUBLIC = "public"  # the app's port, behind the Service and its load balancer: no internal row
    METRICS = "metrics"  # the metrics port, which no Service exposes: internal rows only
    ONLY = "only"  # the one socket of an app built without the split (the Flask test client): every row


class BodyKind(enum.Enum):
    NONE = "none"  # a GET: no body is read
    JSON = "json"  # JSON only (v1, /score)
    TENSORS = "tensors"  # JSON, or OIP's binary tensor extension


@dataclass(frozen=True, slots=True)
class Body:
    data: bytes
    header_length: int | None  # the binary extension's JSON header length, None for plain JSON


NO_BODY = Body(b"", None)


@dataclass(frozen=True, slots=True)
class Reply:
    payload: bytes
    content_type: str = JSON
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Served:
    """What handlers work on: the model's dataplane and the pod's metrics; `auth` None: no token needed."""

    dataplane: DataPlane
    metrics: Metrics
    auth: Authenticator | None = None


Handler = Callable[[Served, Mapping[str, str], Body], Reply]
_PARAMETER = re.compile(r"<([a-z_]+)>")


def rule_pattern(rule: str) -> re.Pattern[str]:
    """A Flask rule as a regular expression: `<x>` is one non-empty path segment, as Flask's default."""
    parts = _PARAMETER.split(rule)
    return re.compile("".join(re.escape(part) if i % 2 == 0 else f"(?P<{part}>[^/]+)" for i, part in enumerate(parts)))


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    rule: str  # Flask's rule syntax; also the metrics `endpoint` label
    handler: Handler
    body: BodyKind = BodyKind.NONE
    internal: bool = False  # answered on the metrics port only (a 404 on the public port)
    open: bool = False  # answered without a bearer token when authentication is on (the kubelet's probes)
    pattern: re.Pattern[str] = field(init=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "pattern", rule_pattern(self.rule))


# --- request rules shared by both paths ---------------------------------------------------------


def check_version(dataplane: DataPlane, name: str, version: str | None) -> None:
    """A `/versions/<v>` path names the served version or nothing at all (404)."""
    if version is not None and version != dataplane.info.version:
        raise ModelNotFound(f"{name}/versions/{version}")


def mimetype_of(content_type: str) -> str:
    """`Content-Type` without parameters, lower case (what Flask calls `request.mimetype`)."""
    return content_type.partition(";")[0].strip().lower()


def decimal(value: str) -> int | None:
    """A header's plain ASCII decimal number, else None (`str.isdigit` also takes '²' and other digits)."""
    return int(value) if value.isascii() and value.isdigit() else None


def read_body(stream: IO[bytes], content_length: str | None, *, limit: int) -> bytes:
    """The whole body, never more than `limit` bytes: 413 past it, counted for chunked bodies too.

    A client too slow to send it (the worker's read deadline, `worker.py`) gets a 408.
    """
    try:
        if content_length:
            length = decimal(content_length)
            if length is None:
                raise InvalidInput("Content-Length must be a decimal number")
            if length > limit:
                raise PayloadTooLarge(BODY_OVER_LIMIT)
            data = stream.read(length) if length else b""
            if len(data) != length:
                raise InvalidInput(f"the request body ended after {len(data)} of {length} bytes")
            return data
        chunks: list[bytes] = []
        total = 0
        while True:  # no length given (chunked): read what comes, one byte past the limit at most
            chunk = stream.read(min(_READ_CHUNK, limit + 1 - total))
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)
            total += len(chunk)
            if total > limit:
                raise PayloadTooLarge(BODY_OVER_LIMIT)
    except TimeoutError:
        raise RequestTimeout("the request body was not received within the read timeout; send it at once") from None


def body_format(kind: BodyKind, *, content_type: str, encoding: str | None, header_length: str | None) -> int | None:
    """The content-type rules: the binary header length (None for JSON), or the 415/400 raised.

    JSON bodies (a missing Content-Type is taken as JSON, as OIP clients often send none), or, with
    `Inference-Header-Content-Length`, the binary tensor extension's content types and a numeric
    length; only OIP inference (`BodyKind.TENSORS`) uses that length, the JSON-only routes read the
    body as JSON whatever it says.
    """
    if encoding is not None and encoding.strip().lower() != "identity":
        raise UnsupportedMediaType("compressed request bodies are not supported; send the body uncompressed")
    mimetype = mimetype_of(content_type)
    if header_length is None:
        if mimetype and mimetype != JSON and not mimetype.endswith("+json"):
            raise UnsupportedMediaType(f"content type {mimetype!r} is not supported; send application/json")
        return None
    if mimetype not in _BINARY_TYPES:
        raise UnsupportedMediaType(
            f"content type {mimetype!r} is not supported with binary tensors; send application/octet-stream"
        )
    length = decimal(header_length)
    if length is None:
        raise InvalidInput("Inference-Header-Content-Length must be a number (the JSON header's length in bytes)")
    return length if kind is BodyKind.TENSORS else None


# --- handlers -----------------------------------------------------------------------------------


def _json(payload: Any) -> Reply:
    return Reply(codecs.dumps(payload))


def _live(_served: Served, _params: Mapping[str, str], _body: Body) -> Reply:
    return _json({"live": True})


def _ready(served: Served, _params: Mapping[str, str], _body: Body) -> Reply:
    served.dataplane.require_server_ready()
    return _json({"ready": True})


def _server_metadata(served: Served, _params: Mapping[str, str], _body: Body) -> Reply:
    return _json(served.dataplane.server_metadata())


def _version(served: Served, _params: Mapping[str, str], _body: Body) -> Reply:
    return _json(served.dataplane.version())


def _model_metadata(served: Served, params: Mapping[str, str], _body: Body) -> Reply:
    check_version(served.dataplane, params["name"], params.get("version"))
    return _json(served.dataplane.model_metadata(params["name"]))


def _card(served: Served, params: Mapping[str, str], _body: Body) -> Reply:
    return Reply(served.dataplane.card(params["name"]))


def _model_ready(served: Served, params: Mapping[str, str], _body: Body) -> Reply:
    name, dataplane = params["name"], served.dataplane
    check_version(dataplane, name, params.get("version"))
    if not dataplane.model_ready(name):
        raise ModelNotReady(dataplane.load_error or f"model {name!r} is still loading")
    return _json({"name": name, "ready": True})


def _infer(served: Served, params: Mapping[str, str], body: Body) -> Reply:
    name = params["name"]
    check_version(served.dataplane, name, params.get("version"))
    payload, json_length = served.dataplane.infer(name, body.data, body.header_length)
    if json_length is None:
        return Reply(payload)
    return Reply(payload, OCTET_STREAM, (("Inference-Header-Content-Length", str(json_length)),))


def _v1_status(served: Served, params: Mapping[str, str], _body: Body) -> Reply:
    return _json({"name": params["name"], "ready": served.dataplane.model_ready(params["name"])})


def _v1_predict(served: Served, params: Mapping[str, str], body: Body) -> Reply:
    return Reply(served.dataplane.predict_v1(params["name"], body.data))


def _score(served: Served, _params: Mapping[str, str], body: Body) -> Reply:
    return Reply(served.dataplane.score(body.data))


def _metrics(served: Served, _params: Mapping[str, str], _body: Body) -> Reply:
    text, content_type = served.metrics.render()
    return Reply(text, content_type)


ROUTES: tuple[Route, ...] = (
    Route("GET", "/v2/health/live", _live, open=True),
    Route("GET", "/v2/health/ready", _ready, open=True),
    Route("GET", "/v2", _server_metadata),
    Route("GET", "/version", _version),
    Route("GET", "/v2/models/<name>", _model_metadata),
    Route("GET", "/v2/models/<name>/versions/<version>", _model_metadata),
    Route("GET", "/v2/models/<name>/ready", _model_ready),
    Route("GET", "/v2/models/<name>/card", _card),
    Route("GET", "/v2/models/<name>/versions/<version>/ready", _model_ready),
    Route("POST", "/v2/models/<name>/infer", _infer, BodyKind.TENSORS),
    Route("POST", "/v2/models/<name>/versions/<version>/infer", _infer, BodyKind.TENSORS),
    Route("GET", "/v1/models/<name>", _v1_status),
    Route("POST", "/v1/models/<name>:predict", _v1_predict, BodyKind.JSON),
    Route("POST", "/score", _score, BodyKind.JSON),
    Route("GET", "/metrics", _metrics, internal=True),
)

# The model calls: the rows the fast path answers (they carry a body).
MODEL_CALLS: tuple[Route, ...] = tuple(route for route in ROUTES if route.body is not BodyKind.NONE)

# Per listener, the rule patterns it must not answer (every method of them: no 405 telling they exist).
_HIDDEN: dict[Listener, tuple[re.Pattern[str], ...]] = {
    Listener.PUBLIC: tuple(route.pattern for route in ROUTES if route.internal),
    Listener.METRICS: tuple(route.pattern for route in ROUTES if not route.internal),
    Listener.ONLY: (),
}


def hidden(path: str, listener: Listener) -> bool:
    """Whether `path` names a row that this listener does not answer: a 404, as for a path no row has.

    Why the path and not the matched row: Flask answers a known rule with another method by a 405,
    which would tell a client on the public port that `/metrics` exists there. A rule is internal
    for all its methods (`test_routes` checks that no rule is both).
    """
    return any(pattern.fullmatch(path) for pattern in _HIDDEN[listener])


_OPEN: tuple[re.Pattern[str], ...] = tuple(route.pattern for route in ROUTES if route.open)


def needs_token(path: str, listener: Listener) -> bool:
    """Whether a request for `path` on `listener` must carry the bearer token (when authentication is on).

    By path, for every method, and for paths no row has too: without the token a client learns nothing
    (not even which routes exist) beyond the open probes. The metrics listener is never public."""
    return listener is not Listener.METRICS and not any(pattern.fullmatch(path) for pattern in _OPEN)


# Labels: HEAD and OPTIONS are answered for every GET row (by Flask), so they count as the table's.
METHODS: frozenset[str] = frozenset({route.method for route in ROUTES} | {"HEAD", "OPTIONS"})


def method_label(method: str) -> str:
    """The metrics `method` label: a table method, else one shared label (clients may invent methods)."""
    return method if method in METHODS else OTHER_METHOD
