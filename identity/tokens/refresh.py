"""Refresh-token families with rotation and reuse detection (API.md §1.7; RFC 9700 §4.14).

- A token is 256 random bits, prefixed ``v1.``; only its SHA-256 is stored.
- Rotation: presenting the newest token of a family retires it and returns a successor, in one transaction: a
  conditional UPDATE (``used_at IS NULL``) decides the single winner among concurrent requests, and the successor row
  is inserted before the commit, so no token is handed out before it is durable.
- Nothing here commits: the request's `identity.store.db.UnitOfWork` does, once, after the last write (on SQLite the
  whole unit runs under ``BEGIN IMMEDIATE``, so it cannot interleave with another writer at all).
- Revocation and rotation both lock the family's root row first, so a family revoked while one of its tokens is
  being rotated ends up dead, successor included, whatever the timing (and in a deadlock-free lock order).
- Reuse: presenting a retired token revokes the whole family, unless it is the immediately previous token and the
  client's ``leeway`` has not passed: then the same successor is returned again (it is kept sealed for that).
- Expiry: the family's absolute lifetime is fixed at its start; the idle lifetime is renewed on every exchange.
- At most 200 active families per user and client; the oldest are revoked first.
"""

from __future__ import annotations

import secrets
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import ColumnElement, CursorResult, bindparam, update
from sqlalchemy import select as sa_select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, func, select

from identity.clock import Clock
from identity.crypto import SecretBox, SecretBoxError, sha256_hex
from identity.oauth2.interfaces import GrantResult, RefreshTokenPolicy, StoredRefreshToken
from identity.store import users as user_queries
from identity.store.models import RefreshTokenRow, UserRow

__all__ = ["MAX_ACTIVE_FAMILIES", "SqlRefreshTokens", "active_families", "revoke_user_families"]

MAX_ACTIVE_FAMILIES = 200
_PREFIX = "v1."
_TOKEN = cast(Any, RefreshTokenRow).__table__
_USERS = cast(Any, UserRow).__table__
# Core statements on the hot path, built once: no ORM entity loading, no statement construction per request, no
# ORM session synchronisation (which pre-selects the rows an UPDATE touches).
_CORE = {"synchronize_session": False}
_FIND = (
    sa_select(_TOKEN, _USERS.c.user_id)
    .join(_USERS, _USERS.c.id == _TOKEN.c.user_pk)
    .where(_TOKEN.c.token_hash == bindparam("b_hash"))
)
_LOCK_FAMILY = (
    update(_TOKEN)
    .where(_TOKEN.c.family_id == bindparam("b_family"), _TOKEN.c.parent_id.is_(None), _TOKEN.c.revoked_at.is_(None))
    .values(revoked_at=None)
)
_RETIRE = (
    update(_TOKEN)
    .where(_TOKEN.c.id == bindparam("b_id"), _TOKEN.c.used_at.is_(None), _TOKEN.c.revoked_at.is_(None))
    .values(used_at=bindparam("b_now"), successor=bindparam("b_sealed"))
)
_INSERT = _TOKEN.insert()
_SUCCESSOR_PURPOSE = "refresh-successor:"


def _count(result: Any) -> int:
    return cast(CursorResult[Any], result).rowcount


def _ts(value: datetime | None) -> float | None:
    return value.timestamp() if value is not None else None


async def _revoke(session: AsyncSession, condition: ColumnElement[bool], now: datetime, reason: str) -> int:
    """Revoke the families matching ``condition``: their root rows first, then every token.

    The root row of a family is its lock: a rotation takes it before retiring a token (see `SqlRefreshTokens.rotate`),
    so a revocation waits for a rotation under way, and its second statement, a new snapshot under READ COMMITTED,
    also sees the successor that rotation inserted. Taking roots first in both keeps the lock order deadlock-free.
    """
    values = {"revoked_at": now, "revoked_reason": reason, "successor": None}
    live = col(RefreshTokenRow.revoked_at).is_(None)
    roots = await session.execute(
        update(RefreshTokenRow).where(condition, live, col(RefreshTokenRow.parent_id).is_(None)).values(**values)
    )
    rest = await session.execute(update(RefreshTokenRow).where(condition, live).values(**values))
    return _count(roots) + _count(rest)


async def revoke_user_families(session: AsyncSession, user_pk: int, reason: str, now: datetime) -> int:
    """Revoke every refresh token of a user (password change, MFA reset, admin); the number revoked."""
    return await _revoke(session, col(RefreshTokenRow.user_pk) == user_pk, now, reason)


async def active_families(session: AsyncSession, user_id: str, now: datetime) -> list[dict[str, Any]]:
    """The user's live families at ``now`` (newest token unrevoked, unused, unexpired), for operators."""
    rows = (
        await session.execute(
            select(RefreshTokenRow)
            .join(UserRow, col(UserRow.id) == col(RefreshTokenRow.user_pk))
            .where(
                col(UserRow.user_id) == user_id,
                col(RefreshTokenRow.revoked_at).is_(None),
                col(RefreshTokenRow.used_at).is_(None),
            )
            .order_by(col(RefreshTokenRow.created_at))
        )
    ).scalars()
    return [
        {
            "family_id": row.family_id,
            "client_id": row.client_id,
            "connection": row.connection,
            "audience": row.audience,
            "scopes": row.scopes,
            "last_rotated_at": row.created_at.isoformat(),
            "expires_at": row.expires_at.isoformat() if row.expires_at else None,
            "idle_expires_at": row.idle_expires_at.isoformat() if row.idle_expires_at else None,
        }
        for row in rows
        if (row.expires_at is None or row.expires_at > now)
        and (row.idle_expires_at is None or row.idle_expires_at > now)
    ]


class SqlRefreshTokens:
    """`identity.oauth2.interfaces.RefreshTokenStore` over the database."""

    def __init__(self, session: AsyncSession, box: SecretBox, clock: Clock) -> None:
        self.session = session
        self.box = box
        self.clock = clock
        self._found: dict[int, Any] = {}
        """The rows `find` read, by id (`rotate` copies the successor's fields from them)."""
        self._family_lock = session.get_bind().dialect.name != "sqlite"

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self.clock.now(), UTC)

    def _idle_expiry(self, policy: RefreshTokenPolicy, now: datetime, absolute: datetime | None) -> datetime | None:
        if policy.infinite_idle_token_lifetime:
            return None
        idle = now + timedelta(seconds=policy.idle_token_lifetime)
        return min(idle, absolute) if absolute is not None else idle

    async def issue(self, result: GrantResult) -> str:
        """Start a family: its first token."""
        found = await user_queries.by_user_id(self.session, result.user.user_id)
        if found is None or found[0].id is None:
            raise LookupError("user vanished while issuing a refresh token")
        user_pk = found[0].id
        policy = result.client.refresh_token
        now = self._now()
        absolute = None if policy.infinite_token_lifetime else now + timedelta(seconds=policy.token_lifetime)
        token = _PREFIX + secrets.token_urlsafe(32)
        self.session.add(
            RefreshTokenRow(
                token_hash=sha256_hex(token),
                family_id=uuid.uuid4().hex,
                client_id=result.client.client_id,
                user_pk=user_pk,
                connection=result.connection.name,
                audience=result.audience,
                scopes=list(result.scopes),
                amr=list(result.amr),
                access_claims=dict(result.access_claims),
                id_claims=dict(result.id_claims),
                created_at=now,
                auth_time=datetime.fromtimestamp(result.authenticated(now.timestamp()), UTC),
                expires_at=absolute,
                idle_expires_at=self._idle_expiry(policy, now, absolute),
            )
        )
        await self.session.flush()
        await self._enforce_family_limit(user_pk, result.client.client_id, now)
        return token

    async def _enforce_family_limit(self, user_pk: int, client_id: str, now: datetime) -> None:
        """Revoke the oldest families beyond the limit (each family has one newest, unrevoked token)."""
        active = (
            select(RefreshTokenRow.family_id, func.min(RefreshTokenRow.created_at).label("started"))
            .where(
                col(RefreshTokenRow.user_pk) == user_pk,
                col(RefreshTokenRow.client_id) == client_id,
                col(RefreshTokenRow.revoked_at).is_(None),
                col(RefreshTokenRow.used_at).is_(None),
            )
            .group_by(col(RefreshTokenRow.family_id))
            .order_by(func.min(RefreshTokenRow.created_at).desc())
            .offset(MAX_ACTIVE_FAMILIES)
        )
        surplus = [row[0] for row in (await self.session.execute(active)).all()]
        if surplus:
            await _revoke(self.session, col(RefreshTokenRow.family_id).in_(surplus), now, "limit")

    async def find(self, token: str) -> StoredRefreshToken | None:
        """The stored token, or ``None`` for an unknown one."""
        if not token.startswith(_PREFIX) or len(token) > 128:
            return None
        row = (await self.session.execute(_FIND, {"b_hash": sha256_hex(token)})).first()
        if row is None:
            return None
        user_id = row.user_id
        self._found[row.id] = row
        auth_time = row.auth_time if row.auth_time is not None else await self._family_start(row.family_id)
        return StoredRefreshToken(
            id=row.id,
            family_id=row.family_id,
            client_id=row.client_id,
            user_id=user_id,
            connection=row.connection,
            audience=row.audience,
            scopes=tuple(row.scopes),
            amr=tuple(row.amr),
            access_claims=dict(row.access_claims),
            id_claims=dict(row.id_claims),
            expires_at=_ts(row.expires_at),
            idle_expires_at=_ts(row.idle_expires_at),
            used_at=_ts(row.used_at),
            revoked=row.revoked_at is not None,
            newest=row.used_at is None,
            auth_time=_ts(auth_time),
        )

    async def _family_start(self, family_id: str) -> datetime | None:
        """When a family older than the ``auth_time`` column began: its authentication time as best known."""
        started = select(func.min(RefreshTokenRow.created_at)).where(col(RefreshTokenRow.family_id) == family_id)
        return (await self.session.execute(started)).scalar()

    async def rotate(self, stored: StoredRefreshToken, policy: RefreshTokenPolicy) -> str | None:
        """Retire ``stored`` and insert its successor in one transaction; ``None`` for a request that lost."""
        now = self._now()
        successor = _PREFIX + secrets.token_urlsafe(32)
        sealed = self.box.seal(successor.encode(), purpose=_SUCCESSOR_PURPOSE + str(stored.id))
        if self._family_lock:
            # Lock the family (its root row) first, as revocations do; a revoked family cannot rotate. (On SQLite
            # the unit's BEGIN IMMEDIATE already excludes every other writer.)
            family_live = await self.session.execute(
                _LOCK_FAMILY, {"b_family": stored.family_id}, execution_options=_CORE
            )
            if _count(family_live) != 1:
                return None
        won = await self.session.execute(
            _RETIRE, {"b_id": stored.id, "b_now": now, "b_sealed": sealed}, execution_options=_CORE
        )
        if _count(won) != 1:
            return None
        parent: Any = self._found.get(stored.id) or await self.session.get(RefreshTokenRow, stored.id)
        if parent is None:  # deleted since the UPDATE (the user was deleted): nothing to rotate into
            return None
        absolute = parent.expires_at
        await self.session.execute(
            _INSERT,
            dict(
                token_hash=sha256_hex(successor),
                family_id=parent.family_id,
                parent_id=parent.id,
                client_id=parent.client_id,
                user_pk=parent.user_pk,
                connection=parent.connection,
                audience=parent.audience,
                scopes=list(parent.scopes),
                amr=list(parent.amr),
                access_claims=dict(parent.access_claims),
                id_claims=dict(parent.id_claims),
                created_at=now,
                # From `find`, so an older family without the column's value gets its start written down here.
                auth_time=datetime.fromtimestamp(stored.auth_time, UTC) if stored.auth_time is not None else None,
                expires_at=absolute,
                idle_expires_at=self._idle_expiry(policy, now, absolute),
            ),
            execution_options=_CORE,
        )
        return successor

    async def successor_within_leeway(self, stored: StoredRefreshToken, policy: RefreshTokenPolicy) -> str | None:
        """The successor of the immediately previous token, if still within the leeway and unused."""
        if policy.leeway <= 0 or stored.used_at is None or stored.revoked:
            return None
        if self.clock.now() > stored.used_at + policy.leeway:
            return None
        row = await self.session.get(RefreshTokenRow, stored.id, populate_existing=True)
        if row is None or row.successor is None:
            return None
        child = (
            await self.session.execute(
                select(RefreshTokenRow)
                .where(col(RefreshTokenRow.parent_id) == stored.id)
                .execution_options(populate_existing=True)
            )
        ).scalar()
        # Only the immediately previous token: its successor must still be the newest, live token.
        if child is None or child.used_at is not None or child.revoked_at is not None:
            return None
        try:
            return self.box.open(row.successor, purpose=_SUCCESSOR_PURPOSE + str(stored.id)).decode()
        except SecretBoxError:
            return None

    async def touch(self, stored: StoredRefreshToken, policy: RefreshTokenPolicy) -> None:
        """Renew the idle expiry of a non-rotating token."""
        now = self._now()
        absolute = datetime.fromtimestamp(stored.expires_at, UTC) if stored.expires_at is not None else None
        await self.session.execute(
            update(RefreshTokenRow)
            .where(col(RefreshTokenRow.id) == stored.id)
            .values(idle_expires_at=self._idle_expiry(policy, now, absolute))
        )

    async def revoke_family(self, family_id: str, reason: str) -> None:
        """Revoke every token of the family (reuse detected, revocation endpoint)."""
        await _revoke(self.session, col(RefreshTokenRow.family_id) == family_id, self._now(), reason)
