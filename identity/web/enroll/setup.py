"""Adding an authenticator app, for a user who has no active factor yet.

    GET  /enroll/setup      QR code and key of a pending authenticator (sealed in the database, expires)
    POST /enroll/setup      a valid code from the app activates it; the recovery code is shown once

The page also offers a security key (`identity.web.enroll.keys`) and, with a mail server, codes by email
(`identity.web.enroll.email`): starting one of those replaces the pending app, and the other way round.

The same pending enrollment is shown until it expires (`identity.accounts.factors.PENDING_ENROLLMENT_SECONDS`).
"""

from __future__ import annotations

import logging
from typing import Any

import pyotp
from litestar import Response, get, post
from litestar.di import NamedDependency
from litestar.response import Template
from markupsafe import Markup
from sqlalchemy.ext.asyncio import AsyncSession

from identity.accounts.factors import AlreadyEnrolled, Enrollment, FactorService
from identity.mfa import qr, recovery, totp
from identity.oauth2.interfaces import FactorCheck
from identity.web.deps import Services, build_factors
from identity.web.enroll.pages import (
    CODE_ERRORS,
    SETUP,
    START,
    AnyRequest,
    email_offer,
    field,
    page,
    redirect,
    refusal,
    tenant_name,
)
from identity.web.enroll.visitor import Visitor, audit, for_pages, sign_in_visitor

__all__ = ["setup", "setup_form", "setup_page_with_error"]

logger = logging.getLogger("identity.web.enroll")

_NOTICES = {
    "removed": "The authenticator app was removed, and its recovery code no longer works.",
    "key-removed": "The security key was removed, and its recovery code no longer works.",
    "email-removed": "Codes by email were turned off, and the recovery code no longer works.",
}
"""What the last factor's removal left in the session, as the setup page says it."""


def _setup_page(
    enrollment: Enrollment,
    visitor: Visitor,
    email: str | None,
    *,
    status: int = 200,
    error: str | None = None,
    notice: str | None = None,
) -> Template:
    """The setup page; ``email`` is the email form's first address (``None``: no mail server, no email form)."""
    uri = pyotp.parse_uri(enrollment.barcode_uri)
    secret = enrollment.secret
    return page(
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
        email_offer=email,
    )


async def _enrollment(factors: FactorService, user_id: str, issuer: str) -> tuple[Enrollment, bool]:
    """The pending enrollment (``True``) or a new one when there is none or it expired (``False``)."""
    pending = await factors.enrollment.pending(user_id, issuer=issuer)
    if pending is not None:
        return pending, True
    return await factors.enrollment.associate(user_id, issuer=issuer), False


async def setup_page_with_error(
    services: Services, db: AsyncSession, visitor: Visitor, error: str, *, field: str = "key_error", status: int = 400
) -> Response[Any]:
    """The setup page again, with ``error`` shown by the security-key section (or the email form's, ``field``)."""
    try:
        enrollment, _ = await _enrollment(build_factors(services, db), visitor.user_id, await tenant_name(db))
    except AlreadyEnrolled:
        return redirect(START)
    shown = _setup_page(enrollment, visitor, await email_offer(services, db, visitor.user_id), status=status)
    if not isinstance(shown.context, dict):
        raise TypeError("the setup page's context is built as a dict")
    shown.context[field] = error
    return shown


@get("/setup", include_in_schema=False, opt=for_pages(SETUP))
async def setup_form(
    request: AnyRequest,
    visitor: NamedDependency[Visitor],
    services: NamedDependency[Services],
    db: NamedDependency[AsyncSession],
) -> Response[Any]:
    """The QR code and key of a pending authenticator (the same one until it expires)."""
    try:
        enrollment, _ = await _enrollment(build_factors(services, db), visitor.user_id, await tenant_name(db))
    except AlreadyEnrolled:
        return redirect(START)
    notice = _NOTICES.get(request.session.pop("notice", None) or "")
    return _setup_page(enrollment, visitor, await email_offer(services, db, visitor.user_id), notice=notice)


@post("/setup", status_code=200, include_in_schema=False, opt=for_pages(SETUP))
async def setup(
    request: AnyRequest,
    visitor: NamedDependency[Visitor],
    services: NamedDependency[Services],
    db: NamedDependency[AsyncSession],
) -> Response[Any]:
    """Activate the pending authenticator with a code from the app, then show the new recovery code once."""
    factors = build_factors(services, db)
    tenant = await tenant_name(db)
    try:
        enrollment, still_pending = await _enrollment(factors, visitor.user_id, tenant)
    except AlreadyEnrolled:
        return redirect(START)
    email = await email_offer(services, db, visitor.user_id)
    if not still_pending:
        error = "That QR code expired. Scan this new one, then enter the code your app shows."
        return _setup_page(enrollment, visitor, email, status=400, error=error)
    otp = await field(request, "otp", limit=16)
    if not totp.well_formed(otp):
        return _setup_page(enrollment, visitor, email, status=400, error="Enter the 6-digit code your app shows.")
    check = await factors.otp.confirm_enrollment(visitor.user_id, otp)
    if check is not FactorCheck.ACCEPTED:
        status, error = refusal(check, CODE_ERRORS)
        return _setup_page(enrollment, visitor, email, status=status, error=error)
    logger.info("enroll authenticator activated user=%s authenticator=%s", visitor.user_id, enrollment.authenticator_id)
    audit(request, services, visitor, "gd_enrollment_complete")
    sign_in_visitor(request, services, visitor.user_id, visitor.connection, mfa=True)
    code = await factors.recovery.regenerate(visitor.user_id)
    return page("recovery", visitor=visitor, tenant=tenant, code=recovery.display(code), first=True)
