"""Who may call the Management API: a client_credentials token for ``<issuer>api/v2/`` with the endpoint's scope.

Every handler names its scope in ``opt={"scope": ...}``; the guard checks the token and stores the calling client on
``request.state.management_client``. The token alone is not enough: the client's grant for the Management API must
still exist, and only the scopes the grant still holds count, so revoking a grant (or deleting the client) takes
effect at once on every instance, not when the token expires.
"""

from __future__ import annotations

from typing import Any

from litestar.connection import ASGIConnection
from litestar.handlers import BaseRouteHandler

from identity.management.errors import ManagementError
from identity.store.tenant import SqlTenantStore
from identity.tokens.rotation import is_revoked
from identity.tokens.verify import InvalidAccessToken, verify_access_token
from identity.web.deps import Services

__all__ = ["management_audience", "require_scope"]


def management_audience(services: Services) -> str:
    """The Management API's audience."""
    return services.settings.issuer + "api/v2/"


def _bearer(connection: ASGIConnection[Any, Any, Any, Any]) -> str:
    scheme, _, token = (connection.headers.get("authorization") or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ManagementError(401, "Missing authentication", "missing_authentication")
    return token.strip()


async def require_scope(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
    """Guard: a valid management token that holds (one of) the handler's scope(s)."""
    services: Services = connection.app.state.services
    token = _bearer(connection)
    audience = management_audience(services)
    try:
        claims = verify_access_token(
            services.key_ring, token, issuer=services.settings.issuer, audience=audience, now=services.clock.now()
        )
    except InvalidAccessToken as exc:
        raise ManagementError(401, "Invalid token", "invalid_token") from exc
    client_id = str(claims.get("azp", ""))
    if claims.get("gty") != "client-credentials" or claims.get("sub") != f"{client_id}@clients":
        raise ManagementError(401, "Invalid token", "invalid_token")
    async with services.sessions() as session:
        # A revoked signing key stays in this instance's ring until its next refresh: check its status now, as
        # /userinfo and the MFA API do (found by the forged-token table, issue 12).
        if await is_revoked(session, token):
            raise ManagementError(401, "Invalid token", "invalid_token")
        grant = await SqlTenantStore(session, issuer=services.settings.issuer).client_grant(client_id, audience)
    if grant is None:
        raise ManagementError(401, "Invalid token: the client is no longer authorized", "invalid_token")
    connection.state.management_client = client_id
    needed = handler.opt["scope"]
    needed = (needed,) if isinstance(needed, str) else tuple(needed)
    held = set(str(claims.get("scope", "")).split()) & set(grant.scopes)
    if not held & set(needed):
        raise ManagementError(403, f"Insufficient scope, expected any of: {','.join(needed)}", "insufficient_scope")
