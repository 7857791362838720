"""Helpers of the factor-service tests (the fixtures are in conftest.py)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

import pyotp
from sqlalchemy.ext.asyncio import AsyncSession

from identity.accounts.factors import FactorService
from identity.clock import FrozenClock
from identity.oauth2.interfaces import FactorCheck, GrantResult, MfaTransaction, User
from identity.store import mfa as queries
from identity.store.models import AuthenticatorRow
from tests.unit.oauth2.fakes import CUSTOMERS, make_client

START = 1_800_000_000.0
"""The frozen clock's first reading: the start of a TOTP step (a multiple of 30 s)."""


@dataclass(frozen=True)
class Person:
    """A user of the test, by both ids."""

    user_id: str
    pk: int


def code(secret: str, clock: FrozenClock, *, steps: int = 0) -> str:
    """The app's code at the clock's time, ``steps`` time steps later."""
    return pyotp.TOTP(secret).at(clock.now() + 30 * steps)


async def enrolled(factors: FactorService, clock: FrozenClock, person: Person) -> tuple[str, str]:
    """An active app (its secret) and the recovery code of its enrollment; the clock moves to the next step."""
    enrollment = await factors.enrollment.associate(person.user_id, issuer="Unit")
    assert enrollment.recovery_code is not None
    assert await factors.otp.confirm_enrollment(person.user_id, code(enrollment.secret, clock)) is FactorCheck.ACCEPTED
    clock.advance(30)
    return enrollment.secret, enrollment.recovery_code


async def add_security_key(session: AsyncSession, person: Person, clock: FrozenClock) -> str:
    """An active security-key authenticator (no credential behind it: enough to be listed and removed)."""
    public_id = f"webauthn|dev_{secrets.token_urlsafe(8)}"
    at = datetime.fromtimestamp(clock.now(), UTC)
    session.add(
        AuthenticatorRow(
            public_id=public_id, user_pk=person.pk, kind="webauthn", secret="", active=True, created_at=at,
            confirmed_at=at,
        )
    )  # fmt: skip
    await session.commit()
    return public_id


async def attempts_left(session: AsyncSession, person: Person) -> float:
    """The tokens in the user's bucket as stored (without the refill since its last change)."""
    row = await queries.attempts(session, person.pk)
    await session.commit()
    return row.tokens if row is not None else 10.0


def as_datetime(clock: FrozenClock) -> datetime:
    """The clock's time as the rows store it."""
    return datetime.fromtimestamp(clock.now(), UTC)


async def mfa_transaction(factors: FactorService, person: Person) -> MfaTransaction:
    """A stored MFA transaction of the user, as after a password step."""
    result = GrantResult(
        grant_type="password",
        client=make_client(),
        user=User(user_id=person.user_id, connection=CUSTOMERS.name),
        connection=CUSTOMERS,
        api=None,
        audience=None,
        scopes=(),
    )
    found = await factors.find(await factors.start(result))
    assert found is not None
    return found
