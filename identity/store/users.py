"""Queries for users."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, func, or_, update
from sqlalchemy import select as sa_select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from identity.accounts.password_policy import normalize_identifier
from identity.oauth2.interfaces import User
from identity.store.models import ConnectionRow, UserRow

__all__ = [
    "SEARCH_FIELDS",
    "SORT_FIELDS",
    "SearchTerm",
    "by_email",
    "by_login",
    "by_user_id",
    "login_key",
    "record_login",
    "replace_password_hash",
    "search",
    "user_from_row",
]

SORT_FIELDS = ("created_at", "updated_at", "last_login", "logins_count", "email", "user_id", "username", "name")
SEARCH_FIELDS = ("email", "user_id", "username", "name", "nickname", "blocked", "email_verified")
"""Fields a search term may name, besides ``identities.connection`` and ``app_metadata.*``/``user_metadata.*``."""


def login_key(login: str) -> str:
    """The normalised form of an email or username used for lookup and uniqueness (NFKC, casefolded)."""
    return normalize_identifier(login)


def user_from_row(row: UserRow, connection: str) -> User:
    """The engine's view of a user row (no password hash)."""
    return User(
        user_id=row.user_id,
        connection=connection,
        email=row.email,
        email_verified=row.email_verified,
        username=row.username,
        name=row.name,
        given_name=row.given_name,
        family_name=row.family_name,
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


async def record_login(session: AsyncSession, user_pk: int, now: datetime) -> None:
    """Count a successful login, made ``now``."""
    values = {"logins_count": col(UserRow.logins_count) + 1, "last_login": now}
    await session.execute(update(UserRow).where(col(UserRow.id) == user_pk).values(**values))


async def replace_password_hash(session: AsyncSession, user_pk: int, old_hash: str, new_hash: str) -> None:
    """Store a re-hashed password, unless the password changed meanwhile (compare-and-set on the old hash)."""
    await session.execute(
        update(UserRow)
        .where(col(UserRow.id) == user_pk, col(UserRow.password_hash) == old_hash)
        .values(password_hash=new_hash)
    )


@dataclass(frozen=True)
class SearchTerm:
    """One ``field:value`` term of a user search; ``*`` in ``value`` matches any text."""

    field: str
    value: str


_LISTED = [
    col(getattr(UserRow, name))
    for name in UserRow.model_fields
    if name not in ("password_hash", "email_key", "username_key", "connection_id")
]


def _like(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped.replace("*", "%")


def _condition(term: SearchTerm) -> ColumnElement[bool]:
    field, value = term.field, term.value
    if field in ("blocked", "email_verified"):
        return col(getattr(UserRow, field)).is_(value == "true")
    if field.startswith(("app_metadata.", "user_metadata.")):
        column, _, key = field.partition(".")
        target: Any = getattr(UserRow, column)[key].as_string()
    elif field == "identities.connection":
        target = ConnectionRow.name
    elif field == "email":
        target, value = col(UserRow.email_key), login_key(value)
    else:
        target = col(getattr(UserRow, field))
    if "*" in value:
        return target.like(_like(value), escape="\\")  # type: ignore[no-any-return]
    return target == value  # type: ignore[no-any-return]


async def search(
    session: AsyncSession,
    terms: Sequence[SearchTerm],
    *,
    sort: tuple[str, bool] | None,
    offset: int,
    limit: int,
    with_total: bool,
) -> tuple[list[tuple[Any, str]], int | None]:
    """Users matching every term, in ``sort`` order (field, descending), and the total when asked.

    The users are rows with `UserRow`'s attributes but the password hash.
    """
    conditions = [_condition(term) for term in terms]
    # Plain columns, not ORM objects: a listing needs no identity map, and never the password hash.
    base = sa_select(*_LISTED, col(ConnectionRow.name).label("connection_name")).join(
        ConnectionRow, col(ConnectionRow.id) == UserRow.connection_id
    )
    for condition in conditions:
        base = base.where(condition)
    field, descending = sort or ("created_at", False)
    column = col(getattr(UserRow, field))
    order = [column.desc() if descending else column.asc(), col(UserRow.id).desc() if descending else col(UserRow.id)]
    rows = await session.execute(base.order_by(*order).offset(offset).limit(limit))
    found = [(row, row.connection_name) for row in rows.all()]
    total = None
    if with_total:
        counted = (
            select(func.count())
            .select_from(UserRow)
            .join(ConnectionRow, col(ConnectionRow.id) == UserRow.connection_id)
        )
        for condition in conditions:
            counted = counted.where(condition)
        total = int((await session.execute(counted)).scalar_one())
    return found, total


async def by_email(session: AsyncSession, email: str) -> list[tuple[UserRow, str]]:
    """Every user with this email (case-insensitive), in any connection."""
    query = (
        select(UserRow, ConnectionRow.name)
        .join(ConnectionRow, col(ConnectionRow.id) == UserRow.connection_id)
        .where(col(UserRow.email_key) == login_key(email))
        .order_by(col(UserRow.id))
    )
    return [(row[0], row[1]) for row in (await session.execute(query)).all()]
