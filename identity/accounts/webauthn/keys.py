"""The users' WebAuthn keys and handles, as stored."""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from identity.accounts.errors import AccountError
from identity.accounts.webauthn.wire import b64url_decode
from identity.store.models import AuthenticatorRow, WebAuthnCredentialRow, WebAuthnUserRow

__all__ = ["KeyStore"]


class KeyStore:
    """Keys and user handles, over one request's session.

    The user handle is 32 random bytes per user, never the user id or the email. The public key is stored as the
    authenticator sent it (COSE; it is not a secret).
    """

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def user_handle(self, user_pk: int) -> bytes:
        """The user's random handle, created on first use (race-safe: the loser reads the winner's)."""
        for _ in range(3):
            row = await self.session.get(WebAuthnUserRow, user_pk, populate_existing=True)
            if row is not None:
                return row.user_handle
            self.session.add(WebAuthnUserRow(user_pk=user_pk, user_handle=secrets.token_bytes(32)))
            try:
                await self.session.commit()
            except IntegrityError:
                await self.session.rollback()
        raise AccountError("could not create a user handle")

    async def user_by_handle(self, handle: bytes) -> int | None:
        """The user whose handle this is."""
        query = select(WebAuthnUserRow.user_pk).where(col(WebAuthnUserRow.user_handle) == handle)
        return (await self.session.execute(query)).scalar()

    async def credentials(self, user_pk: int, authenticator_id: str | None = None) -> Sequence[WebAuthnCredentialRow]:
        """The user's keys, oldest first; with ``authenticator_id``, only that authenticator's key (or none)."""
        query = (
            select(WebAuthnCredentialRow)
            .where(col(WebAuthnCredentialRow.user_pk) == user_pk)
            .order_by(col(WebAuthnCredentialRow.id))
            .execution_options(populate_existing=True)
        )
        if authenticator_id is not None:
            query = query.join(
                AuthenticatorRow, col(AuthenticatorRow.id) == col(WebAuthnCredentialRow.authenticator_pk)
            ).where(col(AuthenticatorRow.public_id) == authenticator_id)
        return (await self.session.execute(query)).scalars().all()

    async def candidates(
        self, credential: Mapping[str, Any], response: Mapping[str, Any], user_pk: int | None
    ) -> list[WebAuthnCredentialRow]:
        """The keys the response may come from: by credential id, else by user handle, else the user's keys."""
        handle_pk = None
        if isinstance(handle := response.get("userHandle"), str) and handle:
            try:
                handle_pk = await self.user_by_handle(b64url_decode(handle))
            except ValueError:
                return []
            if handle_pk is None or (user_pk is not None and handle_pk != user_pk):
                return []
        raw = credential.get("rawId") or credential.get("id")
        if isinstance(raw, str) and raw:
            try:
                credential_id = b64url_decode(raw)
            except ValueError:
                return []
            query = select(WebAuthnCredentialRow).where(col(WebAuthnCredentialRow.credential_id) == credential_id)
            row = (await self.session.execute(query.execution_options(populate_existing=True))).scalar()
            await self.session.commit()
            if row is None or (user_pk is not None and row.user_pk != user_pk):
                return []
            if handle_pk is not None and row.user_pk != handle_pk:
                return []
            return [row]
        owner = handle_pk if handle_pk is not None else user_pk
        if owner is None:
            return []  # a passkey response names its key or its user; Okta's form without userHandle cannot
        rows = list(await self.credentials(owner))
        await self.session.commit()
        return rows
