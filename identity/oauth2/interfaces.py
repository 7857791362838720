"""What the protocol engine needs from the rest of the service: plain records and narrow Protocols.

The engine never sees a database session or a framework request. Storage adapters (``identity.store``) and domain
services (``identity.accounts``, ``identity.tokens``) implement these Protocols; unit tests use in-memory fakes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any, Protocol

from identity import tenant_defaults as defaults

if TYPE_CHECKING:
    from identity.oauth2.requests import TokenRequest

__all__ = [
    "Api",
    "AppMetadataStore",
    "Client",
    "ClientGrant",
    "ClientGrantStore",
    "ClientTokenIssuer",
    "Connection",
    "FactorCheck",
    "GrantResult",
    "LoginBlocked",
    "MfaService",
    "MfaTransaction",
    "Overloaded",
    "PasswordLeaked",
    "RefreshTokenPolicy",
    "RefreshTokenStore",
    "RevocableTokens",
    "RuleOutcome",
    "RulesPipeline",
    "StoredRefreshToken",
    "TenantSettings",
    "TenantStore",
    "TokenIssuer",
    "TokenObserver",
    "TokenResponse",
    "Transaction",
    "User",
    "UserAuthenticator",
    "UserLookup",
    "UserinfoClaimsStore",
    "WebAuthnFactor",
    "WebAuthnOutcome",
]


@dataclass(frozen=True)
class RefreshTokenPolicy:
    """A client's refresh-token settings, named as Auth0's ``refresh_token`` object (API.md §1.7)."""

    rotation_type: str = defaults.REFRESH_ROTATION_TYPE
    """``rotating``: every use returns a new token and retires the old; ``non-rotating``: the token is reused."""
    expiration_type: str = defaults.REFRESH_EXPIRATION_TYPE
    token_lifetime: int = defaults.REFRESH_TOKEN_LIFETIME
    """Absolute lifetime of a family, in seconds (rotation does not extend it)."""
    idle_token_lifetime: int = defaults.REFRESH_IDLE_TOKEN_LIFETIME
    """A family unused this long expires (renewed on every exchange)."""
    infinite_token_lifetime: bool = defaults.REFRESH_INFINITE_TOKEN_LIFETIME
    infinite_idle_token_lifetime: bool = defaults.REFRESH_INFINITE_IDLE_TOKEN_LIFETIME
    leeway: int = defaults.REFRESH_LEEWAY
    """Seconds during which the immediately previous token may be presented again (it gets the same successor)."""

    @property
    def rotating(self) -> bool:
        """Whether tokens rotate on use."""
        return self.rotation_type == "rotating"


@dataclass(frozen=True)
class Client:
    """An application allowed to call the token endpoint."""

    client_id: str
    name: str
    token_endpoint_auth_method: str
    """``none`` (public client), ``client_secret_post`` or ``client_secret_basic``."""
    secret_hash: str | None = field(repr=False)
    """SHA-256 (hex) of the client secret; ``None`` for a public client."""
    grant_types: frozenset[str]
    connections: frozenset[str]
    """Names of the connections (user directories) enabled for this client."""
    metadata: Mapping[str, str] = field(default_factory=dict)
    refresh_token: RefreshTokenPolicy = field(default_factory=RefreshTokenPolicy)
    ip_header_trusted: bool = defaults.CLIENT_IP_HEADER_TRUSTED
    """Auth0's ``is_token_endpoint_ip_header_trusted``: a confidential client's ``auth0-forwarded-for`` is believed."""


@dataclass(frozen=True)
class Connection:
    """A user directory (Auth0 "connection", the ``realm`` of the password-realm grant)."""

    id: int
    name: str
    strategy: str = defaults.CONNECTION_STRATEGY


@dataclass(frozen=True)
class Api:
    """A resource server: the ``audience`` of access tokens."""

    identifier: str
    name: str
    scopes: tuple[str, ...]
    signing_alg: str = defaults.API_SIGNING_ALG
    token_lifetime: int = defaults.API_TOKEN_LIFETIME
    allow_offline_access: bool = defaults.API_ALLOW_OFFLINE_ACCESS
    requires_mfa: bool = False
    """Tokens for this API are only issued after a second factor (the built-in MFA API)."""
    machine_only: bool = False
    """Tokens for this API are only issued to clients, by client_credentials (the built-in Management API)."""


@dataclass(frozen=True)
class TenantSettings:
    """Tenant-wide defaults."""

    default_directory: str | None = None
    default_audience: str | None = None
    mfa_policy: str = defaults.MFA_POLICY


@dataclass(frozen=True)
class User:
    """A user as the engine and the token issuer see it (no password hash)."""

    user_id: str
    connection: str
    email: str | None = None
    email_verified: bool = False
    username: str | None = None
    name: str | None = None
    given_name: str | None = None
    family_name: str | None = None
    nickname: str | None = None
    picture: str | None = None
    blocked: bool = False
    updated_at: float | None = None
    logins_count: int = 0
    app_metadata: Mapping[str, Any] = field(default_factory=dict)
    user_metadata: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class GrantResult:
    """What a grant decided: who gets which tokens for what. The issuer turns it into tokens."""

    grant_type: str
    client: Client
    user: User
    connection: Connection
    api: Api | None
    audience: str | None
    scopes: tuple[str, ...]
    amr: tuple[str, ...] = ("pwd",)
    access_claims: Mapping[str, Any] = field(default_factory=dict)
    """Custom (namespaced) claims rules added to the access token."""
    id_claims: Mapping[str, Any] = field(default_factory=dict)
    """Custom (namespaced) claims rules added to the ID token."""
    refresh_token: str | None = field(default=None, repr=False)
    """A refresh token already minted for this response (rotation); ``None`` lets the issuer mint a family."""
    mint_refresh_token: bool = True
    """``False`` when a refresh grant reuses a non-rotating token: no refresh token in the response."""
    app_metadata: Mapping[str, Any] = field(default_factory=dict)
    """``app_metadata`` keys rules set: saved when the tokens are issued (after the second factor), never before."""
    first_factor: str | None = None
    """The authenticator that was the first factor (a passkey), which cannot also be the second."""
    acr: str | None = None
    """The ``acr`` claim (RFC 9470): the multi-factor policy once a second factor was checked (the MFA grants, a
    passkey that verified the user, first-party apps, and the refresh of a family that began so)."""
    auth_time: float | None = None
    """When the user last authenticated (OIDC ``auth_time``), where the grant knows it and the tokens claim it (with
    ``acr``, and on first-party apps' codes)."""
    authenticated_at: float | None = None
    """When the user proved the factors in ``amr``, if that was before this request (a refresh token's family start).

    Rules see it as ``event.authentication.methods[].timestamp``, and a new refresh-token family keeps it; unlike
    ``auth_time`` it never becomes a claim, so refreshed tokens keep the shape of the ones they replace (a refresh
    sets ``auth_time`` too only where the family began after a second factor, whose tokens claimed it).
    """

    def authenticated(self, now: float) -> float:
        """When the user proved the factors in ``amr``: ``authenticated_at``, else ``auth_time``, else ``now``."""
        if self.authenticated_at is not None:
            return self.authenticated_at
        return self.auth_time if self.auth_time is not None else now


@dataclass(frozen=True)
class TokenResponse:
    """A successful token response (RFC 6749 §5.1)."""

    access_token: str = field(repr=False)
    expires_in: int
    scope: str
    token_type: str = "Bearer"
    id_token: str | None = field(default=None, repr=False)
    refresh_token: str | None = field(default=None, repr=False)
    extra: Mapping[str, Any] = field(default_factory=dict, repr=False)

    def to_body(self) -> dict[str, Any]:
        """The JSON body, members without a value left out."""
        body: dict[str, Any] = {"access_token": self.access_token}
        if self.id_token is not None:
            body["id_token"] = self.id_token
        if self.refresh_token is not None:
            body["refresh_token"] = self.refresh_token
        body.update(scope=self.scope, expires_in=self.expires_in, token_type=self.token_type)
        body.update(self.extra)
        return body


class TenantStore(Protocol):
    """Read access to the tenant's configuration."""

    async def settings(self) -> TenantSettings:
        """The tenant settings (defaults when none were applied)."""
        ...

    async def client(self, client_id: str) -> Client | None:
        """The client with this id, or ``None``."""
        ...

    async def connection(self, name: str) -> Connection | None:
        """The connection with exactly this name (names are case-sensitive), or ``None``."""
        ...

    async def api(self, identifier: str) -> Api | None:
        """The API with exactly this identifier, or ``None``."""
        ...


@dataclass(frozen=True)
class ClientGrant:
    """What a client may get for one API by ``client_credentials`` (Auth0's client grant)."""

    id: str
    client_id: str
    audience: str
    scopes: tuple[str, ...]


class ClientGrantStore(Protocol):
    """Read access to client grants."""

    async def client_grant(self, client_id: str, audience: str) -> ClientGrant | None:
        """The grant of ``client_id`` for ``audience``, or ``None``."""
        ...


class ClientTokenIssuer(Protocol):
    """Mints access tokens for a client acting on its own behalf (no user)."""

    async def issue_client_token(
        self, client: Client, api: Api, scopes: tuple[str, ...], claims: Mapping[str, Any]
    ) -> TokenResponse:
        """Sign an access token whose subject is the client (``<client_id>@clients``)."""
        ...


class UserinfoClaimsStore(Protocol):
    """Keeps the custom ID-token claims of an access token for ``/userinfo`` (OIDC Core §5.3)."""

    async def remember(self, jti: str, user_id: str, claims: Mapping[str, Any], expires_at: float) -> None:
        """Keep ``claims`` for the access token ``jti`` until ``expires_at``."""
        ...


class AppMetadataStore(Protocol):
    """Saves the ``app_metadata`` keys rules set, when the tokens of that login are issued."""

    async def merge(self, user_id: str, updates: Mapping[str, Any]) -> None:
        """Set these keys of the user's ``app_metadata`` (a user deleted meanwhile is skipped)."""
        ...


class UserLookup(Protocol):
    """Finds a user by id, as stored now."""

    async def by_id(self, user_id: str) -> User | None:
        """The user, or ``None`` when it no longer exists."""
        ...


class LoginBlocked(Exception):
    """Attack protection refused the login before its password was checked (API.md §4)."""

    BRUTE_FORCE = "brute_force"
    """Too many failures for this identifier from this address (Auth0 ``limit_wc``)."""
    ACCOUNT_LOCKOUT = "account_lockout"
    """Too many failures for this identifier from any address (Auth0 ``limit_sul``; off by default)."""
    SUSPICIOUS_IP = "suspicious_ip"
    """Too many failures from this address across accounts (Auth0 ``limit_mu``)."""

    def __init__(self, reason: str = BRUTE_FORCE, *, retry_after: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


class PasswordLeaked(Exception):
    """The password was right but is a known-breached one, and the tenant refuses those (API.md §4.6)."""

    def __init__(self, user_id: str) -> None:
        super().__init__("breached password")
        self.user_id = user_id


class Overloaded(Exception):
    """Password hashing is saturated: the login was not checked; the client may retry after ``retry_after`` s."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"retry after {retry_after} s")
        self.retry_after = retry_after


class UserAuthenticator(Protocol):
    """Checks a username (or email) and password against one directory."""

    async def authenticate(
        self, connection: Connection, username: str, password: str, *, ip: str | None = None
    ) -> User | None:
        """The user when the password is right, ``None`` otherwise.

        Unknown user and wrong password must be indistinguishable, in the answer and in time. A blocked user with the
        right password is returned (with ``blocked=True``): the grant decides what to answer.

        Raises:
            LoginBlocked: attack protection refused the attempt before checking it.
            Overloaded: password hashing is saturated (load shedding); nothing was counted.
            PasswordLeaked: the password is right but breached, and breached password detection is on.
        """
        ...


class TokenObserver(Protocol):
    """Told what the endpoint learnt about a request (for the audit log)."""

    def client_authenticated(self, client: Client, request: TokenRequest) -> None:
        """The client is authenticated and the end user's address decided."""
        ...


class TokenIssuer(Protocol):
    """Mints the tokens a grant decided on."""

    async def issue(self, result: GrantResult) -> TokenResponse:
        """Sign the access token (and the ID token when ``openid`` was granted)."""
        ...


class FactorCheck(Enum):
    """The outcome of checking a second factor."""

    ACCEPTED = "accepted"
    INVALID = "invalid"
    RATE_LIMITED = "rate_limited"
    TOKEN_USED = "token_used"
    """The factor was right, but another request consumed the mfa_token first; nothing was spent."""
    UNKNOWN_CODE = "unknown_code"
    """An emailed code's ``oob_code`` names no unused code (never sent, used, or replaced by a newer one)."""
    OTHER_TRANSACTION = "other_transaction"
    """The ``oob_code`` was sent for another mfa_token."""
    EXPIRED = "expired"
    """The emailed code is older than its five minutes."""


@dataclass(frozen=True)
class MfaTransaction:
    """A login paused at ``mfa_required``, as its ``mfa_token`` stands for it."""

    id: int
    client_id: str
    user_id: str
    connection: str
    grant_type: str
    audience: str | None
    scopes: tuple[str, ...]
    expires_at: float
    consumed: bool
    access_claims: Mapping[str, Any] = field(default_factory=dict)
    id_claims: Mapping[str, Any] = field(default_factory=dict)
    app_metadata: Mapping[str, Any] = field(default_factory=dict)
    """What the rules would write to the user's ``app_metadata`` once the login completes."""
    amr: tuple[str, ...] = ("pwd",)
    """The methods of the first factor (``pwd``; ``swk``/``hwk`` after a passkey)."""
    first_factor: str | None = None
    """The authenticator id of a passkey first factor."""


class MfaService(Protocol):
    """Second factors and the transactions that wait for them."""

    async def required(self, user: User, *, forced: bool) -> bool:
        """Whether ``user`` must pass a second factor (tenant policy, or ``forced`` by the API or a rule)."""
        ...

    async def start(self, result: GrantResult) -> str:
        """Store what ``result`` would issue and return the ``mfa_token`` that redeems it."""
        ...

    async def find(self, mfa_token: str) -> MfaTransaction | None:
        """The transaction of an ``mfa_token``, or ``None`` when there is none (forged, mistyped)."""
        ...

    async def check_otp(self, transaction: MfaTransaction, otp: str) -> FactorCheck:
        """Check a TOTP code and burn the mfa_token, in one database transaction.

        A code's time step is accepted once; a valid code confirms a pending enrollment.
        """
        ...

    async def redeem_recovery_code(self, transaction: MfaTransaction, code: str) -> tuple[FactorCheck, str | None]:
        """Swap the recovery code for a new one and burn the mfa_token, together or not at all."""
        ...

    async def check_oob(
        self, transaction: MfaTransaction, oob_code: str | None, binding_code: str, *, session_key: str | None = None
    ) -> FactorCheck:
        """Check an emailed code (``binding_code``) sent for ``oob_code`` and burn the mfa_token, in one transaction.

        ``oob_code`` ``None`` and ``session_key`` (the ``auth_session``, which names no oob_code): the last code sent
        for the transaction. The code is used once and confirms a pending email enrollment.
        """
        ...

    async def user(self, transaction: MfaTransaction) -> User | None:
        """The transaction's user as it is now, or ``None`` when it was deleted."""
        ...


@dataclass(frozen=True)
class WebAuthnOutcome:
    """A checked WebAuthn response: the outcome, and (when accepted) whose key and what it proved."""

    check: FactorCheck
    user: User | None = None
    authenticator_id: str | None = None
    hardware: bool = False
    """The key's attestation proves a hardware-bound key (``amr`` ``hwk``; else ``swk``)."""
    user_verified: bool = False
    connection: str | None = None
    """For a passkey ceremony: the directory (``realm``) it was started for, if any."""
    session_unknown: bool = False
    """For a passkey ceremony: the ``auth_session`` (or the challenge) is unknown, used or expired."""
    cloned: bool = False
    """The signature was right but the sign count did not move forward: the key may have been cloned."""


class WebAuthnFactor(Protocol):
    """WebAuthn ceremonies as the grants need them (py_webauthn behind it)."""

    async def confirm_enrollment(self, transaction: MfaTransaction, credential: Mapping[str, Any]) -> WebAuthnOutcome:
        """Verify the attestation of a key enrolled through ``/mfa/associate``, store it, burn the mfa_token."""
        ...

    async def check_assertion(self, transaction: MfaTransaction, credential: Mapping[str, Any]) -> WebAuthnOutcome:
        """Verify an assertion against the transaction's challenge and user's keys, burn the mfa_token."""
        ...

    async def passkey(
        self, client_id: str, auth_session: str | None, credential: Mapping[str, Any], *, ip: str | None = None
    ) -> WebAuthnOutcome:
        """Verify a passkey response (an assertion, or the attestation of a ``/passkey/register`` ceremony).

        Raises:
            LoginBlocked: the address ``ip`` sent too many failed sign-ins (suspicious-IP throttling).
        """
        ...


@dataclass(frozen=True)
class RuleOutcome:
    """What the rules decided: the (possibly changed) grant, and whether they demand a second factor."""

    result: GrantResult
    mfa_required: bool = False


class RulesPipeline(Protocol):
    """Operator code that runs after the first factor and before anything is issued."""

    async def run(
        self,
        result: GrantResult,
        *,
        protocol: str,
        requested_scopes: tuple[str, ...] | None,
        client_ip: str | None,
        user_agent: str | None,
        acr_values: tuple[str, ...] = (),
    ) -> RuleOutcome:
        """Run the rules in order. Raises the protocol error a denial, a failure or a redirect maps to.

        ``acr_values`` is what the request asked for (RFC 9470 step-up), ``event.transaction.acr_values``.
        """
        ...


@dataclass(frozen=True)
class StoredRefreshToken:
    """What a presented refresh token stands for (the token itself is stored only as a hash)."""

    id: int
    family_id: str
    client_id: str
    user_id: str
    connection: str
    audience: str | None
    scopes: tuple[str, ...]
    amr: tuple[str, ...]
    access_claims: Mapping[str, Any]
    id_claims: Mapping[str, Any]
    expires_at: float | None
    idle_expires_at: float | None
    used_at: float | None
    revoked: bool
    newest: bool
    """No successor was issued from this token."""
    auth_time: float | None = None
    """When the user proved the factors in ``amr``, at the family's start (what rules see on refresh)."""


class RevocableTokens(Protocol):
    """Refresh tokens as revocation needs them (RFC 7009): look one up, revoke its family."""

    async def find(self, token: str) -> StoredRefreshToken | None:
        """The stored token behind ``token``, or ``None``."""
        ...

    async def revoke_family(self, family_id: str, reason: str) -> None:
        """Revoke every token of the family."""
        ...


class RefreshTokenStore(RevocableTokens, Protocol):
    """Refresh-token families: issue, look up, rotate, revoke."""

    async def issue(self, result: GrantResult) -> str:
        """Start a new family for ``result`` (under the client's policy) and return its first token."""
        ...

    async def rotate(self, stored: StoredRefreshToken, policy: RefreshTokenPolicy) -> str | None:
        """Retire ``stored`` and return its successor; ``None`` if another request retired it first."""
        ...

    async def successor_within_leeway(self, stored: StoredRefreshToken, policy: RefreshTokenPolicy) -> str | None:
        """The successor already issued for ``stored`` if it may be handed out again (leeway), else ``None``."""
        ...

    async def touch(self, stored: StoredRefreshToken, policy: RefreshTokenPolicy) -> None:
        """Renew the idle expiry of a non-rotating token."""
        ...


class Transaction(Protocol):
    """The request's unit of work (`identity.store.db.UnitOfWork`), as an endpoint drives it."""

    async def write(self) -> None:
        """From here on the request writes (on SQLite: take the write lock)."""
        ...

    async def commit(self) -> None:
        """Make everything written durable."""
        ...
