"""Per-request assembly: session → stores and services → endpoint (sessions are per request)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

from litestar.di import NamedDependency
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from identity.accounts.factors import FactorService
from identity.accounts.passwords import PasswordHasher
from identity.accounts.users import DirectoryAuthenticator
from identity.clock import Clock
from identity.crypto import SecretBox
from identity.oauth2 import TokenEndpoint
from identity.oauth2.grants import Grant, MfaOtpGrant, MfaRecoveryCodeGrant, PasswordGrant, PasswordRealmGrant
from identity.rules import RulesEngine
from identity.settings import Settings
from identity.store.rules import merge_app_metadata
from identity.store.tenant import SqlTenantStore
from identity.tokens import JwtIssuer, KeyRing

__all__ = ["Services", "build_factors", "build_token_endpoint", "provide_session"]


@dataclass
class Services:
    """Process-wide collaborators, built once by `identity.app.create_app` and kept on ``app.state``."""

    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    hasher: PasswordHasher
    box: SecretBox
    clock: Clock
    keys: KeyRing | None = None
    rules: RulesEngine | None = None

    @property
    def key_ring(self) -> KeyRing:
        """The loaded signing keys (loaded at startup)."""
        if self.keys is None:
            raise RuntimeError("signing keys are not loaded yet")
        return self.keys


async def provide_session(services: NamedDependency[Services]) -> AsyncIterator[AsyncSession]:
    """One database session per request."""
    async with services.sessions() as session:
        yield session


def build_factors(services: Services, session: AsyncSession) -> FactorService:
    """Second-factor services bound to this request's session."""
    return FactorService(session, services.box, services.clock)


def build_token_endpoint(services: Services, session: AsyncSession) -> TokenEndpoint:
    """The token endpoint with every enabled grant, bound to this request's session."""
    tenant = SqlTenantStore(session, issuer=services.settings.issuer)
    users = DirectoryAuthenticator(session, services.hasher)
    mfa = build_factors(services, session)
    issuer = JwtIssuer(
        services.key_ring,
        issuer=services.settings.issuer,
        clock=services.clock,
        id_token_lifetime=services.settings.id_token_lifetime,
    )
    rules = None
    if services.rules is not None and services.rules.rules:

        async def save_app_metadata(user_id: str, updates: Mapping[str, Any]) -> None:
            await merge_app_metadata(session, user_id, updates)

        rules = services.rules.bind(save_app_metadata)
    grants: dict[str, Grant] = {
        PasswordGrant.GRANT_TYPE: PasswordGrant(tenant, users, issuer, mfa, rules),
        PasswordRealmGrant.GRANT_TYPE: PasswordRealmGrant(tenant, users, issuer, mfa, rules),
        MfaOtpGrant.GRANT_TYPE: MfaOtpGrant(tenant, mfa, issuer, services.clock),
        MfaRecoveryCodeGrant.GRANT_TYPE: MfaRecoveryCodeGrant(tenant, mfa, issuer, services.clock),
    }
    return TokenEndpoint(grants, tenant, realm=services.settings.issuer)
