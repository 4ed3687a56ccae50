"""gunicorn's threaded worker, made to hold slow clients in its poller instead of its threads.

Why: gthread hands a connection to one of a worker's few threads as soon as a byte arrives, and
the thread then blocks on the socket until the whole request head (and later the body) is in. A
handful of clients that open connections and send a few bytes now and then (slowloris) therefore
hold every thread of every worker, and the liveness probe, which needs a thread too, goes
unanswered until the kubelet restarts a pod that is perfectly healthy.

What this worker does differently (everything else is gthread's):

- A connection, new or kept alive, stays in the worker's poller until its request is buffered: the
  head complete, and the body too when it has a `Content-Length` that fits `GATE_BYTES` (else the
  first `GATE_BYTES` of it). The bytes are read without blocking in the poller and handed to the
  request parser, so a thread is taken only by a request it can start on at once. A connection
  whose request is not buffered within `header_timeout` seconds is closed.
- A request whose body did not fit the gate (chunked, or over `GATE_BYTES`) is streamed by its
  thread, and at most `threads - 1` threads of a worker stream at once: the others wait in the
  poller (up to `read_timeout`), so one thread always stays for the probes and complete requests.
- Once a thread has a request, reading it (the head's remainder, the body, a chunked body) has a
  deadline of `read_timeout` seconds in all, not per read: a client trickling a large body holds
  a thread for at most that long. A read past the deadline raises `TimeoutError` in the app
  (answered 408 by `routes.read_body`) or in gunicorn's parser (the connection is closed). Sending
  the response is bounded by `read_timeout` too (`SO_SNDTIMEO`), for clients that never read it.
- A head asking for `Expect: 100-continue` is answered `100 Continue` from the poller, so that the
  client sends its body (curl waits a second for it otherwise).

What it does not do: limit connections per client (a load balancer's job); gunicorn's
`worker_connections` still caps connections per worker.
"""

from __future__ import annotations

import contextlib
import re
import selectors
import socket
import struct
import time
from collections import deque
from functools import partial
from typing import Any

from gunicorn import http
from gunicorn.workers.gthread import ThreadWorker

GATE_BYTES = 64 * 1024  # bytes of a request buffered in the poller before a thread takes it
_HEAD_END = b"\r\n\r\n"
_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length[ \t]*:[ \t]*([0-9]{1,12})[ \t]*\r\n", re.IGNORECASE)
_CHUNKED = re.compile(rb"\r\ntransfer-encoding[ \t]*:[^\r\n]*chunked", re.IGNORECASE)
_EXPECT_CONTINUE = re.compile(rb"\r\nexpect[ \t]*:[ \t]*100-continue[ \t]*\r\n", re.IGNORECASE)
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


def expects_continue(data: bytes | bytearray) -> bool:
    """Whether a complete head asks for `100 Continue` before its body (curl does for bodies over 1 KiB)."""
    end = data.find(_HEAD_END)
    return end >= 0 and _EXPECT_CONTINUE.search(bytes(data[: end + 2])) is not None


PARTIAL, COMPLETE, STREAMING = "partial", "complete", "streaming"


def buffer_state(data: bytes | bytearray, *, gate_bytes: int = GATE_BYTES) -> str:
    """What `data`, the start of a request, allows (pure): wait for more, or hand it to a thread.

    PARTIAL: the head, or a body of known length that fits the gate, is still coming. COMPLETE: the
    whole request is in. STREAMING: the head is in, and the thread will read the rest of the body
    (chunked, or longer than the gate holds) under the read deadline; so is a head longer than the
    gate, which gunicorn's parser refuses at once.
    """
    end = data.find(_HEAD_END)
    if end < 0:
        return STREAMING if len(data) >= gate_bytes else PARTIAL
    head = bytes(data[: end + 2])
    match = _CONTENT_LENGTH.search(head)
    if match is None:
        return STREAMING if _CHUNKED.search(head) else COMPLETE
    received, length = len(data) - (end + len(_HEAD_END)), int(match.group(1))
    if received >= length:
        return COMPLETE
    return STREAMING if len(data) >= gate_bytes else PARTIAL


def buffered_enough(data: bytes | bytearray, *, gate_bytes: int = GATE_BYTES) -> bool:
    """Whether a thread may take a connection holding `data` (its request is COMPLETE or STREAMING)."""
    return buffer_state(data, gate_bytes=gate_bytes) != PARTIAL


class DeadlineSocket:
    """A socket whose reads share one deadline: each `recv` may wait only for the time left."""

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self.sock = sock
        self.deadline = deadline

    def recv(self, size: int) -> bytes:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the request was not received within the read timeout")
        prior = self.sock.gettimeout()
        self.sock.settimeout(left)
        try:
            return self.sock.recv(size)
        finally:
            self.sock.settimeout(prior)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.sock, name)


class GatedThreadWorker(ThreadWorker):  # type: ignore[misc]
    """gthread, with requests buffered in the poller first and a deadline on reading them.

    gunicorn has no setting for either timeout, so they are class attributes: `gated_worker(...)`
    makes a subclass with the values `serve` was given, before the workers fork.
    """

    header_timeout = 10.0
    read_timeout = 30.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.gated: deque[Any] = deque()  # connections waiting for their request, oldest first
        self.parked: deque[Any] = deque()  # streaming requests waiting for a thread, oldest first
        self.streaming = 0  # threads reading a body that did not fit the gate
        # One thread always stays free of streaming bodies, for the probes and complete requests.
        self.max_streaming = max(1, self.cfg.threads - 1)

    def accept(self, listener: socket.socket) -> None:
        """Like gthread's accept, but the new connection waits in the poller for its request."""
        try:
            client_sock, client_addr = listener.accept()
        except (BlockingIOError, InterruptedError, ConnectionAbortedError):
            return  # another worker took it, or the client gave up
        self.nr_conns += 1
        # Sending a response is bounded by the kernel (a client that never reads it), set once here.
        seconds = int(self.read_timeout)
        client_sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, struct.pack("ll", seconds, 0))
        conn = http_conn(self.cfg, client_sock, client_addr, listener.getsockname())
        self._gate(conn)

    def on_client_socket_readable(self, conn: Any, client: Any) -> None:
        """A kept-alive connection became readable: its next request is gated like a new one."""
        self.poller.unregister(client)
        self.keepalived_conns.remove(conn)
        self._gate(conn)

    def _gate(self, conn: Any) -> None:
        conn.buffered = bytearray()
        conn.continued = False  # `100 Continue` sent for this request
        conn.gone = False  # the client closed or broke the connection before its request was in
        conn.timeout = time.monotonic() + self.header_timeout
        if self._read_available(conn):
            self.gated.append(conn)
            self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._on_gated_readable, conn))

    def _on_gated_readable(self, conn: Any, client: Any) -> None:
        if self._read_available(conn, gated=True):
            return  # still waiting for the rest of the request
        self.poller.unregister(client)
        self.gated.remove(conn)
        self._leave_gate(conn)

    def _read_available(self, conn: Any, *, gated: bool = False) -> bool:
        """Read what the client has sent, without blocking; True while its request is still incomplete.

        A connection that is done waiting (complete, closed, broken) is handed on or closed here,
        after `_on_gated_readable` took it off the poller (`gated`).
        """
        try:  # one read per readiness event: what is not here yet makes the socket readable again
            data = conn.sock.recv(GATE_BYTES - len(conn.buffered))
        except (BlockingIOError, InterruptedError):
            return True
        except OSError:
            gone = True
        else:
            gone = not data  # the client closed before completing its request
            conn.buffered += data
        if gone:
            conn.gone = True
        elif not buffered_enough(conn.buffered):
            if not conn.continued and expects_continue(conn.buffered):
                # The client waits for this before sending its body (gunicorn would send it only
                # once a thread has the request); a second 100 later is allowed by HTTP/1.1.
                conn.continued = True
                with contextlib.suppress(OSError):  # a broken socket shows at the next read
                    conn.sock.send(CONTINUE)
            return True
        if not gated:
            self._leave_gate(conn)
        return False

    def _leave_gate(self, conn: Any) -> None:
        """A thread for a buffered request; the end for a connection the client closed or broke."""
        if conn.gone:
            self._close(conn)
            return
        if conn.parser is None:
            conn.parser = http.get_parser(self.cfg, conn.sock, conn.client)
        state = buffer_state(conn.buffered)
        conn.parser.unreader.unread(bytes(conn.buffered))
        conn.buffered = bytearray()
        conn.data_ready = True
        if state != STREAMING:
            self.enqueue_req(conn)
            return
        conn.timeout = time.monotonic() + self.read_timeout
        self.parked.append(conn)
        self._unpark()

    def _unpark(self) -> None:
        """Give streaming requests a thread while fewer than `max_streaming` threads read one."""
        while self.parked and self.streaming < self.max_streaming:
            conn = self.parked.popleft()
            conn.streaming = True
            self.streaming += 1
            self.enqueue_req(conn)

    def finish_request(self, conn: Any, fs: Any) -> None:
        """gthread's; a thread that read a streaming body is free for the next parked one."""
        if getattr(conn, "streaming", False):
            conn.streaming = False
            self.streaming -= 1
            self._unpark()
        super().finish_request(conn, fs)

    def _close(self, conn: Any) -> None:
        self.nr_conns -= 1
        conn.close()

    def murder_pending(self) -> None:
        """gthread's own pending connections, then those whose request did not arrive in time."""
        super().murder_pending()
        now = time.monotonic()
        while self.gated and self.gated[0].timeout <= now:
            conn = self.gated.popleft()
            with contextlib.suppress(OSError, KeyError, ValueError):  # already unregistered
                self.poller.unregister(conn.sock)
            self._close(conn)
        while self.parked and self.parked[0].timeout <= now:  # no thread came free in time
            self._close(self.parked.popleft())

    def handle(self, conn: Any) -> Any:
        """gthread's handler, with every read of this request sharing one deadline."""
        if conn.parser is not None and not conn.is_http2:
            unreader = conn.parser.unreader
            raw = unreader.sock.sock if isinstance(unreader.sock, DeadlineSocket) else unreader.sock
            unreader.sock = DeadlineSocket(raw, time.monotonic() + self.read_timeout)
        return super().handle(conn)


def gated_worker(*, header_timeout: float, read_timeout: float) -> type[GatedThreadWorker]:
    """The worker class with these timeouts (seconds), for gunicorn's `worker_class` setting."""
    return type(
        "GatedThreadWorker", (GatedThreadWorker,), {"header_timeout": header_timeout, "read_timeout": read_timeout}
    )


def http_conn(cfg: Any, sock: socket.socket, client: Any, server: Any) -> Any:
    """gthread's connection object (non-blocking until a thread takes it)."""
    from gunicorn.workers.gthread import TConn

    return TConn(cfg, sock, client, server)
