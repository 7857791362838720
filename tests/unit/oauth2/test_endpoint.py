import pytest

from identity.oauth2 import TokenEndpoint
from identity.oauth2.errors import InvalidClient, InvalidRequest, UnauthorizedClient, UnsupportedGrantType
from identity.oauth2.requests import BasicCredentials, TokenRequest
from tests.unit.oauth2.fakes import PASSWORD, PASSWORD_REALM, SECRET, FakeTenant, RecordingGrant, make_client

REALM = "https://identity.test/"
BOTH = make_client("both", grant_types=(PASSWORD, PASSWORD_REALM))
REALM_ONLY = make_client("realm-only", grant_types=(PASSWORD_REALM,))
PASSWORD_ONLY = make_client("password-only", grant_types=(PASSWORD,))
NOTHING = make_client("nothing", grant_types=())
BASIC = make_client("basic", method="client_secret_basic", secret=SECRET, grant_types=(PASSWORD,))


@pytest.fixture
def grants() -> dict[str, RecordingGrant]:
    return {PASSWORD: RecordingGrant(PASSWORD), PASSWORD_REALM: RecordingGrant(PASSWORD_REALM)}


@pytest.fixture
def tenant() -> FakeTenant:
    return FakeTenant(clients=[BOTH, REALM_ONLY, PASSWORD_ONLY, NOTHING, BASIC])


@pytest.fixture
def endpoint(grants, tenant) -> TokenEndpoint:
    return TokenEndpoint(grants, tenant, challenge_realm=REALM)


@pytest.mark.parametrize("grant_type", [PASSWORD, PASSWORD_REALM])
async def test_dispatches_to_the_grant_with_the_authenticated_client(endpoint, grants, grant_type):
    request = TokenRequest({"grant_type": grant_type, "client_id": "both"})
    response = await endpoint.handle(request)
    assert response.access_token == f"from-{grant_type}"
    assert grants[grant_type].handled == [(request, BOTH)]
    other = PASSWORD_REALM if grant_type == PASSWORD else PASSWORD
    assert grants[other].handled == []


async def test_missing_grant_type(endpoint, tenant):
    with pytest.raises(InvalidRequest) as caught:
        await endpoint.handle(TokenRequest({"client_id": "both"}))
    assert caught.value.to_body() == {"error": "invalid_request", "error_description": "missing grant_type parameter"}


@pytest.mark.parametrize(
    "grant_type",
    [
        "client_credentials",
        "authorization_code",
        "PASSWORD",
        "http://auth0.com/oauth/grant-type/mfa-otp",
        "urn:ietf:params:oauth:grant-type:jwt-bearer",
    ],
)
async def test_unknown_grant_type_is_unsupported(endpoint, tenant, grants, grant_type):
    with pytest.raises(UnsupportedGrantType) as caught:
        await endpoint.handle(TokenRequest({"grant_type": grant_type, "client_id": "both"}))
    assert caught.value.status_code == 400
    assert caught.value.to_body() == {
        "error": "unsupported_grant_type",
        "error_description": "Grant type not supported",
    }
    assert all(not grant.handled for grant in grants.values())


@pytest.mark.parametrize(
    ("client_id", "grant_type"),
    [("realm-only", PASSWORD), ("password-only", PASSWORD_REALM), ("nothing", PASSWORD), ("nothing", PASSWORD_REALM)],
)
async def test_grant_not_allowed_for_the_client(endpoint, grants, client_id, grant_type):
    with pytest.raises(UnauthorizedClient) as caught:
        await endpoint.handle(TokenRequest({"grant_type": grant_type, "client_id": client_id}))
    assert caught.value.status_code == 403
    assert caught.value.to_body() == {
        "error": "unauthorized_client",
        "error_description": f"Grant type '{grant_type}' not allowed for the client.",
    }
    assert all(not grant.handled for grant in grants.values())


async def test_client_authentication_comes_before_the_grant(endpoint, grants):
    request = TokenRequest({"grant_type": PASSWORD}, basic=BasicCredentials("basic", "wrong"))
    with pytest.raises(InvalidClient) as caught:
        await endpoint.handle(request)
    assert caught.value.headers()["WWW-Authenticate"] == f'Basic realm="{REALM}", charset="UTF-8"'
    assert grants[PASSWORD].handled == []


async def test_client_authentication_failure_hides_whether_the_grant_is_allowed(endpoint):
    # A wrong secret for a client without the grant is still invalid_client, not unauthorized_client.
    request = TokenRequest({"grant_type": PASSWORD_REALM}, basic=BasicCredentials("basic", "wrong"))
    with pytest.raises(InvalidClient):
        await endpoint.handle(request)


async def test_basic_client_is_dispatched(endpoint, grants):
    request = TokenRequest({"grant_type": PASSWORD}, basic=BasicCredentials("basic", SECRET))
    await endpoint.handle(request)
    assert grants[PASSWORD].handled == [(request, BASIC)]
