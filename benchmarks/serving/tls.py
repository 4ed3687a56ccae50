"""What lets an unmodified Azure client that insists on `https://<account>.blob.core.windows.net`
talk to Azurite on 127.0.0.1: a self-signed certificate for that name, and an HTTP CONNECT proxy.

Why: kserve-storage only accepts `https://<account>.blob.core.windows.net/...` URIs and builds the
account URL itself (no endpoint setting). Rather than patch it, every downloader in the fetch
benchmark uses that real production URL: the clients honour `HTTPS_PROXY` (requests and aiohttp
both do), the proxy tunnels every CONNECT to Azurite's TLS port on 127.0.0.1 (whatever host the
client names -- so nothing ever leaves the machine), and Azurite reads the account from the host
name (its "production-style" URLs). The clients trust the certificate through `SSL_CERT_FILE` /
`REQUESTS_CA_BUNDLE`. The proxy is a real TCP relay, the same path for all three downloaders.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path

ACCOUNT_HOST = "devstoreaccount1.blob.core.windows.net"
_BUFFER = 1 << 20


def make_certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate (and key) for the account host and 127.0.0.1, via openssl."""
    cert, key = folder / "azurite-cert.pem", folder / "azurite-key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            f"/CN={ACCOUNT_HOST}",
            "-addext",
            f"subjectAltName=DNS:{ACCOUNT_HOST},IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert, key


@dataclass
class ConnectProxy:
    """HTTP CONNECT proxy on 127.0.0.1 that tunnels every request to 127.0.0.1:`target_port`."""

    target_port: int
    port: int = 0
    tunnels: int = 0
    _listener: socket.socket = field(default_factory=socket.socket)

    def start(self) -> None:
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(128)
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def stop(self) -> None:
        self._listener.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._tunnel, args=(client,), daemon=True).start()

    def _tunnel(self, client: socket.socket) -> None:
        header = b""
        while b"\r\n\r\n" not in header:
            chunk = client.recv(4096)
            if not chunk:
                client.close()
                return
            header += chunk
        if not header.startswith(b"CONNECT "):
            client.sendall(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
            client.close()
            return
        upstream = socket.create_connection(("127.0.0.1", self.target_port))
        self.tunnels += 1
        client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        threading.Thread(target=_pump, args=(client, upstream), daemon=True).start()
        _pump(upstream, client)


def _pump(source: socket.socket, target: socket.socket) -> None:
    try:
        while data := source.recv(_BUFFER):
            target.sendall(data)
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            target.shutdown(socket.SHUT_WR)
        with contextlib.suppress(OSError):
            source.close()
