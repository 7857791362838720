"""Removing a factor on the user's own word: which proof counts, and what happens after."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from identity.accounts.factors import FactorService, FactorType, Proof, RemovalOutcome, remove_with_proof
from identity.clock import FrozenClock
from identity.oauth2.interfaces import FactorCheck
from tests.unit.accounts.factors.support import Person, add_security_key, attempts_left, code, enrolled


async def _app_id(factors: FactorService, user: Person) -> str:
    return next(f.id for f in await factors.authenticators.listed(user.user_id) if f.type is FactorType.TOTP)


async def test_a_fresh_code_removes_the_last_app_and_its_recovery_code(
    factors: FactorService, clock: FrozenClock, user: Person
):
    secret, _ = await enrolled(factors, clock, user)

    removal = await remove_with_proof(
        factors, user.user_id, await _app_id(factors, user), kind=FactorType.TOTP, otp=code(secret, clock)
    )

    assert (removal.outcome, removal.proof, removal.new_recovery_code) == (RemovalOutcome.REMOVED, Proof.OTP, None)
    assert await factors.authenticators.listed(user.user_id) == []


async def test_a_used_code_is_no_proof(factors: FactorService, clock: FrozenClock, user: Person):
    secret, _ = await enrolled(factors, clock, user)
    now = code(secret, clock)
    assert await factors.otp.spend_user_code(user.user_id, now) is FactorCheck.ACCEPTED

    removal = await remove_with_proof(
        factors, user.user_id, await _app_id(factors, user), kind=FactorType.TOTP, otp=now
    )

    assert (removal.outcome, removal.proof, removal.check) == (RemovalOutcome.REFUSED, Proof.OTP, FactorCheck.INVALID)
    assert await factors.authenticators.has_active(user.user_id)


async def test_the_recovery_code_proves_and_its_replacement_is_shown_while_a_factor_remains(
    factors: FactorService, clock: FrozenClock, session, user: Person
):
    _, recovery_code = await enrolled(factors, clock, user)
    await add_security_key(session, user, clock)

    removal = await remove_with_proof(
        factors, user.user_id, await _app_id(factors, user), kind=FactorType.TOTP, recovery_code=recovery_code
    )

    assert (removal.outcome, removal.proof) == (RemovalOutcome.REMOVED, Proof.RECOVERY_CODE)
    assert removal.new_recovery_code is not None
    assert (await factors.recovery.swap_user_code(user.user_id, removal.new_recovery_code))[0] is FactorCheck.ACCEPTED


async def test_with_the_last_factor_the_replacement_code_is_not_shown(
    factors: FactorService, clock: FrozenClock, user: Person
):
    _, recovery_code = await enrolled(factors, clock, user)

    removal = await remove_with_proof(
        factors, user.user_id, await _app_id(factors, user), kind=FactorType.TOTP, recovery_code=recovery_code
    )

    assert (removal.outcome, removal.new_recovery_code) == (RemovalOutcome.REMOVED, None)
    assert await factors.authenticators.listed(user.user_id) == []


async def test_an_unknown_factor_is_not_found_before_any_proof_is_spent(
    factors: FactorService, clock: FrozenClock, session, user: Person
):
    secret, recovery_code = await enrolled(factors, clock, user)
    key = await add_security_key(session, user, clock)
    before = await attempts_left(session, user)

    for authenticator_id, kind in [("totp|dev_nothing", FactorType.TOTP), (key, FactorType.TOTP)]:
        removal = await remove_with_proof(
            factors, user.user_id, authenticator_id, kind=kind, otp=code(secret, clock), recovery_code=recovery_code
        )
        assert removal.outcome is RemovalOutcome.NOT_FOUND

    assert await attempts_left(session, user) == before
    assert (await factors.recovery.swap_user_code(user.user_id, recovery_code))[0] is FactorCheck.ACCEPTED


async def test_without_a_usable_proof_nothing_is_checked(
    factors: FactorService, clock: FrozenClock, session, user: Person
):
    await enrolled(factors, clock, user)
    app = await _app_id(factors, user)
    key = await add_security_key(session, user, clock)

    async def touched() -> FactorCheck:
        raise AssertionError("the key is not asked when a code was typed")

    no_code = await remove_with_proof(factors, user.user_id, app, kind=FactorType.TOTP)
    malformed = await remove_with_proof(
        factors, user.user_id, key, kind=FactorType.WEBAUTHN, otp="12", security_key=touched
    )

    assert (no_code.outcome, no_code.proof) == (RemovalOutcome.NO_PROOF, None)
    assert (malformed.outcome, malformed.proof) == (RemovalOutcome.NO_PROOF, Proof.OTP)


async def test_a_security_key_is_asked_only_without_a_code(
    factors: FactorService, clock: FrozenClock, session, user: Person
):
    await enrolled(factors, clock, user)
    key = await add_security_key(session, user, clock)
    asked: list[str] = []

    def assertion(check: FactorCheck) -> Callable[[], Awaitable[FactorCheck]]:
        async def answer() -> FactorCheck:
            asked.append(check.value)
            return check

        return answer

    refused = await remove_with_proof(
        factors, user.user_id, key, kind=FactorType.WEBAUTHN, security_key=assertion(FactorCheck.RATE_LIMITED)
    )
    removed = await remove_with_proof(
        factors, user.user_id, key, kind=FactorType.WEBAUTHN, security_key=assertion(FactorCheck.ACCEPTED)
    )

    assert (refused.outcome, refused.proof, refused.check) == (
        RemovalOutcome.REFUSED,
        Proof.SECURITY_KEY,
        FactorCheck.RATE_LIMITED,
    )
    assert (removed.outcome, removed.new_recovery_code) == (RemovalOutcome.REMOVED, None)
    assert asked == ["rate_limited", "accepted"]
    assert [f.type for f in await factors.authenticators.listed(user.user_id)] == [
        FactorType.RECOVERY_CODE,
        FactorType.TOTP,
    ]


async def test_an_emailed_code_is_asked_only_without_a_typed_code(
    factors: FactorService, clock: FrozenClock, session, user: Person
):
    secret, _ = await enrolled(factors, clock, user)
    key = await add_security_key(session, user, clock)
    asked: list[str] = []

    async def emailed() -> FactorCheck:
        asked.append("emailed")
        return FactorCheck.ACCEPTED

    async def touched() -> FactorCheck:
        raise AssertionError("the key is not asked when an emailed code was typed")

    by_app = await remove_with_proof(
        factors, user.user_id, key, kind=FactorType.WEBAUTHN, otp=code(secret, clock), emailed_code=emailed
    )
    assert (by_app.outcome, by_app.proof, asked) == (RemovalOutcome.REMOVED, Proof.OTP, [])
    key = await add_security_key(session, user, clock)
    by_email = await remove_with_proof(
        factors, user.user_id, key, kind=FactorType.WEBAUTHN, security_key=touched, emailed_code=emailed
    )
    assert (by_email.outcome, by_email.proof, asked) == (RemovalOutcome.REMOVED, Proof.EMAIL_CODE, ["emailed"])
