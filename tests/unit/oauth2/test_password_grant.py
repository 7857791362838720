import pytest

from identity.oauth2.errors import (
    AccessDenied,
    InvalidGrant,
    InvalidRequest,
    OAuthError,
    ServerError,
    Unauthorized,
)
from identity.oauth2.grants import PASSWORD, PASSWORD_REALM, PasswordGrant, PasswordRealmGrant
from identity.oauth2.grants.password import WRONG_CREDENTIALS
from identity.oauth2.interfaces import TenantSettings
from identity.oauth2.requests import TokenRequest
from tests.unit.oauth2.fakes import (
    API,
    CUSTOMERS,
    EMPLOYEES,
    OTHER_API,
    FakeUsers,
    make_client,
    standard_fakes,
)

CLIENT = make_client(connections=("customers", "employees", "social"))
ALICE = {"username": "alice@example.test", "password": "customer pw"}


def test_grant_type_strings():
    assert PasswordGrant.GRANT_TYPE == PASSWORD == "password"
    assert PasswordRealmGrant.GRANT_TYPE == PASSWORD_REALM == "http://auth0.com/oauth/grant-type/password-realm"
    assert WRONG_CREDENTIALS == "Wrong email or password."


async def run(kind, params, *, settings=None, client=CLIENT):
    tenant, users, issuer = standard_fakes(settings=settings)
    response = await kind(tenant, users, issuer).handle(TokenRequest(params), client)
    return response, issuer, users


async def fails(kind, params, *, settings=None, client=CLIENT) -> tuple[OAuthError, FakeUsers]:
    tenant, users, issuer = standard_fakes(settings=settings)
    with pytest.raises(OAuthError) as caught:
        await kind(tenant, users, issuer).handle(TokenRequest(params), client)
    assert issuer.results == [], "no token may be issued after an error"
    return caught.value, users


# -- directory selection --------------------------------------------------------------------------------------------


async def test_password_grant_uses_the_default_directory():
    response, issuer, users = await run(PasswordGrant, ALICE)
    (result,) = issuer.results
    assert result.connection == CUSTOMERS
    assert result.user.user_id == "auth0|customers-alice@example.test"
    assert users.calls == [("customers", "alice@example.test", "customer pw")]
    assert response.access_token == "access-token-1"


async def test_password_grant_with_realm_uses_the_realm():
    _, issuer, _ = await run(
        PasswordGrant, {"username": "alice@example.test", "password": "employee pw", "realm": "employees"}
    )
    (result,) = issuer.results
    assert result.connection == EMPLOYEES
    assert result.user.user_id == "auth0|employees-alice@example.test"


async def test_password_realm_grant_uses_the_realm():
    params = {"username": "alice@example.test", "password": "employee pw", "realm": "employees"}
    _, issuer, _ = await run(PasswordRealmGrant, params)
    assert issuer.results[0].connection == EMPLOYEES
    assert issuer.results[0].grant_type == PASSWORD_REALM


async def test_password_realm_grant_requires_realm_and_never_falls_back_to_the_default_directory():
    error, users = await fails(PasswordRealmGrant, ALICE)
    assert isinstance(error, InvalidRequest)
    assert error.to_body() == {"error": "invalid_request", "error_description": "missing realm parameter"}
    assert users.calls == []


async def test_same_login_in_two_directories_is_two_users():
    _, customers, _ = await run(PasswordGrant, ALICE)
    params = {"username": "alice@example.test", "password": "employee pw", "realm": "employees"}
    _, employees, _ = await run(PasswordRealmGrant, params)
    assert customers.results[0].user.user_id != employees.results[0].user.user_id


async def test_each_directory_password_fails_in_the_other_directory():
    error, _ = await fails(PasswordRealmGrant, {**ALICE, "realm": "employees"})
    assert isinstance(error, InvalidGrant)
    error, _ = await fails(PasswordGrant, {"username": "alice@example.test", "password": "employee pw"})
    assert isinstance(error, InvalidGrant)


async def test_no_default_directory_is_a_server_error():
    error, users = await fails(PasswordGrant, ALICE, settings=TenantSettings(default_audience=API.identifier))
    assert isinstance(error, ServerError)
    assert error.status_code == 500
    assert error.to_body() == {
        "error": "server_error",
        "error_description": "Authorization server not configured with default connection.",
    }
    assert users.calls == []


async def test_realm_works_without_a_default_directory():
    settings = TenantSettings(default_audience=API.identifier)
    _, issuer, _ = await run(PasswordGrant, {**ALICE, "realm": "customers"}, settings=settings)
    assert issuer.results[0].connection == CUSTOMERS


@pytest.mark.parametrize("kind", [PasswordGrant, PasswordRealmGrant])
@pytest.mark.parametrize("realm", ["nowhere", "Customers", "CUSTOMERS", "customers ", " customers"])
async def test_unknown_or_misspelled_realm_is_not_found(kind, realm):
    error, users = await fails(kind, {**ALICE, "realm": realm})
    assert error.to_body() == {"error": "invalid_request", "error_description": "the connection was not found"}
    assert error.status_code == 400
    assert users.calls == []


@pytest.mark.parametrize("kind", [PasswordGrant, PasswordRealmGrant])
async def test_connection_not_enabled_for_the_client_is_disabled(kind):
    error, users = await fails(kind, {**ALICE, "realm": "partners"})
    assert error.to_body() == {"error": "invalid_request", "error_description": "the connection was disabled"}
    assert users.calls == []


async def test_default_directory_not_enabled_for_the_client_is_disabled():
    error, _ = await fails(PasswordGrant, ALICE, client=make_client(connections=("employees",)))
    assert error.to_body() == {"error": "invalid_request", "error_description": "the connection was disabled"}


async def test_connection_without_password_support_is_refused():
    error, users = await fails(PasswordRealmGrant, {**ALICE, "realm": "social"})
    assert error.to_body() == {
        "error": "invalid_request",
        "error_description": "specified strategy does not support requested operation",
    }
    assert users.calls == []


# -- parameters -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", [PasswordGrant, PasswordRealmGrant])
@pytest.mark.parametrize("missing", ["username", "password"])
async def test_missing_credentials(kind, missing):
    params = {**ALICE, "realm": "customers"}
    del params[missing]
    error, users = await fails(kind, params)
    assert error.to_body() == {"error": "invalid_request", "error_description": f"missing {missing} parameter"}
    assert users.calls == []


# -- audience -------------------------------------------------------------------------------------------------------


async def test_audience_defaults_to_the_tenant_default():
    _, issuer, _ = await run(PasswordGrant, ALICE)
    assert issuer.results[0].api == API
    assert issuer.results[0].audience == API.identifier


async def test_explicit_audience():
    _, issuer, _ = await run(PasswordGrant, {**ALICE, "audience": OTHER_API.identifier})
    assert issuer.results[0].api == OTHER_API
    assert issuer.results[0].audience == OTHER_API.identifier
    assert issuer.results[0].scopes == ("read:o",)


@pytest.mark.parametrize("audience", ["https://nope.test/", "https://api.test", "HTTPS://API.TEST/"])
async def test_unknown_audience_is_access_denied_before_the_password_is_checked(audience):
    error, users = await fails(PasswordGrant, {**ALICE, "audience": audience})
    assert isinstance(error, AccessDenied)
    assert error.status_code == 403
    assert error.to_body() == {"error": "access_denied", "error_description": f"Service not found: {audience}"}
    assert users.calls == []


async def test_no_audience_and_no_default_gives_a_token_without_api():
    _, issuer, _ = await run(PasswordGrant, {**ALICE, "scope": "openid"}, settings=TenantSettings("customers"))
    (result,) = issuer.results
    assert result.api is None
    assert result.audience is None
    assert result.scopes == ("openid", "profile", "email", "address", "phone")


# -- scopes ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scope", "granted"),
    [
        (None, ("read:a", "write:a", "delete:a")),
        ("write:a", ("write:a",)),
        ("write:a unknown read:a", ("write:a", "read:a")),
        ("openid", ("openid", "profile", "email", "address", "phone", "read:a", "write:a", "delete:a")),
    ],
)
async def test_scopes_are_resolved_against_the_audience(scope, granted):
    params = dict(ALICE) if scope is None else {**ALICE, "scope": scope}
    response, issuer, _ = await run(PasswordGrant, params)
    assert issuer.results[0].scopes == granted
    assert response.scope == " ".join(granted)


# -- credentials ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "credentials",
    [
        {"username": "alice@example.test", "password": "wrong"},
        {"username": "nobody@example.test", "password": "customer pw"},
        {"username": "alice@example.test", "password": "Customer pw"},
        {"username": "bob@example.test", "password": "wrong"},
    ],
)
async def test_wrong_password_unknown_user_and_blocked_user_with_wrong_password_look_the_same(credentials):
    error, users = await fails(PasswordGrant, credentials)
    assert type(error) is InvalidGrant
    assert error.status_code == 403
    assert error.to_body() == {"error": "invalid_grant", "error_description": "Wrong email or password."}
    assert error.headers() == {}
    assert len(users.calls) == 1, "the password is checked even for an unknown user"


async def test_blocked_user_with_the_right_password_is_unauthorized():
    error, _ = await fails(PasswordGrant, {"username": "bob@example.test", "password": "bob pw"})
    assert isinstance(error, Unauthorized)
    assert error.status_code == 401
    assert error.to_body() == {"error": "unauthorized", "error_description": "user is blocked"}


async def test_the_grant_result_describes_the_decision():
    _, issuer, _ = await run(PasswordGrant, {**ALICE, "scope": "read:a"})
    (result,) = issuer.results
    assert result.grant_type == "password"
    assert result.client == CLIENT
    assert result.user.email == "alice@example.test"
    assert result.connection == CUSTOMERS
    assert result.api == API
    assert result.audience == API.identifier
    assert result.scopes == ("read:a",)
    assert result.amr == ("pwd",)


async def test_a_blocked_identifier_and_ip_get_too_many_attempts():
    from identity.oauth2.errors import TooManyAttempts
    from identity.oauth2.grants.password import BLOCKED

    tenant, users, issuer = standard_fakes()
    users.blocked_pairs.add(("customers", "alice@example.test", "203.0.113.7"))
    grant = PasswordGrant(tenant, users, issuer)
    with pytest.raises(TooManyAttempts) as caught:
        await grant.handle(TokenRequest(ALICE, client_ip="203.0.113.7"), CLIENT)
    assert (caught.value.status_code, caught.value.error, caught.value.description) == (
        429,
        "too_many_attempts",
        BLOCKED,
    )
    assert issuer.results == []
    # The same identifier from another address is not blocked.
    assert (await grant.handle(TokenRequest(ALICE, client_ip="198.51.100.1"), CLIENT)).access_token
