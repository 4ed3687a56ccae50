"""The thinnest HTTP server we could write around the same dataplane: a floor for `serve`, not a product.

    .venv/bin/python -m benchmarks.serving.thin_server --model-dir DIR --sha256 HEX --port P --workers 2

What it is: `--workers` forked processes, each with its own listening socket on the same port
(`SO_REUSEPORT`: the kernel spreads connections over them), one thread each, an epoll loop over
non-blocking sockets, HTTP/1.1 keep-alive, a request parsed just enough (request line, header end,
`Content-Length`), `DataPlane.infer` called inline, and the answer written with one `send`. No
threads, so no GIL hand-off; no WSGI, no metrics, no readiness across workers, no limits, no
slow-client defence: everything `serve` does beyond the model call, left out. Paths: `POST
/v2/models/<name>/infer` and `GET /v2/health/ready` (200 once this worker's model is loaded); any
other is a 404. A domain error answers with `errors.to_response`, as `serve` does.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import select
import signal
import socket
import sys
from pathlib import Path

from benchmarks.serving.floor import dataplane_for

from modelapp_serving import codecs
from modelapp_serving.dataplane import DataPlane
from modelapp_serving.errors import to_response

_HEAD_END = b"\r\n\r\n"
_LENGTH = re.compile(rb"\r\ncontent-length:[ \t]*([0-9]+)", re.IGNORECASE)
_REASONS = {200: b"OK", 400: b"Bad Request", 404: b"Not Found", 413: b"Payload Too Large", 503: b"Unavailable"}


def response(status: int, body: bytes) -> bytes:
    head = b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % (
        status,
        _REASONS.get(status, b"Error"),
        len(body),
    )
    return head + body


def answer(dataplane: DataPlane, name: str, method: bytes, path: bytes, body: bytes) -> bytes:
    if method == b"GET" and path == b"/v2/health/ready":
        return response(200, b'{"ready":true}')
    if method == b"POST" and path == b"/v2/models/%s/infer" % name.encode():
        try:
            payload, _ = dataplane.infer(name, body)
        except Exception as exc:
            status, error = to_response(exc)
            return response(status, codecs.dumps(error))
        return response(200, payload)
    return response(404, b'{"error":"not found"}')


def drain(sock: socket.socket, buffer: bytearray, dataplane: DataPlane, name: str) -> None:
    """Answer every complete request in `buffer` (keep-alive, pipelining allowed), one send each."""
    while True:
        end = buffer.find(_HEAD_END)
        if end < 0:
            return
        head = bytes(buffer[: end + 2])
        match = _LENGTH.search(head)
        length = int(match.group(1)) if match else 0
        if len(buffer) < end + 4 + length:
            return
        method, path, _ = head.split(b" ", 2)
        body = bytes(buffer[end + 4 : end + 4 + length])
        del buffer[: end + 4 + length]
        out = answer(dataplane, name, method, path, body)
        sent = sock.send(out)
        if sent < len(out):  # rare with small answers: finish it blocking
            sock.setblocking(True)
            sock.sendall(out[sent:])
            sock.setblocking(False)


def listen(host: str, port: int) -> socket.socket:
    """This worker's own listening socket on the shared port (SO_REUSEPORT)."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    listener.bind((host, port))
    listener.listen(1024)
    listener.setblocking(False)
    return listener


def serve(dataplane: DataPlane, *, name: str, host: str, port: int) -> None:
    """One worker's loop: accept, read, answer; forever."""
    listener = listen(host, port)
    poller = select.epoll()
    poller.register(listener.fileno(), select.EPOLLIN)
    conns: dict[int, tuple[socket.socket, bytearray]] = {}
    while True:
        for fd, _events in poller.poll():
            if fd == listener.fileno():
                with contextlib.suppress(BlockingIOError):
                    while True:
                        sock, _ = listener.accept()
                        sock.setblocking(False)
                        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                        conns[sock.fileno()] = (sock, bytearray())
                        poller.register(sock.fileno(), select.EPOLLIN)
                continue
            sock, buffer = conns[fd]
            try:
                data = sock.recv(65536)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if not data:
                poller.unregister(fd)
                del conns[fd]
                sock.close()
                continue
            buffer += data
            drain(sock, buffer, dataplane, name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--sha256")
    parser.add_argument("--name", default="iris")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    children = []
    for _ in range(args.workers):
        pid = os.fork()
        if pid == 0:
            try:
                dataplane = dataplane_for(args.model_dir, name=args.name, sha256=args.sha256)
                serve(dataplane, name=args.name, host=args.host, port=args.port)
            finally:
                os._exit(1)
        children.append(pid)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        os.wait()  # any worker gone: stop them all
    finally:
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)


if __name__ == "__main__":
    main()
