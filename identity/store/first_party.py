"""The first-party apps endpoint's ``auth_session`` values and authorization codes, in the MFA transaction store.

Both are rows of ``mfa_transaction`` (``kind`` ``auth_session`` or ``authorization_code``), next to the mfa_tokens:
the same purge, the same cascade from the user, the same single-use primitive. Values are 256 random bits, kept
only as SHA-256. A session's ``consumed_at`` says that no second factor is awaited: the factor services burn it
with the factor (`identity.store.mfa.burn_transaction`), and a new authorization request re-arms it. A code is
redeemed by a conditional UPDATE of its ``consumed_at``, so of concurrent redemptions exactly one wins.
"""

from __future__ import annotations

import secrets
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, delete, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from identity.clock import Clock
from identity.crypto import sha256_hex
from identity.oauth2.first_party import (
    AUTHORIZATION_CODE,
    CODE_LIFETIME,
    SESSION_LIFETIME,
    AuthSession,
    IssuedCode,
)
from identity.oauth2.interfaces import GrantResult
from identity.store import users as user_queries
from identity.store.mfa import retire_oob_codes
from identity.store.models import MfaTransactionRow, UserRow
from identity.store.tenant import tenant_settings

__all__ = ["CODE", "SESSION", "SqlFirstParty", "end_auth_sessions"]

SESSION = "auth_session"
CODE = "authorization_code"


def _ts(value: datetime | None) -> float | None:
    return value.timestamp() if value is not None else None


async def end_auth_sessions(session: AsyncSession, user_pk: int) -> int:
    """Delete the user's auth_sessions (a new password, an MFA reset, a block); not committed. The number deleted."""
    mine = (col(MfaTransactionRow.user_pk) == user_pk, col(MfaTransactionRow.kind) == SESSION)
    result = await session.execute(delete(MfaTransactionRow).where(*mine))
    return cast(CursorResult[Any], result).rowcount


class SqlFirstParty:
    """`AuthSessionStore` and `AuthorizationCodeStore` over the database (callers commit)."""

    def __init__(self, session: AsyncSession, clock: Clock) -> None:
        self.session = session
        self.clock = clock

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self.clock.now(), UTC)

    async def _row(self, token: str, kind: str) -> tuple[MfaTransactionRow, str] | None:
        query = (
            select(MfaTransactionRow, UserRow.user_id)
            .join(UserRow, col(UserRow.id) == MfaTransactionRow.user_pk)
            .where(col(MfaTransactionRow.token_hash) == sha256_hex(token), col(MfaTransactionRow.kind) == kind)
            .execution_options(populate_existing=True)
        )
        found = (await self.session.execute(query)).first()
        return (found[0], found[1]) if found is not None else None

    # --- AuthSessionStore -------------------------------------------------------------------------------------------

    async def start(
        self, result: GrantResult, *, code_challenge: str, pending: bool, auth_time: float
    ) -> tuple[str, AuthSession]:
        """A new session row; until its first code it lives the tenant's ``mfa_token_lifetime``."""
        found = await user_queries.by_user_id(self.session, result.user.user_id)
        if found is None or found[0].id is None:
            raise LookupError("user vanished during login")
        lifetime = (await tenant_settings(self.session)).mfa_token_lifetime
        token, now = secrets.token_urlsafe(32), self._now()
        row = MfaTransactionRow(
            kind=SESSION,
            token_hash=sha256_hex(token),
            client_id=result.client.client_id,
            user_pk=found[0].id,
            connection=result.connection.name,
            grant_type=AUTHORIZATION_CODE,
            created_at=now,
            expires_at=now + timedelta(seconds=lifetime),
            consumed_at=None if pending else now,
            auth_time=datetime.fromtimestamp(auth_time, UTC),
            **_issuance(result, code_challenge),
        )
        self.session.add(row)
        await self.session.flush()
        return token, _session(row, result.user.user_id)

    async def find(self, auth_session: str) -> AuthSession | None:
        """The live or expired session of ``auth_session`` (the caller checks the expiry)."""
        found = await self._row(auth_session, SESSION)
        return _session(*found) if found is not None else None

    async def restart(self, session: AuthSession, result: GrantResult, *, code_challenge: str) -> AuthSession:
        """Replace the pending authorization (if any) with ``result``'s, and await a second factor again."""
        values = _issuance(result, code_challenge)
        await retire_oob_codes(self.session, session.id, self._now())  # a new step is answered by a new code
        await self.session.execute(
            update(MfaTransactionRow)
            .where(col(MfaTransactionRow.id) == session.id, col(MfaTransactionRow.kind) == SESSION)
            .values(consumed_at=None, **values),
            execution_options={"synchronize_session": False},
        )
        return _restarted(session, result, code_challenge)

    async def issue_code(self, session: AuthSession, *, amr: tuple[str, ...], acr: str | None, auth_time: float) -> str:
        """A code row copying the session's authorization; the session lives on until `SESSION_LIFETIME`."""
        code, now = secrets.token_urlsafe(32), self._now()
        user_pk = (
            await self.session.execute(select(MfaTransactionRow.user_pk).where(col(MfaTransactionRow.id) == session.id))
        ).scalar_one()
        authenticated = datetime.fromtimestamp(auth_time, UTC)
        self.session.add(
            MfaTransactionRow(
                kind=CODE,
                token_hash=sha256_hex(code),
                client_id=session.client_id,
                user_pk=user_pk,
                connection=session.connection,
                grant_type=AUTHORIZATION_CODE,
                audience=session.audience,
                scopes=list(session.scopes),
                access_claims=dict(session.access_claims),
                id_claims=dict(session.id_claims),
                app_metadata=dict(session.app_metadata),
                amr=list(amr),
                acr=acr,
                auth_time=authenticated,
                code_challenge=session.code_challenge,
                created_at=now,
                expires_at=now + timedelta(seconds=CODE_LIFETIME),
            )
        )
        lives_until = datetime.fromtimestamp(session.created_at, UTC) + timedelta(seconds=SESSION_LIFETIME)
        await self.session.execute(
            update(MfaTransactionRow)
            .where(col(MfaTransactionRow.id) == session.id)
            .values(auth_time=authenticated, expires_at=lives_until),
            execution_options={"synchronize_session": False},
        )
        await self.session.flush()
        return code

    # --- AuthorizationCodeStore -------------------------------------------------------------------------------------

    async def find_code(self, code: str) -> IssuedCode | None:
        """The code behind ``code``, consumed or not."""
        found = await self._row(code, CODE)
        if found is None or found[0].id is None:
            return None
        row, user_id = found
        return IssuedCode(
            id=row.id or 0,
            client_id=row.client_id,
            user_id=user_id,
            connection=row.connection,
            audience=row.audience,
            scopes=tuple(row.scopes),
            amr=tuple(row.amr),
            acr=row.acr,
            auth_time=_ts(row.auth_time),
            code_challenge=row.code_challenge or "",
            expires_at=row.expires_at.timestamp(),
            consumed=row.consumed_at is not None,
            family_id=row.family_id,
            access_claims=dict(row.access_claims),
            id_claims=dict(row.id_claims),
            app_metadata=dict(row.app_metadata or {}),
        )

    async def redeem(self, code: IssuedCode) -> bool:
        """Consume the code unless it already was; ``True`` for the one request that does."""
        result = await self.session.execute(
            update(MfaTransactionRow)
            .where(
                col(MfaTransactionRow.id) == code.id,
                col(MfaTransactionRow.kind) == CODE,
                col(MfaTransactionRow.consumed_at).is_(None),
            )
            .values(consumed_at=self._now()),
            execution_options={"synchronize_session": False},
        )
        return cast(CursorResult[Any], result).rowcount == 1

    async def remember_family(self, code: IssuedCode, family_id: str) -> None:
        """Keep the refresh-token family issued for the code (revoked if the code is presented again)."""
        await self.session.execute(
            update(MfaTransactionRow).where(col(MfaTransactionRow.id) == code.id).values(family_id=family_id),
            execution_options={"synchronize_session": False},
        )


def _issuance(result: GrantResult, code_challenge: str) -> dict[str, Any]:
    """The columns that say what a session's pending authorization will issue."""
    return {
        "audience": result.audience,
        "scopes": list(result.scopes),
        "access_claims": dict(result.access_claims),
        "id_claims": dict(result.id_claims),
        "app_metadata": dict(result.app_metadata),
        "amr": list(result.amr),
        "code_challenge": code_challenge,
    }


def _session(row: MfaTransactionRow, user_id: str) -> AuthSession:
    return AuthSession(
        id=row.id or 0,
        client_id=row.client_id,
        user_id=user_id,
        connection=row.connection,
        audience=row.audience,
        scopes=tuple(row.scopes),
        amr=tuple(row.amr) or ("pwd",),
        code_challenge=row.code_challenge,
        pending=row.consumed_at is None,
        created_at=row.created_at.timestamp(),
        expires_at=row.expires_at.timestamp(),
        access_claims=dict(row.access_claims),
        id_claims=dict(row.id_claims),
        app_metadata=dict(row.app_metadata or {}),
    )


def _restarted(session: AuthSession, result: GrantResult, code_challenge: str) -> AuthSession:
    """``session`` with a new pending authorization (what `SqlFirstParty.restart` wrote)."""
    return replace(
        session,
        audience=result.audience,
        scopes=tuple(result.scopes),
        access_claims=dict(result.access_claims),
        id_claims=dict(result.id_claims),
        app_metadata=dict(result.app_metadata),
        amr=tuple(result.amr),
        code_challenge=code_challenge,
        pending=True,
    )
