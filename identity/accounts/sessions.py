"""Ending a user's sessions: refresh-token families, signed-in enrollment pages, first-party auth_sessions.

A password change, an MFA reset and an operator's ``users revoke-sessions`` all call `end_user_sessions`: whoever
held the old password or the lost device may hold a session too, in an app or in a browser.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from identity.store import web_sessions
from identity.store.first_party import end_auth_sessions
from identity.tokens.refresh import revoke_user_families

__all__ = ["end_user_sessions"]


async def end_user_sessions(session: AsyncSession, user_pk: int, user_id: str, reason: str, now: datetime) -> int:
    """Revoke the user's refresh tokens, delete their web and auth sessions (not committed); tokens revoked."""
    revoked = await revoke_user_families(session, user_pk, reason, now)
    await web_sessions.remove_for_user(session, user_id)
    await end_auth_sessions(session, user_pk)  # they stand for a password proved: a step-up skips it
    return revoked
