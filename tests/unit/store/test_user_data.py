"""What the issuance path writes about a user, on a real SQLite database: the ``app_metadata`` rules set
(`merge_app_metadata`) and the custom claims kept for ``/userinfo`` (`SqlUserinfoClaims`)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlmodel import select

from identity.clock import SystemClock
from identity.store.models import ConnectionRow, UserinfoClaimsRow, UserRow
from identity.store.rules import merge_app_metadata
from identity.store.userinfo import SqlUserinfoClaims

ALICE = "auth0|alice"


@pytest.fixture
async def session(db_sessions: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    async with db_sessions() as session:
        connection = ConnectionRow(name="customers")
        session.add(connection)
        await session.flush()
        session.add(
            UserRow(
                user_id=ALICE, connection_id=connection.id or 0, email="alice@unit.test", email_key="alice@unit.test",
                password_hash="not a hash: this user never signs in", app_metadata={"plan": "gold", "seats": 1},
            )
        )  # fmt: skip
        await session.commit()
        yield session


async def app_metadata(session: AsyncSession) -> dict[str, object]:
    row = (await session.execute(select(UserRow).execution_options(populate_existing=True))).scalar_one()
    return dict(row.app_metadata)


async def test_rules_metadata_is_merged_key_by_key(session: AsyncSession) -> None:
    await merge_app_metadata(session, ALICE, {"seats": 2, "seen_mfa": True})
    await session.commit()
    assert await app_metadata(session) == {"plan": "gold", "seats": 2, "seen_mfa": True}
    await merge_app_metadata(session, "auth0|nobody", {"seats": 9})  # a user deleted meanwhile: nothing to do
    await session.commit()
    assert await app_metadata(session) == {"plan": "gold", "seats": 2, "seen_mfa": True}


async def test_userinfo_claims_are_kept_per_token_and_expired_ones_pruned(session: AsyncSession) -> None:
    claims = SqlUserinfoClaims(session, SystemClock())
    await claims.remember("jti-old", ALICE, {"https://example.test/tier": "silver"}, time.time() - 1)
    await claims.remember("jti-new", ALICE, {"https://example.test/tier": "gold"}, time.time() + 600)
    await claims.remember("jti-ghost", "auth0|nobody", {"k": "v"}, time.time() + 600)
    await session.commit()

    assert await claims.recall("jti-new") == {"https://example.test/tier": "gold"}
    assert await claims.recall("jti-old") == {}  # pruned when the next token of the user was remembered
    assert await claims.recall("jti-ghost") == {}
    kept = (await session.execute(select(UserinfoClaimsRow.jti))).scalars().all()
    assert kept == ["jti-new"]
