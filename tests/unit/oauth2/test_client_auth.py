import pytest

from identity.oauth2.client_auth import AUTH_METHODS, authenticate_client
from identity.oauth2.errors import InvalidClient, InvalidRequest
from identity.oauth2.requests import BasicCredentials, TokenRequest
from tests.unit.oauth2.fakes import SECRET, FakeTenant, make_client

REALM = "https://identity.test/"
PUBLIC = make_client("public", method="none")
POST = make_client("post", method="client_secret_post", secret=SECRET)
BASIC = make_client("basic", method="client_secret_basic", secret=SECRET)
# A confidential client whose secret was never set (should not happen; must still never authenticate).
NO_HASH = make_client("no-hash", method="client_secret_post")
NO_HASH_BASIC = make_client("no-hash-basic", method="client_secret_basic")


@pytest.fixture
def tenant() -> FakeTenant:
    return FakeTenant(clients=[PUBLIC, POST, BASIC, NO_HASH, NO_HASH_BASIC])


def body(**params: str) -> TokenRequest:
    return TokenRequest(params)


def with_basic(basic_id: str, secret: str, **params: str) -> TokenRequest:
    return TokenRequest(params, basic=BasicCredentials(basic_id, secret))


async def auth(request: TokenRequest, tenant: FakeTenant):
    return await authenticate_client(request, tenant, challenge_realm=REALM)


def test_supported_methods():
    assert set(AUTH_METHODS) == {"client_secret_basic", "client_secret_post", "none"}


async def test_public_client_authenticates_with_client_id_only(tenant):
    assert await auth(body(client_id="public"), tenant) == PUBLIC


async def test_client_secret_post(tenant):
    assert await auth(body(client_id="post", client_secret=SECRET), tenant) == POST


async def test_client_secret_basic(tenant):
    assert await auth(with_basic("basic", SECRET), tenant) == BASIC


async def test_client_secret_basic_with_matching_body_client_id(tenant):
    assert await auth(with_basic("basic", SECRET, client_id="basic"), tenant) == BASIC


def assert_invalid_client(caught: pytest.ExceptionInfo[InvalidClient], *, basic: bool) -> None:
    error = caught.value
    assert error.status_code == 401
    assert error.to_body() == {"error": "invalid_client", "error_description": "Client authentication failed"}
    if basic:
        assert error.headers() == {"WWW-Authenticate": f'Basic realm="{REALM}", charset="UTF-8"'}
    else:
        assert error.headers() == {}


@pytest.mark.parametrize(
    "request_",
    [
        pytest.param(body(client_id="post", client_secret=SECRET + "x"), id="post-wrong-secret"),
        pytest.param(body(client_id="post", client_secret=SECRET[:-1]), id="post-truncated-secret"),
        pytest.param(body(client_id="post"), id="post-client-without-secret"),
        pytest.param(body(client_id="nobody"), id="unknown-client-no-secret"),
        pytest.param(body(client_id="nobody", client_secret=SECRET), id="unknown-client-with-secret"),
        pytest.param(body(client_id="public", client_secret=SECRET), id="public-client-sending-a-secret"),
        pytest.param(body(client_id="basic", client_secret=SECRET), id="basic-client-using-post"),
        pytest.param(body(client_id="basic"), id="basic-client-using-none"),
        pytest.param(body(client_id="Post", client_secret=SECRET), id="client-id-is-case-sensitive"),
        pytest.param(body(client_id="no-hash", client_secret="identity: no such client"), id="no-hash-dummy-secret"),
        pytest.param(body(client_id="no-hash", client_secret="x"), id="no-hash-any-secret"),
    ],
)
async def test_client_authentication_failures_without_basic_are_uniform(tenant, request_):
    with pytest.raises(InvalidClient) as caught:
        await auth(request_, tenant)
    assert_invalid_client(caught, basic=False)


@pytest.mark.parametrize(
    "request_",
    [
        pytest.param(with_basic("basic", SECRET + "x"), id="basic-wrong-secret"),
        pytest.param(with_basic("basic", ""), id="basic-empty-secret"),
        pytest.param(with_basic("nobody", SECRET), id="basic-unknown-client"),
        pytest.param(with_basic("post", SECRET), id="post-client-using-basic"),
        pytest.param(with_basic("public", ""), id="public-client-using-basic"),
        pytest.param(with_basic("no-hash-basic", "identity: no such client"), id="no-hash-dummy-secret"),
    ],
)
async def test_client_authentication_failures_with_basic_carry_a_challenge(tenant, request_):
    with pytest.raises(InvalidClient) as caught:
        await auth(request_, tenant)
    assert_invalid_client(caught, basic=True)


async def test_missing_client_id(tenant):
    with pytest.raises(InvalidRequest) as caught:
        await auth(body(client_secret=SECRET), tenant)
    assert caught.value.description == "missing client_id parameter"
    assert tenant.calls == []


async def test_basic_and_body_secret_together_is_invalid_request(tenant):
    with pytest.raises(InvalidRequest, match="only one method"):
        await auth(with_basic("basic", SECRET, client_secret=SECRET), tenant)


async def test_basic_and_different_body_client_id_is_invalid_request(tenant):
    with pytest.raises(InvalidRequest, match="client_id parameter does not match"):
        await auth(with_basic("basic", SECRET, client_id="post"), tenant)


async def test_the_client_is_looked_up_by_its_id(tenant):
    await auth(with_basic("basic", SECRET), tenant)
    assert tenant.calls == [("client", "basic")]
