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

from litestar import MediaType, Request, Response, post
from litestar.datastructures import State
from litestar.di import NamedDependency
from sqlalchemy.ext.asyncio import AsyncSession

from identity.accounts.errors import AccountError
from identity.accounts.factors import FactorType
from identity.accounts.webauthn import Purpose, WebAuthnService
from identity.mfa import recovery
from identity.oauth2.interfaces import FactorCheck
from identity.store import users as user_queries
from identity.web.deps import Services, build_factors, build_webauthn

__all__ = ["KEY_ROUTES", "key_context"]

logger = logging.getLogger("identity.web.enroll")

AnyRequest = Request[Any, Any, State]
_SESSION_KEY = "webauthn"
_MAX_CREDENTIAL = 24 * 1024
_KEY_ERROR = "Your security key could not be verified. Try again."
_ADDED = "Your security key was added."


async def _user_pk(db: AsyncSession, user_id: str) -> int:
    found = await user_queries.by_user_id(db, user_id)
    await db.commit()
    if found is None or found[0].id is None:
        raise AccountError("unknown user")
    return found[0].id


async def key_context(services: Services, db: AsyncSession, user_id: str) -> dict[str, Any]:
    """What the verify and manage pages show about the visitor's factors: keys, and whether an app is on."""
    listed = await build_factors(services, db).authenticators.listed(user_id)
    keys = [
        {"id": f.id, "name": f.name or "Security key", "added": f.created_at.strftime("%-d %B %Y")}
        for f in listed
        if f.type is FactorType.WEBAUTHN and f.active
    ]
    has_app = any(f.type is FactorType.TOTP and f.active for f in listed)
    return {"keys": keys, "has_app": has_app}


def _bind(request: Any) -> str:
    """A fresh random binding for this session's next ceremony (replacing any earlier one)."""
    binding = secrets.token_urlsafe(32)
    request.session[_SESSION_KEY] = binding
    return binding


def _binding(request: Any) -> str | None:
    value = request.session.pop(_SESSION_KEY, None)
    return value if isinstance(value, str) else None


async def _credential(request: Any) -> dict[str, Any] | None:
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


async def _assert(
    request: Any, services: Services, db: AsyncSession, user_id: str
) -> tuple[FactorCheck, WebAuthnService]:
    """Check the posted assertion against this session's ceremony and the user's keys (the attempt bucket too)."""
    webauthn = build_webauthn(services, db)
    credential = await _credential(request)
    binding = _binding(request)
    user_pk = await _user_pk(db, user_id)
    factors = build_factors(services, db)
    if credential is None or binding is None:
        return FactorCheck.INVALID, webauthn
    ceremony = await webauthn.ceremony(credential, Purpose.PAGE_ASSERT, session_binding=binding)
    if ceremony is None or ceremony.user_pk != user_pk:
        if not await factors.attempts.reserve(user_pk):
            return FactorCheck.RATE_LIMITED, webauthn
        return FactorCheck.INVALID, webauthn
    assertion = await webauthn.authenticate(
        ceremony,
        credential,
        user_pk=user_pk,
        take_attempt=factors.attempts.reserve,
        refund_attempt=factors.attempts.refund,
    )
    return assertion.check, webauthn


def _routes() -> list[Any]:
    @post("/keys/register-options", status_code=200, include_in_schema=False)
    async def register_options(
        request: AnyRequest, services: NamedDependency[Services], db: NamedDependency[AsyncSession]
    ) -> Response[Any]:
        """Creation options for the signed-in visitor (setting up a first factor, or managing after MFA)."""
        from identity.web import enroll as pages  # late: enroll.py mounts these routes

        where, visitor = await pages._place(request, services, db)
        if visitor is None or where not in (pages.SETUP, pages.MANAGE):
            return _json({"error": "not_allowed"}, 403)
        try:
            options = await build_webauthn(services, db).registration_options(
                await _user_pk(db, visitor.user_id), Purpose.PAGE_REGISTER, session_binding=_bind(request)
            )
        except AccountError:
            return _json({"error": "too_many_keys"}, 400)
        return _json({"publicKey": options})

    @post("/keys/add", status_code=200, include_in_schema=False)
    async def add(
        request: AnyRequest, services: NamedDependency[Services], db: NamedDependency[AsyncSession]
    ) -> Response[Any]:
        """Register the key; for a first factor the recovery code follows, as after the app's setup."""
        from identity.web import enroll as pages  # late: enroll.py mounts these routes

        where, visitor = await pages._place(request, services, db)
        if visitor is None or where not in (pages.SETUP, pages.MANAGE):
            return pages._redirect(where)
        webauthn = build_webauthn(services, db)
        credential = await _credential(request)
        binding = _binding(request)
        name = await pages._field(request, "name", limit=64)
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
            if where == pages.SETUP:
                return await pages.setup_page_with_error(request, services, db, visitor, error)
            return await pages._manage_page(services, db, visitor, status=400, key_error=error)
        logger.info("enroll security key added user=%s authenticator=%s", visitor.user_id, registered.authenticator_id)
        if where == pages.SETUP:
            pages._start_session(request, services, visitor.user_id, visitor.connection, mfa=True)
            code = await build_factors(services, db).recovery.regenerate(visitor.user_id)
            tenant = await pages._tenant_name(db)
            return pages._page(
                "recovery", visitor=visitor, tenant=tenant, code=recovery.display(code), first=True, factor="key"
            )
        return await pages._manage_page(services, db, visitor, notice=_ADDED)

    @post("/keys/assert-options", status_code=200, include_in_schema=False)
    async def assert_options(
        request: AnyRequest, services: NamedDependency[Services], db: NamedDependency[AsyncSession]
    ) -> Response[Any]:
        """Request options for the visitor's keys (the second factor of the pages, or to confirm a removal)."""
        from identity.web import enroll as pages  # late: enroll.py mounts these routes

        where, visitor = await pages._place(request, services, db)
        if visitor is None or where not in (pages.VERIFY, pages.MANAGE):
            return _json({"error": "not_allowed"}, 403)
        user_pk = await _user_pk(db, visitor.user_id)
        webauthn = build_webauthn(services, db)
        if not await webauthn.credentials(user_pk):
            return _json({"error": "no_keys"}, 400)
        options = await webauthn.authentication_options(
            Purpose.PAGE_ASSERT, user_pk=user_pk, session_binding=_bind(request)
        )
        return _json({"publicKey": options})

    @post("/keys/verify", status_code=200, include_in_schema=False)
    async def verify(
        request: AnyRequest, services: NamedDependency[Services], db: NamedDependency[AsyncSession]
    ) -> Response[Any]:
        """The security key as the pages' second factor."""
        from identity.web import enroll as pages  # late: enroll.py mounts these routes

        where, visitor = await pages._place(request, services, db)
        if where != pages.VERIFY or visitor is None:
            return pages._redirect(where)
        check, _ = await _assert(request, services, db, visitor.user_id)
        if check is FactorCheck.ACCEPTED:
            logger.info("enroll second factor passed user=%s factor=webauthn", visitor.user_id)
            pages._start_session(request, services, visitor.user_id, visitor.connection, mfa=True)
            return pages._redirect(pages.MANAGE)
        status, error = (429, pages._CODE_ERRORS[FactorCheck.RATE_LIMITED][1]) if check is FactorCheck.RATE_LIMITED \
            else (400, _KEY_ERROR)  # fmt: skip
        return await pages.verify_page(services, db, visitor, status=status, key_error=error)

    @post("/keys/remove", status_code=303, include_in_schema=False)
    async def remove(
        request: AnyRequest, services: NamedDependency[Services], db: NamedDependency[AsyncSession]
    ) -> Response[Any]:
        """Remove a key with a fresh second factor: a new code from the app, the recovery code, or a key."""
        from identity.web import enroll as pages  # late: enroll.py mounts these routes

        where, visitor = await pages._place(request, services, db)
        if where != pages.MANAGE or visitor is None:
            return pages._redirect(where)
        factors = build_factors(services, db)
        authenticator_id = await pages._field(request, "authenticator_id", limit=64)
        keys = {k["id"] for k in (await key_context(services, db, visitor.user_id))["keys"]}
        if authenticator_id not in keys:
            return await pages._manage_page(services, db, visitor, status=404, key_error="That key no longer exists.")
        recovery_code = await pages._field(request, "recovery_code", limit=64)
        otp = await pages._field(request, "otp", limit=16)
        new_code = None
        if recovery_code:
            check, new_code = await factors.recovery.swap_user_code(visitor.user_id, recovery_code)
        elif otp:
            if not pages._code_shape_ok(otp):
                return await pages._manage_page(services, db, visitor, status=400, key_error="Enter the 6-digit code.")
            check = await factors.otp.spend_user_code(visitor.user_id, otp)
        else:
            check, _ = await _assert(request, services, db, visitor.user_id)
        if check is not FactorCheck.ACCEPTED:
            error = pages._CODE_ERRORS[FactorCheck.RATE_LIMITED][1] if check is FactorCheck.RATE_LIMITED else (
                "That recovery code is not right." if recovery_code else
                "That code is not right." if otp else _KEY_ERROR)  # fmt: skip
            status = 429 if check is FactorCheck.RATE_LIMITED else 400
            return await pages._manage_page(services, db, visitor, status=status, key_error=error)
        if not await factors.authenticators.remove(visitor.user_id, authenticator_id):
            return await pages._manage_page(services, db, visitor, status=404, key_error="That key no longer exists.")
        logger.info("enroll security key removed user=%s authenticator=%s", visitor.user_id, authenticator_id)
        if new_code is not None and await factors.authenticators.has_active(visitor.user_id):
            tenant = await pages._tenant_name(db)
            return pages._page("recovery", visitor=visitor, tenant=tenant, code=recovery.display(new_code), first=False)
        request.session["notice"] = "key-removed"  # the manage page, or setup when it was the last factor
        return pages._redirect(pages.START)

    return [register_options, add, assert_options, verify, remove]


KEY_ROUTES = _routes
"""Called by `identity.web.enroll.enroll_router` (the routes use the pages' helpers)."""
