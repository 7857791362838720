"""What every page handler uses: the paths, templates and redirects, form fields, messages, the audit event."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from litestar import Request
from litestar.datastructures import State
from litestar.response import Redirect, Template
from sqlalchemy.ext.asyncio import AsyncSession

from identity.accounts.errors import AccountError
from identity.accounts.factors import FactorType
from identity.oauth2.interfaces import Client, FactorCheck
from identity.store import users as user_queries
from identity.store.tenant import tenant_settings
from identity.web.deps import Services, build_factors

if TYPE_CHECKING:
    from identity.web.enroll.visitor import Visitor

__all__ = [
    "CODE_ERRORS",
    "EMAIL",
    "ENROLLMENT_CLIENT",
    "ENROLLMENT_PROTOCOL",
    "MANAGE",
    "RECOVERY_ERRORS",
    "SETUP",
    "START",
    "VERIFY",
    "AnyRequest",
    "day",
    "email_offer",
    "factor_page",
    "factor_summary",
    "field",
    "page",
    "redirect",
    "refusal",
    "tenant_name",
    "user_pk",
]

AnyRequest = Request[Any, Any, State]

START = "/enroll"
VERIFY = "/enroll/verify"
SETUP = "/enroll/setup"
MANAGE = "/enroll/manage"
EMAIL = "/enroll/email"

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
"""``event.client`` for those runs (and the client of the pages' emailed codes): the pages are no OAuth client, and
no real client id contains a colon here."""

CODE_ERRORS = {
    FactorCheck.INVALID: (400, "That code is not right. Enter the 6-digit code your app shows now."),
    FactorCheck.RATE_LIMITED: (429, "Too many wrong codes. Wait a few minutes, then try again."),
}
RECOVERY_ERRORS = {
    FactorCheck.INVALID: (400, "That recovery code is not right."),
    FactorCheck.RATE_LIMITED: CODE_ERRORS[FactorCheck.RATE_LIMITED],
}


def refusal(check: FactorCheck | None, errors: Mapping[FactorCheck, tuple[int, str]]) -> tuple[int, str]:
    """The status and message of a refused code (anything but rate limiting reads as a wrong code)."""
    return errors.get(check or FactorCheck.INVALID, errors[FactorCheck.INVALID])


def page(name: str, *, status: int = 200, **context: Any) -> Template:
    """The template ``enroll/<name>.html``."""
    return Template(f"enroll/{name}.html", context=context, status_code=status)


def redirect(path: str) -> Redirect:
    """303 See Other: the next page is read with GET."""
    return Redirect(path=path, status_code=303)


async def field(request: AnyRequest, name: str, *, limit: int = 1024) -> str:
    """A form field, stripped and cut to ``limit`` characters (``""`` when absent)."""
    value = (await request.form()).get(name)
    return value.strip()[:limit] if isinstance(value, str) else ""


async def user_pk(db: AsyncSession, user_id: str) -> int:
    """The database id of the user ``user_id`` (`AccountError` if there is none)."""
    found = await user_queries.by_user_id(db, user_id)
    await db.commit()
    if found is None or found[0].id is None:
        raise AccountError("unknown user")
    return found[0].id


async def email_offer(services: Services, db: AsyncSession, user_id: str) -> str | None:
    """The address the email factor's form starts with (the user's own, or empty); ``None``: no mail server."""
    if services.mailer is None:
        return None
    found = await user_queries.by_user_id(db, user_id)
    await db.commit()
    return (found[0].email or "") if found is not None else ""


async def tenant_name(db: AsyncSession) -> str:
    """The tenant's friendly name, as the pages and the authenticator app show it."""
    return (await tenant_settings(db)).friendly_name


def day(moment: datetime) -> str:
    """A date as the pages write it (``3 March 2026``)."""
    return moment.strftime("%-d %B %Y")


async def factor_page(
    name: str, services: Services, db: AsyncSession, visitor: Visitor, *, status: int = 200, **context: Any
) -> Template:
    """A page about the visitor's factors (verify, manage), with what ``context`` adds (errors, notices)."""
    factors = await factor_summary(services, db, visitor.user_id)
    return page(name, status=status, visitor=visitor, tenant=await tenant_name(db), **factors, **context)


async def factor_summary(services: Services, db: AsyncSession, user_id: str) -> dict[str, Any]:
    """What the verify and manage pages show of the visitor's factors: apps, keys, addresses, the recovery code.

    Email addresses are masked; ``email_offer`` is ``None`` when no code can be emailed (no mail server).
    """
    listed = await build_factors(services, db).authenticators.listed(user_id)
    return {
        "emails": [
            {"id": f.id, "name": f.name or "your email", "added": day(f.created_at)}
            for f in listed
            if f.type is FactorType.EMAIL and f.active
        ],
        "email_offer": await email_offer(services, db, user_id),
        "apps": [{"id": f.id, "added": day(f.created_at)} for f in listed if f.type is FactorType.TOTP and f.active],
        "keys": [
            {"id": f.id, "name": f.name or "Security key", "added": day(f.created_at)}
            for f in listed
            if f.type is FactorType.WEBAUTHN and f.active
        ],
        "has_app": any(f.type is FactorType.TOTP and f.active for f in listed),
        "has_recovery": any(f.type is FactorType.RECOVERY_CODE for f in listed),
    }
