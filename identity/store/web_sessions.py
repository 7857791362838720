"""Queries for the sessions of the enrollment pages (rows keyed by the SHA-256 of the session id)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import delete, or_, update
from sqlalchemy import insert as sa_insert
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from identity.store.models import WebSessionRow

__all__ = [
    "find",
    "insert",
    "purge_expired",
    "put",
    "remove",
    "remove_all",
    "remove_for_user",
    "set_expiry",
    "update_live",
]


def _live(now: datetime) -> Any:
    return or_(col(WebSessionRow.expires_at).is_(None), col(WebSessionRow.expires_at) > now)


async def find(session: AsyncSession, key_hash: str, now: datetime) -> WebSessionRow | None:
    """The session stored under ``key_hash`` unless it has expired."""
    query = (
        select(WebSessionRow)
        .where(col(WebSessionRow.key_hash) == key_hash, _live(now))
        .execution_options(populate_existing=True)
    )
    return (await session.execute(query)).scalar()


async def put(session: AsyncSession, key_hash: str, data: bytes, expires_at: datetime | None) -> None:
    """Insert or replace the session stored under ``key_hash`` (one statement, safe under concurrency)."""
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    statement = insert(WebSessionRow).values(key_hash=key_hash, data=data, expires_at=expires_at)
    await session.execute(
        statement.on_conflict_do_update(
            index_elements=[col(WebSessionRow.key_hash)],
            set_={"data": statement.excluded.data, "expires_at": statement.excluded.expires_at},
        )
    )


async def insert(
    session: AsyncSession, key_hash: str, data: bytes, expires_at: datetime | None, user_id: str | None
) -> None:
    """Store a new session (a new id: sign-in or rotation)."""
    await session.execute(
        sa_insert(WebSessionRow).values(key_hash=key_hash, data=data, expires_at=expires_at, user_id=user_id)
    )


async def update_live(
    session: AsyncSession, key_hash: str, data: bytes, expires_at: datetime | None, user_id: str | None, now: datetime
) -> bool:
    """Change a session that still exists and has not expired; ``False`` when it is gone (never re-created)."""
    result = await session.execute(
        update(WebSessionRow)
        .where(col(WebSessionRow.key_hash) == key_hash, _live(now))
        .values(data=data, expires_at=expires_at, user_id=user_id)
    )
    return bool(getattr(result, "rowcount", 0))


async def remove_for_user(session: AsyncSession, user_id: str) -> int:
    """End every session of one user (password change, MFA reset, revoked sessions); how many there were."""
    result = await session.execute(delete(WebSessionRow).where(col(WebSessionRow.user_id) == user_id))
    return int(getattr(result, "rowcount", 0) or 0)


async def set_expiry(session: AsyncSession, key_hash: str, expires_at: datetime) -> None:
    """Move the expiry of a session that has one."""
    await session.execute(
        update(WebSessionRow)
        .where(col(WebSessionRow.key_hash) == key_hash, col(WebSessionRow.expires_at).is_not(None))
        .values(expires_at=expires_at)
    )


async def remove(session: AsyncSession, key_hash: str) -> bool:
    """Forget one session; ``False`` when it was already gone."""
    result = await session.execute(delete(WebSessionRow).where(col(WebSessionRow.key_hash) == key_hash))
    return bool(getattr(result, "rowcount", 0))


async def remove_all(session: AsyncSession) -> None:
    """Forget every session."""
    await session.execute(delete(WebSessionRow))


async def purge_expired(session: AsyncSession, now: datetime) -> None:
    """Delete the rows of expired sessions (they are already invisible to `find`)."""
    await session.execute(delete(WebSessionRow).where(col(WebSessionRow.expires_at) <= now))
