"""The request log and the HTTP metrics: an ASGI wrapper around the whole app, outside its exception handling.

One line per request on the ``identity.request`` logger: method, route template, path, status, duration, request
id, client IP (by the trusted-proxy rule: `trusted_client_ip`), and what the handler noted (`note`): client_id,
grant_type, the error code. Never a body, a query string, a cookie or an Authorization header. Health probes and
``/metrics`` are logged at DEBUG, server errors at ERROR, everything else at INFO.

The request id is the caller's ``X-Request-Id`` when it is a sane token (1-64 of ``[A-Za-z0-9._-]``), else a new
one; it is sent back in ``X-Request-Id``.
"""

from __future__ import annotations

import logging
import re
import secrets
import time
from collections.abc import Callable
from typing import Any, cast

from litestar.types import ASGIApp, Message, Receive, Scope, Send

from identity.network import Networks, resolve_client_ip
from identity.observability.metrics import Metrics

__all__ = ["RequestObserver", "client_address", "note", "request_id", "trusted_client_ip"]

logger = logging.getLogger("identity.request")
_NOTES = "identity.notes"
_REQUEST_ID = "identity.request_id"
_SANE_ID = re.compile(rb"[A-Za-z0-9._-]{1,64}")
_QUIET_ROUTES = frozenset({"/healthz", "/readyz", "/metrics"})
_MAX_PATH = 200


def note(scope: Scope | dict[str, Any], **fields: Any) -> None:
    """Add ``fields`` to this request's log line (``client_id``, ``grant_type``, ``error``; never a secret)."""
    notes = cast(dict[str, Any], scope).get(_NOTES)
    if isinstance(notes, dict):
        notes.update({key: value for key, value in fields.items() if value is not None})


def request_id(scope: Scope | dict[str, Any]) -> str | None:
    """The id of the request being answered (for other log lines about it)."""
    value = cast(dict[str, Any], scope).get(_REQUEST_ID)
    return value if isinstance(value, str) else None


def client_address(scope: Scope | dict[str, Any]) -> str | None:
    """The peer address of the connection."""
    client = cast(dict[str, Any], scope).get("client")
    return str(client[0]) if client else None


def trusted_client_ip(proxies: Networks) -> Callable[[Scope], str | None]:
    """The end user's address, decided as the rest of the service decides it (`identity.network`).

    The peer, or, behind a trusted proxy (``IDENTITY_TRUSTED_PROXIES``), the right-most untrusted ``X-Forwarded-For``
    hop.
    """

    def decide(scope: Scope) -> str | None:
        forwarded = [
            value.decode("latin-1")
            for name, value in cast(dict[str, Any], scope).get("headers", ())
            if name == b"x-forwarded-for"
        ]
        return resolve_client_ip(client_address(scope), forwarded, proxies)

    return decide


def _incoming_request_id(scope: Scope) -> str:
    for name, value in scope.get("headers", ()):
        if name == b"x-request-id" and _SANE_ID.fullmatch(value):
            return value.decode()
    return secrets.token_hex(12)


class RequestObserver:
    """Logs and counts every HTTP request that reaches the app."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        metrics: Metrics | None,
        client_ip: Callable[[Scope], str | None] = client_address,
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.client_ip = client_ip

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer the request through the app, then log and count it."""
        fields = cast(dict[str, Any], scope)
        if fields["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        rid = _incoming_request_id(scope)
        notes: dict[str, Any] = {}
        fields[_NOTES] = notes
        fields[_REQUEST_ID] = rid
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), (b"x-request-id", rid.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            self._record(fields, rid, status, time.perf_counter() - started, notes)

    def _record(self, scope: dict[str, Any], rid: str, status: int, seconds: float, notes: dict[str, Any]) -> None:
        method = str(scope.get("method", ""))
        route = str(scope.get("path_template") or "<unmatched>")
        if self.metrics is not None:
            self.metrics.request(method, route, status, seconds)
            if "grant_type" in notes or route == "/oauth/token":
                outcome = "success" if status < 400 else str(notes.get("error") or status)
                self.metrics.grant(notes.get("grant_type"), outcome)
        level = logging.ERROR if status >= 500 else logging.DEBUG if route in _QUIET_ROUTES else logging.INFO
        if not logger.isEnabledFor(level):
            return
        path = str(scope.get("path", ""))
        event = {
            "method": method,
            "route": route,
            "path": path if len(path) <= _MAX_PATH else path[:_MAX_PATH] + "...",
            "status": status,
            "duration_ms": round(seconds * 1000, 2),
            "request_id": rid,
            "client_ip": self.client_ip(cast(Scope, scope)),
            **notes,
        }
        logger.log(level, "%s %s %s", method, route, status, extra={"event": event})
