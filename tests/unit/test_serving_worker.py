"""The gated worker's decision: when a thread may take a connection, from the bytes buffered so far.

Design notes: `buffered_enough` is the whole slowloris defence's rule, so each way a request can be
incomplete (head cut anywhere, a body still coming) or complete enough (body in, no body, chunked,
too large to buffer) is listed. `expects_continue` decides when the poller answers `100 Continue`
itself. The worker's behaviour against real sockets is tested in tests/integration
(test_serve_hostile.py: held-open connections, read deadline; test_serve_fuzz.py).
"""

from __future__ import annotations

import pytest

from modelapp_serving.worker import COMPLETE, GATE_BYTES, STREAMING, buffer_state, buffered_enough, expects_continue

HEAD = b"POST /score HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"G",
        b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n",
        b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r",
        HEAD + b"Content-Length: 10\r\n\r\n",
        HEAD + b"Content-Length: 10\r\n\r\n123456789",
        HEAD + b"content-length:\t10 \r\n\r\n12345",
        HEAD + b"Content-Length: 100000\r\n\r\n" + b"x" * 1000,
    ],
)
def test_incomplete_requests_wait_in_the_poller(data: bytes) -> None:
    assert not buffered_enough(data)


@pytest.mark.parametrize(
    "data",
    [
        b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n",
        HEAD + b"Content-Length: 10\r\n\r\n1234567890",
        HEAD + b"Content-Length: 0\r\n\r\n",
        HEAD + b"Transfer-Encoding: chunked\r\n\r\n",  # read by the thread, under the deadline
        HEAD + b"Content-Length: 10\r\n\r\n1234567890GET / HTTP/1.1\r\n",  # pipelined
        b"X" * GATE_BYTES,  # an oversized head: gunicorn refuses it at once
    ],
)
def test_buffered_requests_go_to_a_thread(data: bytes) -> None:
    assert buffered_enough(data)


def test_a_body_larger_than_the_gate_goes_once_the_gate_is_full() -> None:
    head = HEAD + b"Content-Length: 1000000\r\n\r\n"
    assert not buffered_enough(head + b"x" * (GATE_BYTES - len(head) - 1))
    assert buffered_enough(head + b"x" * (GATE_BYTES - len(head)))


def test_only_a_complete_head_asking_for_it_gets_100_continue() -> None:
    assert expects_continue(HEAD + b"Expect: 100-continue\r\nContent-Length: 5\r\n\r\n")
    assert expects_continue(HEAD + b"expect:100-Continue\r\n\r\n")
    assert not expects_continue(HEAD + b"Expect: 100-continue\r\n")  # head not complete yet
    assert not expects_continue(HEAD + b"Content-Length: 5\r\n\r\n")
    assert not expects_continue(HEAD + b"X-Expect: 100-continue\r\n\r\n")


def test_only_bodies_the_gate_cannot_hold_are_streamed_by_a_thread() -> None:
    assert buffer_state(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n") == COMPLETE
    assert buffer_state(HEAD + b"Content-Length: 3\r\n\r\nabc") == COMPLETE
    assert buffer_state(HEAD + b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc") == STREAMING
    head = HEAD + b"Content-Length: 1000000\r\n\r\n"
    assert buffer_state(head + b"x" * (GATE_BYTES - len(head))) == STREAMING
