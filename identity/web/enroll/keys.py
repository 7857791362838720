"""Security keys and passkeys on the enrollment pages (``static/webauthn.js`` runs the browser's side).

    POST /enroll/keys/register-options   creation options (JSON) for a visitor enrolling (setup) or managing
    POST /enroll/keys/add                the attestation (hidden field ``credential``) and a name: the key is on
    POST /enroll/keys/assert-options     request options (JSON) for the visitor's keys
    POST /enroll/keys/verify             an assertion as the second factor of the pages' sign-in
    POST /enroll/keys/remove             removes a key, with a fresh second factor (code, recovery code or key)

Each ceremony's challenge is bound to the page session through a random value kept in the session (never the
session id), and is single use, as for the API. The OTP pages work without JavaScript; these need it.
"""

from __future__ import annotations

import json
import logging
import secrets
from typing import Any

from litestar import MediaType, Response, post
from litestar.di import NamedDependency
from sqlalchemy.ext.asyncio import AsyncSession

from identity.accounts.errors import AccountError
from identity.accounts.factors import FactorType, Proof, RemovalOutcome
from identity.accounts.webauthn import Purpose
from identity.mfa import recovery
from identity.oauth2.interfaces import FactorCheck
from identity.web.deps import Services, build_factors, build_webauthn
from identity.web.enroll.manage import removal_form
from identity.web.enroll.pages import (
    CODE_ERRORS,
    MANAGE,
    SETUP,
    START,
    VERIFY,
    AnyRequest,
    factor_page,
    field,
    page,
    redirect,
    tenant_name,
    user_pk,
)
from identity.web.enroll.setup import setup_page_with_error
from identity.web.enroll.visitor import Visitor, for_pages, sign_in_visitor

__all__ = ["KEY_ROUTES"]

logger = logging.getLogger("identity.web.enroll")

_SESSION_KEY = "webauthn"
_MAX_CREDENTIAL = 24 * 1024
_KEY_ERROR = "Your security key could not be verified. Try again."
_ADDED = "Your security key was added."
_RATE_LIMITED = CODE_ERRORS[FactorCheck.RATE_LIMITED][1]
_REFUSED = {Proof.RECOVERY_CODE: "That recovery code is not right.", Proof.OTP: "That code is not right."}


def _bind(request: AnyRequest) -> str:
    """A fresh random binding for this session's next ceremony (replacing any earlier one)."""
    binding = secrets.token_urlsafe(32)
    request.session[_SESSION_KEY] = binding
    return binding


def _binding(request: AnyRequest) -> str | None:
    value = request.session.pop(_SESSION_KEY, None)
    return value if isinstance(value, str) else None


async def _credential(request: AnyRequest) -> dict[str, Any] | None:
    raw = (await request.form()).get("credential")
    if not isinstance(raw, str) or not raw or len(raw) > _MAX_CREDENTIAL:
        return None
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) and isinstance(value.get("response"), dict) else None


def _json(body: dict[str, Any], status: int = 200) -> Response[Any]:
    return Response(body, status_code=status, media_type=MediaType.JSON, headers={"Cache-Control": "no-store"})


async def _assert(request: AnyRequest, services: Services, db: AsyncSession, user_id: str) -> FactorCheck:
    """Check the posted assertion against this session's ceremony and the user's keys (the attempt bucket too)."""
    webauthn = build_webauthn(services, db)
    credential = await _credential(request)
    binding = _binding(request)
    owner = await user_pk(db, user_id)
    attempts = build_factors(services, db).attempts
    if credential is None or binding is None:
        return FactorCheck.INVALID
    ceremony = await webauthn.ceremony(credential, Purpose.PAGE_ASSERT, session_binding=binding)
    if ceremony is None or ceremony.user_pk != owner:
        if not await attempts.reserve(owner):
            return FactorCheck.RATE_LIMITED
        return FactorCheck.INVALID
    assertion = await webauthn.authenticate(
        ceremony, credential, user_pk=owner, take_attempt=attempts.reserve, refund_attempt=attempts.refund
    )
    return assertion.check


@post(
    "/keys/register-options",
    status_code=200,
    include_in_schema=False,
    opt=for_pages(SETUP, MANAGE, refuse_as_json=True),
)
async def register_options(
    request: AnyRequest,
    visitor: NamedDependency[Visitor],
    services: NamedDependency[Services],
    db: NamedDependency[AsyncSession],
) -> Response[Any]:
    """Creation options for the signed-in visitor (setting up a first factor, or managing after MFA)."""
    try:
        options = await build_webauthn(services, db).registration_options(
            await user_pk(db, visitor.user_id), Purpose.PAGE_REGISTER, session_binding=_bind(request)
        )
    except AccountError:
        return _json({"error": "too_many_keys"}, 400)
    return _json({"publicKey": options})


@post("/keys/add", status_code=200, include_in_schema=False, opt=for_pages(SETUP, MANAGE))
async def add(
    request: AnyRequest,
    visitor: NamedDependency[Visitor],
    services: NamedDependency[Services],
    db: NamedDependency[AsyncSession],
) -> Response[Any]:
    """Register the key; for a first factor the recovery code follows, as after the app's setup."""
    webauthn = build_webauthn(services, db)
    credential = await _credential(request)
    binding = _binding(request)
    name = await field(request, "name", limit=64)
    ceremony = None
    if credential is not None and binding is not None:
        ceremony = await webauthn.ceremony(credential, Purpose.PAGE_REGISTER, session_binding=binding)
    registered = None
    if ceremony is not None and credential is not None:
        registered = await webauthn.register(ceremony, credential, name=name or "Security key")
    if registered is None or registered.check is not FactorCheck.ACCEPTED:
        error = _KEY_ERROR
        if registered is not None and registered.reason == "This security key is already registered.":
            error = registered.reason
        if visitor.page == SETUP:
            return await setup_page_with_error(services, db, visitor, error)
        return await factor_page("manage", services, db, visitor, status=400, key_error=error)
    logger.info("enroll security key added user=%s authenticator=%s", visitor.user_id, registered.authenticator_id)
    if visitor.page == SETUP:
        sign_in_visitor(request, services, visitor.user_id, visitor.connection, mfa=True)
        code = await build_factors(services, db).recovery.regenerate(visitor.user_id)
        tenant = await tenant_name(db)
        return page("recovery", visitor=visitor, tenant=tenant, code=recovery.display(code), first=True, factor="key")
    return await factor_page("manage", services, db, visitor, notice=_ADDED)


@post(
    "/keys/assert-options", status_code=200, include_in_schema=False, opt=for_pages(VERIFY, MANAGE, refuse_as_json=True)
)
async def assert_options(
    request: AnyRequest,
    visitor: NamedDependency[Visitor],
    services: NamedDependency[Services],
    db: NamedDependency[AsyncSession],
) -> Response[Any]:
    """Request options for the visitor's keys (the second factor of the pages, or to confirm a removal)."""
    owner = await user_pk(db, visitor.user_id)
    webauthn = build_webauthn(services, db)
    if not await webauthn.credentials(owner):
        return _json({"error": "no_keys"}, 400)
    options = await webauthn.authentication_options(Purpose.PAGE_ASSERT, user_pk=owner, session_binding=_bind(request))
    return _json({"publicKey": options})


@post("/keys/verify", status_code=200, include_in_schema=False, opt=for_pages(VERIFY))
async def verify(
    request: AnyRequest,
    visitor: NamedDependency[Visitor],
    services: NamedDependency[Services],
    db: NamedDependency[AsyncSession],
) -> Response[Any]:
    """The security key as the pages' second factor."""
    check = await _assert(request, services, db, visitor.user_id)
    if check is FactorCheck.ACCEPTED:
        logger.info("enroll second factor passed user=%s factor=webauthn", visitor.user_id)
        sign_in_visitor(request, services, visitor.user_id, visitor.connection, mfa=True)
        return redirect(MANAGE)
    limited = check is FactorCheck.RATE_LIMITED
    return await factor_page(
        "verify",
        services,
        db,
        visitor,
        status=429 if limited else 400,
        key_error=_RATE_LIMITED if limited else _KEY_ERROR,
    )


@post("/keys/remove", status_code=303, include_in_schema=False, opt=for_pages(MANAGE))
async def remove(
    request: AnyRequest,
    visitor: NamedDependency[Visitor],
    services: NamedDependency[Services],
    db: NamedDependency[AsyncSession],
) -> Response[Any]:
    """Remove a key with a fresh second factor: a new code from the app, the recovery code, or a key."""

    async def key() -> FactorCheck:  # asked only when no code was typed
        return await _assert(request, services, db, visitor.user_id)

    authenticator_id, removal = await removal_form(request, services, db, visitor, FactorType.WEBAUTHN, key)
    if removal.outcome is RemovalOutcome.NOT_FOUND:
        return await factor_page("manage", services, db, visitor, status=404, key_error="That key no longer exists.")
    if removal.outcome is RemovalOutcome.NO_PROOF:
        return await factor_page("manage", services, db, visitor, status=400, key_error="Enter the 6-digit code.")
    if removal.outcome is RemovalOutcome.REFUSED:
        limited = removal.check is FactorCheck.RATE_LIMITED
        error = _RATE_LIMITED if limited else _REFUSED.get(removal.proof or Proof.SECURITY_KEY, _KEY_ERROR)
        return await factor_page("manage", services, db, visitor, status=429 if limited else 400, key_error=error)
    logger.info("enroll security key removed user=%s authenticator=%s", visitor.user_id, authenticator_id)
    if removal.new_recovery_code is not None:
        code = recovery.display(removal.new_recovery_code)
        return page("recovery", visitor=visitor, tenant=await tenant_name(db), code=code, first=False)
    request.session["notice"] = "key-removed"  # the manage page, or setup when it was the last factor
    return redirect(START)


KEY_ROUTES = [register_options, add, assert_options, verify, remove]
"""Mounted by `identity.web.enroll.router.enroll_router`."""
