"""`UserService` on a real SQLite database with a cheap Argon2 hasher: what it refuses, and what an update merges."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from identity.accounts.errors import InvalidUserData, UnknownConnection, UnknownUser, UserExists
from identity.accounts.passwords import PasswordHasher
from identity.accounts.users import DirectoryAuthenticator, UserService
from identity.settings import Argon2Params
from identity.store.models import ConnectionRow

PASSWORD = "a long enough passphrase 4 unit tests"
OTHER_PASSWORD = "another long passphrase 4 unit tests"


@pytest.fixture(scope="module")
def hasher() -> Iterator[PasswordHasher]:
    hasher = PasswordHasher(Argon2Params(time_cost=1, memory_kib=64, parallelism=1), workers=1)
    yield hasher
    hasher.close()


@pytest.fixture
async def session(db_sessions: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    async with db_sessions() as session:
        session.add(ConnectionRow(name="customers"))
        await session.commit()
        yield session


@pytest.fixture
def users(session: AsyncSession, hasher: PasswordHasher) -> UserService:
    return UserService(session, hasher)


@pytest.mark.parametrize(
    ("identifiers", "message"),
    [
        ({}, "needs an email or a username"),
        ({"email": "   "}, "needs an email or a username"),
        ({"email": "not-an-address"}, "email address is not valid"),
        ({"username": "has@sign"}, "a username has 1 to 128"),
        ({"email": "a\u200b@unit.test"}, "invisible or control character [(]U[+]200B[)]"),
        ({"email": "a@unit.test", "user_id": "auth0|prefixed"}, "a user_id has 1 to 50"),
    ],
)
async def test_a_user_with_bad_identifiers_is_not_created(
    users: UserService, identifiers: dict[str, str], message: str
) -> None:
    with pytest.raises(InvalidUserData, match=message):
        await users.create("customers", password=PASSWORD, **identifiers)


async def test_creation_normalises_and_keeps_an_imported_id(users: UserService) -> None:
    row, connection = await users.create("customers", password=PASSWORD, email=" Alice@Unit.test ", user_id="legacy-42")
    assert (row.user_id, connection, row.email) == ("auth0|legacy-42", "customers", "Alice@Unit.test")
    assert (row.name, row.nickname) == ("Alice@Unit.test", "Alice")
    assert row.password_hash != PASSWORD
    with pytest.raises(UserExists, match="already exists in 'customers'"):
        await users.create("customers", password=PASSWORD, email="alice@unit.test")
    with pytest.raises(UnknownConnection, match="no connection named 'staff'"):
        await users.create("staff", password=PASSWORD, email="alice@unit.test")


async def test_upsert_creates_then_updates_profile_and_password(users: UserService, hasher: PasswordHasher) -> None:
    with pytest.raises(InvalidUserData, match="needs an email or a username"):
        await users.upsert("customers", password=PASSWORD, name="Nobody")
    row, _, created = await users.upsert("customers", password=PASSWORD, username="bob")
    assert created is True
    first_hash = row.password_hash

    same, _, created = await users.upsert("customers", password=PASSWORD, username="bob", name="Bob")
    assert (created, same.user_id, same.name, same.password_hash) == (False, row.user_id, "Bob", first_hash)
    changed, _, _ = await users.upsert("customers", password=OTHER_PASSWORD, username="bob", blocked=True)
    assert changed.blocked is True and changed.password_hash != first_hash
    assert (await hasher.verify(changed.password_hash, OTHER_PASSWORD)).ok


async def test_an_update_merges_metadata_key_by_key(users: UserService) -> None:
    row, _ = await users.create(
        "customers", password=PASSWORD, email="carol@unit.test", app_metadata={"plan": "gold", "seats": 3}
    )
    updated, _ = await users.update(
        row.user_id,
        {"app_metadata": {"seats": None, "region": "eu"}, "user_metadata": {"theme": "dark"}, "nickname": "cc"},
    )
    assert updated.app_metadata == {"plan": "gold", "region": "eu"}
    assert updated.user_metadata == {"theme": "dark"}
    assert updated.nickname == "cc"


async def test_an_update_to_a_taken_email_changes_nothing(users: UserService) -> None:
    await users.create("customers", password=PASSWORD, email="dave@unit.test")
    erin = (await users.create("customers", password=PASSWORD, email="erin@unit.test"))[0].user_id
    with pytest.raises(UserExists):
        await users.update(erin, {"email": "DAVE@unit.test", "name": "Erin"})
    row, _ = await users.get(erin)
    assert (row.email, row.name) == ("erin@unit.test", "erin@unit.test")

    renamed, _ = await users.update(erin, {"email": "erin.new@unit.test", "username": "erin"})
    assert (renamed.email, renamed.email_key, renamed.username) == ("erin.new@unit.test", "erin.new@unit.test", "erin")
    with pytest.raises(InvalidUserData, match="email address is not valid"):
        await users.update(erin, {"email": "nope"})


async def test_an_unknown_user_is_neither_found_nor_deleted(users: UserService) -> None:
    with pytest.raises(UnknownUser, match=re.escape("no user 'auth0|nobody'")):
        await users.get("auth0|nobody")
    with pytest.raises(UnknownUser):
        await users.delete("auth0|nobody")
    row, _ = await users.create("customers", password=PASSWORD, email="frank@unit.test")
    await users.delete(row.user_id)
    with pytest.raises(UnknownUser):
        await users.get(row.user_id)


async def test_the_authenticator_reads_a_user_as_stored_now(
    users: UserService, session: AsyncSession, hasher: PasswordHasher
) -> None:
    gina = (await users.create("customers", password=PASSWORD, email="gina@unit.test", name="Gina"))[0].user_id
    authenticator = DirectoryAuthenticator(session, hasher)
    found = await authenticator.by_id(gina)
    assert found is not None and (found.user_id, found.connection, found.name) == (gina, "customers", "Gina")
    await users.update(gina, {"blocked": True})
    blocked = await authenticator.by_id(gina)
    assert blocked is not None and blocked.blocked is True
    assert await authenticator.by_id("auth0|nobody") is None
