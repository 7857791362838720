"""Enrolling an authenticator app: a pending (unconfirmed) authenticator with a sealed secret, shown once.

Nothing activates before a valid code confirms it (`identity.accounts.factors.otp`). A pending enrollment lives
`PENDING_ENROLLMENT_SECONDS`: its codes confirm it that long, the enrollment page shows the same QR code until then,
and ``identity purge`` deletes it after. The user's first enrollment also brings a recovery code, inactive until the
factor is confirmed.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from identity.accounts.errors import AlreadyEnrolled, UnknownUser
from identity.accounts.factors._common import (
    TOTP_PURPOSE,
    account_name,
    now_utc,
    open_totp_secret,
    public_id,
    user_row,
)
from identity.accounts.factors.recovery import RecoveryCodes
from identity.clock import Clock
from identity.crypto import SecretBox
from identity.mfa import totp
from identity.store import mfa as queries
from identity.store.models import AuthenticatorRow

__all__ = ["PENDING_ENROLLMENT_SECONDS", "Enrollment", "OtpEnrollments", "still_pending"]

PENDING_ENROLLMENT_SECONDS = 600.0
"""How long an unconfirmed enrollment (its QR code and secret) stays good."""


def still_pending(authenticator: AuthenticatorRow, now: float) -> bool:
    """Whether an unconfirmed authenticator is young enough to be confirmed (its secret was shown once, recently)."""
    return now - authenticator.created_at.timestamp() < PENDING_ENROLLMENT_SECONDS


@dataclass(frozen=True)
class Enrollment:
    """A pending TOTP enrollment, as shown to the user once."""

    authenticator_id: str
    secret: str
    barcode_uri: str
    recovery_code: str | None
    """Only on the first enrollment (when the user has no active recovery code)."""


class OtpEnrollments:
    """Start and show TOTP enrollments, over one request's session."""

    def __init__(self, session: AsyncSession, box: SecretBox, clock: Clock, recovery: RecoveryCodes) -> None:
        self.session = session
        self.box = box
        self.clock = clock
        self.recovery = recovery

    async def pending(self, user_id: str, *, issuer: str) -> Enrollment | None:
        """The user's unconfirmed enrollment while it is `still_pending`, to show it again; else ``None``.

        The caller then starts a new one with `associate`, which deletes the expired ones.
        """
        row = await user_row(self.session, user_id)
        if row is None or row.id is None:
            raise UnknownUser("unknown user")
        pending = [a for a in await queries.authenticators(self.session, row.id) if a.kind == "totp" and not a.active]
        await self.session.commit()
        fresh = [a for a in pending if still_pending(a, self.clock.now())]
        if not fresh:
            return None
        secret = open_totp_secret(self.box, fresh[-1])
        return Enrollment(
            authenticator_id=fresh[-1].public_id,
            secret=secret,
            barcode_uri=totp.provisioning_uri(secret, issuer=issuer, account=account_name(row)),
            recovery_code=None,
        )

    async def associate(self, user_id: str, *, issuer: str, allow_additional: bool = False) -> Enrollment:
        """Start a TOTP enrollment: a pending authenticator (replacing any pending one) and its secret."""
        row = await user_row(self.session, user_id)
        if row is None or row.id is None:
            raise UnknownUser("unknown user")
        # Held as the confirmations hold it (its row locked on PostgreSQL): an enrollment never reads "no active
        # factor" while a confirmation is activating one, nor races another for the pending factor and recovery code.
        await self.recovery.attempts.hold(row.id, now=self.clock.now())
        existing = await queries.authenticators(self.session, row.id)
        if any(a.active for a in existing) and not allow_additional:
            raise AlreadyEnrolled("User is already enrolled")
        await queries.delete_pending(self.session, row.id)
        secret = totp.new_secret()
        authenticator_id = public_id("totp")
        self.session.add(
            AuthenticatorRow(
                public_id=authenticator_id,
                user_pk=row.id,
                kind="totp",
                secret=self.box.seal(secret.encode(), purpose=TOTP_PURPOSE + authenticator_id),
                active=False,
                created_at=now_utc(self.clock),
            )
        )
        code = await self.recovery.add_pending(row.id)
        await self.session.commit()
        return Enrollment(
            authenticator_id=authenticator_id,
            secret=secret,
            barcode_uri=totp.provisioning_uri(secret, issuer=issuer, account=account_name(row)),
            recovery_code=code,
        )
