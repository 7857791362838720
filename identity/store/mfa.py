"""Queries for second factors, MFA transactions and the failed-attempt buckets.

Every one-time thing is burned with a conditional UPDATE whose row count says who won, so that of concurrent requests
exactly one succeeds, on SQLite (writes serialise) and on PostgreSQL (the loser re-evaluates the WHERE clause after the
winner's row lock is released).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import CursorResult, delete, or_, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from identity.store.models import (
    AuthenticatorRow,
    MfaAttemptRow,
    MfaSendRow,
    MfaTransactionRow,
    OobCodeRow,
    RecoveryCodeRow,
    UserRow,
    WebAuthnChallengeRow,
    WebAuthnCredentialRow,
)

__all__ = [
    "SEND_BUCKET",
    "accept_step",
    "activate",
    "adjust_attempts",
    "attempts",
    "authenticators",
    "burn_transaction",
    "consume_oob_code",
    "delete_all_factors",
    "delete_authenticator",
    "delete_pending",
    "has_active_factor",
    "hold_attempts",
    "latest_oob_code",
    "oob_code",
    "page_transaction",
    "purge_oob_codes",
    "purge_webauthn_challenges",
    "put_recovery_code",
    "recovery_code",
    "retire_oob_codes",
    "rotate_recovery_code",
    "set_attempts",
    "transaction_by_hash",
    "webauthn_keys",
    "webauthn_names",
]


def _count(result: Any) -> int:
    return cast(CursorResult[Any], result).rowcount


# Conditional updates whose row count is all the caller needs: no ORM pre-select of the rows they touch.
_NO_SYNC = {"synchronize_session": False}
_ATTEMPT = cast(Any, MfaAttemptRow).__table__
SEND_BUCKET = cast(Any, MfaSendRow).__table__
"""The emailed-code bucket: `hold_attempts` and `set_attempts` take it as ``table``."""


async def hold_attempts(
    session: AsyncSession, user_pk: int, *, now: float, capacity: float, refill_seconds: float, table: Any = _ATTEMPT
) -> float:
    """The attempts left in the user's bucket (refilled up to ``now``), held until the transaction ends.

    For the grants' single transaction: on PostgreSQL the bucket row is created if missing and locked (``FOR
    UPDATE``), so concurrent requests of one user queue here and each sees what the one before it spent; on SQLite
    the transaction's ``BEGIN IMMEDIATE`` already serialises every writer, and a missing row is a full bucket.
    """
    if session.get_bind().dialect.name == "postgresql":
        await session.execute(
            pg_insert(table)
            .values(user_pk=user_pk, tokens=capacity, updated_at=now, version=1)
            .on_conflict_do_nothing(index_elements=["user_pk"])
        )
    query = select(table.c.tokens, table.c.updated_at).where(table.c.user_pk == user_pk).with_for_update()
    row = (await session.execute(query)).first()
    if row is None:
        return capacity
    tokens, updated_at = row
    return float(min(capacity, tokens + max(0.0, now - updated_at) / refill_seconds))


async def set_attempts(
    session: AsyncSession, user_pk: int, tokens: float, *, now: float, table: Any = _ATTEMPT
) -> None:
    """Store the bucket held by `hold_attempts` (in the same transaction)."""
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    statement = insert(table).values(user_pk=user_pk, tokens=tokens, updated_at=now, version=1)
    await session.execute(
        statement.on_conflict_do_update(
            index_elements=["user_pk"],
            set_={"tokens": tokens, "updated_at": now, "version": table.c.version + 1},
        )
    )


async def transaction_by_hash(session: AsyncSession, token_hash: str) -> MfaTransactionRow | None:
    """The MFA transaction whose token hashes to ``token_hash`` (never an auth_session or a code of the same store)."""
    query = select(MfaTransactionRow).where(
        col(MfaTransactionRow.token_hash) == token_hash, col(MfaTransactionRow.kind) == "mfa_token"
    )
    return (await session.execute(query)).scalar()


async def page_transaction(session: AsyncSession, token_hash: str, user_pk: int, kind: str) -> int | None:
    """The id of the user's transaction of ``kind`` (an enrollment page's) whose binding hashes to ``token_hash``."""
    query = select(col(MfaTransactionRow.id)).where(
        col(MfaTransactionRow.token_hash) == token_hash,
        col(MfaTransactionRow.user_pk) == user_pk,
        col(MfaTransactionRow.kind) == kind,
    )
    return (await session.execute(query)).scalar()


async def burn_transaction(session: AsyncSession, transaction_id: int, now: datetime) -> bool:
    """Mark the transaction consumed, unless it already was; ``True`` for the one caller that burns it."""
    result = await session.execute(
        update(MfaTransactionRow)
        .where(col(MfaTransactionRow.id) == transaction_id, col(MfaTransactionRow.consumed_at).is_(None))
        .values(consumed_at=now),
        execution_options=_NO_SYNC,
    )
    return _count(result) == 1


async def has_active_factor(session: AsyncSession, user_id: str) -> bool:
    """Whether the user (by public id) has an active second factor: one statement, no rows loaded."""
    query = (
        select(col(AuthenticatorRow.id))
        .join(UserRow, col(UserRow.id) == col(AuthenticatorRow.user_pk))
        .where(col(UserRow.user_id) == user_id, col(AuthenticatorRow.active))
        .limit(1)
    )
    return (await session.execute(query)).first() is not None


async def authenticators(session: AsyncSession, user_pk: int) -> Sequence[AuthenticatorRow]:
    """The user's authenticators, active ones first, oldest first."""
    query = (
        select(AuthenticatorRow)
        .where(col(AuthenticatorRow.user_pk) == user_pk)
        .order_by(col(AuthenticatorRow.active).desc(), col(AuthenticatorRow.id))
        .execution_options(populate_existing=True)
    )
    return (await session.execute(query)).scalars().all()


async def accept_step(session: AsyncSession, authenticator_id: int, step: int) -> bool:
    """Record ``step`` as the authenticator's last accepted time step if it is later than the last one."""
    result = await session.execute(
        update(AuthenticatorRow)
        .where(
            col(AuthenticatorRow.id) == authenticator_id,
            or_(col(AuthenticatorRow.last_step).is_(None), col(AuthenticatorRow.last_step) < step),
        )
        .values(last_step=step),
        execution_options=_NO_SYNC,
    )
    return _count(result) == 1


async def activate(session: AsyncSession, authenticator_id: int, user_pk: int, now: datetime) -> None:
    """Confirm an enrollment at ``now``: activate the authenticator and the recovery code, drop other pending ones."""
    await session.execute(
        update(AuthenticatorRow)
        .where(col(AuthenticatorRow.id) == authenticator_id)
        .values(active=True, confirmed_at=now)
    )
    await session.execute(
        delete(AuthenticatorRow).where(
            col(AuthenticatorRow.user_pk) == user_pk,
            col(AuthenticatorRow.active).is_(False),
            col(AuthenticatorRow.id) != authenticator_id,
        )
    )
    await session.execute(update(RecoveryCodeRow).where(col(RecoveryCodeRow.user_pk) == user_pk).values(active=True))


async def delete_pending(session: AsyncSession, user_pk: int, kind: str | None = None) -> None:
    """Forget unconfirmed enrollments (only those of ``kind``, if given)."""
    pending = [col(AuthenticatorRow.user_pk) == user_pk, col(AuthenticatorRow.active).is_(False)]
    if kind is not None:
        pending.append(col(AuthenticatorRow.kind) == kind)
    await session.execute(delete(AuthenticatorRow).where(*pending))


async def delete_authenticator(session: AsyncSession, user_pk: int, public_id: str) -> bool:
    """Remove one authenticator of the user; ``True`` if it existed."""
    result = await session.execute(
        delete(AuthenticatorRow).where(
            col(AuthenticatorRow.user_pk) == user_pk, col(AuthenticatorRow.public_id) == public_id
        )
    )
    return _count(result) == 1


async def delete_all_factors(session: AsyncSession, user_pk: int) -> int:
    """Remove every authenticator and the recovery code of the user (MFA reset); the number removed."""
    removed = _count(await session.execute(delete(AuthenticatorRow).where(col(AuthenticatorRow.user_pk) == user_pk)))
    removed += _count(await session.execute(delete(RecoveryCodeRow).where(col(RecoveryCodeRow.user_pk) == user_pk)))
    return removed


async def recovery_code(session: AsyncSession, user_pk: int) -> RecoveryCodeRow | None:
    """The user's recovery code row."""
    query = (
        select(RecoveryCodeRow).where(col(RecoveryCodeRow.user_pk) == user_pk).execution_options(populate_existing=True)
    )
    return (await session.execute(query)).scalar()


async def put_recovery_code(
    session: AsyncSession, user_pk: int, public_id: str, code_hash: str, *, active: bool, now: datetime
) -> None:
    """Replace the user's recovery code with one made ``now``.

    An upsert on the user: two first enrollments at once on PostgreSQL both delete the old row, then both insert,
    and a plain insert of the second one failed on the unique ``user_pk`` (a 500). The last writer's code stands.
    """
    await session.execute(delete(RecoveryCodeRow).where(col(RecoveryCodeRow.user_pk) == user_pk))
    table = cast(Any, RecoveryCodeRow).__table__
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    values = {"public_id": public_id, "code_hash": code_hash, "active": active, "created_at": now}
    await session.execute(
        insert(table).values(user_pk=user_pk, **values).on_conflict_do_update(index_elements=["user_pk"], set_=values)
    )


async def rotate_recovery_code(
    session: AsyncSession, user_pk: int, old_hash: str, new_hash: str, now: datetime
) -> bool:
    """Swap an active recovery code for a new one, made ``now``, if ``old_hash`` is it; ``True`` for the winner."""
    result = await session.execute(
        update(RecoveryCodeRow)
        .where(
            col(RecoveryCodeRow.user_pk) == user_pk,
            col(RecoveryCodeRow.code_hash) == old_hash,
            col(RecoveryCodeRow.active).is_(True),
        )
        .values(code_hash=new_hash, created_at=now)
    )
    return _count(result) == 1


async def attempts(session: AsyncSession, user_pk: int) -> MfaAttemptRow | None:
    """The user's failed-attempt bucket, fresh from the database."""
    query = select(MfaAttemptRow).where(col(MfaAttemptRow.user_pk) == user_pk).execution_options(populate_existing=True)
    return (await session.execute(query)).scalar()


async def adjust_attempts(
    session: AsyncSession, user_pk: int, delta: float, *, now: float, capacity: float, refill_seconds: float
) -> bool:
    """Add ``delta`` tokens (-1 takes one, +1 gives one back) to the user's bucket, refilled up to ``now``.

    Taking fails (``False``) when less than one token is left. Compare-and-set on ``version``, retried when a
    concurrent request changed the bucket first, so N concurrent takers never get more than the tokens there are.
    """
    for _ in range(50):
        row = await attempts(session, user_pk)
        await session.commit()
        if row is None:
            try:
                session.add(MfaAttemptRow(user_pk=user_pk, tokens=capacity + min(delta, 0), updated_at=now, version=1))
                await session.commit()
                return True
            except IntegrityError:
                await session.rollback()
                continue
        available = min(capacity, row.tokens + max(0.0, now - row.updated_at) / refill_seconds)
        if delta < 0 and available < -delta:
            return False
        result = await session.execute(
            update(MfaAttemptRow)
            .where(col(MfaAttemptRow.user_pk) == user_pk, col(MfaAttemptRow.version) == row.version)
            .values(tokens=min(capacity, available + delta), updated_at=now, version=row.version + 1)
        )
        await session.commit()
        if _count(result) == 1:
            return True
    return False


async def webauthn_names(session: AsyncSession, user_pk: int) -> dict[int, str]:
    """The names of the user's security keys, by the id of their authenticator row."""
    query = select(WebAuthnCredentialRow.authenticator_pk, WebAuthnCredentialRow.name).where(
        col(WebAuthnCredentialRow.user_pk) == user_pk
    )
    return {pk: name for pk, name in (await session.execute(query)).all()}


async def webauthn_keys(session: AsyncSession, user_pk: int) -> dict[int, WebAuthnCredentialRow]:
    """The user's security keys, by the id of their authenticator row."""
    query = select(WebAuthnCredentialRow).where(col(WebAuthnCredentialRow.user_pk) == user_pk)
    return {row.authenticator_pk: row for row in (await session.execute(query)).scalars()}


async def purge_webauthn_challenges(session: AsyncSession, before: datetime) -> int:
    """Delete WebAuthn ceremonies that expired before ``before`` (for ``identity purge``); the number deleted.

    The caller commits.
    """
    result = await session.execute(delete(WebAuthnChallengeRow).where(col(WebAuthnChallengeRow.expires_at) < before))
    return _count(result)


# --- emailed codes (issue 15) ------------------------------------------------------------------------------------


async def oob_code(session: AsyncSession, oob_hash: str) -> OobCodeRow | None:
    """The emailed code an ``oob_code`` (by its SHA-256) names, used or not (the caller decides)."""
    query = select(OobCodeRow).where(col(OobCodeRow.oob_hash) == oob_hash).execution_options(populate_existing=True)
    return (await session.execute(query)).scalar()


async def latest_oob_code(session: AsyncSession, transaction_pk: int) -> OobCodeRow | None:
    """The last code sent for a transaction (an ``auth_session`` names no oob_code: its latest code is the one)."""
    query = (
        select(OobCodeRow)
        .where(col(OobCodeRow.transaction_pk) == transaction_pk)
        .order_by(col(OobCodeRow.id).desc())
        .limit(1)
        .execution_options(populate_existing=True)
    )
    return (await session.execute(query)).scalar()


async def retire_oob_codes(session: AsyncSession, transaction_pk: int, now: datetime) -> None:
    """Spend every unused code of a transaction: a new email makes the ones before it worthless."""
    await session.execute(
        update(OobCodeRow)
        .where(col(OobCodeRow.transaction_pk) == transaction_pk, col(OobCodeRow.consumed_at).is_(None))
        .values(consumed_at=now),
        execution_options=_NO_SYNC,
    )


async def consume_oob_code(session: AsyncSession, code_id: int, now: datetime) -> bool:
    """Mark the code used, unless it already was or has expired; ``True`` for the one caller that spends it."""
    result = await session.execute(
        update(OobCodeRow)
        .where(
            col(OobCodeRow.id) == code_id,
            col(OobCodeRow.consumed_at).is_(None),
            col(OobCodeRow.expires_at) > now,
        )
        .values(consumed_at=now),
        execution_options=_NO_SYNC,
    )
    return _count(result) == 1


async def purge_oob_codes(session: AsyncSession, before: datetime) -> int:
    """Delete codes that expired before ``before`` (for ``identity purge``); the number deleted. The caller commits."""
    result = await session.execute(delete(OobCodeRow).where(col(OobCodeRow.expires_at) < before))
    return _count(result)
