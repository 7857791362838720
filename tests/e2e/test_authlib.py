"""Authlib's ``OAuth2Session`` (a generic RFC 6749 client, form-encoded bodies) against the real server."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from authlib.integrations.base_client import OAuthError
from authlib.integrations.requests_client import OAuth2Session

from tests.e2e.conftest import (
    ALICE_CUSTOMER_PASSWORD,
    ALICE_EMAIL,
    ALICE_EMPLOYEE_PASSWORD,
    API,
    API_LIFETIME,
    API_SCOPES,
    BASIC_CLIENT,
    BASIC_SECRET,
    PASSWORD_REALM,
    POST_CLIENT,
    POST_SECRET,
    PUBLIC_CLIENT,
    REPORTS_API,
    REPORTS_LIFETIME,
    AppliedTenant,
    IdentityServer,
    identity_command,
    verify_access_token,
    verify_id_token,
)

# client_id -> (secret, token_endpoint_auth_method)
CLIENTS = {
    BASIC_CLIENT: (BASIC_SECRET, "client_secret_basic"),
    POST_CLIENT: (POST_SECRET, "client_secret_post"),
    PUBLIC_CLIENT: (None, "none"),
}


@contextmanager
def oauth2_session(client_id: str, **kwargs: Any) -> Iterator[OAuth2Session]:
    secret, method = CLIENTS[client_id]
    with OAuth2Session(client_id, secret, token_endpoint_auth_method=method, **kwargs) as session:
        yield session


@pytest.mark.parametrize("client_id", CLIENTS)
def test_password_grant(server: IdentityServer, applied_tenant: AppliedTenant, client_id: str) -> None:
    with oauth2_session(client_id) as session:
        token = session.fetch_token(
            server.token_url, username=ALICE_EMAIL, password=ALICE_CUSTOMER_PASSWORD, grant_type="password"
        )

    assert token["token_type"] == "Bearer"
    assert token["expires_in"] == API_LIFETIME
    assert abs(token["expires_at"] - (time.time() + API_LIFETIME)) < 60
    assert token["scope"] == " ".join(API_SCOPES)
    claims = verify_access_token(server, token["access_token"], audience=API)
    assert claims["sub"] == applied_tenant.user_ids[("customers", ALICE_EMAIL)]
    assert claims["azp"] == client_id
    assert claims["aud"] == API
    assert claims["gty"] == "password"
    assert claims["exp"] - claims["iat"] == API_LIFETIME


@pytest.mark.parametrize("grant_type", ["password", PASSWORD_REALM])
@pytest.mark.parametrize("client_id", CLIENTS)
def test_extra_parameters_audience_scope_realm(
    server: IdentityServer, applied_tenant: AppliedTenant, client_id: str, grant_type: str
) -> None:
    with oauth2_session(client_id, scope="openid email read:reports") as session:
        token = session.fetch_token(
            server.token_url,
            username=ALICE_EMAIL,
            password=ALICE_EMPLOYEE_PASSWORD,
            grant_type=grant_type,
            audience=REPORTS_API,
            realm="employees",
        )

    assert token["scope"] == "openid email read:reports"
    assert token["expires_in"] == REPORTS_LIFETIME
    claims = verify_access_token(server, token["access_token"], audience=REPORTS_API, alg="ES256")
    employee = applied_tenant.user_ids[("employees", ALICE_EMAIL)]
    assert claims["sub"] == employee
    # API.md §3.4: only an RS256 API's token also names the userinfo audience; this API signs ES256.
    assert claims["aud"] == REPORTS_API
    assert claims["scope"] == "openid email read:reports"
    assert claims["azp"] == client_id
    assert claims["exp"] - claims["iat"] == REPORTS_LIFETIME
    id_claims = verify_id_token(server, token["id_token"], client_id=client_id)
    assert id_claims["sub"] == employee
    assert id_claims["email"] == ALICE_EMAIL
    assert "name" not in id_claims  # `profile` was not asked


def test_scope_as_a_list(server: IdentityServer) -> None:
    with oauth2_session(BASIC_CLIENT, scope=["read:things", "delete:things"]) as session:
        token = session.fetch_token(
            server.token_url, username=ALICE_EMAIL, password=ALICE_CUSTOMER_PASSWORD, grant_type="password"
        )

    assert token["scope"] == "read:things delete:things"
    assert verify_access_token(server, token["access_token"], audience=API)["scope"] == "read:things delete:things"


@pytest.mark.parametrize("client_id", CLIENTS)
def test_wrong_password(server: IdentityServer, client_id: str) -> None:
    with oauth2_session(client_id) as session, pytest.raises(OAuthError) as caught:
        session.fetch_token(server.token_url, username=ALICE_EMAIL, password="not the password", grant_type="password")

    assert (caught.value.error, caught.value.description) == ("invalid_grant", "Wrong email or password.")


@pytest.mark.parametrize(
    ("client_id", "secret", "method"),
    [
        pytest.param(BASIC_CLIENT, "a-wrong-secret-0123456789abcdefghijklmn", "client_secret_basic", id="basic"),
        pytest.param(POST_CLIENT, "a-wrong-secret-0123456789abcdefghijklmn", "client_secret_post", id="post"),
    ],
)
def test_wrong_client_secret(server: IdentityServer, client_id: str, secret: str, method: str) -> None:
    session = OAuth2Session(client_id, secret, token_endpoint_auth_method=method)
    with session, pytest.raises(OAuthError) as caught:
        session.fetch_token(
            server.token_url, username=ALICE_EMAIL, password=ALICE_CUSTOMER_PASSWORD, grant_type="password"
        )

    assert caught.value.error == "invalid_client"


def test_wrong_basic_credentials_answer_401_with_www_authenticate(server: IdentityServer) -> None:
    response = httpx.post(
        server.token_url,
        auth=(BASIC_CLIENT, "a-wrong-secret-0123456789abcdefghijklmn"),
        data={"grant_type": "password", "username": ALICE_EMAIL, "password": ALICE_CUSTOMER_PASSWORD},
    )

    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"
    assert response.headers["www-authenticate"].lower().startswith("basic ")
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["pragma"] == "no-cache"


# RFC 6749 §2.3.1 says a client form-urlencodes id and secret before Basic-encoding them; Authlib (like curl -u,
# requests and httpx) sends them raw. The two readings agree only on unreserved characters.
SPECIAL_CLIENT = "e2e-basic-special"
SPECIAL_SECRET = "plus+slash/equals=percent%41-0123456789abcdef"


def test_any_secret_the_tenant_file_accepts_works_with_authlib_basic(
    server: IdentityServer, applied_tenant: AppliedTenant, e2e_env: dict[str, str], tmp_path: Path
) -> None:
    tenant = tmp_path / "special.toml"
    tenant.write_text(
        f"""\
[[clients]]
client_id = "{SPECIAL_CLIENT}"
client_secret = "{SPECIAL_SECRET}"
token_endpoint_auth_method = "client_secret_basic"
grant_types = ["password"]
connections = ["customers"]
"""
    )
    applied = subprocess.run(
        [*identity_command(), "tenant", "apply", str(tenant)],
        env=e2e_env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if applied.returncode != 0:
        # Refusing such a secret up front is fine too, as long as the operator is told why.
        assert "client_secret" in applied.stderr, applied.stderr
        return

    with OAuth2Session(SPECIAL_CLIENT, SPECIAL_SECRET, token_endpoint_auth_method="client_secret_basic") as session:
        token = session.fetch_token(
            server.token_url, username=ALICE_EMAIL, password=ALICE_CUSTOMER_PASSWORD, grant_type="password"
        )

    assert verify_access_token(server, token["access_token"], audience=API)["azp"] == SPECIAL_CLIENT
