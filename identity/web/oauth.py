"""``POST /oauth/token``: parse, call the engine, render."""

from __future__ import annotations

import json
from urllib.parse import parse_qsl

from litestar import MediaType, Request, Response, post
from litestar.datastructures import State
from litestar.di import NamedDependency
from sqlalchemy.ext.asyncio import AsyncSession

from identity.oauth2 import TokenRequest
from identity.oauth2.errors import InvalidRequest
from identity.oauth2.requests import parse_basic_authorization
from identity.web.deps import Services, build_token_endpoint
from identity.web.errors import NO_STORE

__all__ = ["token"]

_MAX_BODY = 64 * 1024


async def parse_token_request(request: Request[object, object, State], *, realm: str) -> TokenRequest:
    """Read a form or JSON body into a `TokenRequest`."""
    media_type = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
    raw = await request.body()
    transport = {
        "basic": parse_basic_authorization(request.headers.get("authorization"), realm=realm),
        "client_ip": request.client.host if request.client else None,
        "user_agent": request.headers.get("user-agent"),
    }
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidRequest("request body must be UTF-8") from None
    if media_type == "application/x-www-form-urlencoded":
        try:
            pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=False, errors="strict")
        except (UnicodeDecodeError, ValueError):
            raise InvalidRequest("request body is not valid form data") from None
        return TokenRequest.from_form(pairs, **transport)
    if media_type == "application/json":
        try:
            body = json.loads(text)
        except ValueError:
            raise InvalidRequest("request body is not valid JSON") from None
        return TokenRequest.from_json(body, **transport)
    raise InvalidRequest("Content-Type must be application/x-www-form-urlencoded or application/json")


@post("/oauth/token", status_code=200, request_max_body_size=_MAX_BODY, include_in_schema=False)
async def token(
    request: Request[object, object, State],
    services: NamedDependency[Services],
    db: NamedDependency[AsyncSession],
) -> Response[object]:
    """The token endpoint (RFC 6749 §3.2, Auth0 Authentication API)."""
    token_request = await parse_token_request(request, realm=services.settings.issuer)
    response = await build_token_endpoint(services, db).handle(token_request)
    return Response(response.to_body(), media_type=MediaType.JSON, headers=NO_STORE)
