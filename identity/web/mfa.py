"""The MFA API (``shared/API.md`` §2): list, associate, challenge, delete. Parse, call the factor service, render."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl

from litestar import MediaType, Request, Response, delete, get, post
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.params import FromPath
from sqlalchemy.ext.asyncio import AsyncSession

from identity.accounts.factors import AlreadyEnrolled, Challenge, Factor, FactorType
from identity.oauth2.client_auth import authenticate_client
from identity.oauth2.errors import (
    AccessDenied,
    InvalidGrant,
    InvalidRequest,
    InvalidToken,
    OAuthError,
    Unauthorized,
    UnauthorizedClient,
    UnsupportedChallengeType,
)
from identity.oauth2.grants.mfa import MALFORMED_MFA_TOKEN, MfaOtpGrant, MfaRecoveryCodeGrant, live_mfa_transaction
from identity.oauth2.grants.webauthn import MFA_WEBAUTHN
from identity.oauth2.interfaces import MfaTransaction
from identity.store.tenant import SqlTenantStore, tenant_settings
from identity.web import openapi
from identity.web.addresses import request_trail
from identity.web.bearer import bearer_token, is_jwt, live_user, mfa_api_user
from identity.web.deps import Services, build_factors
from identity.web.errors import NO_STORE
from identity.web.oauth import parse_token_request, refuse_repeated_members
from identity.web.webauthn import associate_webauthn, challenge_webauthn

__all__ = ["associate", "authenticator_json", "challenge", "list_authenticators", "remove_authenticator", "wire_time"]

_MAX_BODY = 16 * 1024
MFA_GRANT_TYPES = frozenset({MfaOtpGrant.GRANT_TYPE, MfaRecoveryCodeGrant.GRANT_TYPE, MFA_WEBAUTHN})


async def _mfa_transaction(services: Services, db: AsyncSession, token: str) -> MfaTransaction:
    """The live transaction of a Bearer mfa_token; any failure is RFC 6750's 401 ``invalid_token``.

    In a body (``/mfa/challenge``, the grants) the same failures keep the token endpoint's codes; as a Bearer
    credential, the contract (API.md §2.7) and RFC 6750 §3.1 want ``invalid_token`` with a ``WWW-Authenticate``.
    """
    factors = build_factors(services, db)
    try:
        transaction = await live_mfa_transaction(factors, token, client_id=None, clock=services.clock)
    except OAuthError as exc:
        raise InvalidToken(exc.description) from None
    await live_user(db, transaction.user_id)
    return transaction


@get("/mfa/authenticators", operation_class=openapi.LIST_AUTHENTICATORS, tags=["mfa"])
async def list_authenticators(
    request: Request[Any, Any, State], services: NamedDependency[Services], db: NamedDependency[AsyncSession]
) -> Response[Any]:
    """The user's authenticators, for an ``mfa_token`` or an MFA-API token with ``read:authenticators``."""
    token = bearer_token(request)
    if is_jwt(token):
        user_id = (await mfa_api_user(services, db, token, "read:authenticators")).user_id
    else:
        user_id = (await _mfa_transaction(services, db, token)).user_id
    listed = await build_factors(services, db).authenticators.listed(user_id)
    return Response([authenticator_json(f) for f in listed], media_type=MediaType.JSON, headers=NO_STORE)


def authenticator_json(factor: Factor) -> dict[str, Any]:
    """A factor as the MFA API lists it (API.md §2.3): ``otp``, ``webauthn`` (named) or ``recovery-code``."""
    if factor.type is FactorType.RECOVERY_CODE:
        return {"id": factor.id, "authenticator_type": "recovery-code", "active": True}
    entry: dict[str, Any] = {
        "id": factor.id,
        "authenticator_type": "webauthn" if factor.type is FactorType.WEBAUTHN else "otp",
        "active": factor.active,
        "created_at": wire_time(factor.created_at),
    }
    if factor.type is FactorType.WEBAUTHN:
        entry["name"] = factor.name or "Security key"
    return entry


def wire_time(moment: datetime) -> str:
    """A stored time as the MFA and Guardian APIs write it (ISO 8601, ``Z`` for UTC)."""
    return moment.isoformat().replace("+00:00", "Z")


@post(
    "/mfa/associate", status_code=200, request_max_body_size=_MAX_BODY, operation_class=openapi.ASSOCIATE, tags=["mfa"]
)
async def associate(
    request: Request[Any, Any, State], services: NamedDependency[Services], db: NamedDependency[AsyncSession]
) -> Response[Any]:
    """Start an OTP enrollment with an ``mfa_token`` (only while the user has no active factor)."""
    token = bearer_token(request)
    if is_jwt(token):
        raise InvalidToken("enrollment needs the mfa_token of a login")
    transaction = await _mfa_transaction(services, db, token)
    body = await _json_or_form(request)
    if body.get("client_id") not in (None, transaction.client_id):
        raise InvalidRequest("mfa_token not issued to this client")
    types = body.get("authenticator_types")
    if not isinstance(types, list) or not types or not all(isinstance(t, str) for t in types):
        raise InvalidRequest("authenticator_types must be a non-empty array of strings")
    if types == ["webauthn"]:
        return await associate_webauthn(services, db, transaction)
    if types != ["otp"]:
        raise InvalidRequest("Only the 'otp' and 'webauthn' authenticator types are supported")
    label = (await tenant_settings(db)).friendly_name
    try:
        enrollment = await build_factors(services, db).enrollment.associate(transaction.user_id, issuer=label)
    except AlreadyEnrolled:
        raise AccessDenied("User is already enrolled") from None
    answer: dict[str, Any] = {
        "authenticator_type": "otp",
        "secret": enrollment.secret,
        "barcode_uri": enrollment.barcode_uri,
    }
    if enrollment.recovery_code is not None:
        answer["recovery_codes"] = [enrollment.recovery_code]
    _audit(request, services, "gd_start_enroll", transaction.user_id, transaction.client_id)
    return Response(answer, media_type=MediaType.JSON, headers=NO_STORE)


def _audit(
    request: Request[Any, Any, State], services: Services, event_type: str, user_id: str, client_id: str | None
) -> None:
    trail = request_trail(request, services.settings)
    trail.user_id, trail.client_id = user_id, client_id
    services.audit.emit(trail.event(event_type))


@post(
    "/mfa/challenge", status_code=200, request_max_body_size=_MAX_BODY, operation_class=openapi.CHALLENGE, tags=["mfa"]
)
async def challenge(
    request: Request[Any, Any, State], services: NamedDependency[Services], db: NamedDependency[AsyncSession]
) -> Response[Any]:
    """Say which challenge the client should answer; for TOTP nothing is sent (``{"challenge_type":"otp"}``)."""
    params = await parse_token_request(request, challenge_realm=services.settings.issuer)
    client = await authenticate_client(
        params, SqlTenantStore(db, issuer=services.settings.issuer), challenge_realm=services.settings.issuer
    )
    if not client.grant_types & MFA_GRANT_TYPES:
        # A client that cannot redeem a challenge has no business asking for one (nor learning what it would be).
        raise UnauthorizedClient(f"Grant type '{MfaOtpGrant.GRANT_TYPE}' not allowed for the client.")
    factors = build_factors(services, db)
    transaction = await live_mfa_transaction(
        factors, params.get("mfa_token"), client_id=client.client_id, clock=services.clock
    )
    user = await factors.user(transaction)
    if user is None:
        raise InvalidGrant(MALFORMED_MFA_TOKEN)
    if user.blocked:
        raise Unauthorized("user is blocked")
    chosen = await factors.choose_challenge(
        transaction.user_id,
        challenge_type=params.get("challenge_type"),
        authenticator_id=params.get("authenticator_id"),
    )
    if chosen is Challenge.WEBAUTHN:
        return await challenge_webauthn(services, db, transaction, authenticator_id=params.get("authenticator_id"))
    if chosen is None:
        raise UnsupportedChallengeType("User does not have any authenticator of the requested challenge type")
    return Response({"challenge_type": "otp"}, media_type=MediaType.JSON, headers=NO_STORE)


@delete(
    "/mfa/authenticators/{authenticator_id:str}",
    status_code=204,
    operation_class=openapi.REMOVE_AUTHENTICATOR,
    tags=["mfa"],
)
async def remove_authenticator(
    request: Request[Any, Any, State],
    authenticator_id: FromPath[str],
    services: NamedDependency[Services],
    db: NamedDependency[AsyncSession],
) -> Response[None]:
    """Delete an authenticator, for an MFA-API token with ``remove:authenticators`` (an mfa_token is not enough)."""
    token = bearer_token(request)
    if not is_jwt(token):
        raise InvalidToken("an access token for the MFA API is required", scope="remove:authenticators")
    user_id = (await mfa_api_user(services, db, token, "remove:authenticators")).user_id
    if not await build_factors(services, db).authenticators.remove(user_id, authenticator_id):
        return Response(
            {"error": "not_found", "error_description": "Authenticator not found"},  # type: ignore[arg-type]
            status_code=404,
            media_type=MediaType.JSON,
            headers=NO_STORE,
        )
    _audit(request, services, "gd_unenroll", user_id, None)
    return Response(None, status_code=204, headers=NO_STORE)


async def _json_or_form(request: Request[Any, Any, State]) -> dict[str, Any]:
    media_type = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
    raw = await request.body()
    if media_type == "application/json":
        try:
            body = json.loads(raw or b"{}", object_pairs_hook=refuse_repeated_members)
        except (ValueError, RecursionError):
            raise InvalidRequest("request body is not valid JSON") from None
        if not isinstance(body, dict):
            raise InvalidRequest("request body must be a JSON object")
        return body
    if media_type == "application/x-www-form-urlencoded":
        try:
            pairs = parse_qsl(raw.decode("utf-8"), keep_blank_values=True, errors="strict")
        except (UnicodeDecodeError, ValueError):
            raise InvalidRequest("request body is not valid form data") from None
        types = [value for name, value in pairs if name == "authenticator_types"]
        # authenticator_types is an array (repeated on purpose); anything else, as at the token endpoint, once.
        form = refuse_repeated_members([(name, value) for name, value in pairs if name != "authenticator_types"])
        return {"client_id": form.get("client_id") or None, "authenticator_types": types}
    raise InvalidRequest("Content-Type must be application/json or application/x-www-form-urlencoded")
