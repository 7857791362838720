"""Discovery documents, the JWKS and the signing keys behind it (API.md §3.2-3.3)."""

from __future__ import annotations

import base64

import jwt
import pytest
from litestar.testing import TestClient
from sqlmodel import select

from identity.app import create_app
from identity.crypto import SecretBox
from identity.settings import EncryptionKeys
from identity.store.models import SigningKeyRow
from tests.api.support import alice_params, assert_token, post_form, verify
from tests.conftest import API, ISSUER, run_db

DISCOVERY_ROUTES = ["/.well-known/openid-configuration", "/.well-known/oauth-authorization-server"]
PASSWORD_REALM = "http://auth0.com/oauth/grant-type/password-realm"
PUBLIC_MEMBERS = {
    "RSA": {"kty", "kid", "use", "alg", "n", "e", "x5c", "x5t", "x5t#S256"},
    "EC": {"kty", "kid", "use", "alg", "crv", "x", "y", "x5c", "x5t", "x5t#S256"},
}
PRIVATE_MEMBERS = {"d", "p", "q", "dp", "dq", "qi", "oth", "k"}


@pytest.fixture
def client(shared_client):
    """Read-only tests: one app for the module (tests/api/conftest.py)."""
    return shared_client


@pytest.mark.parametrize("path", DISCOVERY_ROUTES)
def test_discovery_document(client, path):
    response = client.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    document = response.json()
    assert document["issuer"] == ISSUER
    assert document["issuer"].endswith("/")
    assert document["token_endpoint"] == ISSUER + "oauth/token"
    assert document["jwks_uri"] == ISSUER + ".well-known/jwks.json"
    assert {"password", PASSWORD_REALM} <= set(document["grant_types_supported"])
    assert {"client_secret_basic", "client_secret_post"} <= set(document["token_endpoint_auth_methods_supported"])
    assert "RS256" in document["id_token_signing_alg_values_supported"]
    assert {"openid", "profile", "email", "offline_access"} <= set(document["scopes_supported"])
    assert document["subject_types_supported"] == ["public"]
    assert document["response_types_supported"]
    assert document["request_parameter_supported"] is False
    assert document["request_uri_parameter_supported"] is False
    assert {"sub", "iss", "aud", "exp", "iat", "email", "name"} <= set(document["claims_supported"])
    # RFC 9470 step-up: the one acr value the password grants and the challenge endpoint can meet.
    assert document["acr_values_supported"] == ["http://schemas.openid.net/pape/policies/2007/06/multi-factor"]


def test_both_discovery_routes_serve_the_same_document(client):
    first, second = (client.get(path).json() for path in DISCOVERY_ROUTES)
    assert first == second


def test_discovered_endpoints_are_served(client):
    document = client.get(DISCOVERY_ROUTES[0]).json()
    jwks_path = document["jwks_uri"].removeprefix(ISSUER.rstrip("/"))
    assert client.get(jwks_path).status_code == 200
    token_path = document["token_endpoint"].removeprefix(ISSUER.rstrip("/"))
    assert client.post(token_path, data={}).json()["error"] == "invalid_request"


def test_discovery_names_the_configured_issuer_whatever_the_host(client):
    headers = {"Host": "evil.example:8080", "X-Forwarded-Host": "evil.example", "X-Forwarded-Proto": "http"}
    document = client.get(DISCOVERY_ROUTES[0], headers=headers).json()
    assert document["issuer"] == ISSUER
    assert document["token_endpoint"].startswith(ISSUER)


def test_jwks_shape(client):
    response = client.get("/.well-known/jwks.json")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    document = response.json()
    assert set(document) == {"keys"}
    keys = document["keys"]
    assert keys
    kids = [key["kid"] for key in keys]
    assert len(kids) == len(set(kids)), "kids are unique"
    assert {key["alg"] for key in keys} >= {"RS256", "ES256"}
    for key in keys:
        assert key["use"] == "sig"
        assert set(key) <= PUBLIC_MEMBERS[key["kty"]], key
        assert not PRIVATE_MEMBERS & set(key), key
        if key["kty"] == "RSA":
            assert key["alg"] == "RS256"
            assert key["e"] == "AQAB"
            modulus = base64.urlsafe_b64decode(key["n"] + "=" * (-len(key["n"]) % 4))
            assert len(modulus) * 8 >= 2048
        else:
            assert key["alg"] == "ES256"
            assert key["crv"] == "P-256"


def test_jwks_is_usable_by_pyjwt(client):
    keyset = jwt.PyJWKSet.from_dict(client.get("/.well-known/jwks.json").json())
    assert {key.algorithm_name for key in keyset.keys} >= {"RS256", "ES256"}
    for key in keyset.keys:
        assert key.key_id
        assert not hasattr(key.key, "private_numbers"), "a published key must be a public key"


def test_jwks_is_cacheable(client):
    response = client.get("/.well-known/jwks.json")
    cache_control = response.headers.get("cache-control", "")
    assert "no-store" not in cache_control
    assert "max-age=" in cache_control


def test_jwks_is_stable_between_requests(client):
    assert client.get("/.well-known/jwks.json").content == client.get("/.well-known/jwks.json").content


# -- signing keys: generated on first start, stored sealed, loaded at every start -------------------------------------


def signing_key_rows(settings) -> list[SigningKeyRow]:
    async def work(session, _hasher):
        return list((await session.execute(select(SigningKeyRow))).scalars())

    return run_db(settings, work)


def test_signing_keys_are_stored_sealed(client, shared_settings):
    rows = signing_key_rows(shared_settings)
    assert {row.active_slot for row in rows} >= {"RS256", "ES256"}
    box = SecretBox(shared_settings.encryption_keys)
    for row in rows:
        assert "PRIVATE KEY" not in row.private_key
        assert "BEGIN" not in row.private_key
        assert row.private_key.startswith("v1.test1.")
        assert b"PRIVATE KEY" in box.open(row.private_key, purpose="signing-key:" + row.kid)
        assert not {"d", "p", "q", "dp", "dq", "qi"} & set(row.public_jwk)


def test_sealed_signing_keys_do_not_open_with_another_encryption_key(client, shared_settings):
    other = SecretBox(EncryptionKeys.generate("test1"))
    row = signing_key_rows(shared_settings)[0]
    with pytest.raises(Exception, match="does not open"):
        other.open(row.private_key, purpose="signing-key:" + row.kid)


def test_signing_keys_survive_a_restart(client, shared_settings):
    token = assert_token(post_form(client, alice_params()))["access_token"]
    first_jwks = client.get("/.well-known/jwks.json").json()
    with TestClient(create_app(shared_settings), base_url="https://identity.test") as restarted:
        assert restarted.get("/.well-known/jwks.json").json() == first_jwks
        assert verify(restarted, token, API)[1]["aud"] == API
        second = assert_token(post_form(restarted, alice_params()))["access_token"]
    assert verify(client, second, API)[1]["aud"] == API
