"""Errors a store raises, and the scrubbing that keeps credentials out of their messages.

Every store error carries a one-line, credential-free message: `fetch` prints it as its only
line on stderr, and init-container logs are read by people who must not learn a SAS token or an
account key from them. Backends build messages through `scrub`, which removes SAS query
parameters, account keys, signatures and any secret value the caller names.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

# Query parameters and connection-string fields that carry secrets or signatures.
_SECRET_FIELDS = re.compile(
    r"(?i)\b(sig|signature|se|sp|sv|st|skoid|sktid|skt|ske|sks|skv|spr|srt|ss|x-amz-signature|x-amz-credential"
    r"|x-amz-security-token|accountkey|sharedaccesssignature|aws_secret_access_key|aws_session_token)"
    r"=([^&;\s'\"]+)"
)
_AUTH_HEADER = re.compile(r"(?i)(authorization['\"]?\s*[:=]\s*['\"]?)([^'\"\r\n,]+)")
_MIN_SECRET_LEN = 6


class StoreError(Exception):
    """A store operation failed; `str(error)` is one scrubbed line fit for a log."""


class StoreConfigError(StoreError):
    """The URI or the credential settings are unusable (a configuration mistake, not a fault)."""


class NotFoundError(StoreError):
    """The version, the manifest or a file is not in the store."""


class CredentialsError(StoreError):
    """The store refused the credentials (401/403, bad signature, expired SAS)."""


class TransientError(StoreError):
    """A fault worth retrying: a dropped connection, a timeout, a 5xx or a throttle."""


class IntegrityError(StoreError):
    """The bytes are not the bytes promised: wrong size, empty, truncated or a digest mismatch."""


class ConflictError(StoreError):
    """The version already exists; versions are immutable once their manifest is written."""


def scrub(text: str, secrets: Iterable[str] = ()) -> str:
    """Return `text` on one line with signatures, keys and the given secret values replaced by `***`."""
    for secret in secrets:
        if len(secret) >= _MIN_SECRET_LEN:
            text = text.replace(secret, "***")
    text = _SECRET_FIELDS.sub(lambda m: f"{m.group(1)}=***", text)
    text = _AUTH_HEADER.sub(lambda m: f"{m.group(1)}***", text)
    return " ".join(text.split())


def first_line(error: BaseException, secrets: Iterable[str] = (), *, limit: int = 400) -> str:
    """The first meaningful line of an exception's text, scrubbed and cut to `limit` characters."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    text = lines[0] if lines else type(error).__name__
    text = scrub(text, secrets)
    return text if len(text) <= limit else text[: limit - 1] + "…"
