"""Codes sent by email: Auth0's ``oob`` factor on the ``email`` channel (``shared/API.md`` §1.5, §2.2, §2.5).

An email factor is an authenticator row of kind ``email`` whose sealed ``secret`` is the address. Each challenge (and
each enrollment) sends a 6-digit code and answers an ``oob_code`` that names it; the client sends both back with the
mfa-oob grant (or the first-party endpoint's ``email_code``).

Security choices:
- Both values are stored as hashes only: the ``oob_code`` (256 random bits) as SHA-256, the 6-digit code as the
  SHA-256 of a secret the client holds and the code together (the oob_code; at the first-party endpoint, which
  hands out no oob_code, the ``auth_session``), so the table alone gives no way to try the million codes.
- A code is bound to its mfa_token (or ``auth_session``), lives `CODE_SECONDS`, and is spent at most once (a
  conditional UPDATE, `identity.store.mfa.consume_oob_code`) in the same database transaction that burns the
  mfa_token. A new code retires the ones sent before it for the same transaction.
- Wrong codes draw from the user's attempt bucket, shared with OTP, recovery codes and security keys.
- Sending draws from a second per-user bucket of `SEND_CAPACITY` emails, refilled one every `SEND_REFILL_SECONDS`
  (Auth0: ten an hour), taken before the mail goes out. The send itself runs on the event loop without blocking it
  (`identity.mail`), outside any database transaction and after giving back a login's place in the password hash
  queue; when the mail server fails, the code is deleted, the email given back to the bucket (unless the exchange
  broke off midway and the message may have arrived: `identity.mail.MailError.maybe_sent`), and the caller answers
  ``bad_gateway``.
"""

from __future__ import annotations

import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Protocol

from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from identity.accounts.errors import AccountError, AlreadyEnrolled, NotEnrolled
from identity.accounts.factors._common import now_utc, public_id
from identity.accounts.factors.attempts import AttemptBucket
from identity.accounts.factors.recovery import RecoveryCodes
from identity.accounts.passwords import leave_hash_admission
from identity.clock import Clock
from identity.crypto import SecretBox, SecretBoxError, sha256_hex
from identity.mail import is_mail_address
from identity.oauth2.interfaces import FactorCheck
from identity.store import mfa as queries
from identity.store.db import UnitOfWork
from identity.store.models import AuthenticatorRow, OobCodeRow

__all__ = [
    "CODE_SECONDS",
    "EMAIL_PURPOSE",
    "SEND_CAPACITY",
    "SEND_REFILL_SECONDS",
    "CodeSender",
    "EmailCodes",
    "MailUnavailable",
    "SendLimited",
    "Sent",
    "checked_address",
    "masked",
    "open_address",
]

CODE_SECONDS = 300.0
"""How long an emailed code is good (Auth0: five minutes, not configurable)."""
SEND_CAPACITY = 10.0
SEND_REFILL_SECONDS = 3600.0
"""Ten emails, then one an hour (Auth0's limit on codes sent to one user)."""
EMAIL_PURPOSE = "email-address:"
"""An email factor's address is sealed for this purpose plus the authenticator's public id."""
_ADDRESS = re.compile(r"[^@\s<>()\[\]\\,;:\"]{1,64}@[A-Za-z0-9-]{1,63}(\.[A-Za-z0-9-]{1,63})+")
"""One mailbox: no display name, no list, no quoting; an ASCII (or punycode) domain with a dot."""


class CodeSender(Protocol):
    """What sends the code (`identity.mail.Mailer`); raises when the mail server did not take the message."""

    async def send_code(self, *, to: str, code: str, issuer_name: str, minutes: int) -> None:
        """Hand the message to the mail server; raise when it was not taken."""
        ...


class SendLimited(AccountError):
    """The user's bucket of emails is empty: nothing was sent."""


class MailUnavailable(AccountError):
    """The mail server refused the message or did not answer: nothing was sent, nothing was spent."""


@dataclass(frozen=True)
class Sent:
    """A code sent: the ``oob_code`` that names it, and the recovery code of a first enrollment."""

    oob_code: str
    authenticator_id: str
    recovery_code: str | None = None


def checked_address(address: str) -> str:
    """``address`` if it looks like one mailbox (no display name, no list); else `ValueError`."""
    address = address.strip()
    if not address.isascii() or not address.isprintable():  # no lone surrogate, no control character
        raise ValueError("email must be one email address")
    if len(address) > 254 or not _ADDRESS.fullmatch(address) or not is_mail_address(address):
        raise ValueError("email must be one email address")
    return address


def open_address(box: SecretBox, authenticator: AuthenticatorRow) -> str:
    """An email factor's address, unsealed."""
    try:
        return box.open(authenticator.secret, purpose=EMAIL_PURPOSE + authenticator.public_id).decode()
    except SecretBoxError as exc:
        raise AccountError("an email factor's address does not open with the configured keys") from exc


def masked(address: str) -> str:
    """How the factor is listed: ``j***@example.com`` (enough for the owner to recognise, little for anyone else)."""
    local, _, domain = address.partition("@")
    return f"{local[:1]}***@{domain}"


class EmailCodes:
    """Enroll email factors, send codes and check them, over one request's session."""

    def __init__(
        self,
        session: AsyncSession,
        box: SecretBox,
        clock: Clock,
        attempts: AttemptBucket,
        recovery: RecoveryCodes,
        sender: CodeSender | None,
        mail_errors: tuple[type[Exception], ...] = (),
    ) -> None:
        self.session = session
        self.box = box
        self.clock = clock
        self.attempts = attempts
        self.recovery = recovery
        self.sender = sender
        self.mail_errors = mail_errors
        """The exceptions of a failed send (`identity.mail.MailError`): anything else is a bug, and propagates."""

    @property
    def enabled(self) -> bool:
        """Whether a mail server is configured (``IDENTITY_SMTP_URL``): without one there is no email factor."""
        return self.sender is not None

    def address(self, authenticator: AuthenticatorRow) -> str:
        """The email factor's address."""
        return open_address(self.box, authenticator)

    async def enroll(
        self,
        unit: UnitOfWork,
        user_pk: int,
        transaction_pk: int,
        address: str,
        *,
        issuer_name: str,
        session_key: str | None = None,
        allow_additional: bool = False,
    ) -> Sent:
        """A pending email factor for ``address`` (replacing a pending one) and its first code, sent.

        A pending app stays: the enrollment page shows its QR code next to the email form, and going back to it
        must not cancel the code on its way. Whichever is confirmed first drops the other (`queries.activate`).

        `AlreadyEnrolled` when the user has an active factor (an mfa_token enrolls only the first one), unless
        ``allow_additional`` (the enrollment pages' manage page, after the second factor passed).
        """
        await unit.write()
        # The user's attempt bucket is held (on PostgreSQL its row is locked; SQLite's write lock already serialises)
        # as every confirmation holds it: an enrollment cannot read "no active factor" while a confirmation activates
        # one, and two enrollments cannot replace each other's pending factor and recovery code at the same time.
        await self.attempts.hold(user_pk, now=self.clock.now())
        existing = await queries.authenticators(self.session, user_pk)
        if any(a.active for a in existing) and not allow_additional:
            await unit.rollback()
            raise AlreadyEnrolled("User is already enrolled")
        await queries.delete_pending(self.session, user_pk, kind="email")
        authenticator_id = public_id("email")
        row = AuthenticatorRow(
            public_id=authenticator_id,
            user_pk=user_pk,
            kind="email",
            secret=self.box.seal(address.encode(), purpose=EMAIL_PURPOSE + authenticator_id),
            active=False,
            created_at=now_utc(self.clock),
        )
        self.session.add(row)
        await self.session.flush()
        recovery_code = await self.recovery.add_pending(user_pk)
        oob_code = await self._send(
            unit, user_pk, transaction_pk, row, address, issuer_name=issuer_name, session_key=session_key
        )
        return Sent(oob_code, authenticator_id, recovery_code)

    async def challenge(
        self,
        unit: UnitOfWork,
        user_pk: int,
        transaction_pk: int,
        authenticator_id: str,
        *,
        issuer_name: str,
        session_key: str | None = None,
    ) -> Sent:
        """Send a code to the user's active email factor ``authenticator_id``.

        ``session_key``: the secret the client will present instead of the oob_code (an ``auth_session``).
        """
        await unit.write()
        rows = await queries.authenticators(self.session, user_pk)
        found = [a for a in rows if a.kind == "email" and a.active and a.public_id == authenticator_id]
        if not found:
            await unit.rollback()
            raise NotEnrolled("no such email factor")
        row = found[0]
        oob_code = await self._send(
            unit, user_pk, transaction_pk, row, self.address(row), issuer_name=issuer_name, session_key=session_key
        )
        return Sent(oob_code, authenticator_id)

    async def _send(
        self,
        unit: UnitOfWork,
        user_pk: int,
        transaction_pk: int,
        authenticator: AuthenticatorRow,
        address: str,
        *,
        issuer_name: str,
        session_key: str | None,
    ) -> str:
        """Take an email from the bucket, store the code, commit, then send it (undone if the send fails)."""
        if self.sender is None or authenticator.id is None:
            await unit.rollback()
            raise MailUnavailable("no mail server is configured")
        now = self.clock.now()
        left = await queries.hold_attempts(
            self.session, user_pk, now=now, capacity=SEND_CAPACITY, refill_seconds=SEND_REFILL_SECONDS,
            table=queries.SEND_BUCKET,
        )  # fmt: skip
        if left < 1:
            await unit.rollback()
            raise SendLimited("too many codes sent")
        await queries.set_attempts(self.session, user_pk, left - 1, now=now, table=queries.SEND_BUCKET)
        moment = now_utc(self.clock)
        await queries.retire_oob_codes(self.session, transaction_pk, moment)
        oob_code = secrets.token_urlsafe(32)
        code = f"{secrets.randbelow(1_000_000):06d}"
        stored = OobCodeRow(
            oob_hash=sha256_hex(oob_code),
            binding_hash=_binding_hash(session_key or oob_code, code),
            user_pk=user_pk,
            authenticator_pk=authenticator.id,
            transaction_pk=transaction_pk,
            created_at=moment,
            expires_at=moment + timedelta(seconds=CODE_SECONDS),
        )
        self.session.add(stored)
        await self.session.flush()
        stored_id = stored.id
        await unit.commit()  # no database transaction is held while the mail server talks,
        leave_hash_admission()  # nor a login's place in the password hash queue (the first-party endpoint's)
        try:
            await self.sender.send_code(to=address, code=code, issuer_name=issuer_name, minutes=int(CODE_SECONDS // 60))
        except self.mail_errors as exc:
            # The code goes whatever happened; the email goes back to the bucket only if it surely never left.
            await self._undo(unit, user_pk, stored_id, refund=not getattr(exc, "maybe_sent", False))
            raise MailUnavailable("the mail server did not take the message") from exc
        return oob_code

    async def _undo(self, unit: UnitOfWork, user_pk: int, code_id: int | None, *, refund: bool) -> None:
        """A failed send: the code goes (nobody may have it), and with ``refund`` the email goes back to the bucket.

        Two transactions, one lock each: holding the code's row and then the bucket would deadlock (PostgreSQL)
        against a send of the same transaction, which holds the bucket and then retires that code.
        """
        await unit.write()
        await self.session.execute(delete(OobCodeRow).where(col(OobCodeRow.id) == code_id))
        await unit.commit()
        if not refund:
            return
        await unit.write()
        now = self.clock.now()
        left = await queries.hold_attempts(
            self.session, user_pk, now=now, capacity=SEND_CAPACITY, refill_seconds=SEND_REFILL_SECONDS,
            table=queries.SEND_BUCKET,
        )  # fmt: skip
        await queries.set_attempts(
            self.session, user_pk, min(SEND_CAPACITY, left + 1), now=now, table=queries.SEND_BUCKET
        )
        await unit.commit()

    async def check_in_unit(
        self,
        unit: UnitOfWork,
        user_pk: int,
        transaction_pk: int,
        binding_code: str,
        *,
        oob_code: str | None = None,
        session_key: str | None = None,
    ) -> FactorCheck:
        """Spend the code and burn the transaction, in the request's one transaction (see the module's choices).

        With ``session_key`` instead of ``oob_code``, the last code sent for the transaction (the first-party
        endpoint). The user's attempt bucket is held for the whole transaction, so concurrent guesses are checked
        one after the other.
        """
        await unit.write()
        if oob_code is not None:
            row = await queries.oob_code(self.session, sha256_hex(oob_code))
        else:
            row = await queries.latest_oob_code(self.session, transaction_pk)
        if row is None or row.id is None or row.consumed_at is not None or row.user_pk != user_pk:
            return FactorCheck.UNKNOWN_CODE
        if row.transaction_pk != transaction_pk:
            return FactorCheck.OTHER_TRANSACTION
        now = self.clock.now()
        if row.expires_at.timestamp() <= now:
            return FactorCheck.EXPIRED
        left = await self.attempts.hold(user_pk, now=now)
        if left < 1:
            return FactorCheck.RATE_LIMITED
        if not _matches(row, session_key or oob_code, binding_code):
            await self.attempts.store(user_pk, left - 1, now=now)
            return FactorCheck.INVALID
        moment = now_utc(self.clock)
        if not await queries.consume_oob_code(self.session, row.id, moment):
            return FactorCheck.UNKNOWN_CODE  # another request spent it a moment ago
        if not await queries.burn_transaction(self.session, transaction_pk, moment):
            await unit.rollback()
            return FactorCheck.TOKEN_USED
        factor = await self.session.get(AuthenticatorRow, row.authenticator_pk)
        if factor is not None and factor.id is not None and not factor.active:
            await queries.activate(self.session, factor.id, user_pk, moment)
        return FactorCheck.ACCEPTED


def _binding_hash(oob_code: str, code: str) -> str:
    return sha256_hex(f"{oob_code}:{code}")


def _matches(row: OobCodeRow, key: str | None, binding_code: str) -> bool:
    """Whether ``binding_code`` is the code sent; constant time in the code."""
    if key is None:
        return False
    return hmac.compare_digest(_binding_hash(key, binding_code.strip()), row.binding_hash)
