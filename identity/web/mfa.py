"""The MFA API (``shared/API.md`` §2): list, associate, challenge, delete. Parse, call the factor service, render.

Email codes (``oob`` on the ``email`` channel) need a mail server (``IDENTITY_SMTP_URL``) and a client allowed the
mfa-oob grant; sending is rate limited per user (429 ``too_many_attempts``) and a mail server that fails answers
``bad_gateway`` (400), naming neither the address nor the server.
"""

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

from identity.accounts.errors import NotEnrolled
from identity.accounts.factors import AlreadyEnrolled, Challenge, Factor, FactorType
from identity.accounts.factors.email import SEND_REFILL_SECONDS, MailUnavailable, SendLimited, Sent, checked_address
from identity.oauth2.client_auth import authenticate_client
from identity.oauth2.errors import (
    AccessDenied,
    BadGateway,
    InvalidGrant,
    InvalidRequest,
    InvalidToken,
    OAuthError,
    TooManyAttempts,
    Unauthorized,
    UnauthorizedClient,
    UnsupportedChallengeType,
)
from identity.oauth2.grants.mfa import (
    MALFORMED_MFA_TOKEN,
    TOO_MANY_SENT,
    MfaOobGrant,
    MfaOtpGrant,
    MfaRecoveryCodeGrant,
    live_mfa_transaction,
)
from identity.oauth2.grants.webauthn import MFA_WEBAUTHN
from identity.oauth2.interfaces import Client, MfaTransaction
from identity.store.tenant import SqlTenantStore, tenant_settings
from identity.web import openapi
from identity.web.addresses import request_trail
from identity.web.bearer import bearer_token, is_jwt, live_user, mfa_api_user
from identity.web.deps import Services, build_factors, unit_of_work
from identity.web.errors import NO_STORE
from identity.web.oauth import parse_token_request, refuse_repeated_members
from identity.web.webauthn import associate_webauthn, challenge_webauthn

__all__ = ["associate", "authenticator_json", "challenge", "list_authenticators", "remove_authenticator", "wire_time"]

_MAX_BODY = 16 * 1024
MFA_GRANT_TYPES = frozenset(
    {MfaOtpGrant.GRANT_TYPE, MfaOobGrant.GRANT_TYPE, MfaRecoveryCodeGrant.GRANT_TYPE, MFA_WEBAUTHN}
)


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
    """A factor as the MFA API lists it (API.md §2.3).

    ``otp``, ``oob`` (email, its address masked), ``webauthn`` (named) or ``recovery-code``.
    """
    if factor.type is FactorType.RECOVERY_CODE:
        return {"id": factor.id, "authenticator_type": "recovery-code", "active": True}
    kinds = {FactorType.WEBAUTHN: "webauthn", FactorType.EMAIL: "oob"}
    entry: dict[str, Any] = {
        "id": factor.id,
        "authenticator_type": kinds.get(factor.type, "otp"),
        "active": factor.active,
        "created_at": wire_time(factor.created_at),
    }
    if factor.type is FactorType.WEBAUTHN:
        entry["name"] = factor.name or "Security key"
    if factor.type is FactorType.EMAIL:
        entry["oob_channel"] = "email"
        entry["name"] = factor.name or "Email"
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
    """Start an enrollment with an ``mfa_token`` (only while the user has no active factor).

    An app, a key, or an email address (its first code sent at once).
    """
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
    if types == ["oob"]:
        return await _associate_email(request, services, db, transaction, body)
    if types != ["otp"]:
        raise InvalidRequest("Only the 'otp', 'oob' (email) and 'webauthn' authenticator types are supported")
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


async def _associate_email(
    request: Request[Any, Any, State],
    services: Services,
    db: AsyncSession,
    transaction: MfaTransaction,
    body: dict[str, Any],
) -> Response[Any]:
    """``oob`` on the ``email`` channel: a pending email factor, confirmed by the code sent now (mfa-oob grant)."""
    channels = body.get("oob_channels")
    if channels != ["email"]:
        raise InvalidRequest("oob_channels must be ['email']: email is the only out-of-band channel")
    client = await _oob_client(db, services, transaction.client_id)
    factors = build_factors(services, db)
    user = await factors.user(transaction)
    if user is None:
        raise InvalidToken(MALFORMED_MFA_TOKEN)
    given = body.get("email")
    if given is not None and not isinstance(given, str):
        raise InvalidRequest("email must be a string")
    try:
        address = checked_address(given if given is not None else (user.email or ""))
    except ValueError:
        raise InvalidRequest("email must be one email address") from None
    label = (await tenant_settings(db)).friendly_name
    user_pk = await factors.transactions.user_pk(transaction)
    unit = unit_of_work(services, db)
    try:
        sent = await _sending(
            factors.email.enroll(unit, user_pk, transaction.id, address, issuer_name=label),
            request, services, transaction.user_id, client.client_id,
        )  # fmt: skip
    except AlreadyEnrolled:
        raise AccessDenied("User is already enrolled") from None
    finally:
        await unit.close()
    answer: dict[str, Any] = {
        "authenticator_type": "oob",
        "binding_method": "prompt",
        "oob_channel": "email",
        "oob_code": sent.oob_code,
    }
    if sent.recovery_code is not None:
        answer["recovery_codes"] = [sent.recovery_code]
    _audit(request, services, "gd_start_enroll", transaction.user_id, transaction.client_id)
    return Response(answer, media_type=MediaType.JSON, headers=NO_STORE)


async def _oob_client(db: AsyncSession, services: Services, client_id: str) -> Client:
    """The transaction's client, if it may use emailed codes: a mail server and the mfa-oob grant."""
    client = await SqlTenantStore(db, issuer=services.settings.issuer).client(client_id)
    if services.mailer is None or client is None or MfaOobGrant.GRANT_TYPE not in client.grant_types:
        raise InvalidRequest("Email codes are not enabled for this application")
    return client


async def _sending(
    sending: Any, request: Request[Any, Any, State], services: Services, user_id: str, client_id: str | None
) -> Sent:
    """Await a send and map its refusals: the bucket empty (429), the mail server failing (``bad_gateway``)."""
    try:
        sent: Sent = await sending
    except SendLimited:
        _audit(request, services, "gd_otp_rate_limit_exceed", user_id, client_id)
        raise TooManyAttempts(TOO_MANY_SENT, retry_after=int(SEND_REFILL_SECONDS)) from None
    except MailUnavailable:
        _audit(request, services, "gd_send_email_failure", user_id, client_id)
        raise BadGateway() from None
    _audit(request, services, "gd_send_email", user_id, client_id)
    return sent


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
        email=services.mailer is not None and MfaOobGrant.GRANT_TYPE in client.grant_types,
    )
    if chosen is None:
        raise UnsupportedChallengeType("User does not have any authenticator of the requested challenge type")
    if chosen.challenge is Challenge.WEBAUTHN:
        return await challenge_webauthn(services, db, transaction, authenticator_id=params.get("authenticator_id"))
    if chosen.challenge is Challenge.OOB:
        label = (await tenant_settings(db)).friendly_name
        user_pk = await factors.transactions.user_pk(transaction)
        unit = unit_of_work(services, db)
        try:
            sent = await _sending(
                factors.email.challenge(unit, user_pk, transaction.id, chosen.factor.id, issuer_name=label),
                request, services, transaction.user_id, client.client_id,
            )  # fmt: skip
        except NotEnrolled:  # removed a moment ago
            raise UnsupportedChallengeType(
                "User does not have any authenticator of the requested challenge type"
            ) from None
        finally:
            await unit.close()
        body = {"challenge_type": "oob", "oob_code": sent.oob_code, "binding_method": "prompt"}
        return Response(body, media_type=MediaType.JSON, headers=NO_STORE)
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
        arrays = ("authenticator_types", "oob_channels")
        # Those two are arrays (repeated on purpose); anything else, as at the token endpoint, once.
        form = refuse_repeated_members([(name, value) for name, value in pairs if name not in arrays])
        fields: dict[str, Any] = {name: [value for key, value in pairs if key == name] for name in arrays}
        fields["client_id"] = form.get("client_id") or None
        if "email" in form:
            fields["email"] = form["email"]
        return fields
    raise InvalidRequest("Content-Type must be application/json or application/x-www-form-urlencoded")
