"""What the parts of the factor service share: user lookups, public ids, sealed TOTP secrets, the time."""

from __future__ import annotations

import secrets

from sqlalchemy.ext.asyncio import AsyncSession

from identity.accounts.errors import AccountError, UnknownUser
from identity.clock import now_utc
from identity.crypto import SecretBox, SecretBoxError
from identity.store import users as user_queries
from identity.store.models import AuthenticatorRow, UserRow

__all__ = ["TOTP_PURPOSE", "account_name", "now_utc", "open_totp_secret", "public_id", "user_pk", "user_row"]

TOTP_PURPOSE = "totp-secret:"
"""A TOTP secret is sealed (AES-GCM) for this purpose plus its authenticator's public id: it opens for no other."""


def public_id(kind: str) -> str:
    """A new public id of a factor (``totp|dev_…``, ``recovery-code|dev_…``), as Auth0 shapes them."""
    return f"{kind}|dev_{secrets.token_urlsafe(12)}"


def account_name(user: UserRow) -> str:
    """How an authenticator app labels the account: the email, else the username, else the id."""
    return user.email or user.username or user.user_id


def open_totp_secret(box: SecretBox, authenticator: AuthenticatorRow) -> str:
    """The authenticator's TOTP secret (base32)."""
    try:
        return box.open(authenticator.secret, purpose=TOTP_PURPOSE + authenticator.public_id).decode()
    except SecretBoxError as exc:
        raise AccountError("an authenticator secret does not open with the configured keys") from exc


async def user_row(session: AsyncSession, user_id: str) -> UserRow | None:
    """The user's row, or ``None``."""
    found = await user_queries.by_user_id(session, user_id)
    return found[0] if found is not None else None


async def user_pk(session: AsyncSession, user_id: str) -> int:
    """The user's database id; `UnknownUser` when there is no such user."""
    row = await user_row(session, user_id)
    if row is None or row.id is None:
        raise UnknownUser("unknown user")
    return row.id
