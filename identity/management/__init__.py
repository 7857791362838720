"""The Management API (Auth0 v2 subset, API.md §6) at ``<issuer>api/v2/``, for client_credentials tokens."""

from __future__ import annotations

from litestar import Router

from identity.management.audit import ManagementAuditMiddleware
from identity.management.auth import require_scope
from identity.management.clients import CLIENT_HANDLERS
from identity.management.connections import CONNECTION_HANDLERS
from identity.management.errors import EXCEPTION_HANDLERS
from identity.management.guardian import GUARDIAN_HANDLERS
from identity.management.logs import LOG_HANDLERS
from identity.management.resource_servers import RESOURCE_SERVER_HANDLERS
from identity.management.settings import SETTINGS_HANDLERS
from identity.management.users import USER_HANDLERS

__all__ = ["MAX_BODY_BYTES", "management_router"]

MAX_BODY_BYTES = 1024 * 1024
"""The largest request body (Auth0 caps a user's metadata at 16 KB; the largest body here is a list of clients)."""


def management_router() -> Router:
    """Every Management API endpoint under ``/api/v2``, each guarded by its scope."""
    return Router(
        path="/api/v2",
        route_handlers=[
            *USER_HANDLERS,
            *LOG_HANDLERS,
            *CONNECTION_HANDLERS,
            *CLIENT_HANDLERS,
            *RESOURCE_SERVER_HANDLERS,
            *SETTINGS_HANDLERS,
            *GUARDIAN_HANDLERS,
        ],
        guards=[require_scope],
        middleware=[ManagementAuditMiddleware],
        exception_handlers=EXCEPTION_HANDLERS,
        tags=["Management API"],
        security=[{"bearer": []}],
        request_max_body_size=MAX_BODY_BYTES,
    )
