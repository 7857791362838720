"""TOTP codes of authenticator apps: each time step accepted once, a pending enrollment confirmed by its first code.

Security choices:
- A code's time step is accepted at most once per authenticator (conditional UPDATE on ``last_step``,
  `identity.store.mfa.accept_step`): only a step later than the last accepted one wins, and only once.
- While the user has an active app, only active apps count; before that, a code of the pending enrollment (younger than
  `PENDING_ENROLLMENT_SECONDS`) confirms it, in the same database transaction as the step.
- Failed codes draw from the user's attempt bucket (`identity.accounts.factors.attempts`), reserved before checking.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession

from identity.accounts.factors._common import now_utc, open_totp_secret, user_pk
from identity.accounts.factors.attempts import AttemptBucket
from identity.accounts.factors.enrollment import still_pending
from identity.clock import Clock
from identity.crypto import SecretBox
from identity.mfa import totp
from identity.oauth2.interfaces import FactorCheck
from identity.store import mfa as queries
from identity.store.db import UnitOfWork
from identity.store.models import AuthenticatorRow

__all__ = ["OtpCodes"]


class OtpCodes:
    """TOTP checks over one request's session; failed codes cost the user one attempt each."""

    def __init__(self, session: AsyncSession, box: SecretBox, clock: Clock, attempts: AttemptBucket) -> None:
        self.session = session
        self.box = box
        self.clock = clock
        self.attempts = attempts

    async def spend(self, user_pk: int, otp: str, *, burn_transaction: int | None = None) -> FactorCheck:
        """Accept ``otp`` once for the user's active app, or confirm (activate) the pending enrollment it belongs to.

        With ``burn_transaction``, that mfa_token is consumed in the same database transaction: a code is never spent
        on an mfa_token that another request has already used (`FactorCheck.TOKEN_USED`), and vice versa. Commits.
        """
        if not await self.attempts.reserve(user_pk):
            return FactorCheck.RATE_LIMITED
        rows = await queries.authenticators(self.session, user_pk)
        await self.session.commit()
        now = self.clock.now()
        check = await self._accept(_candidates(rows, now), user_pk, otp, burn_transaction, now)
        if check is FactorCheck.TOKEN_USED:
            await self.session.rollback()
        else:
            await self.session.commit()
        if check is not FactorCheck.INVALID:
            await self.attempts.refund(user_pk)  # only failed codes cost an attempt
        return check

    async def spend_in_unit(self, unit: UnitOfWork, user_pk: int, otp: str, burn_transaction: int) -> FactorCheck:
        """`spend` as one part of the request's single transaction (the token endpoint's mfa-otp grant).

        The user's attempt bucket is held (locked on PostgreSQL) for the whole transaction, so concurrent codes of
        one user are checked one after the other and each failure costs one attempt; a right code costs nothing.
        When the mfa_token was burned by another request, the whole unit is rolled back: no step is spent.
        """
        now = self.clock.now()
        left = await self.attempts.hold(user_pk, now=now)
        if left < 1:
            return FactorCheck.RATE_LIMITED
        rows = await queries.authenticators(self.session, user_pk)
        check = await self._accept(_candidates(rows, now), user_pk, otp, burn_transaction, now)
        if check is FactorCheck.INVALID:
            await self.attempts.store(user_pk, left - 1, now=now)
        elif check is FactorCheck.TOKEN_USED:
            await unit.rollback()
        return check

    async def spend_user_code(self, user_id: str, otp: str) -> FactorCheck:
        """`spend` for a user known by ``user_id``: the second factor, or the proof before a removal (the pages)."""
        return await self.spend(await user_pk(self.session, user_id), otp)

    async def confirm_enrollment(self, user_id: str, otp: str) -> FactorCheck:
        """Activate the user's pending app with a code from it (`spend`: a user with no active app yet)."""
        return await self.spend(await user_pk(self.session, user_id), otp)

    async def _accept(
        self, candidates: Sequence[AuthenticatorRow], user_pk: int, otp: str, burn: int | None, now: float
    ) -> FactorCheck:
        """The first candidate the code matches takes its step; nothing is committed or rolled back here."""
        for authenticator in candidates:
            step = totp.verify(open_totp_secret(self.box, authenticator), otp, at=now)
            if step is None or authenticator.id is None:
                continue
            if not await queries.accept_step(self.session, authenticator.id, step):
                return FactorCheck.INVALID  # this step was accepted before: a replay
            if burn is not None and not await queries.burn_transaction(self.session, burn, now_utc(self.clock)):
                return FactorCheck.TOKEN_USED
            if not authenticator.active:
                await queries.activate(self.session, authenticator.id, user_pk, now_utc(self.clock))
            return FactorCheck.ACCEPTED
        return FactorCheck.INVALID


def _candidates(rows: Sequence[AuthenticatorRow], now: float) -> list[AuthenticatorRow]:
    """The apps a code may come from: the active ones, or, before any is active, the pending one still fresh."""
    apps = [a for a in rows if a.kind == "totp"]
    if any(a.active for a in apps):
        return [a for a in apps if a.active]
    return [a for a in apps if still_pending(a, now)]
