"""`SqlFirstParty` on a real SQLite database: auth_sessions and the authorization codes they yield, as stored."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from identity.clock import FrozenClock
from identity.oauth2.first_party import CODE_LIFETIME, SESSION_LIFETIME
from identity.oauth2.interfaces import GrantResult, User
from identity.store.first_party import SqlFirstParty, end_auth_sessions
from identity.store.models import ConnectionRow, UserRow
from identity.tenant_defaults import MFA_TOKEN_LIFETIME
from tests.unit.oauth2.fakes import API, CUSTOMERS, make_client

NOW = 1_800_000_000.0
ALICE = User(user_id="auth0|alice", connection=CUSTOMERS.name)


def result_for(
    user: User, *, scopes: tuple[str, ...] = ("openid",), claims: dict[str, str] | None = None
) -> GrantResult:
    return GrantResult(
        grant_type="password", client=make_client(), user=user, connection=CUSTOMERS, api=API,
        audience=API.identifier, scopes=scopes, access_claims=claims or {}, amr=("pwd",),
    )  # fmt: skip


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(NOW)


@pytest.fixture
async def session(db_sessions: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    async with db_sessions() as session:
        connection = ConnectionRow(name=CUSTOMERS.name)
        session.add(connection)
        await session.flush()
        session.add(
            UserRow(
                user_id=ALICE.user_id, connection_id=connection.id or 0, email="alice@unit.test",
                email_key="alice@unit.test", password_hash="not a hash: this user never signs in",
            )
        )  # fmt: skip
        await session.commit()
        yield session


async def test_a_session_is_found_by_its_value_only(session: AsyncSession, clock: FrozenClock) -> None:
    store = SqlFirstParty(session, clock)
    token, started = await store.start(result_for(ALICE), code_challenge="cc", pending=True, auth_time=NOW)
    await session.commit()

    found = await store.find(token)
    assert found == started
    assert (found.user_id, found.pending, found.code_challenge, found.amr) == (ALICE.user_id, True, "cc", ("pwd",))
    assert found.expires_at == NOW + MFA_TOKEN_LIFETIME  # the tenant's mfa_token_lifetime until the first code
    assert await store.find(token + "x") is None
    # A code's value is no session, nor a session's value a code.
    assert await store.find_code(token) is None


async def test_a_session_without_a_pending_step_and_its_restart(session: AsyncSession, clock: FrozenClock) -> None:
    store = SqlFirstParty(session, clock)
    token, started = await store.start(result_for(ALICE), code_challenge="cc", pending=False, auth_time=NOW)
    assert started.pending is False
    restarted = await store.restart(
        started, result_for(ALICE, scopes=("openid", "read:a"), claims={"k": "v"}), code_challenge="cc2"
    )
    await session.commit()
    assert (restarted.pending, restarted.code_challenge, restarted.scopes) == (True, "cc2", ("openid", "read:a"))
    assert await store.find(token) == restarted


async def test_a_code_copies_the_session_and_is_redeemed_once(session: AsyncSession, clock: FrozenClock) -> None:
    store = SqlFirstParty(session, clock)
    token, started = await store.start(
        result_for(ALICE, claims={"https://example.test/tier": "gold"}), code_challenge="cc", pending=True,
        auth_time=NOW,
    )  # fmt: skip
    clock.advance(10)
    code = await store.issue_code(started, amr=("pwd", "otp", "mfa"), acr="acr-mfa", auth_time=NOW + 10)
    await session.commit()

    issued = await store.find_code(code)
    assert issued is not None
    assert (issued.client_id, issued.user_id, issued.audience, issued.scopes) == (
        "app", ALICE.user_id, API.identifier, ("openid",),
    )  # fmt: skip
    assert (issued.amr, issued.acr, issued.auth_time, issued.code_challenge) == (
        ("pwd", "otp", "mfa"), "acr-mfa", NOW + 10, "cc",
    )  # fmt: skip
    assert issued.access_claims == {"https://example.test/tier": "gold"}
    assert (issued.expires_at, issued.consumed, issued.family_id) == (NOW + 10 + CODE_LIFETIME, False, None)
    # Once a code is issued, the session lives SESSION_LIFETIME from its start.
    live = await store.find(token)
    assert live is not None and live.expires_at == NOW + SESSION_LIFETIME

    assert await store.redeem(issued) is True
    assert await store.redeem(issued) is False
    await store.remember_family(issued, "family-1")
    await session.commit()
    redeemed = await store.find_code(code)
    assert redeemed is not None and (redeemed.consumed, redeemed.family_id) == (True, "family-1")
    assert await store.find_code("no such code") is None


async def test_a_vanished_user_starts_no_session_and_sessions_end_with_the_user(
    session: AsyncSession, clock: FrozenClock
) -> None:
    store = SqlFirstParty(session, clock)
    with pytest.raises(LookupError, match="vanished"):
        await store.start(result_for(User(user_id="auth0|gone", connection="customers")), code_challenge="cc",
                          pending=True, auth_time=NOW)  # fmt: skip
    first, _ = await store.start(result_for(ALICE), code_challenge="cc", pending=True, auth_time=NOW)
    second, started = await store.start(result_for(ALICE), code_challenge="cc", pending=False, auth_time=NOW)
    code = await store.issue_code(started, amr=("pwd",), acr=None, auth_time=NOW)
    await session.commit()
    user = await session.get(UserRow, 1)
    assert user is not None and user.user_id == ALICE.user_id

    assert await end_auth_sessions(session, user.id or 0) == 2
    await session.commit()
    assert await store.find(first) is None and await store.find(second) is None
    assert await store.find_code(code) is not None  # only the sessions end: an issued code is a row of its own
