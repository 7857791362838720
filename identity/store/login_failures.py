"""Queries for brute-force protection: consecutive failed logins per (connection, identifier, IP)."""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any, cast

from sqlalchemy import CursorResult, delete, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from identity.store.models import LoginFailureRow

__all__ = ["failure_key", "record_failure", "reset", "state", "unblock_identifier"]


def failure_key(connection_id: int, login_key: str, ip: str | None) -> str:
    """The row key: a hash, so neither the identifier nor the IP is stored in clear."""
    return hashlib.sha256(f"{connection_id}\x00{login_key}\x00{ip or '-'}".encode()).hexdigest()


async def state(session: AsyncSession, key: str) -> LoginFailureRow | None:
    """The failure record of ``key``, fresh from the database."""
    query = (
        select(LoginFailureRow).where(col(LoginFailureRow.key_hash) == key).execution_options(populate_existing=True)
    )
    return (await session.execute(query)).scalar()


async def record_failure(session: AsyncSession, key: str, now: datetime, *, max_attempts: int) -> None:
    """Count one more failure (atomically), and block the pair when it reaches ``max_attempts``."""
    for _ in range(5):
        result = await session.execute(
            update(LoginFailureRow)
            .where(col(LoginFailureRow.key_hash) == key)
            .values(failures=LoginFailureRow.failures + 1, last_failure_at=now)
        )
        if cast(CursorResult[Any], result).rowcount == 0:
            try:
                async with session.begin_nested():
                    session.add(LoginFailureRow(key_hash=key, failures=1, last_failure_at=now))
            except IntegrityError:
                continue
        await session.execute(
            update(LoginFailureRow)
            .where(
                col(LoginFailureRow.key_hash) == key,
                col(LoginFailureRow.failures) >= max_attempts,
                col(LoginFailureRow.blocked_at).is_(None),
            )
            .values(blocked_at=now)
        )
        await session.commit()
        return


async def reset(session: AsyncSession, key: str) -> None:
    """A successful login clears the count."""
    await session.execute(delete(LoginFailureRow).where(col(LoginFailureRow.key_hash) == key))


async def unblock_identifier(session: AsyncSession, keys: list[str]) -> int:
    """Remove the records of these keys (admin unblock); the number removed."""
    result = await session.execute(delete(LoginFailureRow).where(col(LoginFailureRow.key_hash).in_(keys)))
    await session.commit()
    return cast(CursorResult[Any], result).rowcount
