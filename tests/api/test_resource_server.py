"""`identity.resource`: an API verifies identity's tokens through the JWKS and answers RFC 9470's step-up challenge.

The tokens come from the real app (password and mfa-otp grants on a FrozenClock, `tests.api.mfa_support`); the
resource server reads the app's real JWKS through PyJWT's `PyJWKClient` (only its transport is the test client) and
tells time by the app's clock.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from identity.resource import MULTI_FACTOR, ResourceServer, TokenRefused
from identity.settings import EncryptionKeys
from tests.api.mfa_support import Mfa, mfa_tenant, open_mfa, reset
from tests.conftest import API, ISSUER


class AppJwks(jwt.PyJWKClient):
    """PyJWKClient reading the app's JWKS through the test client instead of urllib; counts its fetches."""

    def __init__(self, mfa: Mfa) -> None:
        super().__init__(ISSUER + ".well-known/jwks.json")
        self.mfa = mfa
        self.fetches = 0

    def fetch_data(self) -> Any:
        self.fetches += 1
        data = self.mfa.client.get("/.well-known/jwks.json").json()
        if self.jwk_set_cache is not None:
            self.jwk_set_cache.put(data)
        return data


@pytest.fixture(scope="module")
def module_mfa(database_url: str, encryption_keys: EncryptionKeys) -> Iterator[Mfa]:
    with open_mfa(database_url, encryption_keys, mfa_tenant()) as driver:
        yield driver


@pytest.fixture
def mfa(module_mfa: Mfa) -> Mfa:
    return reset(module_mfa)


@pytest.fixture
def api(mfa: Mfa) -> ResourceServer:
    return ResourceServer(ISSUER, API, jwks_client=AppJwks(mfa), clock=mfa.clock.now)


def refused(api: ResourceServer, token: str, **asked: Any) -> TokenRefused:
    with pytest.raises(TokenRefused) as caught:
        api.verify(token, **asked)
    return caught.value


def password_token(mfa: Mfa) -> str:
    response = mfa.login(audience=API, scope="read:things")
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


def test_a_password_token_verifies_and_a_step_up_is_asked_with_the_rfc_9470_challenge(
    mfa: Mfa, api: ResourceServer
) -> None:
    token = password_token(mfa)

    claims = api.verify(token, scopes=("read:things",))
    assert API in (claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]])

    step_up = refused(api, token, acr_values=(MULTI_FACTOR,), max_age=300)
    assert (step_up.status, step_up.error) == (401, "insufficient_user_authentication")
    assert step_up.www_authenticate() == (
        'Bearer error="insufficient_user_authentication", '
        'error_description="A different authentication level is required", '
        f'acr_values="{MULTI_FACTOR}", max_age="300"'
    )
    assert step_up.body() == {
        "error": "insufficient_user_authentication",
        "error_description": "A different authentication level is required",
    }


def test_a_token_after_the_second_factor_meets_acr_and_max_age_until_its_authentication_is_too_old(
    mfa: Mfa, api: ResourceServer
) -> None:
    enrolled = mfa.enroll()
    mfa_token = mfa.mfa_token(acr_values=MULTI_FACTOR, audience=API, scope="read:things")
    token = mfa.finish(mfa_token, enrolled.secret)["access_token"]

    claims = api.verify(token, scopes=("read:things",), acr_values=(MULTI_FACTOR,), max_age=300)
    assert claims["acr"] == MULTI_FACTOR

    mfa.clock.advance(301)  # still within the access token's lifetime, but the authentication is older than asked
    stale = refused(api, token, acr_values=(MULTI_FACTOR,), max_age=300)
    assert (stale.status, stale.error, stale.description) == (
        401,
        "insufficient_user_authentication",
        "More recent authentication is required",
    )
    assert 'max_age="300"' in stale.www_authenticate()


def test_a_missing_scope_is_403_insufficient_scope(mfa: Mfa, api: ResourceServer) -> None:
    missing = refused(api, password_token(mfa), scopes=("write:things",))

    assert (missing.status, missing.error) == (403, "insufficient_scope")
    assert 'scope="write:things"' in missing.www_authenticate()


def test_forged_expired_and_foreign_tokens_are_invalid_token(mfa: Mfa, api: ResourceServer) -> None:
    token = password_token(mfa)
    claims = jwt.decode(token, options={"verify_signature": False})
    header = jwt.get_unverified_header(token)
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    forged = jwt.encode(claims, stranger, algorithm="RS256", headers={"kid": header["kid"]})
    unsigned = jwt.encode(claims, key=None, algorithm="none", headers={"kid": header["kid"]})
    other_api = ResourceServer(ISSUER, "https://reports.example.test/", jwks_client=api.jwks, clock=mfa.clock.now)

    for candidate in (forged, unsigned, token[:-4] + "AAAA"):
        assert (refused(api, candidate).status, refused(api, candidate).error) == (401, "invalid_token")
    assert refused(other_api, token).description == "the token is not for this API"

    mfa.clock.advance(claims["exp"] - mfa.clock.now())
    assert refused(api, token).description == "the token has expired"


def test_the_jwks_is_fetched_once_and_again_for_a_key_it_has_not_seen(mfa: Mfa, api: ResourceServer) -> None:
    jwks = api.jwks
    assert isinstance(jwks, AppJwks)
    for _ in range(3):
        api.verify(password_token(mfa))
    assert jwks.fetches == 1

    token = password_token(mfa)
    header = jwt.get_unverified_header(token)
    unknown = jwt.encode(
        jwt.decode(token, options={"verify_signature": False}),
        rsa.generate_private_key(public_exponent=65537, key_size=2048),
        algorithm="RS256",
        headers={"kid": header["kid"] + "-unknown"},
    )
    assert refused(api, unknown).error == "invalid_token"
    assert jwks.fetches == 2  # one refetch for the unknown kid (a rotation), then refused
