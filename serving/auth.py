"""Bearer-token authentication of the public routes (a ModelApp's `spec.auth`, docs/security.md).

The contract: when the environment carries `MODELAPP_AUTH_TOKEN` (the kubelet sets it from the Secret the
ModelApp names, even to an empty value), every public row but the health probes (`routes.OPEN`) needs
`Authorization: Bearer <token>`; anything else is a 401 with `WWW-Authenticate: Bearer` and the usual JSON
error, before the body is read. Two tokens are accepted: the tenant's, and the operator's smoke token for
this app and revision, of which the pod only ever holds the SHA-256 (`MODELAPP_AUTH_SMOKE_SHA256`). The
metrics port is not behind this (it is not public; `routes.Listener`).

Comparison: the presented token is hashed and its digest compared with each accepted digest by
`hmac.compare_digest`, every one of them each time, so the time taken says nothing about how much of a
token was right, nor which of the two it nearly matched. The tenant's token is kept as its digest too.

`X-ModelApp-Token: <token>` is read when there is no `Authorization` header: a client behind a proxy that
spends `Authorization` on itself (the Kubernetes API server's pod proxy, used by the smoke test with
`smokeTransport: proxy`) has no other way to send it.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from modelapp_serving.errors import Unauthorized

log = logging.getLogger(__name__)

ENV_TOKEN = "MODELAPP_AUTH_TOKEN"  # noqa: S105 (a variable's name)
ENV_SMOKE_SHA256 = "MODELAPP_AUTH_SMOKE_SHA256"
TOKEN_HEADER = "X-ModelApp-Token"  # noqa: S105 (a header's name)
_HEX64 = re.compile(r"^[0-9a-f]{64}$")

MISSING = "this endpoint needs a bearer token: send 'Authorization: Bearer <token>' (the ModelApp's spec.auth Secret)"
WRONG = "the bearer token is not valid for this app"
CHALLENGE = 'Bearer realm="modelapp"'
CHALLENGE_INVALID = 'Bearer realm="modelapp", error="invalid_token"'


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()


@dataclass(frozen=True, slots=True)
class Authenticator:
    """The SHA-256 digests of the accepted tokens (possibly none: then nothing is accepted, fail closed)."""

    digests: tuple[bytes, ...] = field(repr=False)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Authenticator | None:
        """None when authentication is off (no `MODELAPP_AUTH_TOKEN` at all); ValueError for a smoke digest
        that is not 64 lowercase hex characters (the operator writes it; anything else is a mistake)."""
        if ENV_TOKEN not in env:
            return None
        # A Secret made from a file often ends in a newline no client sends: the token is the text between.
        token = env[ENV_TOKEN].strip()
        digests = [_digest(token)] if token else []
        if not token:
            log.warning("%s is empty: no client token is accepted until the Secret holds one", ENV_TOKEN)
        smoke = env.get(ENV_SMOKE_SHA256, "")
        if smoke:
            if not _HEX64.match(smoke):
                raise ValueError(f"{ENV_SMOKE_SHA256} must be 64 lowercase hex characters (a SHA-256), got {smoke!r}")
            digests.append(bytes.fromhex(smoke))
        return cls(tuple(digests))

    def check(self, headers: Mapping[str, str]) -> None:
        """Return when the request carries an accepted token; raise `Unauthorized` (401) otherwise.

        `headers` maps lowercase header names to values."""
        presented = _presented(headers)
        if presented is None:
            raise Unauthorized(MISSING, CHALLENGE)
        digest = _digest(presented)
        matched = False
        for accepted in self.digests:  # every one, always: no early exit
            matched |= hmac.compare_digest(digest, accepted)
        if not matched:
            raise Unauthorized(WRONG, CHALLENGE_INVALID)


def _presented(headers: Mapping[str, str]) -> str | None:
    """The token of `Authorization: Bearer <token>` (scheme in any case), else of X-ModelApp-Token."""
    authorization = headers.get("authorization")
    if authorization is not None:
        scheme, _, token = authorization.strip().partition(" ")
        return token.strip() if scheme.lower() == "bearer" and token.strip() else None
    token = headers.get(TOKEN_HEADER.lower(), "").strip()
    return token or None


def wsgi_headers(environ: Mapping[str, object]) -> dict[str, str]:
    """The two headers `check` reads, from a WSGI environ."""
    out = {}
    for name, key in (("authorization", "HTTP_AUTHORIZATION"), (TOKEN_HEADER.lower(), "HTTP_X_MODELAPP_TOKEN")):
        value = environ.get(key)
        if isinstance(value, str):
            out[name] = value
    return out
