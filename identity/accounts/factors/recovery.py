"""The recovery code: one per user, stored as a hash, swapped for a new one each time it is used.

A used code is replaced (a conditional UPDATE that only the request presenting the current code wins,
`identity.store.mfa.rotate_recovery_code`) and the new one is shown once. Wrong codes draw from the user's attempt
bucket, as OTP codes do.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from identity.accounts.errors import NotEnrolled
from identity.accounts.factors._common import now_utc, public_id, user_pk
from identity.accounts.factors.attempts import AttemptBucket
from identity.clock import Clock
from identity.mfa import recovery
from identity.oauth2.interfaces import FactorCheck
from identity.store import mfa as queries
from identity.store.db import UnitOfWork

__all__ = ["RecoveryCodes"]


class RecoveryCodes:
    """Recovery codes over one request's session."""

    def __init__(self, session: AsyncSession, clock: Clock, attempts: AttemptBucket) -> None:
        self.session = session
        self.clock = clock
        self.attempts = attempts

    async def swap(
        self, user_pk: int, code: str, *, burn_transaction: int | None = None
    ) -> tuple[FactorCheck, str | None]:
        """Swap the user's active recovery code for a new one if ``code`` is it; the new code when accepted.

        With ``burn_transaction``, that mfa_token is consumed too, together or not at all. Commits.
        """
        if not await self.attempts.reserve(user_pk):
            return FactorCheck.RATE_LIMITED, None
        new_code = recovery.generate()
        won = await queries.rotate_recovery_code(
            self.session, user_pk, recovery.hash_code(code), recovery.hash_code(new_code), now_utc(self.clock)
        )
        if (
            won
            and burn_transaction is not None
            and not await queries.burn_transaction(self.session, burn_transaction, now_utc(self.clock))
        ):
            # The mfa_token went to another request: keep the old code, since the new one would never be shown.
            await self.session.rollback()
            await self.attempts.refund(user_pk)
            return FactorCheck.TOKEN_USED, None
        await self.session.commit()
        if not won:
            return FactorCheck.INVALID, None
        await self.attempts.refund(user_pk)
        return FactorCheck.ACCEPTED, new_code

    async def swap_in_unit(
        self, unit: UnitOfWork, user_pk: int, code: str, burn_transaction: int
    ) -> tuple[FactorCheck, str | None]:
        """`swap` as one part of the request's single transaction (the token endpoint's recovery-code grant).

        As `OtpCodes.spend_in_unit`: the attempt bucket is held for the whole transaction and a wrong code costs one
        attempt; when the mfa_token was burned by another request, the unit is rolled back and the old code stays.
        Nothing is committed here: the issuer commits before it signs.
        """
        now = self.clock.now()
        left = await self.attempts.hold(user_pk, now=now)
        if left < 1:
            return FactorCheck.RATE_LIMITED, None
        new_code = recovery.generate()
        if not await queries.rotate_recovery_code(
            self.session, user_pk, recovery.hash_code(code), recovery.hash_code(new_code), now_utc(self.clock)
        ):
            await self.attempts.store(user_pk, left - 1, now=now)
            return FactorCheck.INVALID, None
        if not await queries.burn_transaction(self.session, burn_transaction, now_utc(self.clock)):
            await unit.rollback()
            return FactorCheck.TOKEN_USED, None
        return FactorCheck.ACCEPTED, new_code

    async def swap_user_code(self, user_id: str, code: str) -> tuple[FactorCheck, str | None]:
        """`swap` for a user known by ``user_id`` (the enrollment pages)."""
        return await self.swap(await user_pk(self.session, user_id), code)

    async def add_pending(self, user_pk: int) -> str | None:
        """A new recovery code, inactive until a first factor is confirmed; ``None`` if the user has an active one.

        It is shown only with the first enrollment. The caller commits.
        """
        current = await queries.recovery_code(self.session, user_pk)
        if current is not None and current.active:
            return None
        code = recovery.generate()
        await queries.put_recovery_code(
            self.session,
            user_pk,
            public_id("recovery-code"),
            recovery.hash_code(code),
            active=False,
            now=now_utc(self.clock),
        )
        return code

    async def pending(self, user_id: str) -> str | None:
        """`add_pending` for a user enrolling a first factor by other means (a security key). Commits."""
        code = await self.add_pending(await user_pk(self.session, user_id))
        await self.session.commit()
        return code

    async def regenerate(self, user_id: str) -> str:
        """A new recovery code for a user with an active factor (the old one stops working). Commits."""
        owner = await user_pk(self.session, user_id)
        if not any(a.active for a in await queries.authenticators(self.session, owner)):
            raise NotEnrolled("the user has no enrolled factor")
        code = recovery.generate()
        await queries.put_recovery_code(
            self.session,
            owner,
            public_id("recovery-code"),
            recovery.hash_code(code),
            active=True,
            now=now_utc(self.clock),
        )
        await self.session.commit()
        return code
