"""Administrative operations the CLI and the Management API share, each with the audit event it leaves.

An MFA reset (``gd_unenroll``), a removed factor (``gd_unenroll``), a lifted brute-force block (``ublkdu``) and a
deleted user (``sdu``) are logged here, so ``identity users ...`` and ``/api/v2`` log the same events for the same
action. The caller passes only where the event goes and who acted (`Record`): the API's request trail and audit
queue, or the CLI's synchronous write.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from sqlalchemy.ext.asyncio import AsyncSession

from identity.accounts.attack import unblock_identifier
from identity.accounts.factors import FactorService
from identity.accounts.users import UserService
from identity.audit import LogEvent
from identity.store import users as user_queries

__all__ = ["Record", "delete_user", "remove_factor", "reset_mfa", "unblock"]

Record = Callable[[LogEvent], Awaitable[None]]
"""Writes one event, adding who acted (the API's client and address, or ``source: cli``)."""


def _event(
    event_type: str, description: str | None, *, user_id: str | None, user_name: str | None, connection: str | None
) -> LogEvent:
    return LogEvent(
        type=event_type,
        description=description,
        user_id=user_id,
        user_name=user_name,
        connection=connection,
        strategy="auth0" if connection is not None else None,
        strategy_type="database" if connection is not None else None,
    )


async def _user_event(session: AsyncSession, event_type: str, user_id: str, description: str | None) -> LogEvent:
    found = await user_queries.by_user_id(session, user_id)
    row, connection = found if found is not None else (None, None)
    name = (row.email or row.username) if row is not None else None
    return _event(event_type, description, user_id=user_id, user_name=name, connection=connection)


async def reset_mfa(factors: FactorService, user_id: str, record: Record) -> int:
    """Remove every factor of the user and end the user's sessions (lost device); logs ``gd_unenroll``."""
    event = await _user_event(factors.session, "gd_unenroll", user_id, "Every second factor removed by an operator")
    removed = await factors.authenticators.reset(user_id)
    await record(event)
    return removed


async def remove_factor(factors: FactorService, user_id: str, factor_id: str, record: Record) -> bool:
    """Remove one factor of the user; logs ``gd_unenroll`` when there was one."""
    event = await _user_event(factors.session, "gd_unenroll", user_id, "A second factor removed by an operator")
    removed = await factors.authenticators.remove(user_id, factor_id)
    if removed:
        await record(event)
    return removed


async def delete_user(users: UserService, user_id: str, record: Record) -> None:
    """Delete the user with its factors, sessions and tokens; logs ``sdu``."""
    event = await _user_event(users.session, "sdu", user_id, None)
    await users.delete(user_id)
    await record(event)


async def unblock(
    session: AsyncSession,
    identifiers: Sequence[str],
    record: Record,
    *,
    connection: str | None = None,
    user_id: str | None = None,
) -> int:
    """Lift the brute-force blocks of ``identifiers`` (in ``connection``, or every directory); logs one ``ublkdu``."""
    removed = 0
    for identifier in identifiers:
        removed += await unblock_identifier(session, identifier, connection=connection)
    description = f"Brute-force block released by an operator ({removed} counter(s))"
    name = identifiers[0][:320] if identifiers else None
    await record(_event("ublkdu", description, user_id=user_id, user_name=name, connection=connection))
    return removed
