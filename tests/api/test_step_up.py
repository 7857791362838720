"""Step-up authentication at the token endpoint (RFC 9470, issue 15; ``shared/API.md`` §7.3).

``acr_values`` with the multi-factor policy on the password grants forces ``mfa_required``; the MFA grants then issue
``acr`` and ``auth_time``; values the server cannot meet answer ``unmet_authentication_requirements``. The app runs
on a FrozenClock (`tests.api.mfa_support`).
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from identity.oauth2.first_party import MULTI_FACTOR
from identity.settings import EncryptionKeys
from tests.api.mfa_support import Mfa, error_of, mfa_tenant, open_mfa, reset
from tests.conftest import API

NO_MFA_GRANT = "acr_values asks for a second factor and the client has no MFA grant type to finish it with"
UNKNOWN_ACR = f"acr_values: the supported value is {MULTI_FACTOR}"


@pytest.fixture(scope="module")
def module_mfa(database_url: str, encryption_keys: EncryptionKeys) -> Iterator[Mfa]:
    tenant = mfa_tenant()
    for client in tenant["clients"]:
        client["grant_types"] = [*client["grant_types"], "refresh_token"]
    with open_mfa(database_url, encryption_keys, tenant) as driver:
        yield driver


@pytest.fixture
def mfa(module_mfa: Mfa) -> Mfa:
    return reset(module_mfa)


# --- The password grants: acr_values forces the second factor ----------------------------------------------------


def test_without_acr_values_a_user_with_a_factor_under_never_gets_a_token_without_acr(mfa: Mfa) -> None:
    mfa.enroll()
    mfa.set_policy("never")

    response = mfa.login()

    assert response.status_code == 200, response.text
    claims = mfa.claims(response.json()["access_token"], audience=API)
    assert "acr" not in claims and "auth_time" not in claims


@pytest.mark.parametrize("realm", [None, "customers"], ids=["password", "password-realm"])
def test_acr_values_make_a_user_with_a_factor_answer_one_even_under_never(mfa: Mfa, realm: str | None) -> None:
    enrolled = mfa.enroll()
    mfa.set_policy("never")

    mfa_token = mfa.mfa_token(realm=realm, acr_values=MULTI_FACTOR, max_age="0")
    tokens = mfa.finish(mfa_token, enrolled.secret)

    assert mfa.claims(tokens["access_token"], audience=API)["amr"] == ["pwd", "mfa", "otp"]


def test_acr_values_with_a_user_without_a_factor_on_a_client_with_mfa_grants_is_mfa_required(mfa: Mfa) -> None:
    """The user can enroll through the MFA API with that mfa_token, as under policy ``always``."""
    response = mfa.login(acr_values=f"urn:example:gold {MULTI_FACTOR}")

    assert error_of(response)[:2] == (403, "mfa_required")
    assert response.json()["mfa_token"]


def test_acr_values_then_mfa_otp_gives_tokens_with_acr_and_the_time_of_the_second_factor(mfa: Mfa) -> None:
    enrolled = mfa.enroll()
    mfa_token = mfa.mfa_token(acr_values=MULTI_FACTOR, scope="openid")
    mfa.clock.advance(7)  # the user types the code
    answered_at = int(mfa.clock.now())

    tokens = mfa.finish(mfa_token, enrolled.secret)

    access = mfa.claims(tokens["access_token"], audience=API)
    identity = mfa.claims(tokens["id_token"], audience="public-app")
    assert (access["acr"], access["auth_time"]) == (MULTI_FACTOR, answered_at)
    assert (identity["acr"], identity["auth_time"]) == (MULTI_FACTOR, answered_at)


def test_a_recovery_code_is_a_second_factor_too(mfa: Mfa) -> None:
    enrolled = mfa.enroll()
    mfa_token = mfa.mfa_token(acr_values=MULTI_FACTOR)

    response = mfa.recover(mfa_token, enrolled.recovery_code)

    assert response.status_code == 200, response.text
    claims = mfa.claims(response.json()["access_token"], audience=API)
    assert (claims["acr"], claims["auth_time"]) == (MULTI_FACTOR, int(mfa.clock.now()))


@pytest.mark.parametrize(
    ("acr_values", "client_id", "description"),
    [
        ("urn:example:gold", "public-app", UNKNOWN_ACR),
        (MULTI_FACTOR, "realm-only-app", NO_MFA_GRANT),
    ],
    ids=["unknown value", "client without MFA grants"],
)
def test_acr_values_the_server_cannot_meet_are_refused(
    mfa: Mfa, acr_values: str, client_id: str, description: str
) -> None:
    mfa.enroll()

    response = mfa.login(realm="customers", client_id=client_id, acr_values=acr_values)

    assert error_of(response) == (403, "unmet_authentication_requirements", description)
    assert "access_token" not in response.json() and "mfa_token" not in response.json()


def test_unmet_acr_values_are_refused_before_the_password_is_checked(mfa: Mfa) -> None:
    response = mfa.login(password="wrong password", acr_values="urn:example:gold")

    assert error_of(response)[:2] == (403, "unmet_authentication_requirements")


def test_max_age_must_be_seconds(mfa: Mfa) -> None:
    response = mfa.login(acr_values=MULTI_FACTOR, max_age="soon")

    assert error_of(response) == (400, "invalid_request", "max_age must be a number of seconds")


# --- Refresh: max_age, and the original authentication kept -----------------------------------------------------


def stepped_up_family(mfa: Mfa) -> tuple[str, int]:
    """A refresh token of a family that began after acr_values and mfa-otp, and its authentication time."""
    enrolled = mfa.enroll()
    mfa_token = mfa.mfa_token(acr_values=MULTI_FACTOR, scope="openid offline_access")
    answered_at = int(mfa.clock.now())
    tokens = mfa.finish(mfa_token, enrolled.secret)
    return tokens["refresh_token"], answered_at


def refresh(mfa: Mfa, refresh_token: str, **params: str) -> httpx.Response:
    return mfa.token("public-app", grant_type="refresh_token", refresh_token=refresh_token, **params)


def test_refresh_with_max_age_older_than_the_authentication_is_invalid_grant(mfa: Mfa) -> None:
    refresh_token, answered_at = stepped_up_family(mfa)
    mfa.clock.at = answered_at + 301

    refused = refresh(mfa, refresh_token, max_age="300")

    assert error_of(refused) == (403, "invalid_grant", "The refresh token's authentication is older than max_age")
    assert refresh(mfa, refresh_token).status_code == 200  # refused, not revoked: without max_age it still works


def test_refresh_within_max_age_keeps_acr_and_the_original_auth_time(mfa: Mfa) -> None:
    refresh_token, answered_at = stepped_up_family(mfa)
    mfa.clock.at = answered_at + 300

    response = refresh(mfa, refresh_token, max_age="300")

    assert response.status_code == 200, response.text
    tokens = response.json()
    for token, audience in ((tokens["access_token"], API), (tokens["id_token"], "public-app")):
        claims = mfa.claims(token, audience=audience)
        assert (claims["acr"], claims["auth_time"]) == (MULTI_FACTOR, answered_at)
    again = refresh(mfa, tokens["refresh_token"])  # the next generation of the family too
    assert mfa.claims(again.json()["access_token"], audience=API)["auth_time"] == answered_at


def test_a_family_without_a_second_factor_refreshes_without_acr(mfa: Mfa) -> None:
    login = mfa.login(scope="openid offline_access")
    mfa.clock.advance(60)

    response = refresh(mfa, login.json()["refresh_token"], max_age="60")

    assert response.status_code == 200, response.text
    claims = mfa.claims(response.json()["access_token"], audience=API)
    assert "acr" not in claims and "auth_time" not in claims
    assert error_of(refresh(mfa, response.json()["refresh_token"], max_age="59"))[:2] == (403, "invalid_grant")


def test_refresh_max_age_must_be_seconds(mfa: Mfa) -> None:
    login = mfa.login(scope="offline_access")

    response = refresh(mfa, login.json()["refresh_token"], max_age="-1")

    assert error_of(response) == (400, "invalid_request", "max_age must be a number of seconds")
