"""gunicorn's worker for `serve`: the plain requests answered on the event loop, the rest by threads.

Why (issue 13, figures in benchmarks/README.md): py-spy on a gthread worker under load showed its
per-request hand-offs -- the poller gives a connection to a pool thread, the thread gives it back
through a pipe -- and the GIL waits after each of those syscalls costing several times the model call
itself (ONNX: ~50 us of model, ~470 us of CPU per request through gunicorn). A one-thread server around
the same dataplane did 4x the requests. This worker keeps gunicorn (its master, the worker timeout,
`child_exit`, a listening socket per worker) and the gated thread worker (`worker.py`) for everything
it already handles, and takes the common case off the threads:

- Every connection stays in the worker's poller between requests, and the loop thread reads what has
  arrived (one non-blocking `recv` per readiness event) into the connection's buffer.
- When the buffer holds a whole request in the plain form (`parse_head`: HTTP/1.1, GET or POST, a
  path without query or escapes, well-formed header fields, a `Content-Length` body, no
  `Transfer-Encoding`, `Expect` or `Upgrade`), on the public listener, for a row the fast path takes
  (`ModelCallPath.plan`: the model calls and the probes), the loop answers it right there with the
  fast path's own `respond` (same handlers, rules, errors and metric labels as under WSGI) and writes
  the response with one `send`. Requests pipelined behind it are answered in turn.
- Anything else goes to the gated worker's threads as before, its bytes given to gunicorn's parser:
  other rows and methods, the metrics listener, unusual heads (gunicorn's parser judges them, and
  answers 400 where it must); a body that does not fit the gate (chunked, or over 64 KiB) waits for a
  streaming thread under the read deadline (408), at most `threads - 1` of them at once.
- A request not in within `header_timeout` of its connection's first byte (or of being accepted) is
  closed, as is an idle kept-alive connection after gunicorn's `keepalive` seconds. `100 Continue`
  is sent as soon as a head asking for it is in.
- A row whose answers take long (each of its last `_WINDOW` over `INLINE_BUDGET` of CPU or
  `WAIT_BUDGET` on the clock) would hold the loop, and so the probes, for that long: its requests go
  to the threads for `COOL_OFF` seconds, then it is tried again.
- A response the socket does not take at once (a client that does not read) is finished by a thread,
  bounded by `SO_SNDTIMEO` (`read_timeout`), never by the loop.

What stays gunicorn's: the master and its worker timeout (the loop tells the master it is alive about
twice a second, so a model call stuck on the loop gets the worker killed and replaced; `child_exit`
then clears its readiness marker), `max_requests`, graceful stop (a stopping worker answers with
`Connection: close`), `worker_connections`.
"""

from __future__ import annotations

import contextlib
import io
import re
import selectors
import socket
import struct
import time
from collections import deque
from dataclasses import dataclass
from functools import partial
from typing import Any

from gunicorn import SERVER, util
from gunicorn.workers.gthread import STOP_KEEPALIVE_LINGER

from modelapp_serving.fastpath import LISTENER_KEY, ModelCallPath, status_line
from modelapp_serving.routes import Listener
from modelapp_serving.worker import (
    CONTINUE,
    PARTIAL,
    STREAMING,
    GatedThreadWorker,
    buffer_state,
    expects_continue,
    http_conn,
)

INLINE_BUDGET = 0.005  # CPU seconds: a row whose last `_WINDOW` answers all took more goes to the threads
WAIT_BUDGET = 0.05  # seconds on the clock: the same, for answers that wait (a model calling out, sleeping)
_WINDOW = 4  # answers looked at: a slow row is slow every time, a preempted answer only once in a while
COOL_OFF = 30.0  # seconds a slow row stays with the threads before the loop tries it again
_HOUSEKEEPING = 0.5  # seconds between the loop's timeout checks and its word to the master
_READ = 65536
_MAX_HEAD = 8190  # gunicorn's `limit_request_field_size`; a longer head goes to its parser
_MAX_FIELDS = 100  # gunicorn's `limit_request_fields`
_HEAD_END = b"\r\n\r\n"
_REQUEST_LINE = re.compile(rb"(GET|POST) (/[-A-Za-z0-9._~!$&'()*+,;=:@/]*) HTTP/1\.1")
_FIELD = re.compile(rb"([-A-Za-z0-9!#$&'*+.^`|~]+):[ \t]*([\x21-\x7e](?:[\x20-\x7e\t]*[\x21-\x7e])?)?[ \t]*")
_HANDED_OFF = frozenset({"transfer-encoding", "expect", "upgrade", "te", "http2-settings", "trailer"})


@dataclass(frozen=True, slots=True)
class Head:
    """A request head in the plain form: what the loop needs to answer it."""

    method: str
    path: str
    fields: dict[str, str]  # lower-case names
    size: int  # bytes of the head, its blank line included
    body_length: int
    close: bool  # the client asked for `Connection: close`


def parse_head(data: bytes) -> Head | None:
    """The head at the start of `data` when it is whole and in the plain form, else None (pure).

    None hands the request to gunicorn's parser, which judges anything unusual: this never answers a
    request gunicorn would refuse, and never refuses one. Plain: `GET` or `POST`, HTTP/1.1, an
    origin-form path without `?`, `%` or `#`, each field a token name (no `_`, which gunicorn drops)
    and a printable ASCII value, no name twice, a decimal `Content-Length` (none or 0 for GET), no
    `Transfer-Encoding`, `Expect` or `Upgrade`, `Connection` at most `close` or `keep-alive`.
    """
    end = data.find(_HEAD_END)
    if end < 0 or end + 4 > _MAX_HEAD:
        return None
    lines = data[:end].split(b"\r\n")
    request = _REQUEST_LINE.fullmatch(lines[0])
    fields = _plain_fields(lines[1:]) if request is not None else None
    if request is None or fields is None:
        return None
    length_text = fields.get("content-length", "0")
    method, length = request.group(1).decode("ascii"), int(length_text) if length_text.isdigit() else -1
    connection = fields.get("connection", "keep-alive").lower()
    if length < 0 or len(length_text) > 12 or (method == "GET" and length) or connection not in ("close", "keep-alive"):
        return None
    return Head(method, request.group(2).decode("ascii"), fields, end + 4, length, connection == "close")


def _plain_fields(lines: list[bytes]) -> dict[str, str] | None:
    """Header fields by lower-case name, or None if one is not plain (or a name comes twice)."""
    if len(lines) > _MAX_FIELDS:
        return None
    fields: dict[str, str] = {}
    for line in lines:
        field = _FIELD.fullmatch(line)
        if field is None:
            return None
        name = field.group(1).decode("ascii").lower()
        if name in fields or name in _HANDED_OFF:
            return None
        fields[name] = (field.group(2) or b"").decode("ascii")
    return fields


def environ_of(head: Head, body: bytes, listener: Listener) -> dict[str, Any]:
    """The WSGI environ keys the fast path reads (`plan`, `respond`), for a plain head (pure)."""
    environ: dict[str, Any] = {
        "REQUEST_METHOD": head.method,
        "PATH_INFO": head.path,
        "SERVER_PROTOCOL": "HTTP/1.1",
        "CONTENT_TYPE": head.fields.get("content-type", ""),
        "wsgi.input": io.BytesIO(body),
        LISTENER_KEY: listener,
    }
    if "content-length" in head.fields:
        environ["CONTENT_LENGTH"] = head.fields["content-length"]
    for name, value in head.fields.items():
        if name not in ("content-type", "content-length"):
            environ["HTTP_" + name.upper().replace("-", "_")] = value
    return environ


def render(status: int, headers: list[tuple[str, str]], payload: bytes, *, date: str, close: bool) -> bytes:
    """The whole response in gunicorn's form (status line, Server, Date, Connection, headers): one write."""
    lines = [f"HTTP/1.1 {status_line(status)}\r\nServer: {SERVER}\r\nDate: {date}\r\n"]
    lines.append("Connection: close\r\n" if close else "Connection: keep-alive\r\n")
    lines.extend(f"{name}: {value}\r\n" for name, value in headers)
    lines.append("\r\n")
    return "".join(lines).encode("latin-1") + payload


class InlineWorker(GatedThreadWorker):
    """The gated thread worker, with the plain requests answered on its loop thread (module docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.polled: set[Any] = set()  # connections waiting in the poller (idle or with a partial request)
        self.fast: ModelCallPath | None = None
        self.slow_rows: dict[str, float] = {}  # row -> until when its requests go to the threads
        self.row_seconds: dict[str, deque[tuple[float, float]]] = {}  # row -> last answers' (CPU, clock) seconds
        self._date = ("", -1)

    def load_wsgi(self) -> None:
        super().load_wsgi()
        fast = getattr(self.wsgi, "wsgi_app", None)  # the Flask app's own WSGI callable: the fast path
        self.fast = fast if isinstance(fast, ModelCallPath) else None

    # --- the loop -------------------------------------------------------------------------------

    def run(self) -> None:
        self.poller.register(self.method_queue.fileno(), selectors.EVENT_READ, self.method_queue.run_callbacks)
        self.set_accept_enabled(True)
        next_check = 0.0
        while self.alive:
            now = time.monotonic()
            if now >= next_check:
                next_check = now + _HOUSEKEEPING
                self.notify()
                if not self.is_parent_alive():
                    break
                self._expire(now)
            can_accept = self.nr_conns < self.worker_connections
            if can_accept != self._accepting:
                self.set_accept_enabled(can_accept)
            self.wait_for_and_dispatch_events(timeout=_HOUSEKEEPING)
        self._stop()

    def _stop(self) -> None:
        """Graceful stop: no new connections; idle ones closed after a short linger; the rest finished."""
        self.set_accept_enabled(False)
        linger = time.monotonic() + STOP_KEEPALIVE_LINGER
        for conn in self.polled:
            if conn.buffered is None:
                conn.deadline = min(conn.deadline, linger)
        graceful = time.monotonic() + self.cfg.graceful_timeout
        while self.nr_conns > 0 and time.monotonic() < graceful:
            self.notify()
            self.wait_for_and_dispatch_events(timeout=0.2)
            self._expire(time.monotonic())
        for conn in list(self.polled):
            self._drop(conn)
        self.tpool.shutdown(wait=False)
        self.poller.close()
        self.method_queue.close()
        for listener in self.sockets:
            listener.close()

    def _expire(self, now: float) -> None:
        """Close connections past their deadline, and streaming requests no thread took in time."""
        for conn in [conn for conn in self.polled if conn.deadline <= now]:
            self._drop(conn)
        while self.parked and self.parked[0].park_deadline <= now:
            self._close(self.parked.popleft())

    def accept(self, listener: socket.socket) -> None:
        try:
            sock, address = listener.accept()
        except (BlockingIOError, InterruptedError, ConnectionAbortedError):
            return  # another worker took it, or the client gave up
        self.nr_conns += 1
        seconds = int(self.read_timeout)  # a response the client never reads: bounded by the kernel
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, struct.pack("ll", seconds, 0))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn = http_conn(self.cfg, sock, address, listener.getsockname())
        conn.listener = self.fast.listener_of({"gunicorn.socket": sock}) if self.fast is not None else None
        conn.buffered = None
        conn.continued = False
        self._poll(conn, time.monotonic() + self.header_timeout)

    def _poll(self, conn: Any, deadline: float) -> None:
        conn.deadline = deadline
        conn.sock.setblocking(False)
        self.polled.add(conn)
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._readable, conn))

    def _unpoll(self, conn: Any) -> None:
        self.polled.discard(conn)
        with contextlib.suppress(OSError, KeyError, ValueError):
            self.poller.unregister(conn.sock)

    def _drop(self, conn: Any) -> None:
        self._unpoll(conn)
        self._close(conn)

    def _readable(self, conn: Any, _sock: Any) -> None:
        try:
            data = conn.sock.recv(_READ)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:  # the client closed (or broke) the connection
            self._drop(conn)
            return
        if conn.buffered is None:  # the first bytes of a request: its head timeout starts now
            conn.buffered = data
            conn.deadline = time.monotonic() + self.header_timeout
        else:
            conn.buffered += data
        self._serve(conn)

    def _serve(self, conn: Any) -> None:
        """Answer the complete requests at the start of the buffer; wait for more, or hand one off."""
        while conn.buffered:
            head = parse_head(conn.buffered)
            if head is not None and len(conn.buffered) >= head.size + head.body_length:
                answered = self._answer(conn, head)  # the common case: one plain request, whole
                if answered:
                    continue
                if answered is False:  # closed, or its response went to a thread
                    return
            state = buffer_state(conn.buffered)
            if state == PARTIAL:
                if not conn.continued and expects_continue(conn.buffered):
                    conn.continued = True
                    with contextlib.suppress(OSError):  # a broken socket shows at the next read
                        conn.sock.send(CONTINUE)
                return
            self._hand_off(conn, streaming=state == STREAMING)
            return
        conn.buffered = None
        conn.continued = False
        conn.deadline = time.monotonic() + self.cfg.keepalive

    def _answer(self, conn: Any, head: Head) -> bool | None:
        """Answer the head's request on this thread: True to go on with the buffer, False when the
        connection left the loop, None when the fast path does not take it (the threads will)."""
        fast, listener = self.fast, conn.listener
        if fast is None or listener is None or listener is Listener.METRICS:
            return None
        end = head.size + head.body_length
        environ = environ_of(head, conn.buffered[head.size : end], listener)
        planned = fast.plan(environ)
        if planned is None:
            return None
        rule = planned.route.rule
        if rule in self.slow_rows:
            if time.monotonic() < self.slow_rows[rule]:
                return None
            del self.slow_rows[rule]
        started, cpu = time.perf_counter(), time.thread_time()
        status, headers, payload = fast.respond(environ, planned)
        self._time_row(rule, time.thread_time() - cpu, time.perf_counter() - started)
        self.nr += 1
        close = head.close or not self.alive or self.nr >= self.max_requests or self.nr_conns > self.max_keepalived
        if self.nr >= self.max_requests and self.alive:
            self.log.info("Autorestarting worker after current request.")
            self.alive = False
        out = render(status, headers, payload, date=self._http_date(), close=close)
        conn.buffered = conn.buffered[end:]
        conn.continued = False
        return self._send(conn, out, close=close)

    def _send(self, conn: Any, out: bytes, *, close: bool) -> bool:
        """One `send`; what the socket does not take goes to a thread. True while the loop keeps the connection."""
        try:
            sent = conn.sock.send(out)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            self._drop(conn)
            return False
        if sent < len(out):
            self._unpoll(conn)
            self._submit(conn, partial(_send_rest, conn, out[sent:], not close))
            return False
        if close:
            self._drop(conn)
            return False
        return True

    def _time_row(self, rule: str, cpu: float, clock: float) -> None:
        """Keep the row's last answer times; when even the quickest of them is over a budget, the row
        goes to the threads. Why CPU time, and the quickest: on a loaded machine a quick answer is often
        preempted (measured: 4 answers in a row of 6.5 ms or more on the clock for a 0.2 ms ONNX call
        at load 14, which sent quick rows to the threads); CPU time does not count the preemption. A
        model that waits without CPU (a call out, a sleep) is caught by the clock's larger budget."""
        last = self.row_seconds.setdefault(rule, deque(maxlen=_WINDOW))
        last.append((cpu, clock))
        if len(last) < _WINDOW:
            return
        quickest_cpu, quickest_clock = min(cpu for cpu, _ in last), min(clock for _, clock in last)
        if quickest_cpu > INLINE_BUDGET or quickest_clock > WAIT_BUDGET:
            self.log.info("%s answers take %.1f ms of CPU, %.1f ms on the clock or more: handled by threads for %.0f s",
                          rule, quickest_cpu * 1e3, quickest_clock * 1e3, COOL_OFF)  # fmt: skip
            self.slow_rows[rule] = time.monotonic() + COOL_OFF
            last.clear()

    def _http_date(self) -> str:
        second = int(time.time())
        if self._date[1] != second:
            self._date = (util.http_date(second), second)
        return self._date[0]

    # --- the threads ----------------------------------------------------------------------------

    def _hand_off(self, conn: Any, *, streaming: bool) -> None:
        """The request at the start of the buffer to gunicorn's parser and a thread, as the gate would."""
        from gunicorn import http

        self._unpoll(conn)
        if conn.parser is None:
            conn.parser = http.get_parser(self.cfg, conn.sock, conn.client)
        conn.parser.unreader.unread(bytes(conn.buffered))
        conn.buffered = None
        conn.data_ready = True
        conn.let_through = True  # the thread skips the gate: this loop was it
        if streaming:
            conn.park_deadline = time.monotonic() + self.read_timeout
            self.parked.append(conn)
            self._unpark()
        else:
            self.enqueue_req(conn)

    def _submit(self, conn: Any, job: Any) -> None:
        future = self.tpool.submit(job)
        future.add_done_callback(lambda done: self.method_queue.defer(self.finish_request, conn, done))

    def finish_request(self, conn: Any, fs: Any) -> None:
        """Back from a thread (on the loop): a kept-alive connection returns to the poller, its
        read-ahead (pipelined bytes the parser took) served first; anything else is closed."""
        result = None if fs.cancelled() or fs.exception() is not None else fs.result()
        if getattr(conn, "streaming", False):
            conn.streaming = False
            self.streaming -= 1
            self._unpark()
        if not result:
            self.nr_conns -= 1
            _close_softly(conn.sock)
            return
        ahead = conn.parser.unreader.take_buffered() if conn.parser is not None else b""
        buffered = (conn.buffered or b"") + ahead
        conn.buffered = buffered or None
        conn.continued = False
        self._poll(conn, time.monotonic() + (self.header_timeout if buffered else self.cfg.keepalive))
        if buffered:
            self._serve(conn)


def _close_softly(sock: socket.socket) -> None:
    """Half-close, take what the client already sent, close: gunicorn's graceful close without its
    wait of up to 2 s for the client, which on the loop thread would hold every other connection."""
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_WR)
        sock.setblocking(False)
        for _ in range(16):
            if not sock.recv(_READ):
                break
    with contextlib.suppress(OSError):
        sock.close()


def _send_rest(conn: Any, rest: bytes, keep: bool) -> bool:
    """In a thread: the part of a response the socket did not take at once (SO_SNDTIMEO bounds it)."""
    conn.sock.setblocking(True)
    try:
        util.write(conn.sock, rest)
    except OSError:
        return False
    return keep


def inline_worker(*, header_timeout: float, read_timeout: float) -> type[InlineWorker]:
    """The worker class with these timeouts (seconds), for gunicorn's `worker_class` setting."""
    return type("InlineWorker", (InlineWorker,), {"header_timeout": header_timeout, "read_timeout": read_timeout})
