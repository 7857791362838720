"""`SqlSessionStore`, the enrollment pages' Litestar store, on a real SQLite database and a frozen clock."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlmodel import select

from identity.clock import FrozenClock
from identity.crypto import sha256_hex
from identity.store.models import WebSessionRow
from identity.web.enroll.sessions import SqlSessionStore


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock()


@pytest.fixture
def store(db_sessions: async_sessionmaker[AsyncSession], clock: FrozenClock) -> SqlSessionStore:
    return SqlSessionStore(db_sessions, clock)


async def stored_keys(db_sessions: async_sessionmaker[AsyncSession]) -> set[str]:
    async with db_sessions() as db:
        return set((await db.execute(select(WebSessionRow.key_hash))).scalars())


async def test_rows_are_keyed_by_the_hash_of_the_session_id(
    store: SqlSessionStore, db_sessions: async_sessionmaker[AsyncSession]
) -> None:
    await store.set("session-id", "data", expires_in=60)
    assert await stored_keys(db_sessions) == {sha256_hex("session-id")}
    assert await store.get("session-id") == b"data"


async def test_set_replaces_and_a_value_expires(store: SqlSessionStore, clock: FrozenClock) -> None:
    await store.set("k", b"old", expires_in=60)
    await store.set("k", b"new", expires_in=timedelta(seconds=30))
    assert await store.get("k") == b"new"
    assert await store.expires_in("k") == 30
    clock.advance(30)
    assert await store.get("k") is None
    assert await store.exists("k") is False
    assert await store.expires_in("k") is None


async def test_reading_with_renew_for_moves_the_expiry(store: SqlSessionStore, clock: FrozenClock) -> None:
    await store.set("k", b"v", expires_in=60)
    clock.advance(50)
    assert await store.get("k", renew_for=60) == b"v"
    assert await store.expires_in("k") == 60
    clock.advance(50)
    assert await store.exists("k") is True


async def test_a_value_without_expiry_stays_so_when_read_with_renew_for(store: SqlSessionStore) -> None:
    await store.set("forever", b"v")
    assert await store.get("forever", renew_for=60) == b"v"
    assert await store.expires_in("forever") is None
    assert await store.exists("forever") is True


async def test_discard_tells_whether_the_session_was_still_there(store: SqlSessionStore) -> None:
    await store.create("k", b"v", 60, "auth0|u")
    assert await store.discard("k") is True
    assert await store.discard("k") is False
    await store.delete("k")  # gone already: no error
    assert await store.get("k") is None


async def test_change_never_brings_back_an_ended_session(store: SqlSessionStore, clock: FrozenClock) -> None:
    await store.create("live", b"v1", 60, None)
    assert await store.change("live", b"v2", 60, "auth0|u") is True
    assert await store.get("live") == b"v2"

    assert await store.change("never-stored", b"v", 60, None) is False
    clock.advance(61)
    assert await store.change("live", b"v3", 60, None) is False
    assert await store.get("never-stored") is None
    assert await store.get("live") is None


async def test_purge_expired_and_delete_all(
    store: SqlSessionStore, clock: FrozenClock, db_sessions: async_sessionmaker[AsyncSession]
) -> None:
    await store.set("short", b"v", expires_in=10)
    await store.set("long", b"v", expires_in=100)
    await store.set("forever", b"v")
    clock.advance(10)
    await store.purge_expired()
    assert await stored_keys(db_sessions) == {sha256_hex("long"), sha256_hex("forever")}
    await store.delete_all()
    assert await stored_keys(db_sessions) == set()
