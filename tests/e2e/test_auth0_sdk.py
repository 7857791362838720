"""Auth0's own Python SDK (``auth0-python``) against the real server: it posts JSON bodies with explicit nulls."""

from __future__ import annotations

from typing import Any

import pytest
from auth0.authentication import GetToken

from tests.e2e.conftest import (
    ALICE_CUSTOMER_PASSWORD,
    ALICE_EMAIL,
    ALICE_EMPLOYEE_PASSWORD,
    API,
    API_LIFETIME,
    API_SCOPES,
    BOB_EMAIL,
    BOB_PASSWORD,
    DAVE_EMAIL,
    DAVE_PASSWORD,
    DAVE_USERNAME,
    PASSWORD_REALM,
    POST_CLIENT,
    POST_SECRET,
    PUBLIC_CLIENT,
    REALM_ONLY_CLIENT,
    REPORTS_API,
    REPORTS_LIFETIME,
    AppliedTenant,
    IdentityServer,
    verify_access_token,
    verify_id_token,
)

try:  # auth0-python 4.x
    from auth0.exceptions import Auth0Error  # type: ignore[import-not-found,unused-ignore]
except ImportError:  # auth0-python 5.x and later
    from auth0.authentication.exceptions import Auth0Error  # type: ignore[import-not-found,no-redef,unused-ignore]

CLIENTS = {PUBLIC_CLIENT: None, POST_CLIENT: POST_SECRET}
WRONG_CREDENTIALS = "Wrong email or password."


def sdk(server: IdentityServer, client_id: str = PUBLIC_CLIENT, client_secret: str | None = None) -> GetToken:
    return GetToken(server.domain, client_id, client_secret=client_secret, protocol="http")


def login_error(get_token: GetToken, username: str, password: str, **kwargs: Any) -> Auth0Error:
    with pytest.raises(Auth0Error) as caught:
        get_token.login(username, password, **kwargs)
    return caught.value


@pytest.mark.parametrize("client_id", CLIENTS)
def test_password_grant_uses_the_default_directory_and_grants_every_api_scope(
    server: IdentityServer, applied_tenant: AppliedTenant, client_id: str
) -> None:
    response = sdk(server, client_id, CLIENTS[client_id]).login(
        ALICE_EMAIL, ALICE_CUSTOMER_PASSWORD, grant_type="password"
    )

    assert response["token_type"] == "Bearer"
    assert response["expires_in"] == API_LIFETIME
    assert response["scope"] == " ".join(API_SCOPES)
    assert "id_token" not in response
    assert "refresh_token" not in response
    claims = verify_access_token(server, response["access_token"], audience=API)
    assert claims["iss"] == server.issuer
    assert claims["sub"] == applied_tenant.user_ids[("customers", ALICE_EMAIL)]
    assert claims["aud"] == API
    assert claims["azp"] == client_id
    assert claims["scope"] == " ".join(API_SCOPES)
    assert claims["gty"] == "password"
    assert claims["exp"] - claims["iat"] == API_LIFETIME


@pytest.mark.parametrize("grant_type", ["password", PASSWORD_REALM])
@pytest.mark.parametrize("client_id", CLIENTS)
def test_realm_selects_the_directory(
    server: IdentityServer, applied_tenant: AppliedTenant, client_id: str, grant_type: str
) -> None:
    response = sdk(server, client_id, CLIENTS[client_id]).login(
        ALICE_EMAIL, ALICE_EMPLOYEE_PASSWORD, realm="employees", audience=API, grant_type=grant_type
    )

    claims = verify_access_token(server, response["access_token"], audience=API)
    assert claims["sub"] == applied_tenant.user_ids[("employees", ALICE_EMAIL)]
    assert claims["azp"] == client_id
    assert claims["gty"] == "password"


def test_same_email_in_two_directories_is_two_users(server: IdentityServer, applied_tenant: AppliedTenant) -> None:
    get_token = sdk(server)
    customer = get_token.login(ALICE_EMAIL, ALICE_CUSTOMER_PASSWORD, realm="customers", grant_type=PASSWORD_REALM)
    employee = get_token.login(ALICE_EMAIL, ALICE_EMPLOYEE_PASSWORD, realm="employees", grant_type=PASSWORD_REALM)

    customer_sub = verify_access_token(server, customer["access_token"], audience=API)["sub"]
    employee_sub = verify_access_token(server, employee["access_token"], audience=API)["sub"]
    assert customer_sub != employee_sub
    assert customer_sub == applied_tenant.user_ids[("customers", ALICE_EMAIL)]
    assert employee_sub == applied_tenant.user_ids[("employees", ALICE_EMAIL)]
    # Each directory checks its own password: the customer's password is wrong in the employees directory.
    error = login_error(get_token, ALICE_EMAIL, ALICE_CUSTOMER_PASSWORD, realm="employees", grant_type=PASSWORD_REALM)
    assert (error.status_code, error.error_code, error.message) == (403, "invalid_grant", WRONG_CREDENTIALS)


def test_openid_scope_adds_userinfo_audience_and_an_id_token(
    server: IdentityServer, applied_tenant: AppliedTenant
) -> None:
    response = sdk(server, POST_CLIENT, POST_SECRET).login(
        ALICE_EMAIL,
        ALICE_CUSTOMER_PASSWORD,
        scope="openid profile email read:things",
        audience=API,
        grant_type="password",
    )

    assert response["scope"] == "openid profile email read:things"
    claims = verify_access_token(server, response["access_token"], audience=API)
    assert claims["aud"] == [API, server.issuer + "userinfo"]
    assert claims["scope"] == "openid profile email read:things"
    id_claims = verify_id_token(server, response["id_token"], client_id=POST_CLIENT)
    assert id_claims["sub"] == claims["sub"] == applied_tenant.user_ids[("customers", ALICE_EMAIL)]
    assert id_claims["email"] == ALICE_EMAIL
    assert id_claims["email_verified"] is True
    assert id_claims["name"] == "Alice (customer)"
    assert id_claims["exp"] > id_claims["iat"]


def test_scope_restricts_to_known_api_scopes(server: IdentityServer) -> None:
    response = sdk(server).login(
        ALICE_EMAIL, ALICE_CUSTOMER_PASSWORD, scope="write:things launch:rockets", audience=API, grant_type="password"
    )

    assert response["scope"] == "write:things"
    claims = verify_access_token(server, response["access_token"], audience=API)
    assert claims["scope"] == "write:things"
    assert claims["aud"] == API


def test_es256_api(server: IdentityServer, applied_tenant: AppliedTenant) -> None:
    response = sdk(server).login(
        ALICE_EMAIL, ALICE_EMPLOYEE_PASSWORD, realm="employees", audience=REPORTS_API, grant_type=PASSWORD_REALM
    )

    assert response["expires_in"] == REPORTS_LIFETIME
    claims = verify_access_token(server, response["access_token"], audience=REPORTS_API, alg="ES256")
    assert claims["aud"] == REPORTS_API
    assert claims["scope"] == "read:reports"
    assert claims["sub"] == applied_tenant.user_ids[("employees", ALICE_EMAIL)]
    assert claims["exp"] - claims["iat"] == REPORTS_LIFETIME


@pytest.mark.parametrize("login", [DAVE_USERNAME, DAVE_EMAIL, DAVE_EMAIL.upper()])
def test_user_created_with_the_cli(server: IdentityServer, applied_tenant: AppliedTenant, login: str) -> None:
    response = sdk(server).login(login, DAVE_PASSWORD, realm="employees", grant_type=PASSWORD_REALM)

    claims = verify_access_token(server, response["access_token"], audience=API)
    assert claims["sub"] == applied_tenant.dave["user_id"]


# --- Errors, as the SDK reports them --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("username", "password", "realm"),
    [
        pytest.param(ALICE_EMAIL, "not the password", None, id="wrong-password"),
        pytest.param("nobody@e2e.test", ALICE_CUSTOMER_PASSWORD, None, id="unknown-user"),
        pytest.param(DAVE_EMAIL, DAVE_PASSWORD, None, id="user-of-another-directory"),
        pytest.param(ALICE_EMAIL, "not the password", "employees", id="wrong-password-in-realm"),
    ],
)
@pytest.mark.parametrize("grant_type", ["password", PASSWORD_REALM])
def test_wrong_credentials(
    server: IdentityServer, username: str, password: str, realm: str | None, grant_type: str
) -> None:
    realm = realm or ("customers" if grant_type == PASSWORD_REALM else None)

    error = login_error(sdk(server), username, password, realm=realm, grant_type=grant_type)

    assert (error.status_code, error.error_code, error.message) == (403, "invalid_grant", WRONG_CREDENTIALS)


def test_grant_not_allowed_for_the_client(server: IdentityServer) -> None:
    get_token = sdk(server, REALM_ONLY_CLIENT)

    error = login_error(get_token, ALICE_EMAIL, ALICE_EMPLOYEE_PASSWORD, realm="employees", grant_type="password")

    assert (error.status_code, error.error_code) == (403, "unauthorized_client")
    assert error.message == "Grant type 'password' not allowed for the client."
    # The grant it has works.
    get_token.login(ALICE_EMAIL, ALICE_EMPLOYEE_PASSWORD, realm="employees", grant_type=PASSWORD_REALM)


WRONG_REALMS = [
    (PUBLIC_CLIENT, "Employees", "the connection was not found", "realm-names-are-case-sensitive"),
    (PUBLIC_CLIENT, "contractors", "the connection was not found", "unknown-realm"),
    (PUBLIC_CLIENT, "partners", "the connection was disabled", "realm-not-enabled-for-the-client"),
]


@pytest.mark.parametrize(
    ("client_id", "realm", "description", "grant_type"),
    [
        *(
            pytest.param(client_id, realm, description, grant_type, id=f"{case}-{grant_type.rsplit('/', 1)[-1]}")
            for client_id, realm, description, case in WRONG_REALMS
            for grant_type in ("password", PASSWORD_REALM)
        ),
        pytest.param(
            REALM_ONLY_CLIENT, "customers", "the connection was disabled", PASSWORD_REALM, id="other-client-realm"
        ),
    ],
)
def test_wrong_realm(server: IdentityServer, client_id: str, realm: str, description: str, grant_type: str) -> None:
    error = login_error(
        sdk(server, client_id), ALICE_EMAIL, ALICE_EMPLOYEE_PASSWORD, realm=realm, grant_type=grant_type
    )

    assert (error.status_code, error.error_code, error.message) == (400, "invalid_request", description)


def test_password_realm_requires_a_realm(server: IdentityServer) -> None:
    error = login_error(sdk(server), ALICE_EMAIL, ALICE_CUSTOMER_PASSWORD, grant_type=PASSWORD_REALM)

    assert (error.status_code, error.error_code, error.message) == (400, "invalid_request", "missing realm parameter")


def test_blocked_user_gets_no_token(server: IdentityServer) -> None:
    error = login_error(sdk(server), BOB_EMAIL, BOB_PASSWORD, grant_type="password")

    assert (error.status_code, error.error_code, error.message) == (401, "unauthorized", "user is blocked")


def test_blocked_user_with_a_wrong_password_learns_nothing(server: IdentityServer) -> None:
    error = login_error(sdk(server), BOB_EMAIL, "not the password", grant_type="password")

    assert (error.status_code, error.error_code, error.message) == (403, "invalid_grant", WRONG_CREDENTIALS)


def test_unknown_audience(server: IdentityServer) -> None:
    error = login_error(
        sdk(server), ALICE_EMAIL, ALICE_CUSTOMER_PASSWORD, audience="https://nope.e2e.test/", grant_type="password"
    )

    assert (error.status_code, error.error_code) == (403, "access_denied")
    assert error.message == "Service not found: https://nope.e2e.test/"


@pytest.mark.parametrize(
    ("client_id", "client_secret"),
    [
        pytest.param(POST_CLIENT, "a-wrong-secret-0123456789abcdefghijklmn", id="wrong-secret"),
        pytest.param(POST_CLIENT, None, id="confidential-client-without-secret"),
        pytest.param("no-such-client", None, id="unknown-client"),
        pytest.param(PUBLIC_CLIENT, POST_SECRET, id="public-client-with-a-secret"),
    ],
)
def test_client_authentication_failure(server: IdentityServer, client_id: str, client_secret: str | None) -> None:
    error = login_error(
        sdk(server, client_id, client_secret), ALICE_EMAIL, ALICE_CUSTOMER_PASSWORD, grant_type="password"
    )

    assert (error.status_code, error.error_code) == (401, "invalid_client")
