"""The per-user bucket of second-factor attempts, shared by OTP codes, recovery codes and WebAuthn responses.

Failed attempts draw from a bucket of 10 that refills one every 6 minutes (Auth0's limits); a new mfa_token does not
refill it. An attempt is reserved *before* the factor is checked and given back when the factor was right, so an empty
bucket costs the attacker a guess and concurrent guesses cannot overdraw it.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from identity.clock import Clock
from identity.store import mfa as queries

__all__ = ["ATTEMPT_CAPACITY", "ATTEMPT_REFILL_SECONDS", "AttemptBucket"]

ATTEMPT_CAPACITY = 10.0
ATTEMPT_REFILL_SECONDS = 360.0


class AttemptBucket:
    """The users' attempt buckets, over one request's session."""

    def __init__(self, session: AsyncSession, clock: Clock) -> None:
        self.session = session
        self.clock = clock

    async def reserve(self, user_pk: int) -> bool:
        """Take one attempt before checking a factor; ``False`` (nothing taken) when the bucket is empty.

        Each call commits on its own (compare-and-set on the bucket's version, `identity.store.mfa.adjust_attempts`).
        """
        return await self._adjust(user_pk, -1)

    async def refund(self, user_pk: int) -> None:
        """Give the reserved attempt back: the factor was right."""
        await self._adjust(user_pk, +1)

    async def hold(self, user_pk: int, *, now: float) -> float:
        """The attempts left, with the bucket held until the transaction ends (the grants' unit of work).

        Concurrent checks of one user then run one after the other; `store` writes what was spent.
        """
        return await queries.hold_attempts(
            self.session, user_pk, now=now, capacity=ATTEMPT_CAPACITY, refill_seconds=ATTEMPT_REFILL_SECONDS
        )

    async def store(self, user_pk: int, left: float, *, now: float) -> None:
        """Write the bucket held by `hold` (in the same transaction)."""
        await queries.set_attempts(self.session, user_pk, left, now=now)

    async def _adjust(self, user_pk: int, delta: float) -> bool:
        return await queries.adjust_attempts(
            self.session, user_pk, delta, now=self.clock.now(), capacity=ATTEMPT_CAPACITY,
            refill_seconds=ATTEMPT_REFILL_SECONDS,
        )  # fmt: skip
