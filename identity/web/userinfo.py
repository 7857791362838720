"""``GET``/``POST /userinfo`` (OpenID Connect Core §5.3; API.md §3.1): the user's current standard claims."""

from __future__ import annotations

from typing import Any

from litestar import MediaType, Request, Response, route
from litestar.datastructures import State
from litestar.di import NamedDependency
from sqlalchemy.ext.asyncio import AsyncSession

from identity.audiences import userinfo_audience
from identity.store.userinfo import SqlUserinfoClaims
from identity.tokens.issuer import profile_claims
from identity.web import openapi
from identity.web.bearer import access_token_claims, bearer_token, live_user
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
    token = bearer_token(request, scope="openid")
    audience = userinfo_audience(services.settings.issuer)
    claims = await access_token_claims(services, db, token, audience=audience, scope="openid")
    user = await live_user(db, str(claims["sub"]))
    custom = await SqlUserinfoClaims(db, services.clock).recall(str(claims.get("jti", "")))
    body = {**custom, "sub": user.user_id, **profile_claims(user, set(str(claims.get("scope", "")).split()))}
    return Response(body, media_type=MediaType.JSON, headers=NO_STORE)
