"""Queries for the audit log (table ``log_event``): write events, list and filter them, purge old ones.

The rows carry the fields of Auth0's log events (API.md §6). The Management API (``GET /api/v2/logs``,
``/users/{id}/logs``) and ``identity logs`` read them through `search`, `get` and `after`.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

from sqlalchemy import CursorResult, delete, func, insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from identity.store.models import LogEventRow, utcnow

__all__ = [
    "FIELDS",
    "LogEvent",
    "LogFilter",
    "after",
    "count",
    "get",
    "new_log_id",
    "purge_older_than",
    "record",
    "search",
]

FIELDS = (
    "log_id",
    "date",
    "type",
    "description",
    "client_id",
    "client_name",
    "ip",
    "client_ip",
    "user_agent",
    "user_id",
    "user_name",
    "connection",
    "connection_id",
    "strategy",
    "strategy_type",
    "audience",
    "scope",
    "hostname",
    "details",
)
"""Auth0's log-event fields, in the order ``identity logs`` prints them."""

_LIMITS = {
    "description": 255,
    "client_id": 128,
    "client_name": 255,
    "ip": 64,
    "client_ip": 64,
    "user_agent": 512,
    "user_id": 64,
    "user_name": 320,
    "connection": 128,
    "connection_id": 64,
    "strategy": 32,
    "strategy_type": 32,
    "audience": 600,
    "hostname": 255,
}


def new_log_id(at: datetime) -> str:
    """A unique id that sorts by time: milliseconds since the epoch, then 64 random bits (hex)."""
    return f"{int(at.timestamp() * 1000):015d}{secrets.token_hex(8)}"


@dataclass(frozen=True)
class LogEvent:
    """One audit-log event. Only the caller's view of what happened: never a password, code, token or secret."""

    type: str
    description: str | None = None
    date: datetime = field(default_factory=utcnow)
    log_id: str = ""
    client_id: str | None = None
    client_name: str | None = None
    ip: str | None = None
    client_ip: str | None = None
    user_agent: str | None = None
    user_id: str | None = None
    user_name: str | None = None
    connection: str | None = None
    connection_id: str | None = None
    strategy: str | None = None
    strategy_type: str | None = None
    audience: str | None = None
    scope: str | None = None
    hostname: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.log_id:
            object.__setattr__(self, "log_id", new_log_id(self.date))
        for name, limit in _LIMITS.items():
            value = getattr(self, name)
            if isinstance(value, str) and len(value) > limit:
                object.__setattr__(self, name, value[:limit])

    def to_dict(self) -> dict[str, Any]:
        """The event as Auth0 renders it (``date`` in ISO 8601 UTC), members without a value left out."""
        body: dict[str, Any] = {}
        for name in FIELDS:
            value = getattr(self, name)
            if name == "date":
                value = value.isoformat().replace("+00:00", "Z")
            if value is not None and value != {}:
                body[name] = value
        return body

    @classmethod
    def from_row(cls, row: LogEventRow) -> LogEvent:
        """The event of a stored row."""
        return cls(**{name: getattr(row, name) for name in FIELDS})


def _row_values(event: LogEvent) -> dict[str, Any]:
    return {name: getattr(event, name) for name in FIELDS}


async def record(session: AsyncSession, events: Sequence[LogEvent]) -> None:
    """Insert events (one statement) and commit."""
    if not events:
        return
    await session.execute(insert(LogEventRow), [_row_values(event) for event in events])
    await session.commit()


@dataclass(frozen=True)
class LogFilter:
    """What to list: every given criterion must match (types: any of them)."""

    user_id: str | None = None
    types: tuple[str, ...] = ()
    ip: str | None = None
    client_id: str | None = None
    connection: str | None = None
    since: datetime | None = None
    """Inclusive."""
    until: datetime | None = None
    """Exclusive."""


def _where(query: Any, criteria: LogFilter) -> Any:
    if criteria.user_id is not None:
        query = query.where(col(LogEventRow.user_id) == criteria.user_id)
    if criteria.types:
        query = query.where(col(LogEventRow.type).in_(criteria.types))
    if criteria.ip is not None:
        query = query.where(col(LogEventRow.ip) == criteria.ip)
    if criteria.client_id is not None:
        query = query.where(col(LogEventRow.client_id) == criteria.client_id)
    if criteria.connection is not None:
        query = query.where(col(LogEventRow.connection) == criteria.connection)
    if criteria.since is not None:
        query = query.where(col(LogEventRow.date) >= criteria.since)
    if criteria.until is not None:
        query = query.where(col(LogEventRow.date) < criteria.until)
    return query


async def search(
    session: AsyncSession,
    criteria: LogFilter = LogFilter(),
    *,
    page: int = 0,
    per_page: int = 50,
    newest_first: bool = True,
) -> list[LogEvent]:
    """One page of matching events (Auth0's ``page``/``per_page``, ``sort=date:-1`` by default)."""
    order = col(LogEventRow.id).desc() if newest_first else col(LogEventRow.id).asc()
    query = _where(select(LogEventRow), criteria).order_by(order).offset(page * per_page).limit(per_page)
    return [LogEvent.from_row(row) for row in (await session.execute(query)).scalars()]


async def count(session: AsyncSession, criteria: LogFilter = LogFilter()) -> int:
    """How many events match (``include_totals``)."""
    query = _where(select(func.count()).select_from(LogEventRow), criteria)
    return int((await session.execute(query)).scalar_one())


async def after(
    session: AsyncSession, log_id: str | None, criteria: LogFilter = LogFilter(), *, take: int = 100
) -> list[LogEvent]:
    """Events stored after ``log_id``, oldest first (Auth0's checkpoint ``from``/``take``; ``--follow``).

    ``None`` starts from the beginning. Ordered by insertion, so events written late by another instance are still
    seen once.
    """
    query = _where(select(LogEventRow), criteria)
    if log_id is not None:
        anchor = select(LogEventRow.id).where(col(LogEventRow.log_id) == log_id).scalar_subquery()
        query = query.where(col(LogEventRow.id) > anchor)
    query = query.order_by(col(LogEventRow.id).asc()).limit(take)
    return [LogEvent.from_row(row) for row in (await session.execute(query)).scalars()]


async def get(session: AsyncSession, log_id: str) -> LogEvent | None:
    """One event by ``log_id``."""
    row = (await session.execute(select(LogEventRow).where(col(LogEventRow.log_id) == log_id))).scalar()
    return LogEvent.from_row(row) if row is not None else None


async def purge_older_than(session: AsyncSession, cutoff: datetime) -> int:
    """Delete events dated before ``cutoff`` (retention); how many. Commits."""
    result = await session.execute(delete(LogEventRow).where(col(LogEventRow.date) < cutoff))
    await session.commit()
    return cast(CursorResult[Any], result).rowcount
