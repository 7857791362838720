"""Housekeeping: delete what no longer means anything, so tables do not grow with every login.

Run by ``identity purge`` and, every ``IDENTITY_PURGE_INTERVAL`` seconds (default 3600), by the server. With several
instances on PostgreSQL only one purges at a time: the run takes a session-level advisory lock
(``pg_try_advisory_lock``) on a connection of its own, holds it across every step of the purge (which commits several
times: the audit purge commits its own work), and releases it explicitly at the end; an instance that does not get
it skips its turn. A transaction-scoped lock would not do: the first commit would release it, and the later steps
would run unguarded. If the process dies mid-purge its connection closes and PostgreSQL releases the lock; a
connection whose unlock failed is discarded, never returned to the pool still holding the lock. On SQLite every write
is serialised by the database anyway.

What goes (each rule keeps what can still be used or is still needed to refuse something):

- ``mfa_transaction``: past ``expires_at`` (an mfa_token lives 10 minutes), used or not.
- ``web_session``: enrollment-page sessions past their idle expiry.
- pending enrollments: authenticators never confirmed, older than the enrollment window, and recovery codes of
  users without an active factor that are as old.
- ``refresh_token``: whole families without a usable token (all used or revoked, past the absolute or the idle
  lifetime) whose newest row is older than ten minutes. Rows of a live family are kept, even used ones: they are what
  detects the replay of a rotated token.
- ``userinfo_claims``: past the access token's expiry.
- ``webauthn_challenge``: WebAuthn ceremonies past their expiry (five minutes), answered or not.
- ``attack_counter``: brute-force counts and blocks past their wait, suspicious-IP buckets that refilled, and
  ``log_event``: audit events past ``IDENTITY_LOG_RETENTION_DAYS`` (`identity.audit.purge`).
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, delete, exists, or_, select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession
from sqlmodel import col

from identity.accounts.factors import PENDING_ENROLLMENT_SECONDS
from identity.audit import purge as purge_audit
from identity.store.mfa import purge_oob_codes, purge_webauthn_challenges
from identity.store.models import (
    AuthenticatorRow,
    MfaTransactionRow,
    RecoveryCodeRow,
    RefreshTokenRow,
    UserinfoClaimsRow,
    WebSessionRow,
)

__all__ = ["DEAD_FAMILY_RETENTION", "purge", "purge_once"]

logger = logging.getLogger("identity.housekeeping")
DEAD_FAMILY_RETENTION = timedelta(minutes=10)
"""A dead family stays this long after its newest row (to be seen by identity users sessions and the like)."""
_LOCK_KEY = 0x1D3_7E57  # pg_advisory lock id of the purge: any constant shared by every instance


def _count(result: Any) -> int:
    return int(cast(CursorResult[Any], result).rowcount or 0)


async def _dead_families(session: AsyncSession, now: datetime) -> int:
    token = RefreshTokenRow
    live = (
        select(col(token.family_id))
        .where(col(token.used_at).is_(None), col(token.revoked_at).is_(None))
        .where(or_(col(token.expires_at).is_(None), col(token.expires_at) > now))
        .where(or_(col(token.idle_expires_at).is_(None), col(token.idle_expires_at) > now))
    )
    recent = select(col(token.family_id)).where(col(token.created_at) > now - DEAD_FAMILY_RETENTION)
    result = await session.execute(
        delete(token).where(col(token.family_id).not_in(live), col(token.family_id).not_in(recent))
    )
    return _count(result)


async def purge(session: AsyncSession, *, now: datetime, log_retention_days: int = 30) -> dict[str, int]:
    """Delete everything that expired as of ``now``; returns how many rows went, by kind.

    Commits more than once (the audit purge commits its own steps): with several instances, call `purge_once`, which
    holds the purge lock across all of it.
    """
    counts: dict[str, int] = {}
    pending_before = now - timedelta(seconds=PENDING_ENROLLMENT_SECONDS)
    counts["mfa_transactions"] = _count(
        await session.execute(delete(MfaTransactionRow).where(col(MfaTransactionRow.expires_at) < now))
    )
    counts["web_sessions"] = _count(
        await session.execute(delete(WebSessionRow).where(col(WebSessionRow.expires_at) < now))
    )
    counts["pending_authenticators"] = _count(
        await session.execute(
            delete(AuthenticatorRow).where(
                col(AuthenticatorRow.active).is_(False), col(AuthenticatorRow.created_at) < pending_before
            )
        )
    )
    has_factor = exists().where(
        col(AuthenticatorRow.user_pk) == col(RecoveryCodeRow.user_pk), col(AuthenticatorRow.active).is_(True)
    )
    counts["pending_recovery_codes"] = _count(
        await session.execute(
            delete(RecoveryCodeRow).where(
                col(RecoveryCodeRow.active).is_(False), col(RecoveryCodeRow.created_at) < pending_before, ~has_factor
            )
        )
    )
    counts["refresh_tokens"] = await _dead_families(session, now)
    counts["userinfo_claims"] = _count(
        await session.execute(delete(UserinfoClaimsRow).where(col(UserinfoClaimsRow.expires_at) < now))
    )
    counts["webauthn_challenges"] = await purge_webauthn_challenges(session, now)
    counts["oob_codes"] = await purge_oob_codes(session, now)
    await session.commit()
    counts.update(await purge_audit(session, now=now, retention_days=log_retention_days))
    return counts


async def purge_once(session: AsyncSession, *, now: datetime, log_retention_days: int = 30) -> dict[str, int] | None:
    """`purge`, unless another instance is purging right now (PostgreSQL advisory lock); ``None`` when skipped."""
    started = time.perf_counter()
    if session.get_bind().dialect.name == "postgresql":
        bind = session.bind
        engine = bind if isinstance(bind, AsyncEngine) else cast(AsyncConnection, bind).engine
        async with engine.connect() as lock:
            if not await _try_lock(lock):
                logger.info("purge skipped: another instance is purging")
                return None
            try:
                counts = await purge(session, now=now, log_retention_days=log_retention_days)
            finally:
                await _unlock(lock)
    else:
        counts = await purge(session, now=now, log_retention_days=log_retention_days)
    logger.info(
        "purged %d expired rows",
        sum(counts.values()),
        extra={"event": {"purged": counts, "duration_ms": round((time.perf_counter() - started) * 1000, 1)}},
    )
    return counts


async def _try_lock(lock: AsyncConnection) -> bool:
    """Take the purge lock on ``lock``'s own database session, without waiting; whether it was free."""
    got = bool((await lock.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": _LOCK_KEY})).scalar())
    # End the statement's transaction: the lock is the session's and outlives it, and the connection then waits idle
    # (not "idle in transaction") while the purge runs on its own connection.
    await lock.commit()
    return got


async def _unlock(lock: AsyncConnection) -> None:
    """Release the purge lock; a connection that cannot say so is closed, so PostgreSQL releases it with the session."""
    try:
        await lock.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": _LOCK_KEY})
        await lock.commit()
    except BaseException:
        await lock.invalidate()
        raise
