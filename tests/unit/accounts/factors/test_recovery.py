"""The recovery code: swapped for a new one on use, inactive until the first factor is confirmed."""

from __future__ import annotations

import pytest

from identity.accounts.factors import FactorService, NotEnrolled
from identity.clock import FrozenClock
from identity.oauth2.interfaces import FactorCheck
from identity.store import mfa as queries
from tests.unit.accounts.factors.support import Person, as_datetime, code, enrolled, mfa_transaction


async def test_a_used_code_is_swapped_for_a_new_one(factors: FactorService, clock: FrozenClock, user: Person):
    _, first = await enrolled(factors, clock, user)

    check, second = await factors.recovery.swap_user_code(user.user_id, first)

    assert check is FactorCheck.ACCEPTED and second is not None and second != first
    assert await factors.recovery.swap_user_code(user.user_id, first) == (FactorCheck.INVALID, None)
    check, third = await factors.recovery.swap_user_code(user.user_id, second)
    assert check is FactorCheck.ACCEPTED and third not in (None, first, second)


async def test_the_code_of_a_pending_enrollment_does_not_work(factors: FactorService, clock: FrozenClock, user: Person):
    enrollment = await factors.enrollment.associate(user.user_id, issuer="Unit")
    assert enrollment.recovery_code is not None

    assert await factors.recovery.swap_user_code(user.user_id, enrollment.recovery_code) == (FactorCheck.INVALID, None)
    await factors.otp.confirm_enrollment(user.user_id, code(enrollment.secret, clock))
    check, _ = await factors.recovery.swap_user_code(user.user_id, enrollment.recovery_code)
    assert check is FactorCheck.ACCEPTED


async def test_a_code_that_loses_the_mfa_token_stays_valid(
    factors: FactorService, clock: FrozenClock, user: Person, session
):
    """The replacement of a code whose mfa_token went to another request would never be shown: keep the old one."""
    _, recovery_code = await enrolled(factors, clock, user)
    burned = (await mfa_transaction(factors, user)).id
    assert await queries.burn_transaction(session, burned, as_datetime(clock))
    await session.commit()

    assert await factors.recovery.swap(user.pk, recovery_code, burn_transaction=burned) == (
        FactorCheck.TOKEN_USED,
        None,
    )
    check, _ = await factors.recovery.swap(
        user.pk, recovery_code, burn_transaction=(await mfa_transaction(factors, user)).id
    )
    assert check is FactorCheck.ACCEPTED


async def test_regenerating_needs_an_active_factor_and_retires_the_old_code(
    factors: FactorService, clock: FrozenClock, user: Person
):
    with pytest.raises(NotEnrolled):
        await factors.recovery.regenerate(user.user_id)
    _, old = await enrolled(factors, clock, user)

    new = await factors.recovery.regenerate(user.user_id)

    assert await factors.recovery.swap_user_code(user.user_id, old) == (FactorCheck.INVALID, None)
    assert (await factors.recovery.swap_user_code(user.user_id, new))[0] is FactorCheck.ACCEPTED


async def test_a_first_security_key_gets_a_pending_code_and_a_later_enrollment_none(
    factors: FactorService, clock: FrozenClock, user: Person
):
    assert await factors.recovery.pending(user.user_id) is not None
    await enrolled(factors, clock, user)
    assert await factors.recovery.pending(user.user_id) is None
