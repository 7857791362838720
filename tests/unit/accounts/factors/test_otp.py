"""TOTP codes: a time step accepted once, a pending enrollment confirmed by its first code and ignored once expired."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from identity.accounts.factors import PENDING_ENROLLMENT_SECONDS, FactorService, FactorType
from identity.clock import FrozenClock
from identity.crypto import SecretBox
from identity.oauth2.interfaces import FactorCheck
from identity.store import mfa as queries
from identity.store.db import UnitOfWork, write_gate
from tests.unit.accounts.factors.support import Person, as_datetime, attempts_left, code, enrolled, mfa_transaction


async def test_a_code_is_accepted_once_per_time_step(factors: FactorService, clock: FrozenClock, user: Person):
    secret, _ = await enrolled(factors, clock, user)
    now = code(secret, clock)

    assert await factors.otp.spend_user_code(user.user_id, now) is FactorCheck.ACCEPTED
    assert await factors.otp.spend_user_code(user.user_id, now) is FactorCheck.INVALID  # a replay
    clock.advance(30)
    assert await factors.otp.spend_user_code(user.user_id, code(secret, clock)) is FactorCheck.ACCEPTED


async def test_an_earlier_step_is_refused_after_a_later_one(factors: FactorService, clock: FrozenClock, user: Person):
    """Codes are valid one step either side; once the next step's code was used, the current one is stale."""
    secret, _ = await enrolled(factors, clock, user)

    assert await factors.otp.spend_user_code(user.user_id, code(secret, clock, steps=1)) is FactorCheck.ACCEPTED
    assert await factors.otp.spend_user_code(user.user_id, code(secret, clock)) is FactorCheck.INVALID


async def test_a_replay_costs_an_attempt_and_a_right_code_none(
    factors: FactorService, clock: FrozenClock, user: Person, session
):
    secret, _ = await enrolled(factors, clock, user)
    now = code(secret, clock)
    before = await attempts_left(session, user)

    await factors.otp.spend_user_code(user.user_id, now)
    assert await attempts_left(session, user) == before
    await factors.otp.spend_user_code(user.user_id, now)
    assert await attempts_left(session, user) == before - 1


async def test_a_pending_enrollment_is_confirmed_by_its_first_code(
    factors: FactorService, clock: FrozenClock, user: Person
):
    enrollment = await factors.enrollment.associate(user.user_id, issuer="Unit")
    assert not await factors.authenticators.has_active(user.user_id)
    assert [f.type for f in await factors.authenticators.listed(user.user_id)] == [FactorType.TOTP]  # no code yet

    check = await factors.otp.confirm_enrollment(user.user_id, code(enrollment.secret, clock))

    assert check is FactorCheck.ACCEPTED
    listed = await factors.authenticators.listed(user.user_id)
    assert [(f.type, f.active) for f in listed] == [(FactorType.RECOVERY_CODE, True), (FactorType.TOTP, True)]
    assert listed[1].id == enrollment.authenticator_id and listed[1].confirmed_at is not None


async def test_a_wrong_code_confirms_nothing(factors: FactorService, clock: FrozenClock, user: Person):
    enrollment = await factors.enrollment.associate(user.user_id, issuer="Unit")
    wrong = f"{(int(code(enrollment.secret, clock)) + 1) % 1_000_000:06d}"

    assert await factors.otp.confirm_enrollment(user.user_id, wrong) is FactorCheck.INVALID
    assert not await factors.authenticators.has_active(user.user_id)


async def test_an_expired_pending_enrollment_is_ignored(factors: FactorService, clock: FrozenClock, user: Person):
    enrollment = await factors.enrollment.associate(user.user_id, issuer="Unit")
    clock.advance(PENDING_ENROLLMENT_SECONDS)

    assert await factors.enrollment.pending(user.user_id, issuer="Unit") is None
    assert await factors.otp.confirm_enrollment(user.user_id, code(enrollment.secret, clock)) is FactorCheck.INVALID
    assert not await factors.authenticators.has_active(user.user_id)


async def test_a_pending_enrollment_is_shown_again_until_it_expires(
    factors: FactorService, clock: FrozenClock, user: Person
):
    enrollment = await factors.enrollment.associate(user.user_id, issuer="Unit")
    clock.advance(PENDING_ENROLLMENT_SECONDS - 1)

    again = await factors.enrollment.pending(user.user_id, issuer="Unit")

    assert again is not None
    assert (again.authenticator_id, again.secret) == (enrollment.authenticator_id, enrollment.secret)
    assert again.recovery_code is None  # shown once, with the enrollment


async def test_while_an_app_is_active_a_pending_one_does_not_count(
    factors: FactorService, clock: FrozenClock, user: Person
):
    await enrolled(factors, clock, user)
    another = await factors.enrollment.associate(user.user_id, issuer="Unit", allow_additional=True)

    assert another.recovery_code is None  # the user already has an active one
    assert await factors.otp.spend_user_code(user.user_id, code(another.secret, clock)) is FactorCheck.INVALID


async def test_the_mfa_token_is_burned_with_the_code_or_the_code_is_not_spent(
    factors: FactorService, clock: FrozenClock, user: Person, session
):
    secret, _ = await enrolled(factors, clock, user)
    now = code(secret, clock)
    burned = (await mfa_transaction(factors, user)).id
    assert await queries.burn_transaction(session, burned, as_datetime(clock))  # another request won it
    await session.commit()

    assert await factors.otp.spend(user.pk, now, burn_transaction=burned) is FactorCheck.TOKEN_USED
    live = (await mfa_transaction(factors, user)).id
    assert await factors.otp.spend(user.pk, now, burn_transaction=live) is FactorCheck.ACCEPTED  # step unspent
    assert await queries.burn_transaction(session, live, as_datetime(clock)) is False  # and this one burned


async def test_in_the_token_requests_unit_a_wrong_code_costs_one_and_a_lost_token_spends_nothing(
    session: AsyncSession, box: SecretBox, clock: FrozenClock, user: Person, factors: FactorService
):
    """The mfa-otp grant's path: the bucket held for the request's one transaction, rolled back with the token."""
    secret, _ = await enrolled(factors, clock, user)
    before = await attempts_left(session, user)

    async def grant(otp: str, *, lost: bool = False) -> FactorCheck:
        transaction = await mfa_transaction(factors, user)
        if lost:  # another request burned the mfa_token first
            assert await queries.burn_transaction(session, transaction.id, as_datetime(clock))
            await session.commit()
        assert session.bind is not None
        unit = UnitOfWork(session, write_gate(session.bind))
        try:
            await unit.write()
            check = await FactorService(session, box, clock, unit).check_otp(transaction, otp)
            await unit.commit()
        finally:
            await unit.close()
        return check

    now = code(secret, clock)
    assert await grant(f"{(int(now) + 1) % 1_000_000:06d}") is FactorCheck.INVALID
    assert await attempts_left(session, user) == before - 1
    assert await grant(now, lost=True) is FactorCheck.TOKEN_USED
    assert await grant(now) is FactorCheck.ACCEPTED  # the step was not spent on the lost token
    assert await grant(now) is FactorCheck.INVALID  # now it is
