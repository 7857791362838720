"""MFA transactions: a login paused at ``mfa_required``, stored behind its ``mfa_token``.

The ``mfa_token`` is 256 random bits, stored as SHA-256, and single use: it is burned (a conditional UPDATE on
``consumed_at``, `identity.store.mfa.burn_transaction`) in the same database transaction as the factor that answers
it, by the OTP, recovery-code and WebAuthn checks. Looking it up (`MfaTransactions.find`) burns nothing.

The enrollment pages have no mfa_token: an emailed code sent there is bound to a row of kind `PAGE_EMAIL` instead,
named by a random binding the page session keeps (`MfaTransactions.start_page`). It lives as long as the code, and
the code's check burns it as it burns an mfa_token.
"""

from __future__ import annotations

import secrets
from datetime import timedelta

from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from identity.accounts.errors import AccountError
from identity.accounts.factors._common import now_utc, user_pk, user_row
from identity.clock import Clock
from identity.crypto import sha256_hex
from identity.oauth2.interfaces import GrantResult, MfaTransaction, User
from identity.store import mfa as queries
from identity.store import users as user_queries
from identity.store.models import MfaTransactionRow, UserRow
from identity.store.tenant import tenant_settings

__all__ = ["PAGE_EMAIL", "MfaTransactions"]

PAGE_EMAIL = "page_email"
"""The ``kind`` of an enrollment page's transaction: what an emailed code sent from the pages is bound to."""


class MfaTransactions:
    """Start, find and resolve MFA transactions, over one request's session."""

    def __init__(self, session: AsyncSession, clock: Clock) -> None:
        self.session = session
        self.clock = clock
        self._user_pks: dict[str, int] = {}

    async def start(self, result: GrantResult) -> str:
        """Store the deferred issuance and return its mfa_token (committed)."""
        row = await user_row(self.session, result.user.user_id)
        if row is None or row.id is None:
            raise AccountError("user vanished during login")
        tenant = await tenant_settings(self.session)
        token = secrets.token_urlsafe(32)
        now = now_utc(self.clock)
        self.session.add(
            MfaTransactionRow(
                token_hash=sha256_hex(token),
                client_id=result.client.client_id,
                user_pk=row.id,
                connection=result.connection.name,
                grant_type=result.grant_type,
                audience=result.audience,
                scopes=list(result.scopes),
                access_claims=dict(result.access_claims),
                id_claims=dict(result.id_claims),
                app_metadata=dict(result.app_metadata),
                amr=[] if result.amr == ("pwd",) else list(result.amr),
                first_factor=result.first_factor,
                created_at=now,
                expires_at=now + timedelta(seconds=tenant.mfa_token_lifetime),
            )
        )
        await self.session.commit()
        return token

    async def find(self, mfa_token: str) -> MfaTransaction | None:
        """The transaction of ``mfa_token`` with its user's id, consumed or not (the caller decides)."""
        row = await queries.transaction_by_hash(self.session, sha256_hex(mfa_token))
        if row is None or row.id is None:
            return None
        user = await self.session.get(UserRow, row.user_pk)
        if user is None:
            return None
        self._user_pks[user.user_id] = row.user_pk
        return MfaTransaction(
            id=row.id,
            client_id=row.client_id,
            user_id=user.user_id,
            connection=row.connection,
            grant_type=row.grant_type,
            audience=row.audience,
            scopes=tuple(row.scopes),
            expires_at=row.expires_at.timestamp(),
            consumed=row.consumed_at is not None,
            access_claims=dict(row.access_claims),
            id_claims=dict(row.id_claims),
            app_metadata=dict(row.app_metadata or {}),
            amr=tuple(row.amr) or ("pwd",),
            first_factor=row.first_factor,
        )

    async def user(self, transaction: MfaTransaction) -> User | None:
        """The transaction's user as stored now."""
        found = await user_queries.by_user_id(self.session, transaction.user_id)
        return user_queries.user_from_row(*found) if found is not None else None

    async def user_pk(self, transaction: MfaTransaction) -> int:
        """The database id of the transaction's user (remembered from `find`)."""
        return self._user_pks.get(transaction.user_id) or await user_pk(self.session, transaction.user_id)

    # --- the enrollment pages' emailed codes ----------------------------------------------------------------------

    async def start_page(self, user_pk: int, *, client_id: str, connection: str, lifetime: float) -> tuple[str, int]:
        """A `PAGE_EMAIL` transaction for ``user_pk``: its binding (for the page session) and id. The caller commits.

        Written in the caller's transaction, so the code sent for it is stored together with it or not at all.
        """
        binding = secrets.token_urlsafe(32)
        now = now_utc(self.clock)
        row = MfaTransactionRow(
            kind=PAGE_EMAIL,
            token_hash=sha256_hex(binding),
            client_id=client_id,
            user_pk=user_pk,
            connection=connection,
            grant_type=PAGE_EMAIL,
            created_at=now,
            expires_at=now + timedelta(seconds=lifetime),
        )
        self.session.add(row)
        await self.session.flush()
        if row.id is None:
            raise AccountError("the page transaction was not stored")
        return binding, row.id

    async def page(self, user_pk: int, binding: str) -> int | None:
        """The id of the user's `PAGE_EMAIL` transaction named by ``binding`` (used or not: the code check says)."""
        return await queries.page_transaction(self.session, sha256_hex(binding), user_pk, PAGE_EMAIL)

    async def end_page(self, user_pk: int, binding: str) -> None:
        """Forget a page transaction (a new code replaces it); its codes go with it. The caller commits."""
        await self.session.execute(
            delete(MfaTransactionRow).where(
                col(MfaTransactionRow.token_hash) == sha256_hex(binding),
                col(MfaTransactionRow.user_pk) == user_pk,
                col(MfaTransactionRow.kind) == PAGE_EMAIL,
            )
        )
