"""``GET``/``POST /userinfo`` (OpenID Connect Core §5.3; API.md §3.1): the user's current standard claims."""

from __future__ import annotations

from typing import Any

from litestar import MediaType, Request, Response, route
from litestar.datastructures import State
from litestar.di import NamedDependency
from sqlalchemy.ext.asyncio import AsyncSession

from identity.oauth2.errors import InvalidToken
from identity.store import users as user_queries
from identity.store.userinfo import SqlUserinfoClaims
from identity.tokens.issuer import profile_claims
from identity.tokens.rotation import is_revoked
from identity.tokens.verify import InvalidAccessToken, verify_access_token
from identity.web import openapi
from identity.web.deps import Services
from identity.web.errors import NO_STORE

__all__ = ["userinfo"]


@route(
    "/userinfo",
    http_method=["GET", "POST"],
    status_code=200,
    operation_class=openapi.USERINFO_OPERATION,
    tags=["oidc"],
)
async def userinfo(
    request: Request[Any, Any, State], services: NamedDependency[Services], db: NamedDependency[AsyncSession]
) -> Response[Any]:
    """The claims the token's scopes allow, read from the user as stored now.

    Also the custom claims rules put in the ID token issued with this access token (API.md §3.1).
    """
    scheme, _, token = (request.headers.get("authorization") or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise InvalidToken("missing bearer token", scope="openid")
    try:
        claims = verify_access_token(
            services.key_ring,
            token.strip(),
            issuer=services.settings.issuer,
            audience=services.settings.issuer + "userinfo",
            now=services.clock.now(),
            required_scope="openid",
        )
    except InvalidAccessToken as exc:
        raise InvalidToken(str(exc), scope="openid") from None
    if await is_revoked(db, token.strip()):
        raise InvalidToken("the token's signing key was revoked", scope="openid")
    found = await user_queries.by_user_id(db, str(claims["sub"]))
    if found is None:
        raise InvalidToken("the user no longer exists")
    user = user_queries.user_from_row(*found)
    if user.blocked:
        raise InvalidToken("user is blocked")
    custom = await SqlUserinfoClaims(db).recall(str(claims.get("jti", "")))
    body = {**custom, "sub": user.user_id, **profile_claims(user, set(str(claims.get("scope", "")).split()))}
    return Response(body, media_type=MediaType.JSON, headers=NO_STORE)
