"""Every Management API call leaves one audit event (``sapi`` or ``fapi``) naming the client that made it.

The event says which operation ran, on which path, with which answer status; never a request or response body (a
body may hold a password or a new client secret). An administrative action leaves its own event too (``sdu``,
``gd_unenroll``, ``ublkdu``: `identity.management.operations`), through `recorder`.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from litestar import Request
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from identity.audit import LogEvent
from identity.management.operations import Record
from identity.web.addresses import request_trail
from identity.web.deps import Services

__all__ = ["ManagementAuditMiddleware", "recorder"]


def _client(scope: Scope) -> str | None:
    state = scope.get("state") or {}
    client = state.get("management_client")
    return str(client) if client else None


class ManagementAuditMiddleware:
    """ASGI middleware of the ``/api/v2`` router: one ``sapi``/``fapi`` event per request, once it is answered."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on, note the answer's status, then emit the event (never failing the request)."""
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        status = 500

        async def noting(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, noting)
        finally:
            services: Services = scope["litestar_app"].state.services
            request: Request[Any, Any, Any] = Request(scope)
            method = request.method
            handler = scope.get("route_handler")
            trail = request_trail(request, services.settings)
            trail.client_id = _client(scope)
            event = trail.event(
                "sapi" if status < 400 else "fapi",
                getattr(handler, "summary", None) or f"{method} {scope['path']}",
            )
            details = {
                "request": {"method": method, "path": scope["path"], "query": request.url.query or ""},
                "response": {"statusCode": status},
            }
            services.audit.emit(LogEvent(**{**_fields(event), "details": details, "audience": _audience(services)}))


def _fields(event: LogEvent) -> dict[str, Any]:
    return {name: getattr(event, name) for name in event.__dataclass_fields__ if name not in ("log_id", "date")}


def _audience(services: Services) -> str:
    return services.settings.issuer + "api/v2/"


def recorder(services: Services, request: Request[Any, Any, Any]) -> Record:
    """Where the API's administrative events go (`identity.management.operations`).

    The audit queue, each event with the request's client and addresses.
    """
    trail = request_trail(request, services.settings)
    trail.client_id = _client(request.scope)

    async def record(event: LogEvent) -> None:
        services.audit.emit(
            replace(
                event,
                client_id=trail.client_id,
                ip=trail.ip,
                client_ip=trail.client_ip,
                user_agent=trail.user_agent,
                hostname=trail.hostname,
            )
        )

    return record
