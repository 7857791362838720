"""Queries for users."""

from __future__ import annotations

from sqlalchemy import or_, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from identity.oauth2.interfaces import User
from identity.store.models import ConnectionRow, UserRow, utcnow

__all__ = ["by_login", "by_user_id", "login_key", "record_login", "replace_password_hash", "user_from_row"]


def login_key(login: str) -> str:
    """The normalised form of an email or username used for lookup (case-insensitive)."""
    return login.strip().lower()


def user_from_row(row: UserRow, connection: str) -> User:
    """The engine's view of a user row (no password hash)."""
    return User(
        user_id=row.user_id,
        connection=connection,
        email=row.email,
        email_verified=row.email_verified,
        username=row.username,
        name=row.name,
        nickname=row.nickname,
        picture=row.picture,
        blocked=row.blocked,
        updated_at=row.updated_at.timestamp(),
        logins_count=row.logins_count,
        app_metadata=dict(row.app_metadata),
        user_metadata=dict(row.user_metadata),
    )


async def by_login(session: AsyncSession, connection_id: int, login: str) -> UserRow | None:
    """The user of this connection whose email or username is ``login``.

    Usernames never contain ``@`` (enforced at creation), so an email and a username cannot collide.
    """
    key = login_key(login)
    query = select(UserRow).where(
        col(UserRow.connection_id) == connection_id,
        or_(col(UserRow.email_key) == key, col(UserRow.username_key) == key),
    )
    return (await session.execute(query)).scalar()


async def by_user_id(session: AsyncSession, user_id: str) -> tuple[UserRow, str] | None:
    """The user with this ``user_id`` and the name of its connection."""
    query = (
        select(UserRow, ConnectionRow.name)
        .join(ConnectionRow, col(ConnectionRow.id) == UserRow.connection_id)
        .where(col(UserRow.user_id) == user_id)
    )
    result = (await session.execute(query)).first()
    return (result[0], result[1]) if result is not None else None


async def record_login(session: AsyncSession, user_pk: int) -> None:
    """Count a successful login."""
    values = {"logins_count": col(UserRow.logins_count) + 1, "last_login": utcnow()}
    await session.execute(update(UserRow).where(col(UserRow.id) == user_pk).values(**values))


async def replace_password_hash(session: AsyncSession, user_pk: int, old_hash: str, new_hash: str) -> None:
    """Store a re-hashed password, unless the password changed meanwhile (compare-and-set on the old hash)."""
    await session.execute(
        update(UserRow)
        .where(col(UserRow.id) == user_pk, col(UserRow.password_hash) == old_hash)
        .values(password_hash=new_hash)
    )
