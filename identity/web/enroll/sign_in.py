"""Signing in to the pages and out: the token endpoint's password check, then the rules, then a new session.

GET  /enroll            sign-in form (or a redirect for a signed-in visitor)
POST /enroll/sign-in    the password in the chosen directory (DirectoryAuthenticator, the grant's generic error)
POST /enroll/sign-out

A user whose only factor is email is sent the code by the sign-in itself (`identity.web.enroll.email.send_code`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from litestar import Response, get, post
from litestar.di import NamedDependency
from litestar.response import Template
from sqlalchemy.ext.asyncio import AsyncSession

from identity.accounts.factors import FactorType
from identity.audit import AuditTrail
from identity.oauth2.errors import InvalidRequest, OAuthError, PasswordLeakedError
from identity.oauth2.grants.password import WRONG_CREDENTIALS, password_connection, takes_passwords
from identity.oauth2.interfaces import (
    Connection,
    GrantResult,
    LoginBlocked,
    Overloaded,
    PasswordLeaked,
    User,
)
from identity.store.tenant import SqlTenantStore
from identity.web.addresses import request_trail
from identity.web.deps import Services, build_authenticator, build_factors
from identity.web.enroll.email import SIGN_IN, send_code
from identity.web.enroll.pages import (
    EMAIL,
    ENROLLMENT_CLIENT,
    ENROLLMENT_PROTOCOL,
    SETUP,
    START,
    VERIFY,
    AnyRequest,
    field,
    page,
    redirect,
    tenant_name,
)
from identity.web.enroll.sessions import STORE_NAME, SqlSessionStore, end_session
from identity.web.enroll.visitor import Visitor, for_pages, sign_in_visitor

__all__ = ["ENROLLMENT_CLIENT", "ENROLLMENT_PROTOCOL", "sign_in", "sign_out", "start"]

logger = logging.getLogger("identity.web.enroll")

_QUERY_NOTICES = {
    "signed-out": "You have signed out.",
    "expired": "Your session ended. Sign in again to continue.",
}


@dataclass(frozen=True)
class _Refused:
    """A sign-in refused, as the form says it."""

    status: int
    error: str


async def _directories(services: Services, db: AsyncSession) -> tuple[list[str], str | None]:
    """The password directories, and the one selected first (the tenant's default if it is one)."""
    tenant = SqlTenantStore(db, issuer=services.settings.issuer)
    names = [c.name for c in await tenant.connections() if takes_passwords(c)]
    default = (await tenant.settings()).default_directory
    await db.commit()
    return names, default if default in names else (names[0] if names else None)


async def _directory(services: Services, db: AsyncSession, name: str | None) -> Connection | None:
    """The password directory ``name``: the grant's checks, without a client (the pages serve every directory)."""
    if name is None:
        return None
    try:
        return await password_connection(SqlTenantStore(db, issuer=services.settings.issuer), name)
    except InvalidRequest:
        return None


async def _sign_in_page(
    services: Services, db: AsyncSession, *, status: int = 200, error: str | None = None, **context: Any
) -> Template:
    directories, default = await _directories(services, db)
    return page(
        "sign_in",
        status=status,
        error=error,
        directories=directories if len(directories) > 1 else [],
        selected=context.pop("selected", None) or default,
        tenant=await tenant_name(db),
        **context,
    )


@get("/", include_in_schema=False, opt=for_pages(START))
async def start(
    request: AnyRequest, services: NamedDependency[Services], db: NamedDependency[AsyncSession]
) -> Template:
    """The sign-in form; a signed-in visitor is sent on to where they stand (the guard)."""
    notice = _QUERY_NOTICES.get(request.query_params.get("notice") or "")
    return await _sign_in_page(services, db, notice=notice)


@post("/sign-in", status_code=303, include_in_schema=False)
async def sign_in(
    request: AnyRequest, services: NamedDependency[Services], db: NamedDependency[AsyncSession]
) -> Response[Any]:
    """Check the password in the chosen directory; on success a new session, then the second factor or setup.

    With email the only factor (and a mail server), the code goes out now and the visitor lands on its form.
    """
    username = await field(request, "username", limit=320)
    password = (await request.form()).get("password")
    realm = await field(request, "realm", limit=128)
    if not username or not isinstance(password, str) or not password:
        error = "Enter your email or username and your password."
        return await _sign_in_page(services, db, status=400, error=error, username=username, selected=realm)
    _, default = await _directories(services, db)
    name = realm or default
    connection = await _directory(services, db, name)
    if connection is None:
        error = "Choose a directory from the list."
        return await _sign_in_page(services, db, status=400, error=error, username=username)
    trail = request_trail(request, services.settings)
    trail.connection = connection.name
    user = await _authenticate(request, services, db, trail, connection, username, password)
    if isinstance(user, _Refused):
        return await _sign_in_page(services, db, status=user.status, error=user.error, username=username, selected=name)
    services.audit.emit(trail.event("s"))
    logger.info("enroll sign-in user=%s connection=%s", user.user_id, connection.name)
    sign_in_visitor(request, services, user.user_id, connection.name, mfa=False)
    store = request.app.stores.get(STORE_NAME)
    if isinstance(store, SqlSessionStore):
        await store.purge_expired()
    factors = [f for f in await build_factors(services, db).authenticators.listed(user.user_id) if f.active]
    factors = [f for f in factors if f.type is not FactorType.RECOVERY_CODE]
    if not factors:
        return redirect(SETUP)
    if services.mailer is not None and all(f.type is FactorType.EMAIL for f in factors):
        # Email is the only way past the second factor: signing in asks for the code, no button needed.
        visitor = Visitor(user.user_id, connection.name, user.email or username, passed_mfa=False, page=VERIFY)
        unsent = await send_code(request, services, db, visitor, SIGN_IN)
        if unsent is None:
            return redirect(EMAIL)
        request.session["email_error"] = unsent
    return redirect(VERIFY)


async def _authenticate(
    request: AnyRequest,
    services: Services,
    db: AsyncSession,
    trail: AuditTrail,
    connection: Connection,
    username: str,
    password: str,
) -> User | _Refused:
    """The user whose password this is, not blocked and let in by the rules; or why not (audited and logged)."""
    try:
        user = await build_authenticator(services, db, trail).authenticate(connection, username, password, ip=trail.ip)
    except LoginBlocked:
        services.audit.emit(trail.event("limit_wc"))
        logger.info("enroll sign-in refused connection=%s brute-force block", connection.name)
        return _Refused(429, "Too many failed sign-ins. Wait a few minutes and try again.")
    except PasswordLeaked:
        services.audit.emit(trail.event("f", PasswordLeakedError.default_description))
        logger.info("enroll sign-in refused connection=%s breached password", connection.name)
        return _Refused(401, PasswordLeakedError.default_description)
    except Overloaded:
        services.audit.emit(trail.event("api_limit"))
        return _Refused(503, "The service is busy. Please try again in a moment.")
    if user is None or user.blocked:
        services.audit.emit(trail.event("f"))
        logger.info("enroll sign-in refused connection=%s blocked=%s", connection.name, user is not None)
        if user is None:
            return _Refused(401, WRONG_CREDENTIALS)
        return _Refused(403, "This account is blocked. Contact your administrator.")
    if (denial := await _rules_denial(request, services, connection, user)) is not None:
        logger.info("enroll sign-in refused connection=%s by a rule", connection.name)
        services.audit.emit(trail.event("f", denial))
        return _Refused(403, denial)
    return user


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
    return redirect(START + "?notice=signed-out")
