"""Discovery and JWKS as a client finds them: start from the issuer, follow the advertised URLs."""

from __future__ import annotations

import httpx
import jwt
import pytest
from authlib.integrations.requests_client import OAuth2Session

from tests.e2e.conftest import (
    ALICE_CUSTOMER_PASSWORD,
    ALICE_EMAIL,
    API,
    PASSWORD_REALM,
    PUBLIC_CLIENT,
    AppliedTenant,
    IdentityServer,
)


def discover(issuer: str, document: str = "openid-configuration") -> dict[str, object]:
    response = httpx.get(f"{issuer}.well-known/{document}")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    body: dict[str, object] = response.json()
    return body


def test_openid_configuration_names_the_configured_issuer(server: IdentityServer) -> None:
    metadata = discover(server.issuer)

    assert server.issuer == f"http://127.0.0.1:{server.port}/"  # what IDENTITY_ISSUER was set to
    assert metadata["issuer"] == server.issuer
    assert metadata["token_endpoint"] == server.issuer + "oauth/token"
    assert metadata["jwks_uri"] == server.issuer + ".well-known/jwks.json"
    assert {"password", PASSWORD_REALM} <= set(metadata["grant_types_supported"])  # type: ignore[arg-type]
    assert {"client_secret_basic", "client_secret_post"} <= set(
        metadata["token_endpoint_auth_methods_supported"]  # type: ignore[arg-type]
    )
    assert {"RS256", "ES256"} <= set(metadata["access_token_signing_alg_values_supported"])  # type: ignore[arg-type]
    assert "RS256" in metadata["id_token_signing_alg_values_supported"]  # type: ignore[operator]


def test_oauth_authorization_server_metadata_is_the_same_document(server: IdentityServer) -> None:
    assert discover(server.issuer, "oauth-authorization-server") == discover(server.issuer)


def test_advertised_endpoints_are_usable(server: IdentityServer, applied_tenant: AppliedTenant) -> None:
    metadata = discover(server.issuer)

    with OAuth2Session(
        PUBLIC_CLIENT, token_endpoint_auth_method="none", token_endpoint=str(metadata["token_endpoint"])
    ) as session:
        token = session.fetch_token(username=ALICE_EMAIL, password=ALICE_CUSTOMER_PASSWORD, grant_type="password")

    jwks = jwt.PyJWKClient(str(metadata["jwks_uri"]))
    claims = jwt.decode(
        token["access_token"],
        jwks.get_signing_key_from_jwt(token["access_token"]).key,
        algorithms=["RS256"],
        audience=API,
        issuer=str(metadata["issuer"]),
    )
    assert claims["sub"] == applied_tenant.user_ids[("customers", ALICE_EMAIL)]


def test_jwks_publishes_public_rs256_and_es256_keys(server: IdentityServer) -> None:
    response = httpx.get(server.jwks_url)

    assert response.status_code == 200
    keys = response.json()["keys"]
    assert {key["alg"] for key in keys} >= {"RS256", "ES256"}
    for key in keys:
        assert key["use"] == "sig"
        assert key["kid"]
        assert not {"d", "p", "q", "dp", "dq", "qi"} & set(key), "private key material in the JWKS"
    assert len({key["kid"] for key in keys}) == len(keys)
    for key in jwt.PyJWKSet.from_dict(response.json()).keys:
        assert key.key_id


@pytest.mark.parametrize("content", ["form", "json"])
def test_token_responses_are_not_cached(server: IdentityServer, content: str) -> None:
    body = {"grant_type": "password", "client_id": PUBLIC_CLIENT, "username": ALICE_EMAIL}
    with httpx.Client() as client:
        for password, status in ((ALICE_CUSTOMER_PASSWORD, 200), ("not the password", 403)):
            fields = {**body, "password": password}
            if content == "form":
                response = client.post(server.token_url, data=fields)
            else:
                response = client.post(server.token_url, json=fields)

            assert response.status_code == status, response.text
            assert response.headers["cache-control"] == "no-store"
            assert response.headers["pragma"] == "no-cache"
