"""gunicorn's threaded worker, made to hold slow clients in its poller instead of its threads.

Why: gthread hands a connection to one of a worker's few threads as soon as a byte arrives, and
the thread then blocks on the socket until the whole request head (and later the body) is in. A
handful of clients that open connections and send a few bytes now and then (slowloris) therefore
hold every thread of every worker, and the liveness probe, which needs a thread too, goes
unanswered until the kubelet restarts a pod that is perfectly healthy.

What this worker does differently (everything else is gthread's):

- A thread that gets a connection first reads what has arrived, without blocking (gthread's own
  first read, made non-blocking). If the request is not all there -- the head, and the body too
  when its `Content-Length` fits `GATE_BYTES` -- the bytes are kept and the connection goes back
  to the worker's poller; the thread is free at once. A connection whose request is not in within
  `header_timeout` seconds of its first byte (or of being accepted) is closed. So a thread only
  ever works on a request it can start on, and a trickling client costs a short wake-up per packet.
- A request whose body did not fit the gate (chunked, or over `GATE_BYTES`) is streamed by its
  thread, and at most `threads - 1` threads of a worker stream at once: the others wait in a
  queue (up to `read_timeout`), so one thread always stays for the probes and complete requests.
- Once a thread has a request, reading it (the head's remainder, the body, a chunked body) has a
  deadline of `read_timeout` seconds in all, not per read: a client trickling a large body holds
  a thread for at most that long. A read past the deadline raises `TimeoutError` in the app
  (answered 408 by `routes.read_body`) or in gunicorn's parser (the connection is closed). Sending
  the response is bounded by `read_timeout` too (`SO_SNDTIMEO`), for clients that never read it.
- A head asking for `Expect: 100-continue` is answered `100 Continue` by the gate, so that the
  client sends its body (curl waits a second for it otherwise).

Two more differences, for speed under load (issue 13, figures in benchmarks/README.md):

- Each response goes out in one write when it can (`OneWriteResponse`): gunicorn writes the head
  and then the body, two `sendall`s, and on a busy worker each is a GIL release and re-acquire
  behind the threads running models. The head is held until the first body bytes (or the end of
  the response) and sent with them.
- With gunicorn's `reuse_port` (set by `server.py`), every worker binds its own listening sockets
  (`SO_REUSEPORT`), so the kernel spreads new connections over the workers instead of the worker
  that wakes first taking most of them (15:1 measured between two workers).

What it does not do: limit connections per client (a load balancer's job); gunicorn's
`worker_connections` still caps connections per worker.

`serve` runs its subclass `inline.InlineWorker`, whose event loop plays the gate itself and answers the
plain requests without a thread; this class's threads, streaming queue and response class serve what
the loop hands them.
"""

from __future__ import annotations

import contextlib
import re
import selectors
import socket
import struct
import sys
import time
from collections import deque
from datetime import datetime
from functools import partial
from typing import Any

from gunicorn import http, util
from gunicorn.http import wsgi
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
    """gthread, with a thread giving back a request that is not in yet, and a deadline on reading it.

    The gate runs in the thread that received the connection, at the start of `handle`: one
    non-blocking read, as gthread's own first read would have been, so the common request costs no
    extra hand-off. The main thread only keeps the waiting connections in its poller (`_GATE`) and
    the streaming ones in a queue (`_PARK`), in `finish_request`. gunicorn has no setting for either
    timeout, so they are class attributes: `gated_worker(...)` makes a subclass with the values
    `serve` was given, before the workers fork.
    """

    header_timeout = 10.0
    read_timeout = 30.0
    alive: bool  # gunicorn's (untyped) attribute

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.gated: set[Any] = set()  # connections waiting in the poller for the rest of a request
        self.parked: deque[Any] = deque()  # streaming requests waiting for a thread, oldest first
        self.streaming = 0  # threads reading a body that did not fit the gate
        # One thread always stays free of streaming bodies, for the probes and complete requests.
        self.max_streaming = max(1, self.cfg.threads - 1)

    # --- main thread ----------------------------------------------------------------------------

    def accept(self, listener: socket.socket) -> None:
        """Like gthread's accept, but a new connection waits in the poller until it sends something."""
        try:
            client_sock, client_addr = listener.accept()
        except (BlockingIOError, InterruptedError, ConnectionAbortedError):
            return  # another worker took it, or the client gave up
        self.nr_conns += 1
        # Sending a response is bounded by the kernel (a client that never reads it), set once here.
        seconds = int(self.read_timeout)
        client_sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, struct.pack("ll", seconds, 0))
        conn = http_conn(self.cfg, client_sock, client_addr, listener.getsockname())
        conn.gate_deadline = time.monotonic() + self.header_timeout
        self._wait_in_poller(conn)

    def _wait_in_poller(self, conn: Any) -> None:
        conn.sock.setblocking(False)
        self.gated.add(conn)
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._on_gated_readable, conn))

    def _on_gated_readable(self, conn: Any, client: Any) -> None:
        self.poller.unregister(client)
        self.gated.discard(conn)
        self.enqueue_req(conn)

    def finish_request(self, conn: Any, fs: Any) -> None:
        """gthread's, plus: a request not in yet waits in the poller, a streaming one for a thread."""
        result = None if fs.cancelled() or fs.exception() is not None else fs.result()
        if result is _GATE and self.alive:
            self._wait_in_poller(conn)
            return
        if result is _PARK and self.alive:
            conn.park_deadline = time.monotonic() + self.read_timeout
            self.parked.append(conn)
            self._unpark()
            return
        if getattr(conn, "streaming", False):
            conn.streaming = False
            self.streaming -= 1
            self._unpark()
        if result is _GATE or result is _PARK:  # stopping: no more waiting
            self._close(conn)
            return
        super().finish_request(conn, fs)

    def _unpark(self) -> None:
        """Give streaming requests a thread while fewer than `max_streaming` threads read one."""
        while self.parked and self.streaming < self.max_streaming:
            conn = self.parked.popleft()
            conn.streaming = True
            self.streaming += 1
            self.enqueue_req(conn)

    def _close(self, conn: Any) -> None:
        self.nr_conns -= 1
        conn.close()

    def murder_pending(self) -> None:
        """gthread's own pending connections, then those whose request did not arrive in time."""
        super().murder_pending()
        now = time.monotonic()
        for conn in [conn for conn in self.gated if conn.gate_deadline <= now]:
            self.gated.discard(conn)
            with contextlib.suppress(OSError, KeyError, ValueError):  # already unregistered
                self.poller.unregister(conn.sock)
            self._close(conn)
        while self.parked and self.parked[0].park_deadline <= now:  # no thread came free in time
            self._close(self.parked.popleft())

    # --- worker threads -------------------------------------------------------------------------

    def handle(self, conn: Any) -> Any:
        """The gate, then gthread's handler with every read of this request sharing one deadline."""
        if not getattr(conn, "let_through", False):
            verdict = self._gate(conn)
            if verdict is not None:
                return verdict
        conn.let_through = False
        unreader = conn.parser.unreader
        raw = unreader.sock.sock if isinstance(unreader.sock, DeadlineSocket) else unreader.sock
        unreader.sock = DeadlineSocket(raw, time.monotonic() + self.read_timeout)
        return super().handle(conn)

    def handle_request(self, req: Any, conn: Any) -> bool:
        """gthread's `handle_request` (gunicorn 27), with the one change of answering through
        `OneWriteResponse`; gthread offers no setting for the response class."""
        environ: dict[str, Any] = {}
        resp = None
        try:
            self.cfg.pre_request(self, req)
            request_start = datetime.now()
            resp, environ = wsgi.create(
                req, conn.sock, conn.client, conn.server, self.cfg, response_class=OneWriteResponse
            )
            environ["wsgi.multithread"] = True
            self._count_request(resp)
            respiter = self.wsgi(environ, resp.start_response)
            try:
                _send(resp, respiter, environ)
            finally:
                self.log.access(resp, req, environ, datetime.now() - request_start)
                if hasattr(respiter, "close"):
                    respiter.close()
            if resp.should_close():
                self.log.debug("Closing connection.")
                return False
        except OSError:
            util.reraise(*sys.exc_info())
        except (Exception, SystemExit):
            if resp and resp.headers_sent:
                # A started response cannot be followed by a 500 on the same socket (gthread's rule).
                self.log.exception("Error handling request")
                util.close_graceful(conn.sock)
                raise StopIteration() from None
            raise
        finally:
            try:
                self.cfg.post_request(self, req, environ, resp)
            except Exception:
                self.log.exception("Exception in post_request hook")
        return True

    def _count_request(self, resp: Any) -> None:
        """gthread's bookkeeping: restart after `max_requests`, close when stopping or kept-alive are full."""
        self.nr += 1
        if self.nr >= self.max_requests:
            if self.alive:
                self.log.info("Autorestarting worker after current request.")
                self.alive = False
            resp.force_close()
        if not self.alive or not self.cfg.keepalive or len(self.keepalived_conns) >= self.max_keepalived:
            resp.force_close()

    def _gate(self, conn: Any) -> Any:
        """Read what has arrived (without blocking); None when the request may be handled now.

        Else `_GATE` (wait in the poller for more), `_PARK` (a streaming body: wait for a thread
        allowed to stream it) or False (the client closed or broke the connection: close it).
        """
        if getattr(conn, "buffered", None) is None:  # a new request: start from what is buffered already
            ahead = conn.parser.unreader.take_buffered() if conn.parser is not None else b""
            conn.buffered = bytearray(ahead)
            conn.continued = False  # `100 Continue` sent for this request
            if getattr(conn, "gate_deadline", None) is None:
                conn.gate_deadline = time.monotonic() + self.header_timeout
        state = buffer_state(conn.buffered)
        if state == PARTIAL:
            try:  # one read per readiness event: what is not here yet makes the socket readable again
                data = conn.sock.recv(GATE_BYTES - len(conn.buffered))
            except (BlockingIOError, InterruptedError):
                return _GATE
            except OSError:
                return False
            if not data:  # the client closed before completing its request
                return False
            conn.buffered += data
            state = buffer_state(conn.buffered)
        if state == PARTIAL:
            if not conn.continued and expects_continue(conn.buffered):
                # The client waits for this before sending its body (gunicorn would send it only
                # once it parses the request); a second 100 later is allowed by HTTP/1.1.
                conn.continued = True
                with contextlib.suppress(OSError):  # a broken socket shows at the next read
                    conn.sock.send(CONTINUE)
            return _GATE
        if conn.parser is None:
            conn.parser = http.get_parser(self.cfg, conn.sock, conn.client)
        conn.parser.unreader.unread(bytes(conn.buffered))
        conn.buffered = None
        conn.gate_deadline = None
        conn.data_ready = True
        if state == STREAMING:
            conn.let_through = True
            return _PARK
        return None


def _send(resp: Any, respiter: Any, environ: dict[str, Any]) -> None:
    if isinstance(respiter, environ["wsgi.file_wrapper"]):
        resp.write_file(respiter)
    else:
        for item in respiter:
            resp.write(item)
    resp.close()


class OneWriteResponse(wsgi.Response):  # type: ignore[misc]
    """gunicorn's response, with the head sent together with the first body bytes: one write.

    `send_headers` renders the head as gunicorn does but holds it; the first body write (or the
    end of the response, for a response without a body) sends it, joined to the body unless the
    body is chunked. `headers_sent` turns true when the head is rendered, as in gunicorn, so the
    rules that read it (no 500 after a started response) are unchanged.
    """

    held: bytes | None = None
    headers_sent: bool  # gunicorn's (untyped) attribute

    def send_headers(self) -> None:
        if self.headers_sent:
            return
        lines = self.default_headers()
        lines.extend(f"{name}: {value}\r\n" for name, value in self.headers)
        self.held = util.to_bytestring("{}\r\n".format("".join(lines)), "latin-1")
        self.headers_sent = True

    def flush_head(self) -> None:
        held, self.held = self.held, None
        if held is not None:
            util.write(self.sock, held)

    def _emit_body(self, data: bytes) -> None:
        held = self.held
        if held is not None and not self.chunked:
            self.held = None
            util.write(self.sock, held + data)
            return
        self.flush_head()
        super()._emit_body(data)

    def sendfile(self, respiter: Any) -> bool:
        self.send_headers()
        self.flush_head()
        return bool(super().sendfile(respiter))

    def close(self) -> None:
        self.send_headers()
        self.flush_head()
        super().close()


_GATE = object()  # `handle` result: the request is not in yet, wait in the poller
_PARK = object()  # `handle` result: a streaming body, wait for a thread allowed to stream it


def gated_worker(*, header_timeout: float, read_timeout: float) -> type[GatedThreadWorker]:
    """The worker class with these timeouts (seconds), for gunicorn's `worker_class` setting."""
    return type(
        "GatedThreadWorker", (GatedThreadWorker,), {"header_timeout": header_timeout, "read_timeout": read_timeout}
    )


def http_conn(cfg: Any, sock: socket.socket, client: Any, server: Any) -> Any:
    """gthread's connection object (non-blocking until a thread takes it)."""
    from gunicorn.workers.gthread import TConn

    return TConn(cfg, sock, client, server)
