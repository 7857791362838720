"""Bearer tokens at identity's own resource endpoints (RFC 6750): ``/userinfo``, the MFA API, passkey enrollment.

One check for all of them: read ``Authorization: Bearer``, verify the access token for the endpoint's audience and
scope, refuse a token whose signing key was revoked since, and (for the MFA API) one issued without a second factor;
then the token's user must still exist and not be blocked. Every refusal is a 401 ``invalid_token`` whose challenge
names the scope the endpoint needs.
"""

from __future__ import annotations

from typing import Any

from litestar import Request
from sqlalchemy.ext.asyncio import AsyncSession

from identity.audiences import mfa_api_audience
from identity.oauth2.errors import InvalidToken
from identity.oauth2.interfaces import User
from identity.store import users as user_queries
from identity.tokens.rotation import is_revoked
from identity.tokens.verify import InvalidAccessToken, verify_access_token
from identity.web.deps import Services

__all__ = ["access_token_claims", "bearer_token", "is_jwt", "live_user", "mfa_api_user"]


def bearer_token(request: Request[Any, Any, Any], *, scope: str | None = None) -> str:
    """The token of the ``Authorization: Bearer`` header; `InvalidToken` when there is none."""
    scheme, _, token = (request.headers.get("authorization") or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise InvalidToken("missing bearer token", scope=scope)
    return token.strip()


def is_jwt(token: str) -> bool:
    """Whether ``token`` has the shape of a JWT (an access token) rather than an opaque one (an mfa_token)."""
    return token.count(".") == 2


async def access_token_claims(
    services: Services, db: AsyncSession, token: str, *, audience: str, scope: str, second_factor: bool = False
) -> dict[str, Any]:
    """The claims of an access token for ``audience`` with ``scope``, signed by a key that is still good.

    ``second_factor``: the token must have been issued after one (``amr`` contains ``mfa``).
    """
    try:
        claims = verify_access_token(
            services.key_ring,
            token,
            issuer=services.settings.issuer,
            audience=audience,
            now=services.clock.now(),
            required_scope=scope,
        )
    except InvalidAccessToken as exc:
        raise InvalidToken(str(exc), scope=scope) from None
    if second_factor and "mfa" not in claims.get("amr", []):
        raise InvalidToken("token was not issued after a second factor", scope=scope)
    if await is_revoked(db, token):
        raise InvalidToken("the token's signing key was revoked", scope=scope)
    return claims


async def live_user(db: AsyncSession, user_id: str, *, scope: str | None = None) -> User:
    """The token's user as stored now; it must still exist and not be blocked."""
    found = await user_queries.by_user_id(db, user_id)
    await db.commit()
    if found is None:
        raise InvalidToken("the user no longer exists", scope=scope)
    user = user_queries.user_from_row(*found)
    if user.blocked:
        raise InvalidToken("user is blocked", scope=scope)
    return user


async def mfa_api_user(
    services: Services, db: AsyncSession, token: str, scope: str, *, client_id: str | None = None
) -> User:
    """The live user of an MFA-API access token with ``scope`` (issued after a second factor).

    ``client_id``: the token must also have been issued to that client (``azp``; RFC 9068's ``client_id``), for an
    endpoint whose result is bound to the client the request names (``/passkey/register``).
    """
    audience = mfa_api_audience(services.settings.issuer)
    claims = await access_token_claims(services, db, token, audience=audience, scope=scope, second_factor=True)
    if client_id is not None and claims.get("azp", claims.get("client_id")) != client_id:
        raise InvalidToken("the token was not issued to this client", scope=scope)
    return await live_user(db, str(claims["sub"]), scope=scope)
