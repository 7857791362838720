"""The factor service on a real, migrated SQLite database (a temporary file) and a frozen clock.

Each test gets a user of its own, so tests share the database without emptying it.
"""

from __future__ import annotations

import itertools
import secrets
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from identity.accounts.factors import FactorService
from identity.clock import FrozenClock
from identity.crypto import SecretBox
from identity.settings import EncryptionKeys, normalize_database_url
from identity.store.db import create_engine, create_sessionmaker, migrate
from identity.store.models import ConnectionRow, UserRow
from tests.unit.accounts.factors.support import START, Person

_USERS = itertools.count(1)


@pytest.fixture(scope="package")
def database_file(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = normalize_database_url(f"sqlite:///{Path(tmp_path_factory.mktemp('factors')) / 'identity.db'}")
    migrate(url)
    return url


@pytest.fixture(scope="package")
def box() -> SecretBox:
    return SecretBox(EncryptionKeys.generate("unit"))


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(START)


@pytest.fixture
async def sessions(database_file: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(database_file)
    try:
        yield create_sessionmaker(engine)
    finally:
        await engine.dispose()


@pytest.fixture
async def session(sessions: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    async with sessions() as session:
        yield session


@pytest.fixture
async def user(session: AsyncSession) -> Person:
    """A new user in a directory of its own."""
    n = next(_USERS)
    connection = ConnectionRow(name=f"unit-{n}-{secrets.token_hex(4)}")
    session.add(connection)
    await session.flush()
    row = UserRow(
        user_id=f"auth0|unit-{n}-{secrets.token_hex(4)}",
        connection_id=connection.id or 0,
        email=f"user{n}@unit.test",
        email_key=f"user{n}@unit.test",
        password_hash="not a hash: these users never sign in",
    )
    session.add(row)
    await session.commit()
    return Person(row.user_id, row.id or 0)


@pytest.fixture
def factors(session: AsyncSession, box: SecretBox, clock: FrozenClock) -> FactorService:
    return FactorService(session, box, clock)
