"""``POST /oauth/token`` against the real app and database (API.md §1.0-1.2, §1.9, §3.4-3.5)."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from tests.api.support import (
    ALICE,
    PASSWORD_REALM,
    alice_params,
    assert_error,
    assert_no_store,
    assert_token,
    basic,
    post_form,
    post_raw,
    verify,
)
from tests.conftest import (
    ALICE_CUSTOMER_PASSWORD,
    ALICE_EMPLOYEE_PASSWORD,
    API,
    BASIC_SECRET,
    BOB_PASSWORD,
    CONFIDENTIAL_SECRET,
    ISSUER,
    REPORTS_API,
)

ALL_API_SCOPES = "read:things write:things delete:things"
OIDC = "openid profile email address phone"
BASIC_CHALLENGE = 'Basic realm="https://identity.test/", charset="UTF-8"'


@pytest.fixture
def client(shared_client):
    """This module only reads the tenant: every test shares one app and one standard tenant (tests/api/conftest.py)."""
    return shared_client


@pytest.fixture
def tenant(shared_tenant):
    return shared_tenant


def user_id(tenant: Any, connection: str, email: str = ALICE) -> str:
    """The ``user_id`` the tenant file gave this user."""
    (found,) = [u for u in tenant.users if u["connection"] == connection and u["email"] == email]
    return found["user_id"]


# -- directories ----------------------------------------------------------------------------------------------------


def test_password_grant_uses_the_default_directory(client, tenant):
    body = assert_token(post_form(client, alice_params()))
    _, claims = verify(client, body["access_token"], API)
    assert claims["sub"] == user_id(tenant, "customers")


def test_password_grant_with_realm_uses_that_directory(client, tenant):
    params = alice_params(realm="employees", password=ALICE_EMPLOYEE_PASSWORD)
    body = assert_token(post_form(client, params))
    assert verify(client, body["access_token"], API)[1]["sub"] == user_id(tenant, "employees")


def test_password_realm_grant(client, tenant):
    params = alice_params(grant_type=PASSWORD_REALM, realm="employees", password=ALICE_EMPLOYEE_PASSWORD)
    body = assert_token(post_form(client, params))
    _, claims = verify(client, body["access_token"], API)
    assert claims["sub"] == user_id(tenant, "employees")
    assert claims["gty"] == "password"


def test_password_realm_grant_requires_realm(client):
    response = post_form(client, alice_params(grant_type=PASSWORD_REALM))
    assert_error(response, 400, "invalid_request", "missing realm parameter")


def test_same_email_in_two_directories_is_two_users(client, tenant):
    customer = assert_token(post_form(client, alice_params(realm="customers")))
    employee = assert_token(post_form(client, alice_params(realm="employees", password=ALICE_EMPLOYEE_PASSWORD)))
    customer_sub = verify(client, customer["access_token"], API)[1]["sub"]
    employee_sub = verify(client, employee["access_token"], API)[1]["sub"]
    assert customer_sub != employee_sub
    assert {customer_sub, employee_sub} == {user_id(tenant, "customers"), user_id(tenant, "employees")}
    assert customer_sub.startswith("auth0|")
    assert employee_sub.startswith("auth0|")


@pytest.mark.parametrize(
    ("realm", "password"),
    [("customers", ALICE_EMPLOYEE_PASSWORD), ("employees", ALICE_CUSTOMER_PASSWORD)],
)
@pytest.mark.parametrize("grant_type", ["password", PASSWORD_REALM])
def test_each_password_fails_in_the_other_directory(client, realm, password, grant_type):
    response = post_form(client, alice_params(grant_type=grant_type, realm=realm, password=password))
    assert_error(response, 403, "invalid_grant", "Wrong email or password.")


def test_login_by_username(client, tenant):
    params = alice_params(
        grant_type=PASSWORD_REALM, realm="employees", username="alice", password=ALICE_EMPLOYEE_PASSWORD
    )
    body = assert_token(post_form(client, params))
    assert verify(client, body["access_token"], API)[1]["sub"] == user_id(tenant, "employees")


def test_email_login_is_case_insensitive(client, tenant):
    body = assert_token(post_form(client, alice_params(username="ALICE@Example.TEST")))
    assert verify(client, body["access_token"], API)[1]["sub"] == user_id(tenant, "customers")


@pytest.mark.parametrize("realm", ["Customers", "CUSTOMERS", "Employees", "customers ", "custom"])
@pytest.mark.parametrize("grant_type", ["password", PASSWORD_REALM])
def test_realm_names_are_case_sensitive_and_exact(client, realm, grant_type):
    response = post_form(client, alice_params(grant_type=grant_type, realm=realm))
    assert_error(response, 400, "invalid_request", "the connection was not found")


@pytest.mark.parametrize(
    ("client_id", "realm", "headers"),
    [
        ("public-app", "partners", {}),
        ("realm-only-app", "customers", {}),
        ("basic-app", "employees", basic("basic-app", BASIC_SECRET)),
    ],
)
def test_connection_not_enabled_for_the_client_is_refused(client, client_id, realm, headers):
    params = alice_params(grant_type=PASSWORD_REALM, realm=realm, client_id=None if headers else client_id)
    response = post_form(client, params, headers=headers)
    assert_error(response, 400, "invalid_request", "the connection was disabled")


@pytest.mark.parametrize("grant_type", ["password", PASSWORD_REALM])
def test_unknown_connection_is_not_found(client, grant_type):
    response = post_form(client, alice_params(grant_type=grant_type, realm="nowhere"))
    assert_error(response, 400, "invalid_request", "the connection was not found")


# -- bodies ---------------------------------------------------------------------------------------------------------


def test_json_body_with_explicit_nulls_as_the_auth0_python_sdk_posts(client, tenant):
    body = {
        "client_id": "public-app",
        "username": ALICE,
        "password": ALICE_CUSTOMER_PASSWORD,
        "realm": None,
        "scope": None,
        "audience": None,
        "grant_type": "password",
    }
    token = assert_token(client.post("/oauth/token", json=body))
    _, claims = verify(client, token["access_token"], API)
    assert claims["sub"] == user_id(tenant, "customers")
    assert claims["scope"] == ALL_API_SCOPES


def test_json_body_with_client_secret(client):
    body = {**alice_params(client_id="confidential-app"), "client_secret": CONFIDENTIAL_SECRET, "realm": None}
    assert_token(client.post("/oauth/token", json=body))


def test_json_scope_as_array(client):
    token = assert_token(
        client.post("/oauth/token", json={**alice_params(), "scope": ["openid", "profile", "read:things"]})
    )
    assert token["scope"] == "openid profile read:things"
    assert verify(client, token["access_token"], API)[1]["scope"] == token["scope"]
    assert "id_token" in token


def test_json_scope_array_subset(client):
    token = assert_token(client.post("/oauth/token", json={**alice_params(), "scope": ["write:things", "nope"]}))
    assert token["scope"] == "write:things"


def test_json_with_charset_parameter(client):
    response = post_raw(
        client,
        json.dumps(alice_params()),
        content_type="application/json; charset=utf-8",
    )
    assert_token(response)


def test_form_with_charset_parameter(client):
    response = post_raw(
        client,
        f"grant_type=password&client_id=public-app&username={ALICE}&password=alice+customer+password",
        content_type="application/x-www-form-urlencoded; charset=UTF-8",
    )
    assert_token(response)


@pytest.mark.parametrize("name", ["username", "grant_type", "client_id", "scope"])
def test_repeated_form_parameter_is_invalid_request(client, name):
    params = alice_params(scope="read:things")
    body = "&".join(f"{key}={value}" for key, value in params.items()) + f"&{name}={params[name]}"
    response = post_raw(client, body)
    assert_error(response, 400, "invalid_request", f"{name} parameter must not be included more than once")


@pytest.mark.parametrize(
    ("name", "first"),
    [("username", "nobody@example.test"), ("client_id", "realm-only-app"), ("grant_type", "bogus")],
)
def test_repeated_json_member_is_invalid_request(client, name, first):
    # RFC 6749 §3.2 (and identity/oauth2/requests.py): a parameter sent more than once is refused, in JSON too.
    # json.loads silently keeps the last value, so a proxy reading the first and the server could disagree.
    members = [f"{json.dumps(name)}:{json.dumps(first)}"]
    members += [f"{json.dumps(key)}:{json.dumps(value)}" for key, value in alice_params().items()]
    response = post_raw(client, "{" + ",".join(members) + "}", content_type="application/json")
    assert_error(response, 400, "invalid_request", f"{name} parameter must not be included more than once")


@pytest.mark.parametrize(
    "content_type",
    [None, "text/plain", "multipart/form-data; boundary=x", "application/xml", "application/jsonx", "form"],
)
def test_wrong_content_type_is_invalid_request(client, content_type):
    response = post_raw(client, "grant_type=password&client_id=public-app", content_type=content_type)
    assert_error(response, 400, "invalid_request")


@pytest.mark.parametrize("body", ["{", '{"grant_type": "password",}', "grant_type=password", "", "nul", "{'a': 1}"])
def test_malformed_json_is_invalid_request(client, body):
    response = post_raw(client, body, content_type="application/json")
    assert_error(response, 400, "invalid_request")


def test_empty_form_body_is_missing_grant_type(client):
    assert_error(post_raw(client, ""), 400, "invalid_request", "missing grant_type parameter")


def test_get_is_not_allowed(client):
    response = client.get("/oauth/token")
    assert response.status_code == 405
    assert response.json()["error"]
    assert_no_store(response)


# -- client authentication ------------------------------------------------------------------------------------------


def test_client_secret_post(client):
    body = assert_token(
        post_form(client, alice_params(client_id="confidential-app", client_secret=CONFIDENTIAL_SECRET))
    )
    assert verify(client, body["access_token"], API)[1]["azp"] == "confidential-app"


def test_client_secret_basic(client):
    response = post_form(client, alice_params(client_id=None), headers=basic("basic-app", BASIC_SECRET))
    body = assert_token(response)
    assert verify(client, body["access_token"], API)[1]["azp"] == "basic-app"


def test_client_secret_basic_with_client_id_also_in_body(client):
    response = post_form(client, alice_params(client_id="basic-app"), headers=basic("basic-app", BASIC_SECRET))
    assert_token(response)


def test_public_client(client):
    body = assert_token(post_form(client, alice_params()))
    assert verify(client, body["access_token"], API)[1]["azp"] == "public-app"


@pytest.mark.parametrize(
    ("client_id", "secret"),
    [
        pytest.param("confidential-app", CONFIDENTIAL_SECRET + "x", id="wrong secret"),
        pytest.param("confidential-app", BASIC_SECRET, id="other client's secret"),
        pytest.param("confidential-app", None, id="confidential client without secret"),
        pytest.param("no-such-app", None, id="unknown public client"),
        pytest.param("no-such-app", CONFIDENTIAL_SECRET, id="unknown client with secret"),
        pytest.param("basic-app", BASIC_SECRET, id="basic client using client_secret_post"),
        pytest.param("public-app", CONFIDENTIAL_SECRET, id="public client sending a secret"),
        pytest.param("PUBLIC-APP", None, id="client id is case-sensitive"),
    ],
)
def test_client_authentication_failure_in_body(client, client_id, secret):
    response = post_form(client, alice_params(client_id=client_id, client_secret=secret))
    assert_error(response, 401, "invalid_client", "Client authentication failed")
    assert "www-authenticate" not in response.headers


@pytest.mark.parametrize(
    ("client_id", "secret"),
    [
        pytest.param("basic-app", BASIC_SECRET + "x", id="wrong secret"),
        pytest.param("basic-app", "", id="empty secret"),
        pytest.param("no-such-app", BASIC_SECRET, id="unknown client"),
        pytest.param("confidential-app", CONFIDENTIAL_SECRET, id="post client using basic"),
        pytest.param("public-app", "", id="public client using basic"),
    ],
)
def test_client_authentication_failure_with_basic_carries_a_challenge(client, client_id, secret):
    response = post_form(client, alice_params(client_id=None), headers=basic(client_id, secret))
    assert_error(response, 401, "invalid_client", "Client authentication failed")
    assert response.headers["www-authenticate"] == BASIC_CHALLENGE


@pytest.mark.parametrize("header", ["Basic !!!", "Basic", "Basic Zm9v", "basic " + "Og=="])
def test_malformed_basic_header_is_invalid_client_with_challenge(client, header):
    response = post_form(client, alice_params(client_id=None), headers={"Authorization": header})
    assert_error(response, 401, "invalid_client", "Client authentication failed")
    assert response.headers["www-authenticate"] == BASIC_CHALLENGE


def test_basic_and_body_secret_together_is_invalid_request(client):
    params = alice_params(client_id=None, client_secret=BASIC_SECRET)
    response = post_form(client, params, headers=basic("basic-app", BASIC_SECRET))
    assert_error(response, 400, "invalid_request")


def test_basic_and_other_body_client_id_is_invalid_request(client):
    response = post_form(client, alice_params(client_id="public-app"), headers=basic("basic-app", BASIC_SECRET))
    assert_error(response, 400, "invalid_request")


# -- grants and parameters ------------------------------------------------------------------------------------------


def test_grant_not_allowed_for_the_client(client):
    response = post_form(client, alice_params(client_id="realm-only-app"))
    assert_error(response, 403, "unauthorized_client", "Grant type 'password' not allowed for the client.")


@pytest.mark.parametrize("grant_type", ["bogus", "Password", "password ", "urn:example:grant-type:none"])
def test_unknown_grant_type_is_unsupported(client, grant_type):
    response = post_form(client, alice_params(grant_type=grant_type))
    assert_error(response, 400, "unsupported_grant_type", "Grant type not supported")


@pytest.mark.parametrize("missing", ["grant_type", "client_id", "username", "password"])
def test_missing_parameter(client, missing):
    response = post_form(client, alice_params(**{missing: None}))
    assert_error(response, 400, "invalid_request", f"missing {missing} parameter")


@pytest.mark.parametrize("empty", ["grant_type", "client_id", "username", "password"])
def test_empty_parameter_counts_as_missing(client, empty):
    response = post_form(client, alice_params(**{empty: ""}))
    assert_error(response, 400, "invalid_request", f"missing {empty} parameter")


@pytest.mark.parametrize("missing", ["client_id", "username", "password"])
def test_missing_parameter_in_json_null(client, missing):
    response = client.post("/oauth/token", json={**alice_params(), missing: None})
    assert_error(response, 400, "invalid_request", f"missing {missing} parameter")


def comparable(response) -> tuple[int, Any, dict[str, str]]:
    headers = {
        name: value
        for name, value in response.headers.items()
        if name not in {"date", "content-length", "x-request-id"}
    }
    return response.status_code, response.json(), headers


def test_wrong_password_and_unknown_user_answer_identically(client):
    wrong_password = post_form(client, alice_params(password="not alice's password"))
    unknown_user = post_form(client, alice_params(username="nobody@example.test"))
    unknown_username = post_form(client, alice_params(username="nobody"))
    assert_error(wrong_password, 403, "invalid_grant", "Wrong email or password.")
    assert comparable(wrong_password) == comparable(unknown_user) == comparable(unknown_username)
    assert wrong_password.content == unknown_user.content


def test_unknown_user_costs_a_password_hash_like_a_wrong_password(client):
    """No user enumeration by timing: an unknown user is checked against a dummy hash (medians, generous margin)."""

    def median_seconds(params: dict[str, str]) -> float:
        durations = []
        for _ in range(5):
            started = time.perf_counter()
            assert post_form(client, params).status_code == 403
            durations.append(time.perf_counter() - started)
        return sorted(durations)[2]

    no_hash = median_seconds(alice_params(audience="https://nope.example.test/"))  # refused before any hash
    wrong_password = median_seconds(alice_params(password="wrong password"))
    unknown_user = median_seconds(alice_params(username="nobody@example.test"))
    assert wrong_password > 2 * no_hash, "the comparison needs Argon2 to dominate the request time"
    assert unknown_user > 0.5 * wrong_password


def test_password_is_case_sensitive(client):
    response = post_form(client, alice_params(password=ALICE_CUSTOMER_PASSWORD.upper()))
    assert_error(response, 403, "invalid_grant", "Wrong email or password.")


def test_blocked_user_with_the_right_password_is_unauthorized(client):
    response = post_form(client, alice_params(username="bob@example.test", password=BOB_PASSWORD))
    assert_error(response, 401, "unauthorized", "user is blocked")
    assert "www-authenticate" not in response.headers


def test_blocked_user_with_a_wrong_password_is_invalid_grant(client):
    response = post_form(client, alice_params(username="bob@example.test", password=BOB_PASSWORD + "x"))
    assert_error(response, 403, "invalid_grant", "Wrong email or password.")


# -- audience -------------------------------------------------------------------------------------------------------


def test_audience_defaults_to_the_tenant_default(client):
    body = assert_token(post_form(client, alice_params()))
    assert verify(client, body["access_token"], API)[1]["aud"] == API
    assert body["expires_in"] == 86_400


def test_explicit_audience(client):
    body = assert_token(post_form(client, alice_params(audience=REPORTS_API)))
    _, claims = verify(client, body["access_token"], REPORTS_API)
    assert claims["aud"] == REPORTS_API
    assert claims["scope"] == "read:reports"
    assert body["scope"] == "read:reports"


@pytest.mark.parametrize("audience", ["https://nope.example.test/", API.rstrip("/"), API.upper()])
def test_unknown_audience_is_access_denied(client, audience):
    response = post_form(client, alice_params(audience=audience))
    assert_error(response, 403, "access_denied", f"Service not found: {audience}")


def test_unknown_audience_is_refused_even_with_a_wrong_password(client):
    response = post_form(client, alice_params(audience="https://nope.example.test/", password="wrong"))
    assert_error(response, 403, "access_denied", "Service not found: https://nope.example.test/")


# -- scopes ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scope", "granted"),
    [
        pytest.param(None, ALL_API_SCOPES, id="none asked: all API scopes"),
        pytest.param("read:things", "read:things", id="subset"),
        pytest.param("delete:things read:things", "delete:things read:things", id="subset in asked order"),
        pytest.param("read:things admin:everything", "read:things", id="unknown dropped"),
        pytest.param("read:things read:things", "read:things", id="duplicates collapse"),
        pytest.param("openid", f"{OIDC} {ALL_API_SCOPES}", id="openid alone"),
        pytest.param("openid profile", f"openid profile {ALL_API_SCOPES}", id="openid profile"),
        pytest.param("openid email write:things", "openid email write:things", id="openid email subset"),
    ],
)
def test_scopes(client, scope, granted):
    body = assert_token(post_form(client, alice_params(scope=scope)))
    assert body["scope"] == granted
    assert verify(client, body["access_token"], API)[1]["scope"] == granted


def test_unknown_scope_of_another_api_is_dropped(client):
    body = assert_token(post_form(client, alice_params(scope="read:reports read:things")))
    assert body["scope"] == "read:things"


# -- tokens ---------------------------------------------------------------------------------------------------------


def test_access_token_claims(client, tenant):
    before = int(time.time())
    body = assert_token(post_form(client, alice_params(scope="read:things")))
    after = int(time.time())
    header, claims = verify(client, body["access_token"], API)
    assert header["typ"] == "JWT"
    assert header["alg"] == "RS256"
    assert header["kid"] in {key["kid"] for key in client.get("/.well-known/jwks.json").json()["keys"]}
    assert claims["iss"] == ISSUER
    assert claims["sub"] == user_id(tenant, "customers")
    assert claims["aud"] == API
    assert claims["azp"] == "public-app"
    assert claims["scope"] == "read:things"
    assert claims["gty"] == "password"
    assert before <= claims["iat"] <= after
    assert claims["exp"] == claims["iat"] + 86_400
    assert isinstance(claims["jti"], str)
    assert claims["jti"]
    assert set(claims) == {"iss", "sub", "aud", "azp", "scope", "gty", "iat", "exp", "jti"}
    assert body["expires_in"] == 86_400
    assert "id_token" not in body
    assert "refresh_token" not in body


def test_each_access_token_has_its_own_jti(client):
    first = assert_token(post_form(client, alice_params()))
    second = assert_token(post_form(client, alice_params()))
    assert verify(client, first["access_token"], API)[1]["jti"] != verify(client, second["access_token"], API)[1]["jti"]


def test_openid_adds_the_userinfo_audience(client):
    body = assert_token(post_form(client, alice_params(scope="openid read:things")))
    _, claims = verify(client, body["access_token"], API)
    assert claims["aud"] == [API, ISSUER + "userinfo"]
    _, claims = verify(client, body["access_token"], ISSUER + "userinfo")


def test_es256_api_token_verifies_with_the_es256_jwk(client):
    body = assert_token(post_form(client, alice_params(audience=REPORTS_API)))
    header, claims = verify(client, body["access_token"], REPORTS_API)
    assert header["alg"] == "ES256"
    jwk = next(key for key in client.get("/.well-known/jwks.json").json()["keys"] if key["kid"] == header["kid"])
    assert jwk["kty"] == "EC"
    assert jwk["crv"] == "P-256"
    assert jwk["alg"] == "ES256"
    assert claims["exp"] == claims["iat"] + 600
    assert body["expires_in"] == 600


def test_tampered_access_token_does_not_verify(client):
    import jwt

    body = assert_token(post_form(client, alice_params()))
    header, payload, signature = body["access_token"].split(".")
    forged = ".".join([header, payload[:-2] + ("AA" if payload[-2:] != "AA" else "BB"), signature])
    with pytest.raises(jwt.PyJWTError):
        verify(client, forged, API)


def test_id_token_only_when_openid_is_granted(client):
    assert "id_token" not in assert_token(post_form(client, alice_params(scope="profile email read:things")))
    assert "id_token" in assert_token(post_form(client, alice_params(scope="openid")))


def test_id_token_claims_with_openid_alone(client, tenant):
    before = int(time.time())
    body = assert_token(post_form(client, alice_params(scope="openid")))
    header, claims = verify(client, body["id_token"], "public-app")
    assert header["alg"] == "RS256"
    assert header["typ"] == "JWT"
    assert claims["iss"] == ISSUER
    assert claims["aud"] == "public-app"
    assert claims["sub"] == user_id(tenant, "customers")
    assert claims["iat"] >= before
    assert claims["exp"] == claims["iat"] + 36_000
    assert claims["name"] == "Alice C"
    assert claims["email"] == ALICE
    assert claims["email_verified"] is True
    assert "nonce" not in claims


def test_id_token_with_email_scope_only_has_no_profile_claims(client):
    body = assert_token(post_form(client, alice_params(scope="openid email")))
    _, claims = verify(client, body["id_token"], "public-app")
    assert claims["email"] == ALICE
    assert claims["email_verified"] is True
    assert not {"name", "nickname", "picture", "preferred_username", "updated_at"} & set(claims)


def test_id_token_with_profile_scope_only_has_no_email(client):
    params = alice_params(realm="employees", password=ALICE_EMPLOYEE_PASSWORD, scope="openid profile")
    body = assert_token(post_form(client, params))
    _, claims = verify(client, body["id_token"], "public-app")
    assert claims["name"] == "Alice E"
    assert claims["preferred_username"] == "alice"
    assert claims["nickname"] == "alice"
    assert isinstance(claims["updated_at"], str)
    assert not {"email", "email_verified"} & set(claims)


def test_id_token_audience_is_the_client(client):
    params = alice_params(client_id="confidential-app", client_secret=CONFIDENTIAL_SECRET, scope="openid")
    body = assert_token(post_form(client, params))
    assert verify(client, body["id_token"], "confidential-app")[1]["aud"] == "confidential-app"


def test_response_members(client):
    body = assert_token(post_form(client, alice_params(scope="openid")))
    assert set(body) == {"access_token", "id_token", "scope", "expires_in", "token_type"}


def test_security_headers_on_token_responses(client):
    response = post_form(client, alice_params())
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["content-type"].startswith("application/json")
