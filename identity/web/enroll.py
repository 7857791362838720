"""The enrollment pages under ``/enroll``: sign in, pass the second factor, add an authenticator app, manage it.

Server-rendered (Jinja, no JavaScript). Each page belongs to one state of the visitor, and every handler first sends
the visitor where they belong (`_place`):

    GET  /enroll            sign-in form (or a redirect for a signed-in visitor)
    POST /enroll/sign-in    the token endpoint's password check (DirectoryAuthenticator, same generic error)
    GET  /enroll/verify     second factor first, for a user who has one
    POST /enroll/verify     the app's 6-digit code, or the recovery code (then replaced, and the new one shown)
    GET  /enroll/setup      QR code and key of a pending authenticator (sealed in the database, expires)
    POST /enroll/setup      a valid code from the app activates it; the recovery code is shown once
    GET  /enroll/manage     the enrolled factor
    POST /enroll/remove     removes it, with a fresh code
    POST /enroll/sign-out

The session holds who signed in, in which directory, when, and whether the second factor passed: never a secret.
Codes draw from the same per-user attempt bucket as the mfa-otp grant (`FactorService.verify_otp`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pyotp
from litestar import Request, Response, Router, get, post
from litestar.datastructures import CacheControlHeader, State
from litestar.di import NamedDependency
from litestar.exceptions import HTTPException, PermissionDeniedException
from litestar.response import Redirect, Template
from markupsafe import Markup
from sqlalchemy.ext.asyncio import AsyncSession

from identity.accounts.factors import AlreadyEnrolled, Enrollment, FactorService, FactorType
from identity.mfa import qr, recovery, totp
from identity.oauth2.errors import InvalidRequest, OAuthError, PasswordLeakedError
from identity.oauth2.grants.password import WRONG_CREDENTIALS, password_connection, takes_passwords
from identity.oauth2.interfaces import (
    Client,
    Connection,
    FactorCheck,
    GrantResult,
    LoginBlocked,
    Overloaded,
    PasswordLeaked,
    User,
)
from identity.settings import Settings
from identity.store import users as user_queries
from identity.store.tenant import SqlTenantStore, tenant_settings
from identity.web.addresses import request_trail
from identity.web.deps import Services, build_authenticator, build_factors
from identity.web.enroll_keys import KEY_ROUTES, key_context
from identity.web.errors import SECURITY_HEADERS
from identity.web.sessions import (
    STORE_NAME,
    SqlSessionStore,
    csrf_middleware,
    end_session,
    session_config,
    start_session,
)

__all__ = ["ENROLLMENT_CLIENT", "ENROLLMENT_PROTOCOL", "MAX_SESSION_SECONDS", "enroll_router"]

logger = logging.getLogger("identity.web.enroll")

MAX_SESSION_SECONDS = 60 * 60
"""A session ends an hour after sign-in however active it is (it also ends after 15 idle minutes)."""
_MAX_BODY = 16 * 1024

ENROLLMENT_PROTOCOL = "enrollment-page"
"""``event.transaction.protocol`` when the rules run for a sign-in to these pages."""
ENROLLMENT_CLIENT = Client(
    client_id="identity:enrollment-page",
    name="Enrollment page",
    token_endpoint_auth_method="none",  # noqa: S106  (an auth method name, not a secret)
    secret_hash=None,
    grant_types=frozenset(),
    connections=frozenset(),
)
"""``event.client`` for those runs: the pages are no OAuth client, and no real client id contains a colon here."""

START = "/enroll"
VERIFY = "/enroll/verify"
SETUP = "/enroll/setup"
MANAGE = "/enroll/manage"

_QUERY_NOTICES = {
    "signed-out": "You have signed out.",
    "expired": "Your session ended. Sign in again to continue.",
}
_REMOVED = "The authenticator app was removed, and its recovery code no longer works."
_KEY_REMOVED = "The security key was removed."
_LAST_KEY_REMOVED = "The security key was removed, and its recovery code no longer works."
_CODE_ERRORS = {
    FactorCheck.INVALID: (400, "That code is not right. Enter the 6-digit code your app shows now."),
    FactorCheck.RATE_LIMITED: (429, "Too many wrong codes. Wait a few minutes, then try again."),
}
_RECOVERY_ERRORS = {
    FactorCheck.INVALID: (400, "That recovery code is not right."),
    FactorCheck.RATE_LIMITED: _CODE_ERRORS[FactorCheck.RATE_LIMITED],
}

AnyRequest = Request[Any, Any, State]


@dataclass(frozen=True)
class Visitor:
    """A signed-in visitor, as the session and the database say now."""

    user_id: str
    connection: str
    label: str
    """The email (or username) the user signs in with."""
    passed_mfa: bool


# --- helpers -----------------------------------------------------------------------------------------------------


def _page(name: str, *, status: int = 200, **context: Any) -> Template:
    return Template(f"enroll/{name}.html", context=context, status_code=status)


def _redirect(path: str) -> Redirect:
    return Redirect(path=path, status_code=303)


async def _field(request: AnyRequest, name: str, *, limit: int = 1024) -> str:
    value = (await request.form()).get(name)
    return value.strip()[:limit] if isinstance(value, str) else ""


def _code_shape_ok(otp: str) -> bool:
    return totp.well_formed(otp)


def _day(moment: datetime) -> str:
    return moment.strftime("%-d %B %Y")


async def _visitor(request: AnyRequest, services: Services, db: AsyncSession) -> Visitor | None:
    data = request.session
    user_id, since = data.get("user_id"), data.get("since")
    if not isinstance(user_id, str) or not isinstance(since, int | float):
        return None
    found = await user_queries.by_user_id(db, user_id)
    await db.commit()
    expired = services.clock.now() - since > MAX_SESSION_SECONDS
    if found is None or found[0].blocked or found[1] != data.get("connection") or expired:
        end_session(request)
        return None
    row = found[0]
    return Visitor(user_id, found[1], row.email or row.username or user_id, bool(data.get("mfa")))


async def _place(request: AnyRequest, services: Services, db: AsyncSession) -> tuple[str, Visitor | None]:
    """Where the visitor belongs: sign-in, the second factor, enrollment or management."""
    visitor = await _visitor(request, services, db)
    if visitor is None:
        had_session = any(name.endswith("identity-session") for name in request.cookies)
        return (START + "?notice=expired" if had_session else START), None
    if not await build_factors(services, db).authenticators.has_active(visitor.user_id):
        return SETUP, visitor
    return (MANAGE if visitor.passed_mfa else VERIFY), visitor


def _start_session(request: AnyRequest, services: Services, user_id: str, connection: str, *, mfa: bool) -> None:
    since = request.session.get("since") if mfa else None
    start_session(
        request,
        {"user_id": user_id, "connection": connection, "mfa": mfa, "since": since or services.clock.now()},
    )


async def _tenant_name(db: AsyncSession) -> str:
    return (await tenant_settings(db)).friendly_name


# --- sign-in and sign-out ------------------------------------------------------------------------------------------


async def _directories(services: Services, db: AsyncSession) -> tuple[list[str], str | None]:
    tenant = SqlTenantStore(db, issuer=services.settings.issuer)
    names = [c.name for c in await tenant.connections() if takes_passwords(c)]
    default = (await tenant.settings()).default_directory
    await db.commit()
    return names, default if default in names else (names[0] if names else None)


async def _sign_in_page(
    services: Services, db: AsyncSession, *, status: int = 200, error: str | None = None, **context: Any
) -> Template:
    directories, default = await _directories(services, db)
    return _page(
        "sign_in",
        status=status,
        error=error,
        directories=directories if len(directories) > 1 else [],
        selected=context.pop("selected", None) or default,
        tenant=await _tenant_name(db),
        **context,
    )


@get("/", include_in_schema=False)
async def start(
    request: AnyRequest, services: NamedDependency[Services], db: NamedDependency[AsyncSession]
) -> Response[Any]:
    """The sign-in form; a signed-in visitor is sent on to where they stand."""
    where, visitor = await _place(request, services, db)
    if visitor is not None:
        return _redirect(where)
    notice = _QUERY_NOTICES.get(request.query_params.get("notice") or "")
    return await _sign_in_page(services, db, notice=notice)


@post("/sign-in", status_code=303, include_in_schema=False)
async def sign_in(
    request: AnyRequest, services: NamedDependency[Services], db: NamedDependency[AsyncSession]
) -> Response[Any]:
    """Check the password in the chosen directory; on success a new session, then the second factor or setup."""
    username = await _field(request, "username", limit=320)
    password = (await request.form()).get("password")
    realm = await _field(request, "realm", limit=128)
    if not username or not isinstance(password, str) or not password:
        error = "Enter your email or username and your password."
        return await _sign_in_page(services, db, status=400, error=error, username=username, selected=realm)
    _, default = await _directories(services, db)
    name = realm or default
    try:
        # The grant's directory checks, without a client: the pages serve every database connection.
        connection = await password_connection(SqlTenantStore(db, issuer=services.settings.issuer), name or "")
    except InvalidRequest:
        error = "Choose a directory from the list."
        return await _sign_in_page(services, db, status=400, error=error, username=username)
    trail = request_trail(request, services.settings)
    trail.connection = connection.name
    try:
        user = await build_authenticator(services, db, trail).authenticate(connection, username, password, ip=trail.ip)
    except LoginBlocked:
        services.audit.emit(trail.event("limit_wc"))
        logger.info("enroll sign-in refused connection=%s brute-force block", connection.name)
        error = "Too many failed sign-ins. Wait a few minutes and try again."
        return await _sign_in_page(services, db, status=429, error=error, username=username, selected=name)
    except PasswordLeaked:
        services.audit.emit(trail.event("f", PasswordLeakedError.default_description))
        logger.info("enroll sign-in refused connection=%s breached password", connection.name)
        error = PasswordLeakedError.default_description
        return await _sign_in_page(services, db, status=401, error=error, username=username, selected=name)
    except Overloaded:
        services.audit.emit(trail.event("api_limit"))
        error = "The service is busy. Please try again in a moment."
        return await _sign_in_page(services, db, status=503, error=error, username=username, selected=name)
    if user is None or user.blocked:
        services.audit.emit(trail.event("f"))
        logger.info("enroll sign-in refused connection=%s blocked=%s", connection.name, user is not None)
        error = WRONG_CREDENTIALS if user is None else "This account is blocked. Contact your administrator."
        status = 401 if user is None else 403
        return await _sign_in_page(services, db, status=status, error=error, username=username, selected=name)
    if (denial := await _rules_denial(request, services, connection, user)) is not None:
        logger.info("enroll sign-in refused connection=%s by a rule", connection.name)
        services.audit.emit(trail.event("f", denial))
        return await _sign_in_page(services, db, status=403, error=denial, username=username, selected=name)
    services.audit.emit(trail.event("s"))
    logger.info("enroll sign-in user=%s connection=%s", user.user_id, connection.name)
    _start_session(request, services, user.user_id, connection.name, mfa=False)
    store = request.app.stores.get(STORE_NAME)
    if isinstance(store, SqlSessionStore):
        await store.purge_expired()
    has_factor = await build_factors(services, db).authenticators.has_active(user.user_id)
    return _redirect(VERIFY if has_factor else SETUP)


async def _rules_denial(request: AnyRequest, services: Services, connection: Connection, user: User) -> str | None:
    """Run the rules as a login to the enrollment page: the reason they refuse it, or ``None``.

    ``event.transaction.protocol`` is ``enrollment-page`` and ``event.client`` is `ENROLLMENT_CLIENT`, so a rule can
    tell. Only the decision counts here: nothing is issued, so claims, scopes and ``app_metadata`` are not kept, and
    a demand for MFA is moot (the pages ask an enrolled user for the second factor anyway).
    """
    if services.rules is None or not services.rules.rules:
        return None
    attempt = GrantResult(
        grant_type=ENROLLMENT_PROTOCOL,
        client=ENROLLMENT_CLIENT,
        user=user,
        connection=connection,
        api=None,
        audience=None,
        scopes=(),
    )
    try:
        await services.rules.run(
            attempt,
            protocol=ENROLLMENT_PROTOCOL,
            requested_scopes=None,
            client_ip=request.client.host if request.client else None,
            user_agent=request.headers.get("user-agent"),
        )
    except OAuthError as refused:
        return refused.description or "Access denied"
    return None


@post("/sign-out", status_code=303, include_in_schema=False)
async def sign_out(request: AnyRequest) -> Response[Any]:
    """End the session."""
    end_session(request)
    return _redirect(START + "?notice=signed-out")


def _audit(request: AnyRequest, services: Services, visitor: Visitor, event_type: str) -> None:
    """One audit event of the signed-in visitor (never a code)."""
    trail = request_trail(request, services.settings)
    trail.user_id, trail.connection = visitor.user_id, visitor.connection
    services.audit.emit(trail.event(event_type))


def _failed(check: FactorCheck, invalid: str, rate_limited: str) -> str:
    return rate_limited if check is FactorCheck.RATE_LIMITED else invalid


# --- the second factor, for users who have one --------------------------------------------------------------------


async def verify_page(
    services: Services, db: AsyncSession, visitor: Visitor, *, status: int = 200, **context: Any
) -> Template:
    """The second-factor page: the app's code, the visitor's security keys (with JavaScript), the recovery code."""
    keys = await key_context(services, db, visitor.user_id)
    return _page("verify", status=status, visitor=visitor, tenant=await _tenant_name(db), **keys, **context)


@get("/verify", include_in_schema=False)
async def verify_form(
    request: AnyRequest, services: NamedDependency[Services], db: NamedDependency[AsyncSession]
) -> Response[Any]:
    """Ask for the code of the enrolled app (or the recovery code) before anything can change."""
    where, visitor = await _place(request, services, db)
    if where != VERIFY or visitor is None:
        return _redirect(where)
    return await verify_page(services, db, visitor)


@post("/verify", status_code=200, include_in_schema=False)
async def verify(
    request: AnyRequest, services: NamedDependency[Services], db: NamedDependency[AsyncSession]
) -> Response[Any]:
    """Check the code; a recovery code is replaced by a new one, shown once."""
    where, visitor = await _place(request, services, db)
    if where != VERIFY or visitor is None:
        return _redirect(where)
    factors = build_factors(services, db)
    recovery_code = await _field(request, "recovery_code", limit=64)
    otp = await _field(request, "otp", limit=16)
    tenant = await _tenant_name(db)
    if recovery_code:
        check, new_code = await factors.recovery.swap_user_code(visitor.user_id, recovery_code)
        if check is FactorCheck.ACCEPTED and new_code is not None:
            logger.info("enroll second factor passed user=%s factor=recovery-code", visitor.user_id)
            _audit(request, services, visitor, "gd_recovery_succeed")
            _start_session(request, services, visitor.user_id, visitor.connection, mfa=True)
            return _page("recovery", visitor=visitor, tenant=tenant, code=recovery.display(new_code), first=False)
        status, error = _RECOVERY_ERRORS.get(check, _RECOVERY_ERRORS[FactorCheck.INVALID])
        _audit(request, services, visitor, _failed(check, "gd_recovery_failed", "gd_recovery_rate_limit_exceed"))
        return await verify_page(services, db, visitor, status=status, recovery_error=error)
    if not _code_shape_ok(otp):
        return await verify_page(services, db, visitor, status=400, error="Enter the 6-digit code.")
    check = await factors.otp.spend_user_code(visitor.user_id, otp)
    if check is FactorCheck.ACCEPTED:
        logger.info("enroll second factor passed user=%s factor=otp", visitor.user_id)
        _audit(request, services, visitor, "gd_auth_succeed")
        _start_session(request, services, visitor.user_id, visitor.connection, mfa=True)
        return _redirect(MANAGE)
    status, error = _CODE_ERRORS.get(check, _CODE_ERRORS[FactorCheck.INVALID])
    _audit(request, services, visitor, _failed(check, "gd_auth_failed", "gd_otp_rate_limit_exceed"))
    return await verify_page(services, db, visitor, status=status, error=error)


# --- enrollment ---------------------------------------------------------------------------------------------------


def _setup_page(
    enrollment: Enrollment, visitor: Visitor, *, status: int = 200, error: str | None = None, notice: str | None = None
) -> Template:
    uri = pyotp.parse_uri(enrollment.barcode_uri)
    secret = enrollment.secret
    return _page(
        "setup",
        status=status,
        visitor=visitor,
        tenant=uri.issuer,
        issuer=uri.issuer,
        account=uri.name,
        secret_groups=[secret[i : i + 4] for i in range(0, len(secret), 4)],
        qr_svg=Markup(qr.svg(enrollment.barcode_uri, label="QR code to add this account to an authenticator app")),  # noqa: S704  (our own SVG: path data and fixed attributes only)
        digits=totp.DIGITS,
        period=totp.PERIOD,
        error=error,
        notice=notice,
    )


async def _enrollment(factors: FactorService, user_id: str, issuer: str) -> tuple[Enrollment, bool]:
    """The pending enrollment (``True``) or a new one when there is none or it expired (``False``)."""
    pending = await factors.enrollment.pending(user_id, issuer=issuer)
    if pending is not None:
        return pending, True
    return await factors.enrollment.associate(user_id, issuer=issuer), False


async def setup_page_with_error(
    request: AnyRequest, services: Services, db: AsyncSession, visitor: Visitor, error: str
) -> Response[Any]:
    """The setup page again, with ``error`` shown by the security-key section."""
    try:
        enrollment, _ = await _enrollment(build_factors(services, db), visitor.user_id, await _tenant_name(db))
    except AlreadyEnrolled:
        return _redirect(START)
    page = _setup_page(enrollment, visitor, status=400)
    if not isinstance(page.context, dict):
        raise TypeError("the setup page's context is built as a dict")
    page.context["key_error"] = error
    return page


@get("/setup", include_in_schema=False)
async def setup_form(
    request: AnyRequest, services: NamedDependency[Services], db: NamedDependency[AsyncSession]
) -> Response[Any]:
    """The QR code and key of a pending authenticator (the same one until it expires)."""
    where, visitor = await _place(request, services, db)
    if where != SETUP or visitor is None:
        return _redirect(where)
    try:
        enrollment, _ = await _enrollment(build_factors(services, db), visitor.user_id, await _tenant_name(db))
    except AlreadyEnrolled:
        return _redirect(START)
    notice = {"removed": _REMOVED, "key-removed": _LAST_KEY_REMOVED}.get(request.session.pop("notice", None) or "")
    return _setup_page(enrollment, visitor, notice=notice)


@post("/setup", status_code=200, include_in_schema=False)
async def setup(
    request: AnyRequest, services: NamedDependency[Services], db: NamedDependency[AsyncSession]
) -> Response[Any]:
    """Activate the pending authenticator with a code from the app, then show the new recovery code once."""
    where, visitor = await _place(request, services, db)
    if where != SETUP or visitor is None:
        return _redirect(where)
    factors = build_factors(services, db)
    tenant = await _tenant_name(db)
    try:
        enrollment, still_pending = await _enrollment(factors, visitor.user_id, tenant)
    except AlreadyEnrolled:
        return _redirect(START)
    if not still_pending:
        error = "That QR code expired. Scan this new one, then enter the code your app shows."
        return _setup_page(enrollment, visitor, status=400, error=error)
    otp = await _field(request, "otp", limit=16)
    if not _code_shape_ok(otp):
        return _setup_page(enrollment, visitor, status=400, error="Enter the 6-digit code your app shows.")
    check = await factors.otp.confirm_enrollment(visitor.user_id, otp)
    if check is not FactorCheck.ACCEPTED:
        status, error = _CODE_ERRORS.get(check, _CODE_ERRORS[FactorCheck.INVALID])
        return _setup_page(enrollment, visitor, status=status, error=error)
    logger.info("enroll authenticator activated user=%s authenticator=%s", visitor.user_id, enrollment.authenticator_id)
    _audit(request, services, visitor, "gd_enrollment_complete")
    _start_session(request, services, visitor.user_id, visitor.connection, mfa=True)
    code = await factors.recovery.regenerate(visitor.user_id)
    return _page("recovery", visitor=visitor, tenant=tenant, code=recovery.display(code), first=True)


# --- management ---------------------------------------------------------------------------------------------------


async def _manage_page(
    services: Services, db: AsyncSession, visitor: Visitor, *, status: int = 200, **context: Any
) -> Template:
    listed = await build_factors(services, db).authenticators.listed(visitor.user_id)
    apps = [{"id": f.id, "added": _day(f.created_at)} for f in listed if f.type is FactorType.TOTP and f.active]
    has_recovery = any(f.type is FactorType.RECOVERY_CODE for f in listed)
    keys = (await key_context(services, db, visitor.user_id))["keys"]
    return _page(
        "manage",
        status=status,
        visitor=visitor,
        tenant=await _tenant_name(db),
        apps=apps,
        keys=keys,
        has_recovery=has_recovery,
        **context,
    )


@get("/manage", include_in_schema=False)
async def manage(
    request: AnyRequest, services: NamedDependency[Services], db: NamedDependency[AsyncSession]
) -> Response[Any]:
    """The enrolled factor, with a form to remove it."""
    where, visitor = await _place(request, services, db)
    if where != MANAGE or visitor is None:
        return _redirect(where)
    notice = _KEY_REMOVED if request.session.pop("notice", None) == "key-removed" else None
    return await _manage_page(services, db, visitor, notice=notice)


@post("/remove", status_code=303, include_in_schema=False)
async def remove(
    request: AnyRequest, services: NamedDependency[Services], db: NamedDependency[AsyncSession]
) -> Response[Any]:
    """Remove an authenticator: only with a fresh code (a time step not used before) or the recovery code."""
    where, visitor = await _place(request, services, db)
    if where != MANAGE or visitor is None:
        return _redirect(where)
    factors = build_factors(services, db)
    authenticator_id = await _field(request, "authenticator_id", limit=64)
    apps = {f.id for f in await factors.authenticators.listed(visitor.user_id) if f.type is FactorType.TOTP}
    if authenticator_id not in apps:  # only apps: the recovery code goes with the last one
        return await _manage_page(services, db, visitor, status=404, error="That authenticator no longer exists.")
    recovery_code = await _field(request, "recovery_code", limit=64)
    otp = await _field(request, "otp", limit=16)
    new_code = None
    if recovery_code:
        check, new_code = await factors.recovery.swap_user_code(visitor.user_id, recovery_code)
        errors = _RECOVERY_ERRORS
    elif _code_shape_ok(otp):
        check, errors = await factors.otp.spend_user_code(visitor.user_id, otp), _CODE_ERRORS
    else:
        return await _manage_page(services, db, visitor, status=400, error="Enter the 6-digit code your app shows.")
    if check is not FactorCheck.ACCEPTED:
        status, error = errors.get(check, errors[FactorCheck.INVALID])
        key = "recovery_error" if recovery_code else "error"
        return await _manage_page(services, db, visitor, status=status, **{key: error})
    if not await factors.authenticators.remove(visitor.user_id, authenticator_id):
        return await _manage_page(services, db, visitor, status=404, error="That authenticator no longer exists.")
    logger.info("enroll authenticator removed user=%s authenticator=%s", visitor.user_id, authenticator_id)
    _audit(request, services, visitor, "gd_unenroll")
    if new_code is not None and await factors.authenticators.has_active(visitor.user_id):
        tenant = await _tenant_name(db)
        return _page(
            "recovery", status=200, visitor=visitor, tenant=tenant, code=recovery.display(new_code), first=False
        )
    request.session["notice"] = "removed"
    return _redirect(START)


# --- errors and the router ------------------------------------------------------------------------------------------

# Exception responses skip the app's after_request hook, so error pages carry the page headers themselves (the same
# policy, `identity.web.errors.SECURITY_HEADERS`).
_ERROR_HEADERS = {"Cache-Control": "no-store", **SECURITY_HEADERS}
_ERROR_TEXT = {
    403: "This form has expired or did not come from this site. Go back, reload the page, and try again.",
    404: "There is no such page.",
    405: "That is not something this page can do.",
    413: "The form was too large.",
}


def _error_page(request: AnyRequest, exc: Exception) -> Response[Any]:
    """HTML errors for the pages (a CSRF failure is a 403 here); the message never echoes the request."""
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    if status >= 500:
        logger.error("enroll page failed", exc_info=exc)
    text = _ERROR_TEXT.get(status, "Something went wrong on our side. Try again in a moment.")
    if isinstance(exc, PermissionDeniedException):
        text = _ERROR_TEXT[403]
    return Template(
        "enroll/error.html",
        context={"status": status, "message": text},
        status_code=status,
        headers=_ERROR_HEADERS,
    )


def enroll_router(settings: Settings) -> Router:
    """The pages, with their session and CSRF middleware (mounted here only: API clients never meet them)."""
    return Router(
        path=START,
        route_handlers=[
            start,
            sign_in,
            sign_out,
            verify_form,
            verify,
            setup_form,
            setup,
            manage,
            remove,
            *KEY_ROUTES(),
        ],
        middleware=[session_config(settings).middleware, csrf_middleware(settings)],
        exception_handlers={HTTPException: _error_page, Exception: _error_page},
        cache_control=CacheControlHeader(no_store=True),
        request_max_body_size=_MAX_BODY,
        include_in_schema=False,
    )
