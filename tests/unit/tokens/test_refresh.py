"""`SqlRefreshTokens`, the refresh-token store, on a real migrated database (SQLite, or PostgreSQL with
IDENTITY_TEST_DATABASE_URL) and a frozen clock: families, rotation, leeway, expiry, revocation, the family cap.

Each step runs in its own session and commits, as a request's unit of work does.
"""

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, TypeVar

import pytest
from sqlalchemy import func, select
from sqlalchemy import update as sa_update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from identity.clock import FrozenClock
from identity.crypto import SecretBox, sha256_hex
from identity.oauth2.interfaces import GrantResult, RefreshTokenPolicy, User
from identity.settings import EncryptionKeys, Settings
from identity.store.db import create_engine, create_sessionmaker
from identity.store.models import ConnectionRow, RefreshTokenRow, UserRow
from identity.tokens.refresh import MAX_ACTIVE_FAMILIES, SqlRefreshTokens, revoke_user_families
from tests.unit.oauth2.fakes import API, CUSTOMERS, make_client

T = TypeVar("T")
NOW = 1_800_000_000.0
POLICY = RefreshTokenPolicy(token_lifetime=3600, idle_token_lifetime=600, leeway=30)
CLIENT = replace(make_client(grant_types=("password", "refresh_token")), refresh_token=POLICY)
ALICE = User(user_id="auth0|alice", connection="customers")
BOB = User(user_id="auth0|bob", connection="customers")
RESULT = GrantResult(
    grant_type="password",
    client=CLIENT,
    user=ALICE,
    connection=CUSTOMERS,
    api=API,
    audience=API.identifier,
    scopes=("openid", "offline_access", "read:a"),
    amr=("pwd", "mfa", "otp"),
    access_claims={"https://example.test/tier": "gold"},
    id_claims={"https://example.test/nick": "al"},
)


class Db:
    """Runs each step in its own session with the store, and commits it."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], box: SecretBox, clock: FrozenClock) -> None:
        self.sessions = sessions
        self.box = box
        self.clock = clock

    async def __call__(self, step: Callable[[SqlRefreshTokens], Awaitable[T]]) -> T:
        async with self.sessions() as session:
            value = await step(SqlRefreshTokens(session, self.box, self.clock))
            await session.commit()
            return value

    async def issue(self, result: GrantResult = RESULT) -> str:
        return await self(lambda store: store.issue(result))

    async def find(self, token: str) -> Any:
        return await self(lambda store: store.find(token))

    async def rotate(self, token: str, policy: RefreshTokenPolicy = POLICY) -> str | None:
        async def step(store: SqlRefreshTokens) -> str | None:
            stored = await store.find(token)
            assert stored is not None
            return await store.rotate(stored, policy)

        return await self(step)

    async def leeway(self, token: str, policy: RefreshTokenPolicy = POLICY) -> str | None:
        async def step(store: SqlRefreshTokens) -> str | None:
            stored = await store.find(token)
            assert stored is not None
            return await store.successor_within_leeway(stored, policy)

        return await self(step)

    async def rows(self, *where: Any) -> list[RefreshTokenRow]:
        async with self.sessions() as session:
            query = select(RefreshTokenRow).where(*where).order_by(RefreshTokenRow.id)
            return list((await session.execute(query)).scalars())


@pytest.fixture
async def db(settings: Settings) -> AsyncIterator[Db]:
    """A fresh store over the emptied test database, with Alice and Bob in the ``customers`` directory."""
    engine = create_engine(settings.database_url)
    sessions = create_sessionmaker(engine)
    async with sessions() as session:
        connection = ConnectionRow(name=CUSTOMERS.name)
        session.add(connection)
        await session.flush()
        assert connection.id is not None
        for user in (ALICE, BOB):
            session.add(UserRow(user_id=user.user_id, connection_id=connection.id, password_hash="unused"))
        await session.commit()
    try:
        yield Db(sessions, SecretBox(settings.encryption_keys), FrozenClock(NOW))
    finally:
        await engine.dispose()


def at(seconds: float) -> float:
    return NOW + seconds


# -- issue and find ---------------------------------------------------------------------------------------------------


async def test_issue_starts_a_family_whose_token_is_stored_only_as_a_hash(db: Db):
    token = await db.issue()
    assert token.startswith("v1.")
    assert len(token) >= 3 + 43, "256 random bits, base64url"
    (row,) = await db.rows()
    assert row.token_hash == sha256_hex(token)
    assert token not in {row.token_hash, row.successor, row.family_id}

    stored = await db.find(token)
    assert stored.family_id == row.family_id
    assert (stored.client_id, stored.user_id, stored.connection) == (CLIENT.client_id, ALICE.user_id, "customers")
    assert (stored.audience, stored.scopes, stored.amr) == (API.identifier, RESULT.scopes, ("pwd", "mfa", "otp"))
    assert (stored.access_claims, stored.id_claims) == (RESULT.access_claims, RESULT.id_claims)
    assert (stored.expires_at, stored.idle_expires_at) == (at(3600), at(600))
    assert (stored.used_at, stored.revoked, stored.newest) == (None, False, True)


async def test_each_issue_is_a_new_family(db: Db):
    first, second = await db.issue(), await db.issue()
    assert first != second
    assert (await db.find(first)).family_id != (await db.find(second)).family_id


@pytest.mark.parametrize(
    "token", ["v1.never-issued", "no-prefix-at-all", "v1." + "a" * 200, ""], ids=["unknown", "prefix", "long", "empty"]
)
async def test_find_answers_none_for_tokens_it_never_issued(db: Db, token: str):
    await db.issue()
    assert await db.find(token) is None


async def test_find_answers_none_for_an_issued_token_without_its_prefix(db: Db):
    token = await db.issue()
    assert await db.find(token.removeprefix("v1.")) is None


async def test_issue_for_a_user_that_does_not_exist_fails(db: Db):
    with pytest.raises(LookupError):
        await db.issue(replace(RESULT, user=User(user_id="auth0|ghost", connection="customers")))


# -- rotation ---------------------------------------------------------------------------------------------------------


async def test_rotate_retires_the_token_and_inserts_a_successor_of_the_same_family(db: Db):
    token = await db.issue()
    db.clock.advance(100)
    successor = await db.rotate(token)
    assert successor is not None and successor.startswith("v1.") and successor != token

    old, new = await db.find(token), await db.find(successor)
    assert (old.newest, old.used_at, old.revoked) == (False, at(100), False)
    assert (new.newest, new.used_at, new.revoked) == (True, None, False)
    assert new.family_id == old.family_id
    assert (new.scopes, new.amr, new.access_claims, new.id_claims) == (
        old.scopes,
        old.amr,
        old.access_claims,
        old.id_claims,
    )
    assert new.expires_at == at(3600), "rotation does not extend the family's absolute lifetime"
    assert new.idle_expires_at == at(100 + 600), "rotation renews the idle lifetime"


async def test_the_family_keeps_its_authentication_time_through_rotations(db: Db):
    token = await db.issue()
    db.clock.advance(100)
    successor = await db.rotate(token)
    assert successor is not None
    db.clock.advance(100)
    third = await db.rotate(successor)
    assert third is not None
    assert [(await db.find(each)).auth_time for each in (token, successor, third)] == [at(0)] * 3


async def test_a_grant_that_knows_when_the_user_authenticated_starts_the_family_then(db: Db):
    code = replace(RESULT, grant_type="authorization_code", auth_time=NOW - 40)
    assert (await db.find(await db.issue(code))).auth_time == at(-40)
    refreshed = replace(RESULT, grant_type="refresh_token", authenticated_at=NOW - 90, auth_time=None)
    assert (await db.find(await db.issue(refreshed))).auth_time == at(-90)


async def test_a_family_older_than_the_auth_time_column_falls_back_to_its_start(db: Db):
    token = await db.issue()
    db.clock.advance(100)
    successor = await db.rotate(token)
    assert successor is not None
    async with db.sessions() as session:  # what the migration leaves in rows written before it
        await session.execute(sa_update(RefreshTokenRow).values(auth_time=None))
        await session.commit()
    db.clock.advance(100)
    assert (await db.find(successor)).auth_time == at(0), "the family's first token's created_at"
    third = await db.rotate(successor)
    assert third is not None
    async with db.sessions() as session:
        row = await session.scalar(select(RefreshTokenRow).where(RefreshTokenRow.token_hash == sha256_hex(third)))
    written = row.auth_time if row is not None else None
    assert written is not None and written.timestamp() == at(0), "the fallback is written down at the next rotation"


async def test_a_token_rotates_once_and_the_second_rotation_loses(db: Db):
    token = await db.issue()

    async def rotate_twice(store: SqlRefreshTokens) -> tuple[str | None, str | None]:
        stored = await store.find(token)
        assert stored is not None
        return await store.rotate(stored, POLICY), await store.rotate(stored, POLICY)

    first, second = await db(rotate_twice)
    assert first is not None and second is None
    assert await db.rotate(token) is None, "a later request, with a fresh look at the token, loses too"
    assert len(await db.rows()) == 2, "one successor, not two"


async def test_a_rotated_family_keeps_one_newest_token(db: Db):
    token = await db.issue()
    chain = [token]
    for _ in range(3):
        db.clock.advance(10)
        successor = await db.rotate(chain[-1])
        assert successor is not None
        chain.append(successor)
    assert [(await db.find(t)).newest for t in chain] == [False, False, False, True]


# -- leeway -----------------------------------------------------------------------------------------------------------


async def test_the_previous_token_gets_the_same_successor_within_leeway(db: Db):
    token = await db.issue()
    successor = await db.rotate(token)
    db.clock.advance(30)
    assert await db.leeway(token) == successor
    db.clock.advance(1)
    assert await db.leeway(token) is None


async def test_no_leeway_means_no_second_successor(db: Db):
    token = await db.issue()
    await db.rotate(token)
    assert await db.leeway(token, replace(POLICY, leeway=0)) is None


async def test_leeway_is_only_for_the_immediately_previous_token(db: Db):
    first = await db.issue()
    second = await db.rotate(first)
    assert second is not None
    third = await db.rotate(second)
    assert await db.leeway(first) is None, "its successor was already used"
    assert await db.leeway(second) == third


async def test_the_newest_token_has_no_successor_to_hand_out(db: Db):
    token = await db.issue()
    assert await db.leeway(token) is None


async def test_no_leeway_successor_after_the_family_is_revoked(db: Db):
    token = await db.issue()
    await db.rotate(token)
    family = (await db.find(token)).family_id
    await db(lambda store: store.revoke_family(family, "reuse"))
    assert await db.leeway(token) is None


async def test_a_successor_sealed_under_an_unknown_key_is_not_handed_out(db: Db):
    """After the encryption keys were replaced without the old one, the retry gets no successor (and no error)."""
    token = await db.issue()
    await db.rotate(token)
    rekeyed = Db(db.sessions, SecretBox(EncryptionKeys.generate("other")), db.clock)
    assert await rekeyed.leeway(token) is None
    assert await db.leeway(token) is not None


# -- expiry -----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("policy", "expires", "idle"),
    [
        (POLICY, at(3600), at(600)),
        (replace(POLICY, idle_token_lifetime=7200), at(3600), at(3600)),  # idle never outlives the family
        (replace(POLICY, infinite_token_lifetime=True), None, at(600)),
        (replace(POLICY, infinite_idle_token_lifetime=True), at(3600), None),
        (replace(POLICY, infinite_token_lifetime=True, infinite_idle_token_lifetime=True), None, None),
    ],
    ids=["both", "idle-capped", "no-absolute", "no-idle", "neither"],
)
async def test_issue_sets_absolute_and_idle_expiry_from_the_client_policy(db: Db, policy, expires, idle):
    token = await db.issue(replace(RESULT, client=replace(CLIENT, refresh_token=policy)))
    stored = await db.find(token)
    assert (stored.expires_at, stored.idle_expires_at) == (expires, idle)


async def test_the_idle_expiry_renewed_by_rotation_is_capped_by_the_absolute_expiry(db: Db):
    token = await db.issue()
    db.clock.advance(3300)
    successor = await db.rotate(token)
    assert successor is not None
    stored = await db.find(successor)
    assert (stored.expires_at, stored.idle_expires_at) == (at(3600), at(3600))


async def test_touch_renews_the_idle_expiry_of_a_non_rotating_token(db: Db):
    policy = replace(POLICY, rotation_type="non-rotating")
    token = await db.issue(replace(RESULT, client=replace(CLIENT, refresh_token=policy)))
    db.clock.advance(500)

    async def touch(store: SqlRefreshTokens) -> None:
        stored = await store.find(token)
        assert stored is not None
        await store.touch(stored, policy)

    await db(touch)
    stored = await db.find(token)
    assert (stored.newest, stored.expires_at, stored.idle_expires_at) == (True, at(3600), at(500 + 600))
    db.clock.advance(3000)
    await db(touch)
    assert (await db.find(token)).idle_expires_at == at(3600), "capped by the absolute expiry"


# -- revocation -------------------------------------------------------------------------------------------------------


async def test_revoke_family_revokes_every_token_of_that_family_only(db: Db):
    token = await db.issue()
    successor = await db.rotate(token)
    assert successor is not None
    other = await db.issue()
    family = (await db.find(token)).family_id
    db.clock.advance(5)
    await db(lambda store: store.revoke_family(family, "reuse"))

    assert [(await db.find(t)).revoked for t in (token, successor, other)] == [True, True, False]
    revoked = await db.rows(RefreshTokenRow.family_id == family)
    assert {(row.revoked_reason, row.successor) for row in revoked} == {("reuse", None)}, "the sealed successor is gone"
    assert {row.revoked_at for row in revoked} == {datetime.fromtimestamp(at(5), UTC)}


async def test_a_revoked_family_cannot_rotate(db: Db):
    token = await db.issue()
    family = (await db.find(token)).family_id
    await db(lambda store: store.revoke_family(family, "logout"))
    assert await db.rotate(token) is None
    assert len(await db.rows()) == 1


async def test_revoke_user_families_revokes_only_that_users_tokens(db: Db):
    alice = [await db.issue(), await db.issue()]
    bob = await db.issue(replace(RESULT, user=BOB))
    async with db.sessions() as session:
        user_pk = (await session.execute(select(UserRow.id).where(UserRow.user_id == ALICE.user_id))).scalar_one()
        count = await revoke_user_families(session, user_pk, "password-change", datetime.fromtimestamp(NOW, UTC))
        await session.commit()
    assert count == 2
    assert [(await db.find(t)).revoked for t in (*alice, bob)] == [True, True, False]


# -- at most MAX_ACTIVE_FAMILIES per user and client ------------------------------------------------------------------


async def issue_many(db: Db, count: int) -> list[str]:
    """``count`` families for Alice, one a second (in one transaction: the cap is enforced at every issue)."""

    async def step(store: SqlRefreshTokens) -> list[str]:
        tokens = []
        for _ in range(count):
            db.clock.advance(1)
            tokens.append(await store.issue(RESULT))
        return tokens

    return await db(step)


async def test_the_oldest_families_beyond_the_cap_are_revoked(db: Db):
    assert MAX_ACTIVE_FAMILIES == 200
    other_client = await db.issue(replace(RESULT, client=replace(CLIENT, client_id="other-app")))
    bob = await db.issue(replace(RESULT, user=BOB))
    tokens = await issue_many(db, MAX_ACTIVE_FAMILIES + 1)

    oldest, second, newest = (await db.find(tokens[0])), (await db.find(tokens[1])), (await db.find(tokens[-1]))
    assert (oldest.revoked, second.revoked, newest.revoked) == (True, False, False)
    (limited,) = await db.rows(RefreshTokenRow.revoked_reason == "limit")
    assert limited.token_hash == sha256_hex(tokens[0])
    assert not (await db.find(other_client)).revoked, "another client's families do not count"
    assert not (await db.find(bob)).revoked, "another user's families do not count"
    async with db.sessions() as session:
        live = select(func.count()).where(RefreshTokenRow.revoked_at.is_(None))
        assert (await session.execute(live)).scalar_one() == MAX_ACTIVE_FAMILIES + 2


async def test_a_rotated_family_counts_once_towards_the_cap(db: Db):
    first = await db.issue()
    for _ in range(5):
        db.clock.advance(1)
        first = await db.rotate(first) or ""
    await issue_many(db, MAX_ACTIVE_FAMILIES - 1)
    assert not (await db.find(first)).revoked, "200 families, however many tokens"
