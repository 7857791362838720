"""The second factor of the pages' sign-in, for a user who has one.

    GET  /enroll/verify     the app's code, the visitor's security keys (with JavaScript), a button that emails a
                            code (`identity.web.enroll.email`), the recovery code
    POST /enroll/verify     the app's 6-digit code, or the recovery code (then replaced, and the new one shown)

Codes draw from the same per-user attempt bucket as the mfa-otp grant (`identity.accounts.factors.attempts`).
"""

from __future__ import annotations

import logging
from typing import Any

from litestar import Response, get, post
from litestar.di import NamedDependency
from litestar.response import Template
from sqlalchemy.ext.asyncio import AsyncSession

from identity.mfa import recovery, totp
from identity.oauth2.interfaces import FactorCheck
from identity.web.deps import Services, build_factors
from identity.web.enroll.email import SEND_ERRORS
from identity.web.enroll.pages import (
    CODE_ERRORS,
    MANAGE,
    RECOVERY_ERRORS,
    VERIFY,
    AnyRequest,
    factor_page,
    field,
    page,
    redirect,
    refusal,
    tenant_name,
)
from identity.web.enroll.visitor import Visitor, audit, for_pages, sign_in_visitor

__all__ = ["verify", "verify_form"]

logger = logging.getLogger("identity.web.enroll")


@get("/verify", include_in_schema=False, opt=for_pages(VERIFY))
async def verify_form(
    request: AnyRequest,
    visitor: NamedDependency[Visitor],
    services: NamedDependency[Services],
    db: NamedDependency[AsyncSession],
) -> Template:
    """Ask for the code of the enrolled app (or a key, an emailed code, the recovery code) before anything changes.

    A code the sign-in tried to email and could not left why in the session (`identity.web.enroll.email`).
    """
    unsent = SEND_ERRORS.get(request.session.pop("email_error", None) or "")
    if unsent is not None:
        return await factor_page("verify", services, db, visitor, status=unsent[0], email_error=unsent[1])
    return await factor_page("verify", services, db, visitor)


@post("/verify", status_code=200, include_in_schema=False, opt=for_pages(VERIFY))
async def verify(
    request: AnyRequest,
    visitor: NamedDependency[Visitor],
    services: NamedDependency[Services],
    db: NamedDependency[AsyncSession],
) -> Response[Any]:
    """Check the code; a recovery code is replaced by a new one, shown once."""
    factors = build_factors(services, db)
    recovery_code = await field(request, "recovery_code", limit=64)
    otp = await field(request, "otp", limit=16)
    if recovery_code:
        check, new_code = await factors.recovery.swap_user_code(visitor.user_id, recovery_code)
        if check is FactorCheck.ACCEPTED and new_code is not None:
            logger.info("enroll second factor passed user=%s factor=recovery-code", visitor.user_id)
            audit(request, services, visitor, "gd_recovery_succeed")
            sign_in_visitor(request, services, visitor.user_id, visitor.connection, mfa=True)
            tenant = await tenant_name(db)
            return page("recovery", visitor=visitor, tenant=tenant, code=recovery.display(new_code), first=False)
        status, error = refusal(check, RECOVERY_ERRORS)
        limited = check is FactorCheck.RATE_LIMITED
        audit(request, services, visitor, "gd_recovery_rate_limit_exceed" if limited else "gd_recovery_failed")
        return await factor_page("verify", services, db, visitor, status=status, recovery_error=error)
    if not totp.well_formed(otp):
        return await factor_page("verify", services, db, visitor, status=400, error="Enter the 6-digit code.")
    check = await factors.otp.spend_user_code(visitor.user_id, otp)
    if check is FactorCheck.ACCEPTED:
        logger.info("enroll second factor passed user=%s factor=otp", visitor.user_id)
        audit(request, services, visitor, "gd_auth_succeed")
        sign_in_visitor(request, services, visitor.user_id, visitor.connection, mfa=True)
        return redirect(MANAGE)
    status, error = refusal(check, CODE_ERRORS)
    limited = check is FactorCheck.RATE_LIMITED
    audit(request, services, visitor, "gd_otp_rate_limit_exceed" if limited else "gd_auth_failed")
    return await factor_page("verify", services, db, visitor, status=status, error=error)
