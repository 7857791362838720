"""The attempt bucket: 10 failures, one back every 6 minutes; reserved before a check, refunded when it was right."""

from __future__ import annotations

import asyncio

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from identity.accounts.factors import ATTEMPT_CAPACITY, ATTEMPT_REFILL_SECONDS, AttemptBucket, FactorService
from identity.clock import FrozenClock
from identity.crypto import SecretBox
from identity.oauth2.interfaces import FactorCheck
from tests.unit.accounts.factors.support import Person, code, enrolled

CAPACITY = int(ATTEMPT_CAPACITY)


def wrong(right: str) -> str:
    return f"{(int(right) + 1) % 1_000_000:06d}"


async def test_the_bucket_holds_ten_and_refills_one_every_six_minutes(
    factors: FactorService, clock: FrozenClock, user: Person
):
    assert [await factors.attempts.reserve(user.pk) for _ in range(CAPACITY + 1)] == [True] * CAPACITY + [False]
    clock.advance(ATTEMPT_REFILL_SECONDS - 1)
    assert not await factors.attempts.reserve(user.pk)
    clock.advance(1)
    assert await factors.attempts.reserve(user.pk)
    assert not await factors.attempts.reserve(user.pk)


async def test_a_refund_gives_the_attempt_back(factors: FactorService, user: Person):
    for _ in range(CAPACITY):
        assert await factors.attempts.reserve(user.pk)
    await factors.attempts.refund(user.pk)
    assert await factors.attempts.reserve(user.pk)


async def test_wrong_codes_cost_one_each_and_right_ones_nothing(
    factors: FactorService, clock: FrozenClock, user: Person
):
    secret, _ = await enrolled(factors, clock, user)
    for _ in range(CAPACITY - 1):
        assert await factors.otp.spend_user_code(user.user_id, wrong(code(secret, clock))) is FactorCheck.INVALID
    assert await factors.otp.spend_user_code(user.user_id, code(secret, clock)) is FactorCheck.ACCEPTED
    assert await factors.otp.spend_user_code(user.user_id, wrong(code(secret, clock))) is FactorCheck.INVALID
    assert await factors.otp.spend_user_code(user.user_id, wrong(code(secret, clock))) is FactorCheck.RATE_LIMITED


async def test_the_bucket_is_checked_before_the_code(factors: FactorService, clock: FrozenClock, user: Person):
    """With the bucket empty even the right code is refused: a guess must not learn whether it was right."""
    secret, _ = await enrolled(factors, clock, user)
    for _ in range(CAPACITY):
        await factors.attempts.reserve(user.pk)

    assert await factors.otp.spend_user_code(user.user_id, code(secret, clock)) is FactorCheck.RATE_LIMITED
    clock.advance(ATTEMPT_REFILL_SECONDS)
    assert await factors.otp.spend_user_code(user.user_id, code(secret, clock)) is FactorCheck.ACCEPTED  # not spent


async def test_wrong_recovery_codes_draw_from_the_same_bucket(factors: FactorService, clock: FrozenClock, user: Person):
    secret, _ = await enrolled(factors, clock, user)
    for _ in range(CAPACITY):
        assert await factors.recovery.swap_user_code(user.user_id, "NOT-THE-CODE") == (FactorCheck.INVALID, None)

    assert await factors.otp.spend_user_code(user.user_id, code(secret, clock)) is FactorCheck.RATE_LIMITED


async def test_concurrent_reservations_cannot_overdraw_the_bucket(
    sessions: async_sessionmaker[AsyncSession], clock: FrozenClock, user: Person
):
    async def reserve() -> bool:
        async with sessions() as session:
            return await AttemptBucket(session, clock).reserve(user.pk)

    taken = await asyncio.gather(*(reserve() for _ in range(3 * CAPACITY)))

    assert taken.count(True) == CAPACITY


async def test_concurrent_wrong_codes_cannot_overdraw_the_bucket(
    sessions: async_sessionmaker[AsyncSession], box: SecretBox, clock: FrozenClock, user: Person, factors
):
    secret, _ = await enrolled(factors, clock, user)

    async def guess() -> FactorCheck:
        async with sessions() as session:
            return await FactorService(session, box, clock).otp.spend_user_code(
                user.user_id, wrong(code(secret, clock))
            )

    checks = await asyncio.gather(*(guess() for _ in range(2 * CAPACITY)))

    assert checks.count(FactorCheck.INVALID) == CAPACITY
    assert checks.count(FactorCheck.RATE_LIMITED) == CAPACITY
