"""Errors of the Management API in Auth0's shape: ``{"statusCode", "error", "message", "errorCode"}``."""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from litestar import MediaType, Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.openapi import ResponseSpec
from msgspec import Struct

from identity.accounts.errors import AccountError, InvalidUserData, UnknownConnection, UnknownUser, UserExists
from identity.tenant_admin import ConfigConflict, ConfigNotFound
from identity.tenant_file import TenantFileError
from identity.web.errors import NO_STORE

__all__ = [
    "ERROR_RESPONSES",
    "EXCEPTION_HANDLERS",
    "ManagementError",
    "bad_request",
    "conflict",
    "is_management_path",
    "management_paths",
    "not_found",
    "not_supported",
]

logger = logging.getLogger("identity.management")


class ManagementErrorBody(Struct):
    """Auth0's error body: ``errorCode`` names the case (``invalid_body``, ``insufficient_scope``, ...)."""

    statusCode: int
    error: str
    message: str
    errorCode: str


ERROR_RESPONSES = {
    status: ResponseSpec(data_container=ManagementErrorBody, description=text, generate_examples=False)
    for status, text in {
        400: "A body or query that does not validate; the message names the field.",
        401: "No bearer token, or not a Management API token of a client that still has its grant.",
        403: "The token lacks the endpoint's scope.",
        404: "No such object.",
        409: "The change contradicts existing data (a duplicate, a dependency).",
    }.items()
}
"""The error answers every Management API operation documents (``/schema``)."""

_PREFIX = "/api/v2"
_CLIENT_GONE = "client disconnected prematurely"  # Litestar's InternalServerException while reading the body
_ERROR_CODES = {
    400: "invalid_body",
    401: "invalid_token",
    403: "insufficient_scope",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "too_many_requests",
    500: "internal_error",
    503: "service_unavailable",
}
"""``errorCode`` of an answer that names none: the schema requires one on every error (framework errors too)."""


class ManagementError(Exception):
    """An error answer of the Management API; without ``error_code`` the status's own (`_ERROR_CODES`)."""

    def __init__(self, status_code: int, message: str, error_code: str | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message
        phrase = HTTPStatus(status_code).phrase
        self.error_code = error_code or _ERROR_CODES.get(status_code) or "_".join(phrase.lower().split())

    def to_body(self) -> dict[str, Any]:
        """Auth0's error body."""
        return {
            "statusCode": self.status_code,
            "error": HTTPStatus(self.status_code).phrase,
            "message": self.message,
            "errorCode": self.error_code,
        }


def bad_request(message: str, error_code: str = "invalid_body") -> ManagementError:
    """A 400 whose message names what is wrong."""
    return ManagementError(400, message, error_code)


def not_found(message: str, error_code: str = "inexistent_resource") -> ManagementError:
    """A 404."""
    return ManagementError(404, message, error_code)


def conflict(message: str, error_code: str = "conflict") -> ManagementError:
    """A 409."""
    return ManagementError(409, message, error_code)


def not_supported(field: str, why: str) -> ManagementError:
    """A 400 for a member Auth0 defines that identity does not support (not an unknown member): says why."""
    return bad_request(
        f"Payload validation error: '{field} is not supported: {why}' on property {field}.", "operation_not_supported"
    )


def _render(error: ManagementError, headers: dict[str, str] | None = None) -> Response[Any]:
    return Response(
        error.to_body(),
        status_code=error.status_code,
        media_type=MediaType.JSON,
        headers={**NO_STORE, **(headers or {})},
    )


def _management_error(_: Request[Any, Any, Any], exc: ManagementError) -> Response[Any]:
    headers = {}
    if exc.status_code == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="Management API"'
    return _render(exc, headers)


def _validation(_: Request[Any, Any, Any], exc: ValidationException) -> Response[Any]:
    problems = exc.extra if isinstance(exc.extra, list) else []
    if not problems:
        return _render(bad_request(f"Payload validation error: {exc.detail}"))
    first = problems[0] if isinstance(problems[0], dict) else {"message": str(problems[0])}
    key, message = first.get("key"), first.get("message", "invalid value")
    if first.get("source") == "body":
        where = "" if key in (None, "data") else f" on property {key}"
        return _render(bad_request(f"Payload validation error: '{message}'{where}.", "invalid_body"))
    return _render(bad_request(f"Query validation error: '{message}' on property {key}.", "invalid_query_string"))


def _http(_: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    status = exc.status_code
    if status >= 500 and exc.detail == _CLIENT_GONE:
        logger.info("request abandoned: %s", exc.detail)  # not a server failure (see identity.web.errors)
        return _render(bad_request("The request body was not received."))
    if status >= 500:
        logger.error("management request failed: %s", exc.detail)
        return _render(ManagementError(500, "Internal error"))
    detail = exc.detail if isinstance(exc.detail, str) and exc.detail else HTTPStatus(status).phrase
    if status == 400:
        # Litestar's own words for a body that is not JSON at all.
        return _render(bad_request(f"Payload validation error: '{detail}'.", "invalid_body"))
    return _render(ManagementError(status, detail), exc.headers)


def _account(_: Request[Any, Any, Any], exc: AccountError) -> Response[Any]:
    if isinstance(exc, UnknownUser):
        return _render(not_found("The user does not exist.", "inexistent_user"))
    if isinstance(exc, UserExists):
        return _render(conflict("The user already exists.", "auth0_idp_error"))
    if isinstance(exc, UnknownConnection):
        return _render(bad_request("The connection does not exist.", "inexistent_connection"))
    if isinstance(exc, InvalidUserData):
        return _render(bad_request(str(exc)))
    return _render(bad_request(str(exc), "operation_not_supported"))


def _tenant_file(_: Request[Any, Any, Any], exc: TenantFileError) -> Response[Any]:
    return _render(bad_request(f"Payload validation error: {exc}"))


def _config_not_found(_: Request[Any, Any, Any], exc: ConfigNotFound) -> Response[Any]:
    return _render(not_found(f"{exc}."))


def _config_conflict(_: Request[Any, Any, Any], exc: ConfigConflict) -> Response[Any]:
    return _render(conflict(f"{exc}."))


def _unexpected(_: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    logger.exception("unhandled error in the Management API", exc_info=exc)
    return _render(ManagementError(500, "Internal error"))


def is_management_path(path: str) -> bool:
    """Whether ``path`` is under the Management API's base (``/api/v2``)."""
    return path == _PREFIX or path.startswith(_PREFIX + "/")


def management_paths(fallback: Any) -> Any:
    """An app-level exception handler: Auth0's shape under ``/api/v2``, ``fallback`` elsewhere.

    An unknown route (404) or method (405) is refused before any route, so the Management router's own handlers
    never see it; the app's handlers do.
    """

    def handle(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
        if not is_management_path(request.scope["path"]):
            return fallback(request, exc)  # type: ignore[no-any-return]
        return _http(request, exc) if isinstance(exc, HTTPException) else _unexpected(request, exc)

    return handle


EXCEPTION_HANDLERS: Any = {
    ManagementError: _management_error,
    ValidationException: _validation,
    HTTPException: _http,
    AccountError: _account,
    TenantFileError: _tenant_file,
    ConfigNotFound: _config_not_found,
    ConfigConflict: _config_conflict,
    Exception: _unexpected,
}
