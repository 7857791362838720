"""In-memory fakes of the Protocols in `identity.oauth2.interfaces`, and a few builders."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from identity.crypto import sha256_hex
from identity.oauth2.interfaces import (
    Api,
    Client,
    Connection,
    GrantResult,
    LoginBlocked,
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
