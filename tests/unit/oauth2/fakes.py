"""In-memory fakes of the Protocols in `identity.oauth2.interfaces`, and a few builders."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any

from identity.crypto import sha256_hex
from identity.oauth2.interfaces import (
    Api,
    Client,
    ClientGrant,
    Connection,
    FactorCheck,
    GrantResult,
    LoginBlocked,
    MfaTransaction,
    RefreshTokenPolicy,
    RuleOutcome,
    StoredRefreshToken,
    TenantSettings,
    TokenResponse,
    User,
)

PASSWORD = "password"
PASSWORD_REALM = "http://auth0.com/oauth/grant-type/password-realm"
BOTH_PASSWORD_GRANTS = frozenset({PASSWORD, PASSWORD_REALM})
SECRET = "a-long-client-secret-0123456789abcdef"


def make_client(
    client_id: str = "app",
    *,
    method: str = "none",
    secret: str | None = None,
    grant_types: Iterable[str] = BOTH_PASSWORD_GRANTS,
    connections: Iterable[str] = ("customers", "employees"),
) -> Client:
    return Client(
        client_id=client_id,
        name=client_id,
        token_endpoint_auth_method=method,
        secret_hash=sha256_hex(secret) if secret is not None else None,
        grant_types=frozenset(grant_types),
        connections=frozenset(connections),
    )


class FakeTenant:
    """`TenantStore` over dicts; records every lookup."""

    def __init__(
        self,
        *,
        settings: TenantSettings | None = None,
        clients: Iterable[Client] = (),
        connections: Iterable[Connection] = (),
        apis: Iterable[Api] = (),
    ) -> None:
        self._settings = settings if settings is not None else TenantSettings()
        self.clients = {client.client_id: client for client in clients}
        self.connections = {connection.name: connection for connection in connections}
        self.apis = {api.identifier: api for api in apis}
        self.calls: list[tuple[str, ...]] = []

    async def settings(self) -> TenantSettings:
        self.calls.append(("settings",))
        return self._settings

    async def client(self, client_id: str) -> Client | None:
        self.calls.append(("client", client_id))
        return self.clients.get(client_id)

    async def connection(self, name: str) -> Connection | None:
        self.calls.append(("connection", name))
        return self.connections.get(name)

    async def api(self, identifier: str) -> Api | None:
        self.calls.append(("api", identifier))
        return self.apis.get(identifier)


class FakeUsers:
    """`UserAuthenticator` over a dict keyed by (connection name, lower-cased login); records every call."""

    def __init__(self) -> None:
        self.accounts: dict[tuple[str, str], tuple[str, User]] = {}
        self.calls: list[tuple[str, str, str]] = []
        self.blocked_pairs: set[tuple[str, str, str | None]] = set()

    def add(self, connection: str, login: str, password: str, **fields: Any) -> User:
        user = User(user_id=f"auth0|{connection}-{login}", connection=connection, **fields)
        self.accounts[(connection, login.lower())] = (password, user)
        return user

    async def authenticate(
        self, connection: Connection, username: str, password: str, *, ip: str | None = None
    ) -> User | None:
        self.calls.append((connection.name, username, password))
        if (connection.name, username.lower(), ip) in self.blocked_pairs:
            raise LoginBlocked()
        entry = self.accounts.get((connection.name, username.lower()))
        if entry is None or entry[0] != password:
            return None
        return entry[1]


class RecordingIssuer:
    """`TokenIssuer` that records what it was asked to issue."""

    def __init__(self) -> None:
        self.results: list[GrantResult] = []

    async def issue(self, result: GrantResult) -> TokenResponse:
        self.results.append(result)
        return TokenResponse(
            access_token=f"access-token-{len(self.results)}",
            expires_in=result.api.token_lifetime if result.api else 86_400,
            scope=" ".join(result.scopes),
        )


class RecordingGrant:
    """A `Grant` that records the requests it handles."""

    def __init__(self, grant_type: str) -> None:
        self.GRANT_TYPE = grant_type
        self.handled: list[tuple[Any, Client]] = []

    async def handle(self, request: Any, client: Client) -> TokenResponse:
        self.handled.append((request, client))
        return TokenResponse(access_token=f"from-{self.GRANT_TYPE}", expires_in=60, scope="")


class FakeUserLookup:
    """`UserLookup` over a dict by ``user_id``: the user "as stored now" is whatever the test put there."""

    def __init__(self, *users: User) -> None:
        self.users = {user.user_id: user for user in users}

    async def by_id(self, user_id: str) -> User | None:
        return self.users.get(user_id)


class FakeMfa:
    """`MfaService` over a dict of transactions by ``mfa_token``, answering checks as the test sets them.

    ``otp_check`` and ``recovery`` are what `check_otp` and `redeem_recovery_code` answer; every call is recorded, so a
    test can say that no factor was checked (and so no attempt spent) when the request failed before it.
    """

    def __init__(self, users: Iterable[User] = ()) -> None:
        self.transactions: dict[str, MfaTransaction] = {}
        self.users = {user.user_id: user for user in users}
        self.otp_check = FactorCheck.ACCEPTED
        self.recovery: tuple[FactorCheck, str | None] = (FactorCheck.ACCEPTED, "NEWRECOVERYCODE0123456789")
        self.calls: list[tuple[str, ...]] = []

    def add(self, mfa_token: str, transaction: MfaTransaction) -> None:
        self.transactions[mfa_token] = transaction

    async def required(self, user: User, *, forced: bool) -> bool:
        self.calls.append(("required", user.user_id))
        return forced

    async def start(self, result: GrantResult) -> str:
        raise NotImplementedError("the grants that finish a login never start another")

    async def find(self, mfa_token: str) -> MfaTransaction | None:
        self.calls.append(("find", mfa_token))
        return self.transactions.get(mfa_token)

    async def check_otp(self, transaction: MfaTransaction, otp: str) -> FactorCheck:
        self.calls.append(("check_otp", str(transaction.id), otp))
        return self.otp_check

    async def redeem_recovery_code(self, transaction: MfaTransaction, code: str) -> tuple[FactorCheck, str | None]:
        self.calls.append(("redeem_recovery_code", str(transaction.id), code))
        return self.recovery

    async def user(self, transaction: MfaTransaction) -> User | None:
        self.calls.append(("user", transaction.user_id))
        return self.users.get(transaction.user_id)

    def factor_checks(self) -> list[tuple[str, ...]]:
        return [call for call in self.calls if call[0] in ("check_otp", "redeem_recovery_code")]


class FakeRefreshTokens:
    """`RefreshTokenStore` over a dict of stored tokens, answering as the test sets it; records every call.

    `rotate` hands out ``successor-1``, ``successor-2``, … unless ``lose_rotation`` says another request won the race.
    `successor_within_leeway` answers from ``leeway_successors`` (by stored token id): the grant's decisions, not the
    store's bookkeeping, are under test here (``tests/unit/tokens/test_refresh.py`` tests the real store).
    """

    def __init__(self) -> None:
        self.tokens: dict[str, StoredRefreshToken] = {}
        self.leeway_successors: dict[int, str] = {}
        self.lose_rotation = False
        self.calls: list[tuple[Any, ...]] = []
        self._rotations = 0

    def add(self, token: str, stored: StoredRefreshToken) -> None:
        self.tokens[token] = stored

    async def issue(self, result: GrantResult) -> str:
        raise NotImplementedError("the refresh grant never starts a family")

    async def find(self, token: str) -> StoredRefreshToken | None:
        self.calls.append(("find", token))
        return self.tokens.get(token)

    async def rotate(self, stored: StoredRefreshToken, policy: RefreshTokenPolicy) -> str | None:
        self.calls.append(("rotate", stored.id))
        if self.lose_rotation:
            return None
        self._rotations += 1
        return f"successor-{self._rotations}"

    async def successor_within_leeway(self, stored: StoredRefreshToken, policy: RefreshTokenPolicy) -> str | None:
        self.calls.append(("successor_within_leeway", stored.id))
        return self.leeway_successors.get(stored.id)

    async def touch(self, stored: StoredRefreshToken, policy: RefreshTokenPolicy) -> None:
        self.calls.append(("touch", stored.id))

    async def revoke_family(self, family_id: str, reason: str) -> None:
        self.calls.append(("revoke_family", family_id, reason))

    def spent(self) -> list[tuple[Any, ...]]:
        """The calls that retire, renew or revoke a token."""
        return [call for call in self.calls if call[0] in ("rotate", "touch", "revoke_family")]


class FakeClientGrants:
    """`ClientGrantStore` over a list of client grants."""

    def __init__(self, *grants: ClientGrant) -> None:
        self.grants = {(grant.client_id, grant.audience): grant for grant in grants}

    async def client_grant(self, client_id: str, audience: str) -> ClientGrant | None:
        return self.grants.get((client_id, audience))


class RecordingClientIssuer:
    """`ClientTokenIssuer` that records what it was asked to sign."""

    def __init__(self) -> None:
        self.issued: list[tuple[Client, Api, tuple[str, ...], Mapping[str, Any]]] = []

    async def issue_client_token(
        self, client: Client, api: Api, scopes: tuple[str, ...], claims: Mapping[str, Any]
    ) -> TokenResponse:
        self.issued.append((client, api, scopes, dict(claims)))
        return TokenResponse(
            access_token=f"client-token-{len(self.issued)}", expires_in=api.token_lifetime, scope=" ".join(scopes)
        )


class RecordingRules:
    """`RulesPipeline` that records how it was run and adds ``claims`` to the access token (or raises ``error``)."""

    def __init__(self, *, claims: Mapping[str, Any] | None = None, error: Exception | None = None) -> None:
        self.claims = dict(claims or {})
        self.error = error
        self.runs: list[dict[str, Any]] = []

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
        self.runs.append(
            {
                "acr_values": acr_values,
                "result": result,
                "protocol": protocol,
                "requested_scopes": requested_scopes,
                "client_ip": client_ip,
                "user_agent": user_agent,
            }
        )
        if self.error is not None:
            raise self.error
        return RuleOutcome(replace(result, access_claims={**result.access_claims, **self.claims}))


CUSTOMERS = Connection(id=1, name="customers")
EMPLOYEES = Connection(id=2, name="employees")
PARTNERS = Connection(id=3, name="partners")
SOCIAL = Connection(id=4, name="social", strategy="google-oauth2")
API = Api(identifier="https://api.test/", name="API", scopes=("read:a", "write:a", "delete:a"))
OTHER_API = Api(identifier="https://other.test/", name="Other", scopes=("read:o",), signing_alg="ES256")


def standard_fakes(
    *, settings: TenantSettings | None = None, clients: Iterable[Client] | None = None
) -> tuple[FakeTenant, FakeUsers, RecordingIssuer]:
    tenant = FakeTenant(
        settings=settings
        if settings is not None
        else TenantSettings(default_directory="customers", default_audience=API.identifier),
        clients=clients if clients is not None else [make_client(connections=("customers", "employees", "social"))],
        connections=[CUSTOMERS, EMPLOYEES, PARTNERS, SOCIAL],
        apis=[API, OTHER_API],
    )
    users = FakeUsers()
    users.add("customers", "alice@example.test", "customer pw", email="alice@example.test")
    users.add("employees", "alice@example.test", "employee pw", email="alice@example.test")
    users.add("customers", "bob@example.test", "bob pw", email="bob@example.test", blocked=True)
    return tenant, users, RecordingIssuer()


def with_connections(client: Client, *names: str) -> Client:
    return replace(client, connections=frozenset(names))
