"""A user's second factors as records: listed, removed one at a time, or all reset.

The records carry no secret and no wire format: the MFA API, the Management API and the enrollment pages each render
their own shape from them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from identity.accounts.factors._common import now_utc, user_pk
from identity.accounts.factors.email import masked, open_address
from identity.accounts.sessions import end_user_sessions
from identity.clock import Clock
from identity.crypto import SecretBox
from identity.store import mfa as queries
from identity.store.models import AuthenticatorRow, UserRow

__all__ = ["Authenticators", "Factor", "FactorType"]


class FactorType(StrEnum):
    """What kind of second factor."""

    TOTP = "totp"
    """An authenticator app (the MFA API's ``otp``)."""
    WEBAUTHN = "webauthn"
    """A security key or passkey."""
    EMAIL = "email"
    """Codes sent to an address (the MFA API's ``oob`` on the ``email`` channel)."""
    RECOVERY_CODE = "recovery-code"


@dataclass(frozen=True)
class Factor:
    """One of a user's second factors."""

    id: str
    """The public id (``totp|dev_…``, ``webauthn|dev_…``, ``recovery-code|dev_…``)."""
    type: FactorType
    active: bool
    """Confirmed; an app not yet confirmed is pending (the recovery code is listed only when active)."""
    created_at: datetime
    confirmed_at: datetime | None = None
    name: str | None = None
    """A security key's name; an email factor's masked address (``j***@example.com``)."""
    synced: bool = False
    """A security key that may be synced between devices (a passkey: WebAuthn backup eligible)."""

    @property
    def enrolled_at(self) -> datetime:
        """When the factor was confirmed (else created): what "the factor enrolled first" compares."""
        return self.confirmed_at or self.created_at


_KINDS = frozenset({"totp", "webauthn", "email"})


class Authenticators:
    """The users' factors, over one request's session."""

    def __init__(self, session: AsyncSession, clock: Clock, box: SecretBox | None = None) -> None:
        self.session = session
        self.clock = clock
        self.box = box
        """Opens email factors' addresses, to list them masked (without it they are listed unnamed)."""

    async def listed(self, user_id: str) -> list[Factor]:
        """The active recovery code first, then the authenticators, active ones first, oldest first."""
        owner = await user_pk(self.session, user_id)
        listed: list[Factor] = []
        code = await queries.recovery_code(self.session, owner)
        if code is not None and code.active:
            listed.append(Factor(code.public_id, FactorType.RECOVERY_CODE, True, code.created_at))
        keys = await queries.webauthn_keys(self.session, owner)
        for authenticator in await queries.authenticators(self.session, owner):
            key = keys.get(authenticator.id or 0) if authenticator.kind == "webauthn" else None
            name = key.name if key is not None else None
            if authenticator.kind == "email" and self.box is not None:
                name = masked(open_address(self.box, authenticator))
            listed.append(
                Factor(
                    id=authenticator.public_id,
                    type=FactorType(authenticator.kind) if authenticator.kind in _KINDS else FactorType.TOTP,
                    active=authenticator.active,
                    created_at=authenticator.created_at,
                    confirmed_at=authenticator.confirmed_at,
                    name=name,
                    synced=key is not None and key.backup_eligible,
                )
            )
        await self.session.commit()
        return listed

    async def has_active(self, user_id: str) -> bool:
        """Whether the user has a confirmed authenticator."""
        owner = await user_pk(self.session, user_id)
        active = any(a.active for a in await queries.authenticators(self.session, owner))
        await self.session.commit()
        return active

    async def remove(self, user_id: str, authenticator_id: str) -> bool:
        """Delete one factor; with the last active authenticator the recovery code goes too."""
        owner = await user_pk(self.session, user_id)
        code = await queries.recovery_code(self.session, owner)
        if code is not None and code.public_id == authenticator_id:
            await self.session.delete(code)
            await self.session.commit()
            return True
        removed = await queries.delete_authenticator(self.session, owner, authenticator_id)
        if removed and not any(a.active for a in await queries.authenticators(self.session, owner)):
            await queries.delete_all_factors(self.session, owner)
        await self.session.commit()
        return removed

    async def owner(self, authenticator_id: str) -> str | None:
        """The ``user_id`` whose authenticator this is (Guardian's enrollment endpoints name only the enrollment)."""
        query = (
            select(UserRow.user_id)
            .join(AuthenticatorRow, col(AuthenticatorRow.user_pk) == UserRow.id)
            .where(col(AuthenticatorRow.public_id) == authenticator_id)
        )
        found = (await self.session.execute(query)).scalar()
        await self.session.commit()
        return found

    async def reset(self, user_id: str) -> int:
        """Remove every factor of the user (lost device, admin reset); the number removed."""
        owner = await user_pk(self.session, user_id)
        removed = await queries.delete_all_factors(self.session, owner)
        # Whoever holds the lost device may hold sessions too, in apps and on the enrollment pages: end them all.
        await end_user_sessions(self.session, owner, user_id, "mfa_reset", now_utc(self.clock))
        await self.session.commit()
        return removed
