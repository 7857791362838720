"""Managing the factors of a visitor who passed the second factor.

    GET  /enroll/manage     the enrolled factors
    POST /enroll/remove     removes an app, with a fresh code or the recovery code

Security keys are added and removed by `identity.web.enroll.keys`, email addresses by `identity.web.enroll.email`.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from litestar import Response, get, post
from litestar.di import NamedDependency
from litestar.response import Template
from sqlalchemy.ext.asyncio import AsyncSession

from identity.accounts.factors import FactorType, Proof, Removal, RemovalOutcome, remove_with_proof
from identity.mfa import recovery
from identity.oauth2.interfaces import FactorCheck
from identity.web.deps import Services, build_factors
from identity.web.enroll.pages import (
    CODE_ERRORS,
    MANAGE,
    RECOVERY_ERRORS,
    START,
    AnyRequest,
    factor_page,
    field,
    page,
    redirect,
    refusal,
    tenant_name,
)
from identity.web.enroll.visitor import Visitor, audit, for_pages

__all__ = ["manage", "removal_form", "remove"]

logger = logging.getLogger("identity.web.enroll")

_NOTICES = {
    "key-removed": "The security key was removed.",
    "email-added": "Codes by email are on. Signing in can now ask for a code sent to that address.",
    "email-removed": "Codes by email were turned off.",
}
"""What a change left in the session, as the manage page says it."""
_GONE = "That authenticator no longer exists."


async def removal_form(
    request: AnyRequest,
    services: Services,
    db: AsyncSession,
    visitor: Visitor,
    kind: FactorType,
    security_key: Callable[[], Awaitable[FactorCheck]] | None = None,
) -> tuple[str, Removal]:
    """Remove the factor a manage-page form names, with the proof it carries: the id, and how it went."""
    authenticator_id = await field(request, "authenticator_id", limit=64)
    removal = await remove_with_proof(
        build_factors(services, db),
        visitor.user_id,
        authenticator_id,
        kind=kind,
        recovery_code=await field(request, "recovery_code", limit=64),
        otp=await field(request, "otp", limit=16),
        security_key=security_key,
    )
    return authenticator_id, removal


@get("/manage", include_in_schema=False, opt=for_pages(MANAGE))
async def manage(
    request: AnyRequest,
    visitor: NamedDependency[Visitor],
    services: NamedDependency[Services],
    db: NamedDependency[AsyncSession],
) -> Template:
    """The enrolled factors, with forms to remove them."""
    notice = _NOTICES.get(request.session.pop("notice", None) or "")
    return await factor_page("manage", services, db, visitor, notice=notice)


@post("/remove", status_code=303, include_in_schema=False, opt=for_pages(MANAGE))
async def remove(
    request: AnyRequest,
    visitor: NamedDependency[Visitor],
    services: NamedDependency[Services],
    db: NamedDependency[AsyncSession],
) -> Response[Any]:
    """Remove an authenticator app: only with a fresh code (a time step not used before) or the recovery code."""
    authenticator_id, removal = await removal_form(request, services, db, visitor, FactorType.TOTP)
    if removal.outcome is RemovalOutcome.NOT_FOUND:
        return await factor_page("manage", services, db, visitor, status=404, error=_GONE)
    if removal.outcome is RemovalOutcome.NO_PROOF:
        return await factor_page(
            "manage", services, db, visitor, status=400, error="Enter the 6-digit code your app shows."
        )
    if removal.outcome is RemovalOutcome.REFUSED:
        if removal.proof is Proof.RECOVERY_CODE:
            status, error = refusal(removal.check, RECOVERY_ERRORS)
            return await factor_page("manage", services, db, visitor, status=status, recovery_error=error)
        status, error = refusal(removal.check, CODE_ERRORS)
        return await factor_page("manage", services, db, visitor, status=status, error=error)
    logger.info("enroll authenticator removed user=%s authenticator=%s", visitor.user_id, authenticator_id)
    audit(request, services, visitor, "gd_unenroll")
    if removal.new_recovery_code is not None:
        code = recovery.display(removal.new_recovery_code)
        return page("recovery", status=200, visitor=visitor, tenant=await tenant_name(db), code=code, first=False)
    request.session["notice"] = "removed"
    return redirect(START)
