"""Serving errors and the one place that maps them to HTTP.

The model loaders, the codecs and the dataplane raise the domain errors below and know nothing of
HTTP; the Flask app turns any exception into a response with `to_response`, and only here. The
contract with clients: every error body is JSON `{"error": "<one-line message>"}`; a client's
mistake is always a 4xx (400 malformed input, 401 missing or wrong bearer token, 404 unknown model or
route, 405 wrong method, 408 body not sent in time, 413 body over the limit, 415 wrong content type),
503 means "not ready yet, retry", and 500 is reserved for faults of the server or of the model itself.
"""

from __future__ import annotations

import logging

from werkzeug.exceptions import HTTPException

log = logging.getLogger(__name__)

BODY_OVER_LIMIT = "request body is over the size limit"


class ServingError(Exception):
    """Base of the domain errors; `status` is the HTTP code the one mapping below gives it."""

    status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInput(ServingError):
    """The request is malformed: bad JSON, wrong tensor datatype or shape, NaN/inf, too deep."""

    status = 400


class Unauthorized(ServingError):
    """The route needs a bearer token and the request has none, or a wrong one (`auth.py`)."""

    status = 401

    def __init__(self, message: str, challenge: str) -> None:
        super().__init__(message)
        self.challenge = challenge


class ModelNotFound(ServingError):
    """The request names a model this server does not serve."""

    status = 404

    def __init__(self, name: str) -> None:
        super().__init__(f"model {name!r} is not served here")


class PayloadTooLarge(ServingError):
    """The body is over the configured limit."""

    status = 413


class RequestTimeout(ServingError):
    """The client did not send its request body within the read timeout."""

    status = 408


class UnsupportedMediaType(ServingError):
    """The body is not JSON (or the binary tensor extension), or is compressed."""

    status = 415


class ModelNotReady(ServingError):
    """The model is still loading (or failed to load): retry later."""

    status = 503


class ModelConfigError(ValueError):
    """The model folder or the serve options cannot be served (raised before serving, never over HTTP)."""


class InferenceError(ServingError):
    """The model itself failed on valid input: a server-side fault."""

    status = 500


def to_response(exc: BaseException) -> tuple[int, dict[str, str]]:
    """The HTTP status and JSON body for any exception raised while handling a request."""
    if isinstance(exc, ServingError):
        if exc.status >= 500 and exc.status != 503:
            log.error("server error: %s", exc.message)
        return exc.status, {"error": exc.message}
    if isinstance(exc, HTTPException):
        code = exc.code or 500
        return code, {"error": _http_message(code, exc)}
    log.exception("unexpected error while handling a request", exc_info=exc)
    return 500, {"error": "internal server error"}


def error_headers(exc: BaseException) -> list[tuple[str, str]]:
    """Headers an error answer carries besides its content type: the challenge of a 401 (RFC 6750)."""
    return [("WWW-Authenticate", exc.challenge)] if isinstance(exc, Unauthorized) else []


def _http_message(code: int, exc: HTTPException) -> str:
    if code == 404:
        return "no such endpoint"
    if code == 405:
        return "method not allowed for this endpoint"
    if code == 413:
        return BODY_OVER_LIMIT
    return exc.description or exc.name
