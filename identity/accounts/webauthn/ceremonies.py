"""WebAuthn ceremonies: each challenge issued, found again by the response that answers it, and burned once.

Every ceremony has a challenge of 32 random bytes, stored as SHA-256 with what it is bound to (an mfa_token, an
``auth_session``, an enrollment-page session), a purpose and an expiry. A response is looked up by the challenge its
``clientDataJSON`` carries; a challenge issued for something else is refused. The burn is a conditional UPDATE, in
the same database transaction as the sign count and the mfa_token, so of concurrent answers exactly one wins.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from identity.accounts.webauthn.records import Pending, Purpose
from identity.accounts.webauthn.wire import b64url_decode, response_of
from identity.clock import Clock
from identity.crypto import sha256_hex
from identity.store.models import MfaTransactionRow, WebAuthnChallengeRow

__all__ = ["CEREMONY_SECONDS", "Ceremonies", "rowcount"]

logger = logging.getLogger("identity.webauthn")

CEREMONY_SECONDS = 300
"""How long a challenge may be answered (also the ``timeout`` hint given to the browser)."""


class Ceremonies:
    """The stored challenges, over one request's session."""

    def __init__(self, session: AsyncSession, clock: Clock) -> None:
        self.session = session
        self.clock = clock

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self.clock.now(), UTC)

    async def issue(
        self,
        purpose: Purpose,
        *,
        user_verification: str,
        user_pk: int | None = None,
        transaction: MfaTransactionRow | None = None,
        session_binding: str | None = None,
        client_id: str | None = None,
        connection: str | None = None,
    ) -> bytes:
        """A new challenge of 32 random bytes, stored (as SHA-256) with what it is bound to; the caller commits.

        It expires after `CEREMONY_SECONDS`, or with the mfa_token it is bound to if that comes first.
        """
        challenge = secrets.token_bytes(32)
        now = self._now()
        expires = now + timedelta(seconds=CEREMONY_SECONDS)
        if transaction is not None:
            expires = min(expires, transaction.expires_at)
        self.session.add(
            WebAuthnChallengeRow(
                challenge_hash=hashlib.sha256(challenge).hexdigest(),
                purpose=purpose.value,
                user_pk=user_pk,
                transaction_pk=transaction.id if transaction is not None else None,
                session_hash=sha256_hex(session_binding) if session_binding is not None else None,
                client_id=client_id,
                connection=connection,
                user_verification=user_verification,
                created_at=now,
                expires_at=expires,
            )
        )
        return challenge

    async def answered(
        self,
        credential: Mapping[str, Any],
        purpose: Purpose,
        *,
        transaction_pk: int | None = None,
        session_binding: str | None = None,
    ) -> Pending | None:
        """The live challenge a response answers, if it was issued for this purpose and binding; else ``None``."""
        try:
            client_data = json.loads(b64url_decode(response_of(credential).get("clientDataJSON", "")))
            challenge = b64url_decode(client_data["challenge"])
        except (ValueError, KeyError, TypeError, RecursionError):
            return None
        query = (
            select(WebAuthnChallengeRow)
            .where(col(WebAuthnChallengeRow.challenge_hash) == hashlib.sha256(challenge).hexdigest())
            .execution_options(populate_existing=True)
        )
        row = (await self.session.execute(query)).scalar()
        await self.session.commit()
        if row is None or row.purpose != purpose.value or row.consumed_at is not None:
            return None
        if row.expires_at <= self._now():
            return None
        if transaction_pk is not None and row.transaction_pk != transaction_pk:
            logger.warning("webauthn challenge of another mfa_token refused purpose=%s", purpose.value)
            return None
        if session_binding is not None and row.session_hash != sha256_hex(session_binding):
            logger.warning("webauthn challenge of another session refused purpose=%s", purpose.value)
            return None
        return Pending.of(row)

    async def of_session(self, auth_session: str, purposes: Sequence[Purpose]) -> Pending | None:
        """The live ceremony of an ``auth_session`` (passkey API)."""
        query = (
            select(WebAuthnChallengeRow)
            .where(col(WebAuthnChallengeRow.session_hash) == sha256_hex(auth_session))
            .execution_options(populate_existing=True)
        )
        row = (await self.session.execute(query)).scalar()
        await self.session.commit()
        if row is None or row.purpose not in {p.value for p in purposes} or row.consumed_at is not None:
            return None
        return Pending.of(row) if row.expires_at > self._now() else None

    async def burn(self, ceremony: Pending, now: datetime) -> bool:
        """Mark the challenge answered unless it already was; ``True`` for the one caller that burns it."""
        result = await self.session.execute(
            update(WebAuthnChallengeRow)
            .where(col(WebAuthnChallengeRow.id) == ceremony.id, col(WebAuthnChallengeRow.consumed_at).is_(None))
            .values(consumed_at=now)
        )
        return rowcount(result) == 1


def rowcount(result: Any) -> int:
    """The rows a conditional UPDATE changed."""
    return int(getattr(result, "rowcount", 0) or 0)
