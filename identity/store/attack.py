"""Queries for attack protection (API.md §4): counters reserved atomically before a password is hashed.

Every reservation is one conditional statement that cannot take a count past its limit, however many requests run
at once and on however many instances: ``UPDATE … SET count = count + 1 WHERE count < max`` (or an ``INSERT`` of a
first count when there is no row yet). A request whose reservation fails is refused without any hashing. A success
resets the brute-force count (as Auth0 does) and gives the IP bucket its token back; a request that is shed before
its hash gives back what it reserved.

Counts and blocks expire on their own: an identifier's count lasts ``wait`` seconds after its last failure (the
tenant's block time), and the IP bucket refills one token every ``wait`` seconds. Expired rows are removed by
`purge_expired`.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import CursorResult, Float, and_, bindparam, case, delete, literal, or_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from identity.store.models import AttackCounterRow

__all__ = [
    "IDENTIFIER",
    "IDENTIFIER_IP",
    "IP",
    "Block",
    "blocks",
    "bucket_refund",
    "bucket_reserve",
    "bucket_retry_after",
    "counter_key",
    "identifier_hash",
    "purge_expired",
    "refund",
    "reserve",
    "reset",
    "unblock",
]

IDENTIFIER_IP = "identifier_ip"
IDENTIFIER = "identifier"
IP = "ip"
MAX_LOCKOUT_SECONDS = 30 * 86_400
"""Account-lockout waits double after each lockout up to Auth0's 30 days."""

_T = AttackCounterRow
_RESERVE_TRIES = 3


def identifier_hash(connection_id: int, login_key: str) -> str:
    """The stored form of (directory, normalised identifier): enough to find its blocks, not to read it back."""
    return hashlib.sha256(f"{connection_id}\x00{login_key}".encode()).hexdigest()


def counter_key(kind: str, identifier: str | None, ip: str | None) -> str:
    """The row key of one counter."""
    return hashlib.sha256(f"{kind}\x00{identifier or '-'}\x00{ip or '-'}".encode()).hexdigest()


def _rowcount(result: Any) -> int:
    return cast(CursorResult[Any], result).rowcount


_TABLE = cast(Any, AttackCounterRow).__table__
_C = _TABLE.c
# The hot statements are built once, as Core on the table with bound parameters: a login runs two or three of them,
# and building them per request through the ORM's bulk-update path cost more CPU than the rest of its queries.
_NOW = bindparam("b_now", type_=Float)
_EXPIRED = (_C.updated_at + _C.wait) <= _NOW
_NEXT_COUNT = case((_EXPIRED, 1.0), else_=_C.count + 1)
_DOUBLED = _C.wait * 2
_CAPPED_DOUBLE = case((_DOUBLED > MAX_LOCKOUT_SECONDS, literal(float(MAX_LOCKOUT_SECONDS))), else_=_DOUBLED)
_WAIT = bindparam("b_wait", type_=Float)
_MAX = bindparam("b_max", type_=Float)
_UNDER_LIMIT = _C.key_hash == bindparam("b_key"), or_(_C.count < _MAX, _EXPIRED)
_RESERVE = (
    update(_TABLE)
    .where(*_UNDER_LIMIT)
    .values(count=_NEXT_COUNT, updated_at=_NOW, wait=case((_EXPIRED, _WAIT), else_=_C.wait))
)
_RESERVE_GROWING = (
    update(_TABLE)
    .where(*_UNDER_LIMIT)
    .values(
        count=_NEXT_COUNT,
        updated_at=_NOW,
        wait=case((and_(_EXPIRED, _C.count >= _MAX), _CAPPED_DOUBLE), (_EXPIRED, _WAIT), else_=_C.wait),
    )
)
_LEVEL = _C.count - (_NOW - _C.updated_at) / _C.wait
_BUCKET_LEVEL = case((_LEVEL > 0, _LEVEL), else_=literal(0.0))
"""Tokens spent as of ``b_now``: the stored count minus what refilled since (one per ``wait`` seconds), ≥ 0."""
_BUCKET_RESERVE = (
    update(_TABLE)
    .where(_C.key_hash == bindparam("b_key"), bindparam("b_capacity", type_=Float) >= _BUCKET_LEVEL + 1)
    .values(count=_BUCKET_LEVEL + 1, updated_at=_NOW, wait=bindparam("b_per_token", type_=Float))
)
_RESET = update(_TABLE).where(_C.key_hash == bindparam("b_key")).values(count=0.0)
_REFUND = update(_TABLE).where(_C.key_hash == bindparam("b_key"), _C.count >= 1).values(count=_C.count - 1)
_EXISTS = select(_C.key_hash).where(_C.key_hash == bindparam("b_key"))
_INSERT_IGNORE = {
    "postgresql": postgresql.insert(_TABLE).on_conflict_do_nothing(index_elements=["key_hash"]),
    "sqlite": sqlite.insert(_TABLE).on_conflict_do_nothing(index_elements=["key_hash"]),
}


async def _insert_ignore(session: AsyncSession, values: dict[str, Any]) -> bool:
    """Insert the row unless its key exists; whether it was inserted (one statement, no exception to catch)."""
    dialect = "postgresql" if session.get_bind().dialect.name == "postgresql" else "sqlite"
    return _rowcount(await session.execute(_INSERT_IGNORE[dialect], values)) == 1


async def _update_or_insert(
    session: AsyncSession, update_statement: Any, params: dict[str, Any], values: dict[str, Any]
) -> bool:
    """Run the conditional UPDATE, or insert the first row; ``False`` only when the row exists and refuses.

    Between a failed UPDATE (no row yet) and the INSERT, a concurrent request may insert the row; between that
    conflict and the next UPDATE, the purge may delete it again. So the pair is retried a few times: giving up
    early would block a login that is under its limit, which is what a burst on PostgreSQL did.
    """
    for _ in range(_RESERVE_TRIES):
        if _rowcount(await session.execute(update_statement, params)) == 1:
            return True
        if await _insert_ignore(session, values):
            return True
        if (await session.execute(_EXISTS, {"b_key": values["key_hash"]})).first() is None:
            continue  # inserted and deleted by others meanwhile: try again on what is there now
        return _rowcount(await session.execute(update_statement, params)) == 1
    return False  # fail closed: a row that keeps vanishing under us is not a reason to skip the limit


async def reserve(
    session: AsyncSession,
    *,
    kind: str,
    identifier: str | None,
    connection: str | None,
    ip: str | None,
    max_count: int,
    wait: float,
    now: float,
    grow: bool = False,
) -> bool:
    """Reserve one failure before a password check; ``False`` when the limit is reached (blocked).

    Does not commit: the login reads its user in the same transaction and commits both (one unit of work before
    the hash). The count restarts at 1 once the previous one has expired (``wait`` seconds after its last failure).
    With ``grow`` (account lockout) a count that had reached the limit doubles the next wait, up to 30 days.
    """
    key = counter_key(kind, identifier, ip)
    params = {"b_key": key, "b_now": now, "b_wait": float(wait), "b_max": float(max_count)}
    first: dict[str, Any] = dict(key_hash=key, kind=kind, identifier_hash=identifier, connection=connection, ip=ip)
    first.update(count=1.0, updated_at=now, wait=float(wait))
    return await _update_or_insert(session, _RESERVE_GROWING if grow else _RESERVE, params, first)


async def refund(session: AsyncSession, *, kind: str, identifier: str | None, ip: str | None) -> None:
    """Give back a reservation whose password was never checked (the request was shed). Commits."""
    await session.execute(_REFUND, {"b_key": counter_key(kind, identifier, ip)})
    await session.commit()


async def reset(session: AsyncSession, *, kind: str, identifier: str | None, ip: str | None) -> None:
    """A successful login clears its count (Auth0: the count is of consecutive failures). Does not commit.

    The row is zeroed, not deleted: concurrent logins reserving on it then meet an UPDATE, never a row that
    vanished between their UPDATE and INSERT. The purge removes it once it has expired.
    """
    await session.execute(_RESET, {"b_key": counter_key(kind, identifier, ip)})


async def bucket_reserve(
    session: AsyncSession, *, ip: str, capacity: int, seconds_per_token: float, now: float
) -> bool:
    """Take a token from the address's bucket of failed logins; ``False`` when it is empty. Does not commit."""
    key = counter_key(IP, None, ip)
    params = {"b_key": key, "b_now": now, "b_capacity": float(capacity), "b_per_token": float(seconds_per_token)}
    values: dict[str, Any] = dict(key_hash=key, kind=IP, identifier_hash=None, connection=None, ip=ip)
    values.update(count=1.0, updated_at=now, wait=float(seconds_per_token))
    return await _update_or_insert(session, _BUCKET_RESERVE, params, values)


async def bucket_retry_after(session: AsyncSession, *, ip: str, capacity: int, now: float) -> int:
    """Seconds until the address's bucket has a token again (for ``Retry-After``)."""
    row = await session.get(_T, counter_key(IP, None, ip), populate_existing=True)
    await session.commit()
    if row is None:
        return 1
    level = max(0.0, row.count - (now - row.updated_at) / row.wait)
    return max(1, math.ceil((level + 1 - capacity) * row.wait))


async def bucket_refund(session: AsyncSession, *, ip: str) -> None:
    """Give the token back (a success, or a request shed before its hash). Does not commit."""
    await session.execute(_REFUND, {"b_key": counter_key(IP, None, ip)})


@dataclass(frozen=True)
class Block:
    """A brute-force block in force: Auth0's ``blocked_for`` item (identifier given by the caller)."""

    kind: str
    connection: str | None
    ip: str | None
    failures: int
    expires_at: float


async def blocks(session: AsyncSession, identifiers: Iterable[str], *, max_count: int, now: float) -> list[Block]:
    """The blocks in force on these identifier hashes (every kind that counts identifiers)."""
    hashes = list(identifiers)
    if not hashes:
        return []
    query = select(_T).where(
        col(_T.identifier_hash).in_(hashes),
        col(_T.count) >= max_count,
        (col(_T.updated_at) + col(_T.wait)) > now,
    )
    rows = (await session.execute(query)).scalars().all()
    return [
        Block(
            kind=row.kind,
            connection=row.connection,
            ip=row.ip,
            failures=int(row.count),
            expires_at=row.updated_at + row.wait,
        )
        for row in rows
    ]


async def unblock(session: AsyncSession, identifiers: Sequence[str]) -> int:
    """Forget every count and block of these identifier hashes (admin unblock, password change). Does not commit.

    Returns how many blocks or counts were removed.
    """
    if not identifiers:
        return 0
    return _rowcount(await session.execute(delete(_T).where(col(_T.identifier_hash).in_(list(identifiers)))))


async def purge_expired(session: AsyncSession, *, now: float) -> int:
    """Delete counters that no longer count anything: expired identifier counts, refilled IP buckets. Commits."""
    expired_count = and_(col(_T.kind) != IP, (col(_T.updated_at) + col(_T.wait)) <= now)
    refilled_bucket = and_(col(_T.kind) == IP, col(_T.updated_at) + col(_T.count) * col(_T.wait) <= now)
    removed = _rowcount(await session.execute(delete(_T).where(or_(expired_count, refilled_bucket))))
    await session.commit()
    return removed
