"""Per-request assembly: session → stores and services → endpoint (sessions are per request)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from litestar.di import NamedDependency
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from identity.accounts.factors import AttemptBucket, FactorService
from identity.accounts.passwords import PasswordHasher
from identity.accounts.users import DirectoryAuthenticator
from identity.accounts.webauthn import WebAuthnFactors, WebAuthnService
from identity.audit import AuditLog, AuditTrail
from identity.clock import Clock
from identity.crypto import SecretBox
from identity.mail import Mailer, MailError
from identity.oauth2 import RevocationEndpoint, TokenEndpoint
from identity.oauth2.errors import OAuthError
from identity.oauth2.first_party import AuthSession, IssuedCode
from identity.oauth2.grants import (
    ClientCredentialsGrant,
    Grant,
    MfaOobGrant,
    MfaOtpGrant,
    MfaRecoveryCodeGrant,
    PasswordGrant,
    PasswordRealmGrant,
    RefreshTokenGrant,
)
from identity.oauth2.grants.authorization_code import AuthorizationCodeGrant
from identity.oauth2.grants.client_credentials import CredentialsExchangeHook
from identity.oauth2.grants.webauthn import MfaWebAuthnGrant, WebAuthnGrant
from identity.oauth2.interfaces import (
    Client,
    FactorCheck,
    GrantResult,
    LoginBlocked,
    MfaTransaction,
    StoredRefreshToken,
    TokenResponse,
    WebAuthnOutcome,
)
from identity.oauth2.requests import TokenRequest
from identity.rules import RulesEngine
from identity.rules.loader import rules_fingerprint, rules_from_rows
from identity.rules.pipeline import RuleLoadError
from identity.settings import Settings
from identity.store.config import ConfigCache
from identity.store.db import UnitOfWork, WriteGate
from identity.store.first_party import SqlFirstParty
from identity.store.models import utcnow
from identity.store.rules import SqlAppMetadata, all_rules
from identity.store.tenant import SqlTenantStore
from identity.store.userinfo import SqlUserinfoClaims
from identity.tokens import JwtIssuer, KeyRing
from identity.tokens.keys import key_table_state, load_key_ring
from identity.tokens.refresh import SqlRefreshTokens

logger = logging.getLogger("identity.rules")

__all__ = [
    "Services",
    "TrailObserver",
    "build_authenticator",
    "build_factors",
    "build_revocation_endpoint",
    "build_token_endpoint",
    "build_webauthn",
    "exchange_unit",
    "provide_session",
    "unit_of_work",
]

MAIL_ERRORS: tuple[type[Exception], ...] = (MailError,)
"""What a failed send raises (`identity.mail`): answered ``bad_gateway``; anything else is a bug and propagates."""


@dataclass
class Services:
    """Process-wide collaborators, built once by `identity.app.create_app` and kept on ``app.state``."""

    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    hasher: PasswordHasher
    box: SecretBox
    clock: Clock
    audit: AuditLog
    gate: WriteGate | None = None
    """Serialises SQLite writers (`identity.store.db.write_gate`); ``None`` on PostgreSQL."""
    config: ConfigCache | None = None
    """The tenant configuration cached in this process (`identity.store.config`)."""
    keys: KeyRing | None = None
    rules: RulesEngine | None = None
    migration_heads: frozenset[str] = frozenset()
    known_revisions: frozenset[str] = frozenset()
    """Every migration this release ships: a database at a revision outside it was migrated by a newer release."""
    """The migration heads this release ships (read at startup), compared by ``/readyz`` with the database's."""
    draining: bool = False
    """Set when a shutdown begins: ``/readyz`` answers 503 while in-flight requests finish."""
    credentials_hooks: tuple[CredentialsExchangeHook, ...] = ()
    """Credentials-exchange hooks of the client_credentials grant (Auth0's M2M Actions); none by default."""
    mailer: Mailer | None = None
    """Sends emailed codes (``IDENTITY_SMTP_URL``); ``None``: no mail server, no email factor."""
    _key_state: tuple[tuple[Any, ...], ...] | None = None

    async def refresh_keys(self) -> bool:
        """Reload the key ring when the signing-key table changed, or a previous key reached its retirement.

        The change may come from any instance or from the CLI (a rotation, a revocation). Returns whether the ring
        was reloaded. Key rows carry wall-clock times, so this uses the wall clock too.
        """
        async with self.sessions() as session:
            state = await key_table_state(session)
            now = utcnow()
            retiring = self.keys is not None and self.keys.expires_at is not None and self.keys.expires_at <= now
            if self.keys is not None and state == self._key_state and not retiring:
                await session.commit()
                return False
            self.keys = await load_key_ring(session, self.box, now=now)
            self._key_state = state
            return True

    _rules_fingerprint: tuple[Any, ...] | None = None

    async def refresh_rules(self) -> None:
        """Follow the stored rule pipeline (an API toggle or a tenant apply elsewhere).

        Rule changes bump the configuration version, so the configuration cache's check (about once a second, at
        once after a change made by this process) reloads them (`reload_rules`); no query per token request.
        """
        await self.tenant_config.get()

    async def reload_rules(self, session: AsyncSession) -> None:
        """Rebuild the pipeline from the stored rules when they changed.

        A rule whose handler no longer imports keeps the previous pipeline and is logged (the start-up check names it
        too).
        """
        rows = await all_rules(session)
        fingerprint = rules_fingerprint(rows)
        if fingerprint == self._rules_fingerprint:
            return
        try:
            self.rules = rules_from_rows(rows, self.clock)
        except RuleLoadError:
            logger.exception("the stored rules changed but do not load; the previous pipeline stays")
        self._rules_fingerprint = fingerprint

    @property
    def tenant_config(self) -> ConfigCache:
        """The configuration cache (built with the app)."""
        if self.config is None:
            raise RuntimeError("the configuration cache is not set up")
        return self.config

    async def algs_in_use(self) -> frozenset[str]:
        """Signing algorithms the tenant's tokens use (from the cached configuration)."""
        return (await self.tenant_config.get()).signing_algs

    @property
    def key_ring(self) -> KeyRing:
        """The loaded signing keys (loaded at startup)."""
        if self.keys is None:
            raise RuntimeError("signing keys are not loaded yet")
        return self.keys


async def provide_session(services: NamedDependency[Services]) -> AsyncIterator[AsyncSession]:
    """One database session per request, opened with the current tenant configuration (`identity.store.config`)."""
    async with services.sessions() as session:
        await services.tenant_config.attach(session)
        yield session


def build_factors(services: Services, session: AsyncSession, unit: UnitOfWork | None = None) -> FactorService:
    """Second-factor services bound to this request's session (and the token request's unit of work)."""
    return FactorService(session, services.box, services.clock, unit, sender=services.mailer, mail_errors=MAIL_ERRORS)


def build_webauthn(services: Services, session: AsyncSession) -> WebAuthnService:
    """WebAuthn ceremonies bound to this request's session."""
    return WebAuthnService(session, services.settings, services.clock)


def build_authenticator(services: Services, session: AsyncSession, trail: AuditTrail | None) -> DirectoryAuthenticator:
    """Password checks with attack protection, bound to this request's session."""
    return DirectoryAuthenticator(session, services.hasher, clock=services.clock, trail=trail)


class _TrailedFactors(FactorService):
    """Second factors that tell the audit trail whose login an ``mfa_token`` continues."""

    def __init__(
        self,
        session: AsyncSession,
        box: SecretBox,
        clock: Clock,
        trail: AuditTrail,
        unit: UnitOfWork | None = None,
        *,
        sender: Mailer | None = None,
    ) -> None:
        super().__init__(session, box, clock, unit, sender=sender, mail_errors=MAIL_ERRORS)
        self.trail = trail

    async def find(self, mfa_token: str) -> MfaTransaction | None:
        found = await super().find(mfa_token)
        if found is not None:
            self.trail.user_id, self.trail.connection = found.user_id, found.connection
            self.trail.audience, self.trail.scope = found.audience, " ".join(found.scopes)
        return found

    async def start(self, result: GrantResult) -> str:
        _describe(self.trail, result)
        return await super().start(result)

    async def check_otp(self, transaction: MfaTransaction, otp: str) -> FactorCheck:
        enrolled_before = await self.authenticators.has_active(transaction.user_id)
        check = await super().check_otp(transaction, otp)
        if check is FactorCheck.ACCEPTED and not enrolled_before:
            self.trail.also.append("gd_enrollment_complete")  # the code confirmed a pending enrollment
        return check


class _TrailedWebAuthn(WebAuthnFactors):
    """WebAuthn for the grants, telling the audit trail about enrollments, passkey users and cloned keys."""

    def __init__(self, webauthn: WebAuthnService, attempts: AttemptBucket, trail: AuditTrail) -> None:
        super().__init__(webauthn, attempts)
        self.trail = trail

    def _cloned(self, outcome: WebAuthnOutcome) -> WebAuthnOutcome:
        if outcome.cloned:
            self.trail.note("w", "WebAuthn sign count did not increase: the security key may have been cloned")
        return outcome

    async def confirm_enrollment(self, transaction: MfaTransaction, credential: Mapping[str, Any]) -> WebAuthnOutcome:
        outcome = await super().confirm_enrollment(transaction, credential)
        if outcome.check is FactorCheck.ACCEPTED:
            self.trail.also.append("gd_enrollment_complete")
        return outcome

    async def check_assertion(self, transaction: MfaTransaction, credential: Mapping[str, Any]) -> WebAuthnOutcome:
        return self._cloned(await super().check_assertion(transaction, credential))

    async def passkey(
        self, client_id: str, auth_session: str | None, credential: Mapping[str, Any], *, ip: str | None = None
    ) -> WebAuthnOutcome:
        try:
            outcome = self._cloned(await super().passkey(client_id, auth_session, credential, ip=ip))
        except LoginBlocked:
            self.trail.note("limit_mu")  # the suspicious-IP bucket, as for a password login
            raise
        if outcome.user is not None:
            self.trail.user_id, self.trail.connection = outcome.user.user_id, outcome.user.connection
        return outcome


class _TrailedRefreshTokens(SqlRefreshTokens):
    """Refresh tokens that tell the audit trail whose token it is, and when a reuse revoked a family."""

    def __init__(self, session: AsyncSession, box: SecretBox, clock: Clock, trail: AuditTrail) -> None:
        super().__init__(session, box, clock)
        self.trail = trail

    async def find(self, token: str) -> StoredRefreshToken | None:
        found = await super().find(token)
        if found is not None and self.trail.user_id is None:
            self.trail.user_id, self.trail.connection = found.user_id, found.connection
        return found

    async def revoke_family(self, family_id: str, reason: str) -> None:
        if reason == "reuse":
            self.trail.note("ferrt")
        await super().revoke_family(family_id, reason)


class _TrailedFirstParty(SqlFirstParty):
    """First-party auth_sessions and codes that tell the audit trail whose login they continue."""

    def __init__(self, session: AsyncSession, clock: Clock, trail: AuditTrail) -> None:
        super().__init__(session, clock)
        self.trail = trail

    def _whose(self, found: AuthSession | IssuedCode | None) -> None:
        if found is not None:
            self.trail.user_id, self.trail.connection = found.user_id, found.connection
            self.trail.audience, self.trail.scope = found.audience, " ".join(found.scopes)

    async def find(self, auth_session: str) -> AuthSession | None:
        found = await super().find(auth_session)
        self._whose(found)
        return found

    async def find_code(self, code: str) -> IssuedCode | None:
        found = await super().find_code(code)
        self._whose(found)
        return found


class _TrailedIssuer(JwtIssuer):
    """The issuer, telling the audit trail what was issued (never the tokens)."""

    trail: AuditTrail | None = None

    async def issue(self, result: GrantResult) -> TokenResponse:
        if self.trail is not None:
            _describe(self.trail, result)
        return await super().issue(result)


def _describe(trail: AuditTrail, result: GrantResult) -> None:
    trail.user_id = result.user.user_id
    trail.user_name = result.user.email or result.user.username or trail.user_name
    trail.connection = result.connection.name
    trail.connection_id = str(result.connection.id)
    trail.audience = result.audience
    trail.scope = " ".join(result.scopes)


class TrailObserver:
    """`identity.oauth2.interfaces.TokenObserver` that fills the audit trail."""

    def __init__(self, trail: AuditTrail) -> None:
        self.trail = trail

    def client_authenticated(self, client: Client, request: TokenRequest) -> None:
        """Record the client and the end user's address (``client_ip``: the proxy, when a header named the user)."""
        self.trail.client_id, self.trail.client_name = client.client_id, client.name
        self.trail.ip = request.client_ip
        self.trail.client_ip = request.proxy_ip


def unit_of_work(services: Services, session: AsyncSession) -> UnitOfWork:
    """The request's transaction on ``session``."""
    return UnitOfWork(session, services.gate)


@asynccontextmanager
async def exchange_unit(services: Services, session: AsyncSession) -> AsyncIterator[UnitOfWork]:
    """The unit of work of one exchange at ``/oauth/token`` or ``/oauth/authorize-challenge``.

    Committed when the exchange ends, and also when it ends in an `OAuthError`: such an error can carry writes that
    must stay (the family of a reused refresh token revoked, a wrong code's attempt counted, a session that now
    awaits a second factor); work that must not stay was rolled back where it was decided. Any other exception
    leaves the unit uncommitted, and closing it rolls back.
    """
    unit = unit_of_work(services, session)
    try:
        yield unit
        await unit.commit()
    except OAuthError:
        await unit.commit()
        raise
    finally:
        await unit.close()


def build_token_endpoint(
    services: Services, session: AsyncSession, trail: AuditTrail | None = None, unit: UnitOfWork | None = None
) -> TokenEndpoint:
    """The token endpoint with every enabled grant, bound to this request's session and unit of work."""
    unit = unit or unit_of_work(services, session)
    tenant = SqlTenantStore(session, issuer=services.settings.issuer)
    users = build_authenticator(services, session, trail)
    mfa: FactorService
    refresh_tokens: SqlRefreshTokens
    if trail is not None:
        mfa = _TrailedFactors(session, services.box, services.clock, trail, unit, sender=services.mailer)
        refresh_tokens = _TrailedRefreshTokens(session, services.box, services.clock, trail)
    else:
        mfa = build_factors(services, session, unit)
        refresh_tokens = SqlRefreshTokens(session, services.box, services.clock)
    issuer = _TrailedIssuer(
        services.key_ring,
        issuer=services.settings.issuer,
        clock=services.clock,
        id_token_lifetime=services.settings.id_token_lifetime,
        refresh_tokens=refresh_tokens,
        userinfo_claims=SqlUserinfoClaims(session, services.clock),
        app_metadata=SqlAppMetadata(session),
        transaction=unit,
    )
    issuer.trail = trail
    rules = services.rules if services.rules is not None and services.rules.rules else None
    grants: dict[str, Grant] = {
        PasswordGrant.GRANT_TYPE: PasswordGrant(tenant, users, issuer, mfa, rules),
        PasswordRealmGrant.GRANT_TYPE: PasswordRealmGrant(tenant, users, issuer, mfa, rules),
        MfaOtpGrant.GRANT_TYPE: MfaOtpGrant(tenant, mfa, issuer, services.clock),
        MfaOobGrant.GRANT_TYPE: MfaOobGrant(tenant, mfa, issuer, services.clock),
        MfaRecoveryCodeGrant.GRANT_TYPE: MfaRecoveryCodeGrant(tenant, mfa, issuer, services.clock),
        RefreshTokenGrant.GRANT_TYPE: RefreshTokenGrant(tenant, users, refresh_tokens, issuer, services.clock, rules),
        ClientCredentialsGrant.GRANT_TYPE: ClientCredentialsGrant(tenant, tenant, issuer, services.credentials_hooks),
    }
    webauthn: WebAuthnFactors
    if trail is not None:
        webauthn = _TrailedWebAuthn(build_webauthn(services, session), mfa.attempts, trail)
    else:
        webauthn = WebAuthnFactors(build_webauthn(services, session), mfa.attempts)
    grants[MfaWebAuthnGrant.GRANT_TYPE] = MfaWebAuthnGrant(tenant, mfa, issuer, services.clock, webauthn)
    grants[WebAuthnGrant.GRANT_TYPE] = WebAuthnGrant(tenant, users, issuer, webauthn, mfa, rules, services.clock)
    # The codes of the first-party apps endpoint (identity.web.challenge).
    codes = _TrailedFirstParty(session, services.clock, trail) if trail else SqlFirstParty(session, services.clock)
    grants[AuthorizationCodeGrant.GRANT_TYPE] = AuthorizationCodeGrant(
        tenant, codes, users, refresh_tokens, issuer, services.clock, unit
    )
    observer = TrailObserver(trail) if trail is not None else None
    return TokenEndpoint(grants, tenant, challenge_realm=services.settings.issuer, observer=observer)


def build_revocation_endpoint(services: Services, session: AsyncSession, unit: UnitOfWork) -> RevocationEndpoint:
    """The revocation endpoint (RFC 7009), bound to this request's session and unit of work."""
    tenant = SqlTenantStore(session, issuer=services.settings.issuer)
    refresh_tokens = SqlRefreshTokens(session, services.box, services.clock)
    return RevocationEndpoint(tenant, refresh_tokens, unit, challenge_realm=services.settings.issuer)
