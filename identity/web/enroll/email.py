"""Codes by email on the enrollment pages (issue 15): set the factor up, pass it at sign-in, remove it.

    POST /enroll/email/send      sends a code: to a new address (setup, or manage: a pending email factor), to the
                                 email factor (verify: the second factor), or to the factor being removed (manage)
    GET  /enroll/email           the form for the code just sent
    POST /enroll/email/confirm   the code: turns the factor on, passes the second factor, or confirms the removal
    POST /enroll/email/remove    removes an email factor with a code from the app or the recovery code

Only a mail server (``IDENTITY_SMTP_URL``) makes any of this appear. A code goes out only when the visitor asks: a
button, or the password of a sign-in whose only factor is email (`send_code`). The pages have no mfa_token: each
code is bound to a page transaction (`identity.accounts.factors.transactions.PAGE_EMAIL`) whose random binding the
page session keeps, and is checked as the API checks its codes (`identity.accounts.factors.email.EmailCodes`):
hashed, five minutes, used once together with the binding, wrong codes drawn from the user's attempt bucket, sends
from the user's bucket of emails.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from litestar import Response, get, post
from litestar.di import NamedDependency
from litestar.exceptions import NotFoundException
from litestar.response import Template
from sqlalchemy.ext.asyncio import AsyncSession

from identity.accounts.errors import AlreadyEnrolled, NotEnrolled
from identity.accounts.factors import FactorService, FactorType, Proof, RemovalOutcome, remove_with_proof
from identity.accounts.factors.email import CODE_SECONDS, MailUnavailable, SendLimited, checked_address, masked
from identity.mfa import recovery, totp
from identity.oauth2.interfaces import FactorCheck
from identity.web.deps import Services, build_factors, unit_of_work
from identity.web.enroll.pages import (
    CODE_ERRORS,
    EMAIL,
    ENROLLMENT_CLIENT,
    MANAGE,
    RECOVERY_ERRORS,
    SETUP,
    START,
    VERIFY,
    AnyRequest,
    factor_page,
    field,
    page,
    redirect,
    refusal,
    tenant_name,
    user_pk,
)
from identity.web.enroll.setup import setup_page_with_error
from identity.web.enroll.visitor import Visitor, audit, for_pages, sign_in_visitor

__all__ = ["EMAIL_ROUTES", "ENROLL", "REMOVE", "SEND_ERRORS", "SIGN_IN", "send_code"]

logger = logging.getLogger("identity.web.enroll")

_SESSION_KEY = "email_code"
ENROLL, SIGN_IN, REMOVE = "enroll", "sign-in", "remove"
"""What a code is for: a new factor (setup, manage), the second factor (verify), a removal (manage)."""
_PAGES = {ENROLL: (SETUP, MANAGE), SIGN_IN: (VERIFY,), REMOVE: (MANAGE,)}

LIMITED, UNAVAILABLE, GONE = "limited", "unavailable", "gone"
SEND_ERRORS = {
    LIMITED: (429, "Too many codes were sent. Try again later."),
    UNAVAILABLE: (503, "We could not send the email. Try again later."),
    GONE: (409, "That email address is no longer set up. Reload the page."),
}
"""Why a code was not sent, as the page that asked says it."""
_BAD_ADDRESS = "Enter one email address, like name@example.com."
_CODE_ERRORS = {
    FactorCheck.INVALID: (400, "That code is not right. Enter the 6-digit code from the latest email."),
    FactorCheck.RATE_LIMITED: CODE_ERRORS[FactorCheck.RATE_LIMITED],
    FactorCheck.EXPIRED: (400, "That code has expired. Send a new one."),
    FactorCheck.UNKNOWN_CODE: (400, "That code can no longer be used. Send a new one."),
}
_NO_CODE = "Enter the 6-digit code from the email."
_REMOVE_ERROR = "email_remove_error"
"""The manage page's error by the forms that turn codes by email off (``email_error`` is by the form that adds)."""


@dataclass(frozen=True)
class _Sent:
    """The code this page session is waiting for (in the session: the binding, never the code)."""

    binding: str
    purpose: str
    to: str
    """The address, masked (``a***@example.com``)."""
    factor: str
    """The email factor's id (for a new factor, the pending one)."""

    @classmethod
    def of(cls, request: AnyRequest, visitor: Visitor) -> _Sent | None:
        """The code sent for this visitor's page, if any (one sent for another page does not count)."""
        value = request.session.get(_SESSION_KEY)
        if not isinstance(value, dict):
            return None
        try:
            sent = cls(**{name: str(value[name]) for name in ("binding", "purpose", "to", "factor")})
        except KeyError:
            return None
        return sent if visitor.page in _PAGES.get(sent.purpose, ()) else None


async def send_code(
    request: AnyRequest,
    services: Services,
    db: AsyncSession,
    visitor: Visitor,
    purpose: str,
    *,
    address: str | None = None,
    authenticator_id: str = "",
) -> str | None:
    """Send a code for ``purpose`` and keep its binding in the session; ``None``, or why not (`SEND_ERRORS`).

    A new address (``address``) becomes a pending factor; otherwise the code goes to the user's active email
    factor ``authenticator_id`` (or the first one). A new code replaces the session's earlier one; a refusal before
    anything was sent (too many emails) leaves the earlier one good.
    """
    factors = build_factors(services, db)
    owner = await user_pk(db, visitor.user_id)
    label = await tenant_name(db)
    if address is None:
        found = await _email_factor(factors, visitor.user_id, authenticator_id)
        if found is None:
            return GONE
        authenticator_id, shown = found
    else:
        shown = masked(address)
    earlier = request.session.get(_SESSION_KEY)
    unit = unit_of_work(services, db)
    try:
        await unit.write()
        if isinstance(earlier, dict) and isinstance(earlier.get("binding"), str):
            await factors.transactions.end_page(owner, earlier["binding"])
        binding, transaction_pk = await factors.transactions.start_page(
            owner, client_id=ENROLLMENT_CLIENT.client_id, connection=visitor.connection, lifetime=CODE_SECONDS
        )
        if address is not None:
            sent = await factors.email.enroll(
                unit, owner, transaction_pk, address, issuer_name=label, session_key=binding,
                allow_additional=visitor.page == MANAGE,
            )  # fmt: skip
        else:
            sent = await factors.email.challenge(
                unit, owner, transaction_pk, authenticator_id, issuer_name=label, session_key=binding
            )
    except SendLimited:
        audit(request, services, visitor, "gd_otp_rate_limit_exceed")
        return LIMITED
    except MailUnavailable:
        request.session.pop(_SESSION_KEY, None)  # the earlier code went with its transaction
        audit(request, services, visitor, "gd_send_email_failure")
        logger.warning("enroll email code not sent user=%s: the mail server failed", visitor.user_id)
        return UNAVAILABLE
    except (AlreadyEnrolled, NotEnrolled):
        return GONE
    finally:
        await unit.close()
    kept = {"binding": binding, "purpose": purpose, "to": shown, "factor": sent.authenticator_id}
    request.session[_SESSION_KEY] = kept
    audit(request, services, visitor, "gd_send_email")
    if purpose == ENROLL:
        audit(request, services, visitor, "gd_start_enroll")
    logger.info("enroll email code sent user=%s purpose=%s", visitor.user_id, purpose)
    return None


async def _email_factor(factors: FactorService, user_id: str, authenticator_id: str) -> tuple[str, str] | None:
    """The user's active email factor ``authenticator_id`` (or the first), with its masked address."""
    emails = [f for f in await factors.authenticators.listed(user_id) if f.type is FactorType.EMAIL and f.active]
    chosen = [f for f in emails if f.id == authenticator_id] if authenticator_id else emails[:1]
    return (chosen[0].id, chosen[0].name or "your email") if chosen else None


async def _asking_page(
    services: Services, db: AsyncSession, visitor: Visitor, status: int, error: str, *, field: str = "email_error"
) -> Response[Any]:
    """The page whose email form was sent, again, with ``error`` by that form (``field``: which one)."""
    if visitor.page == SETUP:
        return await setup_page_with_error(services, db, visitor, error, field=field, status=status)
    name = "verify" if visitor.page == VERIFY else "manage"
    return await factor_page(name, services, db, visitor, status=status, **{field: error})


def _code_page(visitor: Visitor, sent: _Sent, tenant: str, *, status: int = 200, error: str | None = None) -> Template:
    back = {SIGN_IN: VERIFY, REMOVE: MANAGE}.get(sent.purpose, visitor.page)
    return page(
        "email_code",
        status=status,
        visitor=visitor,
        tenant=tenant,
        sent=sent,
        back=back,
        minutes=int(CODE_SECONDS // 60),
        error=error,
    )


@post("/email/send", status_code=303, include_in_schema=False, opt=for_pages(SETUP, VERIFY, MANAGE))
async def send(
    request: AnyRequest,
    visitor: NamedDependency[Visitor],
    services: NamedDependency[Services],
    db: NamedDependency[AsyncSession],
) -> Response[Any]:
    """Send a code (the visitor pressed the button), then show the form for it."""
    if services.mailer is None:
        raise NotFoundException()
    authenticator_id = await field(request, "authenticator_id", limit=64)
    address = None
    if visitor.page == VERIFY:
        purpose = SIGN_IN
    elif visitor.page == MANAGE and await field(request, "intent", limit=16) == REMOVE:
        purpose = REMOVE
    else:
        purpose = ENROLL
        try:
            address = checked_address(await field(request, "email", limit=320))
        except ValueError:
            return await _asking_page(services, db, visitor, 400, _BAD_ADDRESS)
    failure = await send_code(
        request, services, db, visitor, purpose, address=address, authenticator_id=authenticator_id
    )
    if failure == GONE and purpose == ENROLL:
        return redirect(START)  # enrolled meanwhile (another tab): the visitor belongs elsewhere now
    if failure is not None:
        where = _REMOVE_ERROR if purpose == REMOVE else "email_error"
        return await _asking_page(services, db, visitor, *SEND_ERRORS[failure], field=where)
    return redirect(EMAIL)


@get("/email", include_in_schema=False, opt=for_pages(SETUP, VERIFY, MANAGE))
async def code_form(
    request: AnyRequest, visitor: NamedDependency[Visitor], db: NamedDependency[AsyncSession]
) -> Response[Any]:
    """The form for the code just sent (none sent: back to the visitor's page)."""
    sent = _Sent.of(request, visitor)
    if sent is None:
        return redirect(visitor.page)
    return _code_page(visitor, sent, await tenant_name(db))


async def _check(services: Services, db: AsyncSession, visitor: Visitor, sent: _Sent, code: str) -> FactorCheck:
    """Spend the code with the page transaction it is bound to (one database transaction)."""
    factors = build_factors(services, db)
    owner = await user_pk(db, visitor.user_id)
    transaction_pk = await factors.transactions.page(owner, sent.binding)
    await db.commit()
    if transaction_pk is None:
        return FactorCheck.UNKNOWN_CODE
    unit = unit_of_work(services, db)
    try:
        check = await factors.email.check_in_unit(unit, owner, transaction_pk, code, session_key=sent.binding)
        await unit.commit()  # a wrong code's attempt counts too
    finally:
        await unit.close()
    return check


@post("/email/confirm", status_code=200, include_in_schema=False, opt=for_pages(SETUP, VERIFY, MANAGE))
async def confirm(
    request: AnyRequest,
    visitor: NamedDependency[Visitor],
    services: NamedDependency[Services],
    db: NamedDependency[AsyncSession],
) -> Response[Any]:
    """Check the code: the factor is on (setup, manage), the second factor passed (verify), or the factor removed."""
    sent = _Sent.of(request, visitor)
    if sent is None:
        return redirect(visitor.page)
    code = (await field(request, "code", limit=16)).replace(" ", "")
    tenant = await tenant_name(db)
    if not totp.well_formed(code):
        return _code_page(visitor, sent, tenant, status=400, error=_NO_CODE)
    if sent.purpose == REMOVE:
        return await _remove_with_code(request, services, db, visitor, sent, code)
    check = await _check(services, db, visitor, sent, code)
    if check is not FactorCheck.ACCEPTED:
        status, error = refusal(_shown(check), _CODE_ERRORS)
        limited = check is FactorCheck.RATE_LIMITED
        audit(request, services, visitor, "gd_otp_rate_limit_exceed" if limited else "gd_auth_failed")
        return _code_page(visitor, sent, tenant, status=status, error=error)
    request.session.pop(_SESSION_KEY, None)
    if sent.purpose == SIGN_IN:
        logger.info("enroll second factor passed user=%s factor=email", visitor.user_id)
        audit(request, services, visitor, "gd_auth_succeed")
        sign_in_visitor(request, services, visitor.user_id, visitor.connection, mfa=True)
        return redirect(MANAGE)
    logger.info("enroll email factor activated user=%s authenticator=%s", visitor.user_id, sent.factor)
    audit(request, services, visitor, "gd_enrollment_complete")
    if visitor.page == MANAGE:
        request.session["notice"] = "email-added"
        return redirect(MANAGE)
    sign_in_visitor(request, services, visitor.user_id, visitor.connection, mfa=True)
    new_code = await build_factors(services, db).recovery.regenerate(visitor.user_id)
    return page("recovery", visitor=visitor, tenant=tenant, code=recovery.display(new_code), first=True, factor="email")


def _shown(check: FactorCheck) -> FactorCheck:
    """How a refused code reads on the page: a code of another transaction, or one spent already, is no longer good."""
    return check if check in _CODE_ERRORS else FactorCheck.UNKNOWN_CODE


async def _remove_with_code(
    request: AnyRequest, services: Services, db: AsyncSession, visitor: Visitor, sent: _Sent, code: str
) -> Response[Any]:
    """Remove the email factor the code was sent to: the code is the fresh proof."""

    async def emailed() -> FactorCheck:
        return await _check(services, db, visitor, sent, code)

    removal = await remove_with_proof(
        build_factors(services, db), visitor.user_id, sent.factor, kind=FactorType.EMAIL, emailed_code=emailed
    )
    if removal.outcome is RemovalOutcome.REFUSED:
        status, error = refusal(_shown(removal.check or FactorCheck.INVALID), _CODE_ERRORS)
        limited = removal.check is FactorCheck.RATE_LIMITED
        audit(request, services, visitor, "gd_otp_rate_limit_exceed" if limited else "gd_auth_failed")
        return _code_page(visitor, sent, await tenant_name(db), status=status, error=error)
    request.session.pop(_SESSION_KEY, None)
    if removal.outcome is not RemovalOutcome.REMOVED:
        return await factor_page("manage", services, db, visitor, status=404, email_remove_error=SEND_ERRORS[GONE][1])
    _removed(request, services, visitor, sent.factor)
    request.session["notice"] = "email-removed"  # the manage page, or setup when it was the last factor
    return redirect(START)


def _removed(request: AnyRequest, services: Services, visitor: Visitor, authenticator_id: str) -> None:
    logger.info("enroll email factor removed user=%s authenticator=%s", visitor.user_id, authenticator_id)
    audit(request, services, visitor, "gd_unenroll")


@post("/email/remove", status_code=303, include_in_schema=False, opt=for_pages(MANAGE))
async def remove(
    request: AnyRequest,
    visitor: NamedDependency[Visitor],
    services: NamedDependency[Services],
    db: NamedDependency[AsyncSession],
) -> Response[Any]:
    """Remove an email factor with a fresh code from the app or the recovery code (no email needed)."""
    authenticator_id = await field(request, "authenticator_id", limit=64)
    removal = await remove_with_proof(
        build_factors(services, db),
        visitor.user_id,
        authenticator_id,
        kind=FactorType.EMAIL,
        recovery_code=await field(request, "recovery_code", limit=64),
        otp=await field(request, "otp", limit=16),
    )
    if removal.outcome is RemovalOutcome.NOT_FOUND:
        return await factor_page("manage", services, db, visitor, status=404, email_remove_error=SEND_ERRORS[GONE][1])
    if removal.outcome is RemovalOutcome.NO_PROOF:
        error = "Enter the 6-digit code your app shows."
        return await factor_page("manage", services, db, visitor, status=400, email_remove_error=error)
    if removal.outcome is RemovalOutcome.REFUSED:
        errors = RECOVERY_ERRORS if removal.proof is Proof.RECOVERY_CODE else CODE_ERRORS
        status, error = refusal(removal.check, errors)
        return await factor_page("manage", services, db, visitor, status=status, email_remove_error=error)
    _removed(request, services, visitor, authenticator_id)
    if removal.new_recovery_code is not None:
        code = recovery.display(removal.new_recovery_code)
        return page("recovery", visitor=visitor, tenant=await tenant_name(db), code=code, first=False)
    request.session["notice"] = "email-removed"
    return redirect(START)


EMAIL_ROUTES = [send, code_form, confirm, remove]
"""Mounted by `identity.web.enroll.router.enroll_router`."""
