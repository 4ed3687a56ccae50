"""A minimal HTTPS client for the few API calls the cluster tooling makes itself.

Only the standard library: the cluster must come up before (and without) the operator's
dependencies. Calls: health (`/readyz`), get/create objects, TokenRequest. Nothing here retries;
callers poll with deadlines.
"""

from __future__ import annotations

import http.client
import json
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes

    def json(self) -> dict[str, Any]:
        data = json.loads(self.body or b"{}")
        if not isinstance(data, dict):
            raise ValueError("expected a JSON object")
        return data


class ApiClient:
    """Talks to one API server with a client certificate (or a bearer token) over TLS verified by `ca`."""

    def __init__(self, server: str, *, ca: Path, cert: Path | None = None, key: Path | None = None,
                 token: str | None = None, timeout: float = 10.0) -> None:
        parts = urlsplit(server)
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port or 443
        self._token = token
        self._timeout = timeout
        self._context = ssl.create_default_context(cafile=str(ca))
        if cert and key:
            self._context.load_cert_chain(str(cert), str(key))

    def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Response:
        """One request; raises OSError (connection refused, timeout) when the server cannot be reached."""
        conn = http.client.HTTPSConnection(self._host, self._port, context=self._context, timeout=self._timeout)
        headers = {"Accept": "application/json"}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        payload = None
        if body is not None:
            payload = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        try:
            conn.request(method, path, body=payload, headers=headers)
            resp = conn.getresponse()
            return Response(resp.status, resp.read())
        finally:
            conn.close()

    def ready(self) -> bool:
        """True when `/readyz` answers 200; False when it answers otherwise or not at all."""
        return self.readyz_problem() is None

    def readyz_problem(self) -> str | None:
        """None when `/readyz` answers 200, else what went wrong, for a timeout's message.

        The failed checks of a 500, or the connection's error: "connection refused" (not listening
        yet), a certificate that does not match the address (the TLS error names it), a timeout.
        """
        try:
            resp = self.request("GET", "/readyz?verbose")
        except ssl.SSLCertVerificationError as err:  # e.g. "IP address mismatch, certificate is not valid for ..."
            return f"TLS to {self._host}:{self._port} failed: {err.verify_message or err.reason}"
        except ssl.SSLError as err:
            return f"TLS to {self._host}:{self._port} failed: {err.reason or err}"
        except OSError as err:
            return f"{self._host}:{self._port}: {err.strerror or err}"
        if resp.status == 200:
            return None
        failed = [line.strip() for line in resp.body.decode(errors="replace").splitlines() if "failed" in line]
        return f"/readyz answered HTTP {resp.status}" + (f": {'; '.join(failed[:5])}" if failed else "")

    def create(self, path: str, obj: dict[str, Any]) -> bool:
        """POST `obj`; True if created, False if it already existed (409). Other statuses raise."""
        resp = self.request("POST", path, obj)
        if resp.status == 409:
            return False
        if resp.status >= 300:
            raise OSError(f"POST {path}: HTTP {resp.status}: {resp.body[:300]!r}")
        return True

    def get(self, path: str) -> dict[str, Any] | None:
        """GET an object; None on 404. Other failures raise OSError."""
        resp = self.request("GET", path)
        if resp.status == 404:
            return None
        if resp.status >= 300:
            raise OSError(f"GET {path}: HTTP {resp.status}: {resp.body[:300]!r}")
        return resp.json()

    def delete(self, path: str) -> bool:
        """DELETE an object; True if deletion started, False if it was already gone (404)."""
        resp = self.request("DELETE", path)
        if resp.status == 404:
            return False
        if resp.status >= 300:
            raise OSError(f"DELETE {path}: HTTP {resp.status}: {resp.body[:300]!r}")
        return True

    def create_token(self, namespace: str, service_account: str, *, expiration_seconds: int) -> str:
        """A token for the ServiceAccount from the TokenRequest API (as kubelet gets one for a pod)."""
        path = f"/api/v1/namespaces/{namespace}/serviceaccounts/{service_account}/token"
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                "spec": {"expirationSeconds": expiration_seconds}}
        resp = self.request("POST", path, body)
        if resp.status >= 300:
            raise OSError(f"TokenRequest for {namespace}/{service_account}: HTTP {resp.status}: {resp.body[:300]!r}")
        token = resp.json().get("status", {}).get("token")
        if not isinstance(token, str):
            raise OSError("TokenRequest answered without a token")
        return token
