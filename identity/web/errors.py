"""Exception handlers: every error leaves as ``{"error", "error_description"}`` JSON, never a traceback."""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from litestar import MediaType, Request, Response
from litestar.exceptions import HTTPException

from identity.oauth2.errors import OAuthError
from identity.observability.requests import note
from identity.settings import Settings

__all__ = [
    "NO_STORE",
    "SECURITY_HEADERS",
    "handle_http_exception",
    "handle_oauth_error",
    "handle_unexpected",
    "response_headers",
]

logger = logging.getLogger("identity.web")

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
# Headers every response carries (pages and API alike): no sniffing, no framing, no referrer, no inline or foreign
# script (the one script is /static/webauthn.js, for security keys on the enrollment pages).
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'self'; "
    "img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
}


def response_headers(settings: Settings) -> dict[str, str]:
    """What every response carries (the app's ``after_request`` adds them): `SECURITY_HEADERS`, HSTS under https."""
    headers = dict(SECURITY_HEADERS)
    if settings.issuer.startswith("https://"):
        headers["Strict-Transport-Security"] = "max-age=31536000"  # the public URL is https: keep browsers on it
    return headers


_CLIENT_GONE = "client disconnected prematurely"  # Litestar's InternalServerException while reading the body
_HTTP_ERROR_CODES = {
    400: "invalid_request",
    401: "unauthorized",
    403: "access_denied",
    404: "not_found",
    405: "method_not_allowed",
    413: "invalid_request",
    415: "invalid_request",
    429: "too_many_requests",
}


def handle_oauth_error(request: Request[Any, Any, Any], exc: OAuthError) -> Response[dict[str, str]]:
    """A protocol error, in its RFC 6749 §5.2 form with no-store headers."""
    note(request.scope, error=exc.error)
    return Response(
        exc.to_body(),
        status_code=exc.status_code,
        media_type=MediaType.JSON,
        headers={**NO_STORE, **exc.headers()},
    )


def handle_http_exception(_: Request[Any, Any, Any], exc: HTTPException) -> Response[dict[str, str]]:
    """Framework errors (404, 405, body too large, validation) in the same JSON shape."""
    status = exc.status_code
    if status >= 500 and exc.detail == _CLIENT_GONE:
        # The client went away (or the HTTP layer cut a body that took too long, identity.http_limits) before its
        # body was read: not a server failure, and nobody is left to read the answer.
        logger.info("request abandoned: %s", exc.detail)
        status = 400
        body = {"error": "invalid_request", "error_description": "The request body was not received."}
    elif status >= 500:
        logger.error("request failed: %s", exc.detail)
        body = {"error": "server_error", "error_description": "Internal error"}
    else:
        description = exc.detail if isinstance(exc.detail, str) and exc.detail else HTTPStatus(status).phrase
        body = {"error": _HTTP_ERROR_CODES.get(status, "invalid_request"), "error_description": description}
    return Response(body, status_code=status, media_type=MediaType.JSON, headers={**NO_STORE, **(exc.headers or {})})


def handle_unexpected(_: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, str]]:
    """A bug or an outage: logged with its traceback, answered with a generic 500 body."""
    logger.exception("unhandled error", exc_info=exc)
    return Response(
        {"error": "server_error", "error_description": "Internal error"},
        status_code=500,
        media_type=MediaType.JSON,
        headers=NO_STORE,
    )
