"""The inline worker's rules: which heads the event loop may answer itself, and what it writes.

Design notes: `parse_head` is the line between the loop (answers at once, one write) and gunicorn's
parser (judges everything else, refuses what it must). A head it accepts must be one gunicorn reads
the same way; anything unusual -- a query, an escape, an underscore or a space in a field name, a
field twice, chunked bodies, `Expect`, `Upgrade`, HTTP/1.0, other methods, a body on a GET, a cut
head -- must come back None, so the threads and gunicorn's parser see it. `render` must keep
gunicorn's own response form. The worker against real sockets: tests/integration/test_serve_inline.py
and every other test_serve_* module (they all run `serve`, which uses this worker).
"""

from __future__ import annotations

import io

import pytest

from modelapp_serving.fastpath import LISTENER_KEY
from modelapp_serving.inline import environ_of, parse_head, render
from modelapp_serving.routes import Listener

BODY = b'{"inputs": []}'
INFER = b"POST /v2/models/iris/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"


def test_a_plain_model_call_is_taken_with_its_fields() -> None:
    data = INFER + b"Content-Length: %d\r\nAuthorization: Bearer t0k\r\n\r\n" % len(BODY) + BODY + b"GET /next"
    head = parse_head(data)
    assert head is not None
    assert (head.method, head.path, head.body_length, head.close) == ("POST", "/v2/models/iris/infer", len(BODY), False)
    assert data[head.size : head.size + head.body_length] == BODY
    assert head.fields["authorization"] == "Bearer t0k"
    environ = environ_of(head, BODY, Listener.PUBLIC)
    assert environ["CONTENT_LENGTH"] == str(len(BODY)) and environ["CONTENT_TYPE"] == "application/json"
    assert environ["HTTP_AUTHORIZATION"] == "Bearer t0k" and environ[LISTENER_KEY] is Listener.PUBLIC
    assert isinstance(environ["wsgi.input"], io.BytesIO) and environ["wsgi.input"].read() == BODY


def test_probes_and_connection_close() -> None:
    head = parse_head(b"GET /v2/health/ready HTTP/1.1\r\nHost: x\r\nConnection: Close\r\n\r\n")
    assert head is not None and head.close and head.body_length == 0
    head = parse_head(b"GET /v2/health/live HTTP/1.1\r\n\r\n")
    assert head is not None and not head.close


@pytest.mark.parametrize(
    "data",
    [
        b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n",  # not whole yet
        b"GET /v2/health/live?x=1 HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /v2/health/%6cive HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET http://x/v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /v2/health/live HTTP/1.0\r\nHost: x\r\n\r\n",
        b"HEAD /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n",
        b"PUT /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET  /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /v2/health/live HTTP/1.1\r\nHost : x\r\n\r\n",
        b"GET /v2/health/live HTTP/1.1\r\nX_Forwarded_For: 1\r\n\r\n",
        b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n",
        b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n",
        b"GET /v2/health/live HTTP/1.1\r\nHost: caf\xc3\xa9\r\n\r\n",
        b"GET /v2/health/live HTTP/1.1\r\nHost: x\nY: z\r\n\r\n",
        b"GET /v2/health/live HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n",
        b"GET /v2/health/live HTTP/1.1\r\nContent-Length: 2\r\n\r\nab",
        INFER + b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        INFER + b"Content-Length: 2\r\nExpect: 100-continue\r\n\r\n{}",
        INFER + b"Content-Length: \xc2\xb2\r\n\r\n{}",
        INFER + b"Content-Length: 2\r\nContent-Length: 2\r\n\r\n{}",
        INFER + b"Content-Length: -2\r\n\r\n{}",
        INFER + b"X-Long: " + b"a" * 9000 + b"\r\n\r\n",
    ],
)
def test_anything_unusual_goes_to_gunicorns_parser(data: bytes) -> None:
    assert parse_head(data) is None


def test_render_is_gunicorns_form_in_one_piece() -> None:
    out = render(200, [("Content-Type", "application/json"), ("Content-Length", "2")], b"{}", date="D", close=False)
    assert out == (
        b"HTTP/1.1 200 OK\r\nServer: gunicorn\r\nDate: D\r\nConnection: keep-alive\r\n"
        b"Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
    )
    assert render(503, [], b"", date="D", close=True).startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
    assert b"\r\nConnection: close\r\n" in render(503, [], b"", date="D", close=True)
