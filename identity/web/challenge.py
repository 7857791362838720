"""``POST /oauth/authorize-challenge``, the first-party apps endpoint (`identity.oauth2.challenge`).

Parse, call, render; one audit event per request that checked something, and one per email sent (or not sent).

Bodies are read as at ``/oauth/token``: a form (the draft's format) or JSON (which the draft allows for intermediate
requests), a parameter sent twice refused. Errors keep their RFC 6749 JSON body but take the draft's statuses
(`identity.oauth2.first_party.challenge_status`).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from litestar import MediaType, Request, Response, post
from litestar.datastructures import State
from litestar.di import NamedDependency
from sqlalchemy.ext.asyncio import AsyncSession

from identity.accounts.factors import FactorService
from identity.accounts.first_party import ChallengeFactors
from identity.accounts.webauthn import WebAuthnService
from identity.audit import AuditLog, AuditTrail, LogEvent
from identity.oauth2 import TokenRequest
from identity.oauth2.challenge import AuthorizationChallengeEndpoint, AuthorizationCodeResponse
from identity.oauth2.challenge_methods import EmailMethod, OtpMethod, RecoveryCodeMethod, WebAuthnMethod
from identity.oauth2.errors import InvalidGrant, OAuthError, TooManyAttempts
from identity.oauth2.first_party import (
    PROTOCOL,
    AuthSession,
    CodeDelivery,
    CodeNotSent,
    Delivery,
    InsufficientAuthorization,
    TooManyCodesSent,
    challenge_status,
)
from identity.observability.requests import note
from identity.store.db import UnitOfWork
from identity.store.tenant import SqlTenantStore
from identity.web import openapi
from identity.web.addresses import request_trail
from identity.web.deps import (
    Services,
    TrailObserver,
    _TrailedFactors,
    _TrailedFirstParty,
    _TrailedWebAuthn,
    build_authenticator,
    build_webauthn,
    exchange_unit,
)
from identity.web.errors import NO_STORE
from identity.web.oauth import hash_admission, parse_token_request

__all__ = ["authorize_challenge", "build_challenge_endpoint"]

_MAX_BODY = 64 * 1024
_RECOVERY = "recovery-code"
_SEND_EVENTS = {
    Delivery.SENT: "gd_send_email",
    Delivery.LIMITED: "gd_otp_rate_limit_exceed",
    Delivery.FAILED: "gd_send_email_failure",
}
"""The events of a send, as ``/mfa/challenge`` logs them."""


class _TrailedChallengeFactors(ChallengeFactors):
    """The endpoint's factor menu, logging each email sent or refused when it happens (the answer is an error)."""

    def __init__(self, factors: FactorService, webauthn: WebAuthnService, audit: AuditLog, trail: AuditTrail) -> None:
        super().__init__(factors, webauthn)
        self.audit = audit
        self.trail = trail

    async def send_email_code(self, session: AuthSession, auth_session: str) -> CodeDelivery:
        sent = await super().send_email_code(session, auth_session)
        if (event_type := _SEND_EVENTS.get(sent.outcome)) is not None:
            self.audit.emit(replace(self.trail, type=None, description=None).event(event_type))
        return sent


def build_challenge_endpoint(
    services: Services, session: AsyncSession, trail: AuditTrail, unit: UnitOfWork
) -> AuthorizationChallengeEndpoint:
    """The endpoint bound to this request's session, unit of work and audit trail."""
    users = build_authenticator(services, session, trail)
    mfa = _TrailedFactors(session, services.box, services.clock, trail, unit, sender=services.mailer)
    webauthn_service = build_webauthn(services, session)
    factors = _TrailedChallengeFactors(mfa, webauthn_service, services.audit, trail)
    methods = (
        OtpMethod(mfa),
        WebAuthnMethod(_TrailedWebAuthn(webauthn_service, mfa.attempts, trail), factors),
        EmailMethod(mfa, factors),
        RecoveryCodeMethod(mfa),
    )
    rules = services.rules if services.rules is not None and services.rules.rules else None
    return AuthorizationChallengeEndpoint(
        SqlTenantStore(session, issuer=services.settings.issuer),
        users,
        users,
        mfa,
        _TrailedFirstParty(session, services.clock, trail),
        factors,
        methods,
        services.clock,
        challenge_realm=services.settings.issuer,
        rules=rules,
        transaction=unit,
        observer=TrailObserver(trail),
    )


@post(
    "/oauth/authorize-challenge",
    status_code=200,
    request_max_body_size=_MAX_BODY,
    operation_class=openapi.AUTHORIZE_CHALLENGE,
    tags=["oauth"],
)
async def authorize_challenge(
    request: Request[object, object, State],
    services: NamedDependency[Services],
    db: NamedDependency[AsyncSession],
) -> Response[Any]:
    """The Authorization Challenge Endpoint (draft-ietf-oauth-first-party-apps-03 §4.1)."""
    trail = request_trail(request, services.settings)
    trail.details["protocol"] = PROTOCOL
    parsed: TokenRequest | None = None
    try:
        parsed = await parse_token_request(request, challenge_realm=services.settings.issuer, client_ip=trail.ip)
        await services.refresh_rules()
        password = parsed.get("password") is not None and parsed.get("auth_session") is None
        async with hash_admission(services, trail, password):
            answer = await _exchange(services, db, trail, parsed)
    except OAuthError as error:
        if (event := _failure_event(trail, parsed, error)) is not None:
            services.audit.emit(event)
        note(request.scope, error=error.error)
        status, headers = challenge_status(error), {**NO_STORE, **error.headers()}
        return Response(error.to_body(), status_code=status, media_type=MediaType.JSON, headers=headers)
    for event_type in _success_events(answer):
        services.audit.emit(replace(trail, type=None, description=None).event(event_type))
    for extra in trail.also:
        services.audit.emit(replace(trail, type=None, description=None).event(extra))
    return Response(answer.to_body(), media_type=MediaType.JSON, headers=NO_STORE)


async def _exchange(
    services: Services, db: AsyncSession, trail: AuditTrail, parsed: TokenRequest
) -> AuthorizationCodeResponse:
    async with exchange_unit(services, db) as unit:
        answer = await build_challenge_endpoint(services, db, trail, unit).handle(parsed)
    return answer


def _success_events(answer: AuthorizationCodeResponse) -> list[str]:
    """A code: the login succeeded (``s``), after the second factor named when one was checked."""
    if answer.factor is None:
        return ["s"]
    return ["gd_recovery_succeed" if answer.factor == _RECOVERY else "gd_auth_succeed", "s"]


def _failure_event(trail: AuditTrail, parsed: TokenRequest | None, error: OAuthError) -> LogEvent | None:
    """The event of a refusal; none for a request that only asked what is needed (nothing was checked)."""
    if parsed is not None and trail.client_id is None:
        basic = parsed.basic
        trail.client_id = (basic.client_id if basic is not None else parsed.get("client_id") or "")[:128] or None
    if isinstance(error, InsufficientAuthorization):
        return trail.event("mfar") if error.auth_session is not None else None
    if isinstance(error, TooManyCodesSent | CodeNotSent):
        return None  # logged as it happened (_TrailedChallengeFactors)
    recovery = parsed is not None and parsed.get("recovery_code") is not None
    second_factor = parsed is not None and (recovery or _carries_factor(parsed))
    if isinstance(error, TooManyAttempts) and second_factor:
        return trail.event("gd_recovery_rate_limit_exceed" if recovery else "gd_otp_rate_limit_exceed")
    if isinstance(error, InvalidGrant) and second_factor:
        return trail.event("gd_recovery_failed" if recovery else "gd_auth_failed", error.description)
    return trail.event("f", error.description)


def _carries_factor(parsed: TokenRequest) -> bool:
    return any(parsed.get(name) is not None for name in ("otp", "email_code", "authn_response", "clientDataJSON"))
