"""What the protocol engine needs from the rest of the service: plain records and narrow Protocols.

The engine never sees a database session or a framework request. Storage adapters (``identity.store``) and domain
services (``identity.accounts``, ``identity.tokens``) implement these Protocols; unit tests use in-memory fakes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Protocol

__all__ = [
    "Api",
    "Client",
    "Connection",
    "FactorCheck",
    "GrantResult",
    "MfaService",
    "MfaTransaction",
    "RuleOutcome",
    "RulesPipeline",
    "TenantSettings",
    "TenantStore",
    "TokenIssuer",
    "TokenResponse",
    "User",
    "UserAuthenticator",
]


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


@dataclass(frozen=True)
class Connection:
    """A user directory (Auth0 "connection", the ``realm`` of the password-realm grant)."""

    id: int
    name: str
    strategy: str = "auth0"


@dataclass(frozen=True)
class Api:
    """A resource server: the ``audience`` of access tokens."""

    identifier: str
    name: str
    scopes: tuple[str, ...]
    signing_alg: str = "RS256"
    token_lifetime: int = 86_400
    allow_offline_access: bool = False
    requires_mfa: bool = False
    """Tokens for this API are only issued after a second factor (the built-in MFA API)."""


@dataclass(frozen=True)
class TenantSettings:
    """Tenant-wide defaults."""

    default_directory: str | None = None
    default_audience: str | None = None
    mfa_policy: str = "if-enrolled"


@dataclass(frozen=True)
class User:
    """A user as the engine and the token issuer see it (no password hash)."""

    user_id: str
    connection: str
    email: str | None = None
    email_verified: bool = False
    username: str | None = None
    name: str | None = None
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


class UserAuthenticator(Protocol):
    """Checks a username (or email) and password against one directory."""

    async def authenticate(self, connection: Connection, username: str, password: str) -> User | None:
        """The user when the password is right, ``None`` otherwise.

        Unknown user and wrong password must be indistinguishable, in the answer and in time. A blocked user with the
        right password is returned (with ``blocked=True``): the grant decides what to answer.
        """
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
        """Check a TOTP code; a code's time step is accepted once. Confirms a pending enrollment."""
        ...

    async def redeem_recovery_code(self, transaction: MfaTransaction, code: str) -> tuple[FactorCheck, str | None]:
        """Burn the user's recovery code; on success the new code that replaces it."""
        ...

    async def complete(self, transaction: MfaTransaction) -> bool:
        """Burn the ``mfa_token``; ``False`` when another request burned it first."""
        ...

    async def user(self, transaction: MfaTransaction) -> User | None:
        """The transaction's user as it is now, or ``None`` when it was deleted."""
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
    ) -> RuleOutcome:
        """Run the rules in order. Raises the protocol error a denial, a failure or a redirect maps to."""
        ...
