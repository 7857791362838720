"""``POST /oauth/token``: parse, call the engine, render."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any
from urllib.parse import parse_qsl

from litestar import MediaType, Request, Response, post
from litestar.datastructures import State
from litestar.di import NamedDependency
from sqlalchemy.ext.asyncio import AsyncSession

from identity.accounts.passwords import HashingUnavailable
from identity.audit import AuditTrail, LogEvent
from identity.oauth2 import TokenRequest
from identity.oauth2.errors import (
    InvalidRequest,
    MfaRequired,
    OAuthError,
    TemporarilyUnavailable,
    TooManyAttempts,
)
from identity.oauth2.grants import (
    MFA_OOB,
    MFA_OTP,
    MFA_RECOVERY_CODE,
    MFA_WEBAUTHN,
    PASSWORD,
    PASSWORD_REALM,
    REFRESH_TOKEN,
    WEBAUTHN,
)
from identity.oauth2.interfaces import TokenResponse
from identity.oauth2.requests import parse_basic_authorization
from identity.observability.requests import note
from identity.web import openapi
from identity.web.addresses import request_trail
from identity.web.deps import (
    Services,
    build_revocation_endpoint,
    build_token_endpoint,
    exchange_unit,
    unit_of_work,
)
from identity.web.errors import NO_STORE

__all__ = ["hash_admission", "parse_token_request", "refuse_repeated_members", "revoke", "token"]

_MAX_BODY = 64 * 1024
# Grants that write from their first statement on: one write transaction for the whole exchange. (The password
# grants read, hash outside any transaction, then write: their write unit starts after the hash.)
_WRITE_GRANTS = frozenset({REFRESH_TOKEN, MFA_OTP, MFA_OOB, MFA_RECOVERY_CODE})


def refuse_repeated_members(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """RFC 6749 §3.2 in JSON too: ``json.loads`` would keep the last of two members silently."""
    body: dict[str, Any] = {}
    for name, value in pairs:
        if name in body:
            raise InvalidRequest(f"{name} parameter must not be included more than once")
        body[name] = value
    return body


async def parse_token_request(
    request: Request[object, object, State], *, challenge_realm: str, client_ip: str | None = None
) -> TokenRequest:
    """Read a form or JSON body into a `TokenRequest` (``client_ip``: the address decided at the edge)."""
    media_type = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
    raw = await request.body()
    basic = parse_basic_authorization(request.headers.get("authorization"), challenge_realm=challenge_realm)
    if basic is not None:
        note(request.scope, client_id=basic.client_id[:128])
    transport = {
        "basic": basic,
        "client_ip": client_ip if client_ip is not None else (request.client.host if request.client else None),
        "user_agent": request.headers.get("user-agent"),
        "forwarded_for": request.headers.get("auth0-forwarded-for"),
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
        return _noted(request, TokenRequest.from_form(pairs, **transport))
    if media_type == "application/json":
        try:
            body = json.loads(text, object_pairs_hook=refuse_repeated_members)
        except (ValueError, RecursionError):
            raise InvalidRequest("request body is not valid JSON") from None
        return _noted(request, TokenRequest.from_json(body, **transport))
    raise InvalidRequest("Content-Type must be application/x-www-form-urlencoded or application/json")


@asynccontextmanager
async def hash_admission(services: Services, trail: AuditTrail, password: bool) -> AsyncIterator[None]:
    """Load shedding first: a request that will hash a ``password`` is refused at once past the hash queue.

    Refused before any database work (`TemporarilyUnavailable`, noted ``api_limit``); other requests pass.
    """
    if not password:
        yield
        return
    try:
        async with services.hasher.admission():
            yield
    except HashingUnavailable as busy:
        trail.note("api_limit")
        raise TemporarilyUnavailable(retry_after=busy.retry_after) from None


def _noted(request: Request[object, object, State], parsed: TokenRequest) -> TokenRequest:
    """Name the client and the grant in the request log (ids only, never a credential)."""
    client_id, grant_type = parsed.get("client_id"), parsed.get("grant_type")
    note(request.scope, grant_type=grant_type[:100] if grant_type else None)
    if client_id:
        note(request.scope, client_id=client_id[:128])
    return parsed


@post("/oauth/token", status_code=200, request_max_body_size=_MAX_BODY, operation_class=openapi.TOKEN, tags=["oauth"])
async def token(
    request: Request[object, object, State],
    services: NamedDependency[Services],
    db: NamedDependency[AsyncSession],
) -> Response[object]:
    """The token endpoint (RFC 6749 §3.2, Auth0 Authentication API); one audit event per request."""
    trail = request_trail(request, services.settings)
    token_request: TokenRequest | None = None
    try:
        token_request = await parse_token_request(request, challenge_realm=services.settings.issuer, client_ip=trail.ip)
        async with hash_admission(services, trail, token_request.params.get("grant_type") in _HASHING):
            response = await _exchange(services, db, trail, token_request)
    except OAuthError as error:
        services.audit.emit(_failure_event(trail, token_request, error))
        raise
    services.audit.emit(trail.event(_SUCCESS.get(token_request.params.get("grant_type", ""), "s")))
    for extra in trail.also:
        services.audit.emit(replace(trail, type=None, description=None).event(extra))
    return Response(response.to_body(), media_type=MediaType.JSON, headers=NO_STORE)


async def _exchange(
    services: Services, db: AsyncSession, trail: AuditTrail, token_request: TokenRequest
) -> TokenResponse:
    if token_request.grant_type != "client_credentials":
        await services.refresh_rules()  # rules never run for client credentials
    async with exchange_unit(services, db) as unit:
        if token_request.get("grant_type") in _WRITE_GRANTS:
            await unit.write()
        response = await build_token_endpoint(services, db, trail, unit).handle(token_request)
    return response


_HASHING = frozenset({PASSWORD, PASSWORD_REALM})
_SUCCESS = {
    PASSWORD: "sepft",
    PASSWORD_REALM: "sepft",
    MFA_OTP: "seotpft",
    MFA_OOB: "seoobft",
    MFA_RECOVERY_CODE: "sercft",
    MFA_WEBAUTHN: "gd_auth_succeed",
    WEBAUTHN: "s",
    REFRESH_TOKEN: "sertft",
    "client_credentials": "seccft",
    "authorization_code": "seacft",
}
_FAILURE = {
    PASSWORD: "fepft",
    PASSWORD_REALM: "fepft",
    MFA_OTP: "feotpft",
    MFA_OOB: "feoobft",
    MFA_RECOVERY_CODE: "fercft",
    MFA_WEBAUTHN: "gd_auth_failed",
    WEBAUTHN: "f",
    REFRESH_TOKEN: "fertft",
    "client_credentials": "feccft",
    "authorization_code": "feacft",
}
_RATE_LIMITED = {
    MFA_OTP: "gd_otp_rate_limit_exceed",
    MFA_OOB: "gd_otp_rate_limit_exceed",
    MFA_RECOVERY_CODE: "gd_recovery_rate_limit_exceed",
    MFA_WEBAUTHN: "gd_otp_rate_limit_exceed",
}


def _failure_event(trail: AuditTrail, token_request: TokenRequest | None, error: OAuthError) -> LogEvent:
    """The event of a refused token request: what the services noted, else the grant's failure code."""
    grant_type = token_request.params.get("grant_type", "") if token_request is not None else ""
    if trail.client_id is None and token_request is not None:
        basic = token_request.basic
        trail.client_id = (basic.client_id if basic is not None else token_request.get("client_id") or "")[:128] or None
    if isinstance(error, MfaRequired):
        return trail.event("mfar")
    if isinstance(error, TooManyAttempts) and grant_type in _RATE_LIMITED:
        return trail.event(_RATE_LIMITED[grant_type], error.description)
    return trail.event(_FAILURE.get(grant_type, "f"), error.description)


@post("/oauth/revoke", status_code=200, request_max_body_size=_MAX_BODY, operation_class=openapi.REVOKE, tags=["oauth"])
async def revoke(
    request: Request[object, object, State], services: NamedDependency[Services], db: NamedDependency[AsyncSession]
) -> Response[object]:
    """RFC 7009 token revocation (`identity.oauth2.RevocationEndpoint`): a refresh token's whole family goes."""
    token_request = await parse_token_request(request, challenge_realm=services.settings.issuer)
    unit = unit_of_work(services, db)
    try:
        await build_revocation_endpoint(services, db, unit).handle(token_request)
    finally:
        await unit.close()
    return Response(b"", headers=NO_STORE)
