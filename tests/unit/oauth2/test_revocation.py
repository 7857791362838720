"""RFC 7009 token revocation, against in-memory fakes: the client authenticates, only its own token's family goes."""

from __future__ import annotations

import pytest

from identity.oauth2 import RevocationEndpoint
from identity.oauth2.errors import InvalidClient, InvalidRequest
from identity.oauth2.interfaces import StoredRefreshToken
from identity.oauth2.requests import BasicCredentials, TokenRequest
from tests.unit.oauth2.fakes import SECRET, FakeTenant, make_client

REALM = "https://identity.test/"
APP = make_client("app", grant_types=("refresh_token",))
OTHER = make_client("other", grant_types=("refresh_token",))
BASIC = make_client("basic", method="client_secret_basic", secret=SECRET, grant_types=("refresh_token",))


def stored(family_id: str, client_id: str) -> StoredRefreshToken:
    return StoredRefreshToken(
        id=1, family_id=family_id, client_id=client_id, user_id="auth0|alice", connection="customers", audience=None,
        scopes=("offline_access",), amr=("pwd",), access_claims={}, id_claims={}, expires_at=None,
        idle_expires_at=None, used_at=None, revoked=False, newest=True,
    )  # fmt: skip


class FakeRefreshTokens:
    """`RevocableTokens` over a dict of token → stored token; records the families revoked."""

    def __init__(self, tokens: dict[str, StoredRefreshToken]) -> None:
        self.tokens = tokens
        self.looked_up: list[str] = []
        self.revoked: list[tuple[str, str]] = []

    async def find(self, token: str) -> StoredRefreshToken | None:
        self.looked_up.append(token)
        return self.tokens.get(token)

    async def revoke_family(self, family_id: str, reason: str) -> None:
        self.revoked.append((family_id, reason))


class RecordingTransaction:
    """`Transaction` that records the order of its calls."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    async def write(self) -> None:
        self.calls.append("write")

    async def commit(self) -> None:
        self.calls.append("commit")


@pytest.fixture
def tokens() -> FakeRefreshTokens:
    return FakeRefreshTokens({"rt-of-app": stored("family-a", "app"), "rt-of-other": stored("family-o", "other")})


@pytest.fixture
def transaction() -> RecordingTransaction:
    return RecordingTransaction()


@pytest.fixture
def endpoint(tokens: FakeRefreshTokens, transaction: RecordingTransaction) -> RevocationEndpoint:
    return RevocationEndpoint(FakeTenant(clients=[APP, OTHER, BASIC]), tokens, transaction, challenge_realm=REALM)


async def test_the_clients_own_token_revokes_its_whole_family(endpoint, tokens, transaction):
    await endpoint.handle(TokenRequest({"client_id": "app", "token": "rt-of-app"}))

    assert tokens.revoked == [("family-a", "revoked")]
    assert transaction.calls == ["write", "commit"]


async def test_another_clients_token_is_left_alone_without_an_error(endpoint, tokens, transaction):
    await endpoint.handle(TokenRequest({"client_id": "app", "token": "rt-of-other"}))

    assert tokens.revoked == []
    assert transaction.calls == ["write", "commit"]


async def test_an_unknown_token_is_not_an_error(endpoint, tokens):
    await endpoint.handle(TokenRequest({"client_id": "app", "token": "never-issued"}))

    assert tokens.looked_up == ["never-issued"]
    assert tokens.revoked == []


async def test_an_unauthenticated_client_learns_nothing_and_nothing_is_written(endpoint, tokens, transaction):
    with pytest.raises(InvalidClient):
        await endpoint.handle(TokenRequest({"client_id": "nobody", "token": "rt-of-app"}))

    assert (tokens.looked_up, tokens.revoked, transaction.calls) == ([], [], [])


async def test_a_wrong_basic_secret_answers_with_the_challenge_realm(endpoint, tokens):
    request = TokenRequest({"token": "rt-of-app"}, basic=BasicCredentials("basic", "wrong"))

    with pytest.raises(InvalidClient) as caught:
        await endpoint.handle(request)

    assert caught.value.headers() == {"WWW-Authenticate": f'Basic realm="{REALM}", charset="UTF-8"'}
    assert tokens.revoked == []


async def test_a_basic_client_revokes_its_own_token(tokens, transaction):
    tokens.tokens["rt-of-basic"] = stored("family-b", "basic")
    endpoint = RevocationEndpoint(FakeTenant(clients=[BASIC]), tokens, transaction, challenge_realm=REALM)

    await endpoint.handle(TokenRequest({"token": "rt-of-basic"}, basic=BasicCredentials("basic", SECRET)))

    assert tokens.revoked == [("family-b", "revoked")]


async def test_the_token_is_required_before_anything_is_written(endpoint, tokens, transaction):
    with pytest.raises(InvalidRequest) as caught:
        await endpoint.handle(TokenRequest({"client_id": "app"}))

    assert caught.value.description == "missing token parameter"
    assert (tokens.looked_up, transaction.calls) == ([], [])
