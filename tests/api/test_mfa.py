"""The MFA challenge flow over HTTP (issue 3; ``shared/API.md`` §1.3-1.6, §2): policy, mfa_required, the MFA API,
the mfa-otp and recovery-code grants, the attempt bucket, and what is stored at rest.

The app runs on a FrozenClock; codes are pyotp's at the frozen time (the end-to-end tests use oathtool).
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import jwt
import pytest
from litestar.testing import TestClient

from identity.accounts.factors import FactorService
from identity.app import create_app
from identity.crypto import SecretBox
from identity.mfa import recovery
from identity.oauth2.first_party import MULTI_FACTOR
from identity.settings import EncryptionKeys
from identity.store import mfa as mfa_queries
from tests.api.mfa_support import (
    ALICE_EMAIL,
    MFA_API_SCOPES,
    MFA_AUDIENCE,
    MFA_OTP,
    MFA_REQUIRED,
    Mfa,
    dump_text,
    error_of,
    mfa_tenant,
    open_mfa,
    reset,
)
from tests.conftest import ALICE_CUSTOMER_PASSWORD, API, REPORTS_API, apply, run_db

MALFORMED = (403, "invalid_grant", "Malformed mfa_token")
EXPIRED = (403, "expired_token", "mfa_token is expired")
# The same tokens as a Bearer credential (GET /mfa/authenticators, POST /mfa/associate): RFC 6750 §3.1 (issue 12).
BEARER_MALFORMED = (401, "invalid_token", "Malformed mfa_token")
BEARER_EXPIRED = (401, "invalid_token", "mfa_token is expired")
OTHER_CLIENT = (400, "invalid_request", "mfa_token not issued to this client")
INVALID_OTP = (403, "invalid_grant", "Invalid otp_code.")
INVALID_RECOVERY_CODE = (403, "invalid_grant", "Invalid recovery_code.")
TOO_MANY = (429, "too_many_attempts", "Too many failed attempts. Please try again later.")
BASE64URL = re.compile(r"[A-Za-z0-9_-]+")


@pytest.fixture(scope="module")
def module_mfa(database_url: str, encryption_keys: EncryptionKeys) -> Iterator[Mfa]:
    with open_mfa(database_url, encryption_keys) as driver:
        yield driver


@pytest.fixture
def mfa(module_mfa: Mfa) -> Mfa:
    return reset(module_mfa)


def unverified(token: str) -> dict[str, Any]:
    claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return claims


# --- Policy ------------------------------------------------------------------------------------------------------


def test_if_enrolled_lets_a_user_without_a_factor_in(mfa: Mfa) -> None:
    response = mfa.login()

    assert response.status_code == 200, response.text
    assert "amr" not in unverified(response.json()["access_token"])


def test_if_enrolled_ignores_a_pending_enrollment(mfa: Mfa) -> None:
    mfa_token = mfa.mfa_token(audience=MFA_AUDIENCE)
    assert mfa.associate(mfa_token).status_code == 200

    response = mfa.login()

    assert response.status_code == 200, response.text


def test_if_enrolled_requires_mfa_once_a_factor_is_active(mfa: Mfa) -> None:
    mfa.enroll()

    response = mfa.login()

    assert error_of(response) == (403, "mfa_required", MFA_REQUIRED)


def test_if_enrolled_is_the_default_policy(mfa: Mfa) -> None:
    mfa.db.sql("DELETE FROM tenant")
    tenant = mfa_tenant(policy=None)["tenant"]
    assert "mfa_policy" not in tenant
    mfa.set_tenant(**tenant)

    assert mfa.login().status_code == 200
    mfa.enroll()
    assert error_of(mfa.login()) == (403, "mfa_required", MFA_REQUIRED)


def test_the_policy_comes_from_the_tenant_file(mfa: Mfa) -> None:
    mfa.enroll()
    expected = {"never": 200, "if-enrolled": 403, "always": 403}

    for policy, status in expected.items():
        mfa.set_tenant(mfa_policy=policy)
        assert mfa.login().status_code == status, policy
        assert mfa.login(realm="employees").status_code == (403 if policy == "always" else 200), policy


def test_always_requires_mfa_of_a_user_without_a_factor(mfa: Mfa) -> None:
    mfa.set_policy("always")

    mfa_token = mfa.mfa_token()

    listed = mfa.authenticators(mfa_token)
    assert listed.status_code == 200
    assert listed.json() == []


def test_never_lets_an_enrolled_user_in_with_the_password(mfa: Mfa) -> None:
    mfa.enroll()
    mfa.set_policy("never")

    response = mfa.login()

    assert response.status_code == 200, response.text
    assert "amr" not in unverified(response.json()["access_token"])


def test_the_mfa_audience_requires_mfa_under_every_policy(mfa: Mfa) -> None:
    for policy in ("never", "if-enrolled", "always"):
        mfa.set_policy(policy)
        assert error_of(mfa.login(audience=MFA_AUDIENCE))[:2] == (403, "mfa_required"), policy


@contextmanager
def rules(mfa: Mfa, *listed: dict[str, Any]) -> Iterator[Mfa]:
    """The tenant's rule pipeline is ``listed`` (a tenant file's ``[[rules]]``), in an app started after it was
    applied (rules are loaded when the app starts); the same database and clock."""
    apply(mfa.settings, {"rules": list(listed)})
    try:
        with TestClient(create_app(mfa.settings, clock=mfa.clock), base_url="https://identity.test") as client:
            yield Mfa(client, mfa.clock, mfa.settings, mfa.db)
    finally:
        apply(mfa.settings, {"rules": []})


def test_a_rule_demands_mfa_whatever_the_policy(mfa: Mfa) -> None:
    mfa_for_employees = {
        "name": "mfa for employees",
        "handler": "identity.rules.builtin:require_mfa_for_connections",
        "config": {"connections": ["employees"]},
    }
    mfa.set_policy("never")
    with rules(mfa, mfa_for_employees) as ruled:
        # Not enrolled, policy never: the rule still demands a second factor, and she enrolls from there.
        mfa_token = ruled.mfa_token(realm="employees")
        secret = ruled.associate(mfa_token).json()["secret"]
        tokens = ruled.finish(mfa_token, secret)
        assert ruled.claims(tokens["access_token"], audience=API)["amr"] == ["pwd", "mfa", "otp"]
        # The rule is about the employees directory only.
        assert ruled.login().status_code == 200


def test_mfa_does_not_depend_on_rules(mfa: Mfa) -> None:
    """With rules that do not touch MFA, the gate is the policy's, and what the rules added to the tokens at the
    password step is in the tokens issued after the second factor."""
    enrolled = mfa.enroll()
    add_claims = {"name": "claims", "handler": "tests.rule_handlers:claims", "config": {"plan": "platinum"}}

    with rules(mfa, add_claims) as ruled:
        unenrolled = ruled.login(realm="employees", scope="openid")
        tokens = ruled.finish(ruled.mfa_token(scope="openid"), enrolled.secret)

    assert unenrolled.status_code == 200, unenrolled.text
    access = mfa.claims(tokens["access_token"], audience=API)
    assert access["https://example.test/plan"] == "platinum"
    assert access["amr"] == ["pwd", "mfa", "otp"]
    assert mfa.claims(tokens["id_token"], audience="public-app")["https://example.test/connection"] == "customers"


def test_both_password_grants_are_gated(mfa: Mfa) -> None:
    mfa.enroll(realm="employees")

    for grant_type in ("password", "http://auth0.com/oauth/grant-type/password-realm"):
        response = mfa.login(realm="employees", grant_type=grant_type)
        assert error_of(response) == (403, "mfa_required", MFA_REQUIRED), grant_type


def test_a_wrong_password_is_still_wrong_credentials_not_mfa_required(mfa: Mfa) -> None:
    mfa.enroll()

    response = mfa.login(password="not the password")

    assert error_of(response) == (403, "invalid_grant", "Wrong email or password.")


# --- mfa_required ------------------------------------------------------------------------------------------------


def test_mfa_required_body(mfa: Mfa) -> None:
    mfa.set_policy("always")

    response = mfa.login()

    assert response.status_code == 403
    assert response.headers["content-type"].startswith("application/json")
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert set(body) == {"error", "error_description", "mfa_token"}
    assert body["error"] == "mfa_required"
    assert body["error_description"] == "Multifactor authentication required"
    token = body["mfa_token"]
    assert isinstance(token, str)
    assert BASE64URL.fullmatch(token)
    assert len(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))) * 8 >= 128
    assert token.count(".") != 2  # opaque, not a JWT


def test_each_login_gets_its_own_mfa_token(mfa: Mfa) -> None:
    mfa.set_policy("always")

    tokens = {mfa.mfa_token() for _ in range(5)}

    assert len(tokens) == 5


# --- GET /mfa/authenticators -------------------------------------------------------------------------------------


def test_authenticators_empty_then_pending_then_active(mfa: Mfa) -> None:
    mfa.set_policy("always")
    mfa_token = mfa.mfa_token()
    assert mfa.authenticators(mfa_token).json() == []

    enrollment = mfa.associate(mfa_token).json()
    pending = mfa.authenticators(mfa_token)

    assert pending.status_code == 200
    assert pending.headers["cache-control"] == "no-store"
    (otp,) = pending.json()
    assert otp["authenticator_type"] == "otp"
    assert otp["active"] is False
    assert re.fullmatch(r"totp\|dev_[A-Za-z0-9_-]+", otp["id"])

    mfa.finish(mfa_token, enrollment["secret"])
    active = mfa.authenticators(mfa.mfa_token()).json()

    assert [(a["authenticator_type"], a["active"]) for a in active] == [("recovery-code", True), ("otp", True)]
    assert active[1]["id"] == otp["id"]
    assert re.fullmatch(r"recovery-code\|dev_[A-Za-z0-9_-]+", active[0]["id"])


def test_authenticators_need_a_bearer_token(mfa: Mfa) -> None:
    response = mfa.client.get("/mfa/authenticators")

    assert response.status_code == 401
    assert response.json()["error"] == "invalid_token"
    assert response.headers["www-authenticate"].startswith("Bearer ")


def test_authenticators_refuse_an_unknown_bearer_with_401_invalid_token(mfa: Mfa) -> None:
    unknown = mfa.authenticators("not-an-mfa-token")
    assert error_of(unknown) == BEARER_MALFORMED
    assert 'error="invalid_token"' in unknown.headers["www-authenticate"]
    forged_jwt = mfa.authenticators("a.b.c")
    assert forged_jwt.status_code == 401
    assert forged_jwt.json()["error"] == "invalid_token"


def test_authenticators_refuse_a_spent_or_expired_mfa_token(mfa: Mfa) -> None:
    enrolled = mfa.enroll()
    spent = mfa.mfa_token()
    mfa.finish(spent, enrolled.secret)
    old = mfa.mfa_token()
    mfa.clock.advance(600)

    assert error_of(mfa.authenticators(spent)) == BEARER_MALFORMED
    assert error_of(mfa.authenticators(old)) == BEARER_EXPIRED


# --- POST /mfa/associate -----------------------------------------------------------------------------------------


def test_associate_returns_a_160_bit_secret_its_uri_and_a_recovery_code(mfa: Mfa) -> None:
    mfa.set_policy("always")
    mfa_token = mfa.mfa_token()

    response = mfa.associate(mfa_token)

    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert set(body) == {"authenticator_type", "secret", "barcode_uri", "recovery_codes"}
    assert body["authenticator_type"] == "otp"
    secret = body["secret"]
    assert re.fullmatch(r"[A-Z2-7]{32}", secret)
    assert len(base64.b32decode(secret)) * 8 == 160
    assert body["barcode_uri"] == (
        f"otpauth://totp/Test:alice@example.test?secret={secret}&issuer=Test&algorithm=SHA1&digits=6&period=30"
    )
    (code,) = body["recovery_codes"]
    assert re.fullmatch(r"[A-Z2-9]{24}", code)


def test_associate_accepts_a_form_body(mfa: Mfa) -> None:
    mfa.set_policy("always")
    mfa_token = mfa.mfa_token()

    response = mfa.client.post(
        "/mfa/associate",
        data={"authenticator_types": "otp", "client_id": "public-app"},
        headers={"Authorization": f"Bearer {mfa_token}"},
    )

    assert response.status_code == 200, response.text
    assert response.json()["authenticator_type"] == "otp"


def test_reassociating_replaces_the_pending_authenticator(mfa: Mfa) -> None:
    mfa.set_policy("always")
    mfa_token = mfa.mfa_token()
    first = mfa.associate(mfa_token).json()
    first_id = mfa.authenticators(mfa_token).json()[0]["id"]

    second = mfa.associate(mfa_token).json()

    assert second["secret"] != first["secret"]
    listed = mfa.authenticators(mfa_token).json()
    assert [(a["authenticator_type"], a["active"]) for a in listed] == [("otp", False)]
    assert listed[0]["id"] != first_id
    # Only the new secret confirms; the replaced one is gone, and so is its recovery code.
    assert error_of(mfa.otp(mfa_token, mfa.code(first["secret"]))) == INVALID_OTP
    mfa.finish(mfa_token, second["secret"])
    assert error_of(mfa.recover(mfa.mfa_token(), first["recovery_codes"][0])) == INVALID_RECOVERY_CODE
    assert mfa.recover(mfa.mfa_token(), second["recovery_codes"][0]).status_code == 200


def test_associate_with_an_active_factor_is_already_enrolled(mfa: Mfa) -> None:
    enrolled = mfa.enroll()
    mfa_token = mfa.mfa_token()

    response = mfa.associate(mfa_token)

    assert error_of(response) == (403, "access_denied", "User is already enrolled")
    # Nothing changed: the enrolled secret still finishes the login.
    mfa.finish(mfa_token, enrolled.secret)


def test_recovery_codes_are_only_shown_on_the_first_enrollment(mfa: Mfa) -> None:
    """A user who already has an active recovery code is never shown another one by an enrollment."""
    enrolled = mfa.enroll()

    async def enroll_another(session: Any, _: Any) -> Any:
        factors = FactorService(session, SecretBox(mfa.settings.encryption_keys), mfa.clock)
        return await factors.enrollment.associate(enrolled.user_id, issuer="Test", allow_additional=True)

    another = run_db(mfa.settings, enroll_another)

    assert another.recovery_code is None
    assert mfa.recover(mfa.mfa_token(), enrolled.recovery_code).status_code == 200


def test_associate_refuses_other_types(mfa: Mfa) -> None:
    mfa.set_policy("always")
    mfa_token = mfa.mfa_token()
    not_an_array = "authenticator_types must be a non-empty array of strings"
    cases: list[tuple[dict[str, Any], str]] = [
        (
            {"authenticator_types": ["oob"], "oob_channels": ["sms"]},
            "oob_channels must be ['email']: email is the only out-of-band channel",
        ),
        (
            {"authenticator_types": ["otp", "oob"]},
            "Only the 'otp', 'oob' (email) and 'webauthn' authenticator types are supported",
        ),
        ({"authenticator_types": []}, not_an_array),
        ({}, not_an_array),
        ({"authenticator_types": "otp"}, not_an_array),
        ({"authenticator_types": [1]}, not_an_array),
    ]

    for body, description in cases:
        assert error_of(mfa.associate(mfa_token, body)) == (400, "invalid_request", description), body
    assert mfa.authenticators(mfa_token).json() == []


def test_associate_checks_the_client(mfa: Mfa) -> None:
    mfa.set_policy("always")

    response = mfa.associate(mfa.mfa_token(), {"authenticator_types": ["otp"], "client_id": "confidential-app"})

    assert error_of(response) == OTHER_CLIENT


def test_associate_refuses_an_access_token(mfa: Mfa) -> None:
    enrolled = mfa.enroll()

    response = mfa.associate(enrolled.tokens["access_token"])

    assert response.status_code == 401
    assert response.json()["error"] == "invalid_token"


# --- POST /mfa/challenge -----------------------------------------------------------------------------------------


def test_challenge_otp(mfa: Mfa) -> None:
    enrolled = mfa.enroll()
    mfa_token = mfa.mfa_token()

    for challenge_type in ("otp", "otp oob", "oob otp", None):
        params = {} if challenge_type is None else {"challenge_type": challenge_type}
        response = mfa.challenge(mfa_token, **params)
        assert response.status_code == 200, (challenge_type, response.text)
        assert response.json() == {"challenge_type": "otp"}
        assert response.headers["cache-control"] == "no-store"
    # A challenge does not spend the mfa_token.
    mfa.finish(mfa_token, enrolled.secret)


def test_challenge_a_named_authenticator(mfa: Mfa) -> None:
    enrolled = mfa.enroll()

    named = mfa.challenge(mfa.mfa_token(), challenge_type="otp", authenticator_id=enrolled.authenticator_id)
    unknown = mfa.challenge(mfa.mfa_token(), challenge_type="otp", authenticator_id="totp|dev_nope")

    assert named.json() == {"challenge_type": "otp"}
    assert error_of(unknown)[:2] == (400, "unsupported_challenge_type")


def test_challenge_as_a_confidential_client(mfa: Mfa) -> None:
    mfa.enroll(client_id="confidential-app")

    response = mfa.challenge(mfa.mfa_token(client_id="confidential-app"), client_id="confidential-app")

    assert response.json() == {"challenge_type": "otp"}


def test_challenge_without_an_authenticator(mfa: Mfa) -> None:
    mfa.set_policy("always")

    response = mfa.challenge(mfa.mfa_token(), challenge_type="otp")

    assert error_of(response)[:2] == (400, "unsupported_challenge_type")


def test_challenge_oob_is_unsupported(mfa: Mfa) -> None:
    mfa.enroll()

    response = mfa.challenge(mfa.mfa_token(), challenge_type="oob")

    assert error_of(response)[:2] == (400, "unsupported_challenge_type")


def test_challenge_with_another_clients_mfa_token(mfa: Mfa) -> None:
    mfa.enroll()

    response = mfa.challenge(mfa.mfa_token(), client_id="confidential-app")

    assert error_of(response) == OTHER_CLIENT


def test_challenge_with_a_wrong_client_secret(mfa: Mfa) -> None:
    mfa.enroll(client_id="confidential-app")

    response = mfa.challenge(
        mfa.mfa_token(client_id="confidential-app"),
        client_id="confidential-app",
        client_secret="a-wrong-secret-0123456789abcdefghijklmn",
    )

    assert error_of(response)[:2] == (401, "invalid_client")


def test_challenge_with_a_malformed_mfa_token(mfa: Mfa) -> None:
    assert error_of(mfa.challenge("nope", challenge_type="otp")) == MALFORMED


# --- mfa-otp -----------------------------------------------------------------------------------------------------


def test_wrong_code_is_invalid_otp_and_does_not_burn_the_mfa_token(mfa: Mfa) -> None:
    enrolled = mfa.enroll()
    mfa_token = mfa.mfa_token()
    wrong = f"{(int(mfa.code(enrolled.secret)) + 1) % 1_000_000:06d}"

    assert error_of(mfa.otp(mfa_token, wrong)) == INVALID_OTP
    assert mfa.otp(mfa_token, mfa.code(enrolled.secret)).status_code == 200


LOGINS = [
    pytest.param(None, None, "public-app", id="default-audience-all-scopes"),
    pytest.param(API, "openid profile email read:things", "confidential-app", id="openid-and-api-scope"),
    pytest.param(REPORTS_API, "openid read:reports", "basic-app", id="es256-api"),
]


def test_tokens_after_mfa_are_what_the_password_step_would_have_issued(mfa: Mfa) -> None:
    enrolled = mfa.enroll()
    volatile = {"iat", "exp", "jti", "amr", "acr", "auth_time"}  # the claims about the factors differ (RFC 9470)

    for login in LOGINS:
        audience, scope, client_id = login.values
        mfa.set_policy("never")
        without = mfa.login(client_id=client_id, audience=audience, scope=scope)
        assert without.status_code == 200, without.text
        mfa.set_policy("if-enrolled")

        mfa_token = mfa.mfa_token(client_id=client_id, audience=audience, scope=scope)
        with_mfa = mfa.finish(mfa_token, enrolled.secret, client_id=client_id)

        plain = without.json()
        assert set(with_mfa) == set(plain), login.id
        for name in ("token_type", "expires_in", "scope"):
            assert with_mfa[name] == plain[name], (login.id, name)
        aud = audience or API
        before = mfa.claims(plain["access_token"], audience=aud)
        after = mfa.claims(with_mfa["access_token"], audience=aud)
        assert {k: v for k, v in after.items() if k not in volatile} == {
            k: v for k, v in before.items() if k not in volatile
        }, login.id
        assert after["exp"] - after["iat"] == before["exp"] - before["iat"]
        assert after["amr"] == ["pwd", "mfa", "otp"]
        assert (after["acr"], after["auth_time"]) == (MULTI_FACTOR, int(mfa.clock.now()) - 30)  # finish's next step
        assert "amr" not in before and "acr" not in before and "auth_time" not in before
        assert after["sub"] == enrolled.user_id
        assert after["azp"] == client_id
        assert after["gty"] == "password"
        if "id_token" in plain:
            id_before = mfa.claims(plain["id_token"], audience=client_id)
            id_after = mfa.claims(with_mfa["id_token"], audience=client_id)
            assert id_after["amr"] == ["pwd", "mfa", "otp"]
            assert (id_after["acr"], id_after["auth_time"]) == (after["acr"], after["auth_time"])
            assert {k: v for k, v in id_after.items() if k not in volatile} == {
                k: v for k, v in id_before.items() if k not in volatile
            }, login.id


def test_mfa_token_is_single_use(mfa: Mfa) -> None:
    enrolled = mfa.enroll()
    mfa_token = mfa.mfa_token()
    mfa.finish(mfa_token, enrolled.secret)

    assert error_of(mfa.otp(mfa_token, mfa.code(enrolled.secret))) == MALFORMED
    assert error_of(mfa.recover(mfa_token, enrolled.recovery_code)) == MALFORMED


def test_an_accepted_code_is_refused_with_a_new_mfa_token_and_the_next_step_is_accepted(mfa: Mfa) -> None:
    enrolled = mfa.enroll()
    code = mfa.code(enrolled.secret)
    assert mfa.otp(mfa.mfa_token(), code).status_code == 200

    replay = mfa.otp(mfa.mfa_token(), code)

    assert error_of(replay) == INVALID_OTP
    mfa.next_step()
    assert mfa.otp(mfa.mfa_token(), mfa.code(enrolled.secret)).status_code == 200


def test_an_earlier_step_inside_the_window_is_refused_after_a_later_one(mfa: Mfa) -> None:
    enrolled = mfa.enroll()
    # The phone runs 30 s fast: its code is for the next step, which the window accepts.
    assert mfa.otp(mfa.mfa_token(), mfa.code(enrolled.secret, steps=1)).status_code == 200

    for steps in (0, -1, 1):
        assert error_of(mfa.otp(mfa.mfa_token(), mfa.code(enrolled.secret, steps=steps))) == INVALID_OTP, steps
    mfa.clock.advance(60)
    assert mfa.otp(mfa.mfa_token(), mfa.code(enrolled.secret)).status_code == 200


def test_the_enrollment_confirmation_step_is_spent_too(mfa: Mfa) -> None:
    mfa_token = mfa.mfa_token(audience=MFA_AUDIENCE)
    secret = mfa.associate(mfa_token).json()["secret"]
    code = mfa.code(secret)
    assert mfa.otp(mfa_token, code).status_code == 200

    assert error_of(mfa.otp(mfa.mfa_token(), code)) == INVALID_OTP


def test_codes_two_steps_away_are_refused(mfa: Mfa) -> None:
    enrolled = mfa.enroll()
    mfa_token = mfa.mfa_token()

    for steps in (-2, 2):
        assert error_of(mfa.otp(mfa_token, mfa.code(enrolled.secret, steps=steps))) == INVALID_OTP


def test_an_mfa_token_expires_after_ten_minutes(mfa: Mfa) -> None:
    enrolled = mfa.enroll()
    alive, dead = mfa.mfa_token(), mfa.mfa_token()

    mfa.clock.advance(599)
    assert mfa.otp(alive, mfa.code(enrolled.secret)).status_code == 200
    mfa.clock.advance(1)

    assert error_of(mfa.otp(dead, mfa.code(enrolled.secret, steps=1))) == EXPIRED
    assert error_of(mfa.recover(dead, enrolled.recovery_code)) == EXPIRED
    assert error_of(mfa.challenge(dead, challenge_type="otp")) == EXPIRED


def test_mfa_token_lifetime_is_a_tenant_setting(mfa: Mfa) -> None:
    mfa.set_tenant(mfa_token_lifetime=120)
    enrolled = mfa.enroll()
    alive, dead = mfa.mfa_token(), mfa.mfa_token()

    mfa.clock.advance(119)
    assert mfa.otp(alive, mfa.code(enrolled.secret)).status_code == 200
    mfa.clock.advance(1)

    assert error_of(mfa.otp(dead, mfa.code(enrolled.secret, steps=1))) == EXPIRED


TAMPERS = {
    "last-character-changed": lambda token: token[:-1] + ("A" if token[-1] != "A" else "B"),
    "first-character-changed": lambda token: ("A" if token[0] != "A" else "B") + token[1:],
    "truncated": lambda token: token[:-1],
    "extended": lambda token: token + "A",
    "case-changed": lambda token: token.swapcase(),
    "iron-sealed": lambda _: "Fe26.2**0cdd607945dd1dffb7da0b0bf5f1a7daa6218cbae14cac51dcbd91fb077aeb5b*",
    "one-character": lambda _: "x",
}


def test_a_tampered_or_unknown_mfa_token_is_malformed(mfa: Mfa) -> None:
    enrolled = mfa.enroll()
    mfa_token = mfa.mfa_token()

    for name, tamper in TAMPERS.items():
        assert error_of(mfa.otp(tamper(mfa_token), mfa.code(enrolled.secret))) == MALFORMED, name
    # An empty one is a missing one.
    assert error_of(mfa.otp("", mfa.code(enrolled.secret))) == (400, "invalid_request", "missing mfa_token parameter")
    # The genuine one still works (and failed lookups did not draw from the user's bucket).
    assert mfa.otp(mfa_token, mfa.code(enrolled.secret)).status_code == 200


def test_an_mfa_token_of_another_client(mfa: Mfa) -> None:
    enrolled = mfa.enroll()
    mfa_token = mfa.mfa_token(client_id="public-app")

    for other in ("confidential-app", "basic-app"):
        assert error_of(mfa.otp(mfa_token, mfa.code(enrolled.secret), client_id=other)) == OTHER_CLIENT, other
        assert error_of(mfa.recover(mfa_token, enrolled.recovery_code, client_id=other)) == OTHER_CLIENT, other
    assert mfa.otp(mfa_token, mfa.code(enrolled.secret)).status_code == 200


def test_a_client_without_the_mfa_grant_cannot_finish(mfa: Mfa) -> None:
    enrolled = mfa.enroll(realm="employees")
    mfa_token = mfa.mfa_token(realm="employees", client_id="realm-only-app")

    response = mfa.otp(mfa_token, mfa.code(enrolled.secret), client_id="realm-only-app")

    assert error_of(response) == (
        403,
        "unauthorized_client",
        f"Grant type '{MFA_OTP}' not allowed for the client.",
    )
    recovery_response = mfa.recover(mfa_token, enrolled.recovery_code, client_id="realm-only-app")
    assert error_of(recovery_response)[:2] == (403, "unauthorized_client")


def test_missing_parameters(mfa: Mfa) -> None:
    mfa.enroll()
    mfa_token = mfa.mfa_token()

    assert error_of(mfa.token(grant_type=MFA_OTP, otp="123456")) == (
        400,
        "invalid_request",
        "missing mfa_token parameter",
    )
    assert error_of(mfa.token(grant_type=MFA_OTP, mfa_token=mfa_token)) == (
        400,
        "invalid_request",
        "missing otp parameter",
    )


def test_a_user_blocked_after_the_password_step_gets_nothing(mfa: Mfa) -> None:
    enrolled = mfa.enroll()
    mfa_token = mfa.mfa_token()
    alice = {"connection": "customers", "email": ALICE_EMAIL, "password": ALICE_CUSTOMER_PASSWORD}
    apply(mfa.settings, {"users": [{**alice, "blocked": True}]})
    try:
        response = mfa.otp(mfa_token, mfa.code(enrolled.secret))
    finally:
        apply(mfa.settings, {"users": [{**alice, "blocked": False}]})

    assert error_of(response) == (401, "unauthorized", "user is blocked")


# --- The attempt bucket ------------------------------------------------------------------------------------------


def test_ten_failures_empty_the_bucket_and_it_refills_one_every_six_minutes(mfa: Mfa) -> None:
    enrolled = mfa.enroll()
    mfa_token = mfa.mfa_token()
    right = mfa.code(enrolled.secret)
    wrong = f"{(int(right) + 500_000) % 1_000_000:06d}"

    for attempt in range(10):
        assert error_of(mfa.otp(mfa_token, wrong)) == INVALID_OTP, attempt

    assert error_of(mfa.otp(mfa_token, right)) == TOO_MANY
    assert error_of(mfa.otp(mfa.mfa_token(), right)) == TOO_MANY  # a new mfa_token does not reset it
    assert error_of(mfa.recover(mfa.mfa_token(), enrolled.recovery_code)) == TOO_MANY
    mfa.clock.advance(359)
    assert error_of(mfa.otp(mfa.mfa_token(), mfa.code(enrolled.secret))) == TOO_MANY

    # One attempt comes back after 360 s: spending it on a wrong code empties the bucket again ...
    mfa.clock.advance(1)
    assert error_of(mfa.otp(mfa.mfa_token(), wrong)) == INVALID_OTP
    assert error_of(mfa.otp(mfa.mfa_token(), mfa.code(enrolled.secret))) == TOO_MANY
    # ... and the next one, 360 s later, can be the right code.
    mfa.clock.advance(360)
    assert mfa.otp(mfa.mfa_token(), mfa.code(enrolled.secret)).status_code == 200


def test_the_bucket_refills_to_ten_at_most(mfa: Mfa) -> None:
    enrolled = mfa.enroll()
    right = mfa.code(enrolled.secret)
    wrong = f"{(int(right) + 500_000) % 1_000_000:06d}"
    mfa_token = mfa.mfa_token()
    assert error_of(mfa.otp(mfa_token, wrong)) == INVALID_OTP
    mfa.clock.advance(86_400)

    mfa_token = mfa.mfa_token()
    for attempt in range(10):
        assert error_of(mfa.otp(mfa_token, wrong)) == INVALID_OTP, attempt
    assert error_of(mfa.otp(mfa_token, mfa.code(enrolled.secret))) == TOO_MANY


def test_wrong_recovery_codes_draw_from_the_same_bucket(mfa: Mfa) -> None:
    enrolled = mfa.enroll()
    mfa_token = mfa.mfa_token()

    for attempt in range(10):
        assert error_of(mfa.recover(mfa_token, "ABCDEFGHJKLMNPQRSTUVWXYZ")) == INVALID_RECOVERY_CODE, attempt

    assert error_of(mfa.recover(mfa_token, enrolled.recovery_code)) == TOO_MANY
    assert error_of(mfa.otp(mfa_token, mfa.code(enrolled.secret))) == TOO_MANY


def test_the_bucket_is_per_user(mfa: Mfa) -> None:
    customer = mfa.enroll()
    employee = mfa.enroll(realm="employees")
    mfa_token = mfa.mfa_token()
    for _ in range(10):
        mfa.otp(mfa_token, f"{(int(mfa.code(customer.secret)) + 1) % 1_000_000:06d}")
    assert error_of(mfa.otp(mfa_token, mfa.code(customer.secret))) == TOO_MANY

    response = mfa.otp(mfa.mfa_token(realm="employees"), mfa.code(employee.secret))

    assert response.status_code == 200, response.text


# --- mfa-recovery-code -------------------------------------------------------------------------------------------


def test_recovery_code_works_once_and_is_replaced(mfa: Mfa) -> None:
    enrolled = mfa.enroll()

    response = mfa.recover(mfa.mfa_token(), enrolled.recovery_code)

    assert response.status_code == 200, response.text
    body = response.json()
    new_code = body["recovery_code"]
    assert re.fullmatch(r"[A-Z2-9]{24}", new_code)
    assert new_code != enrolled.recovery_code
    assert body["token_type"] == "Bearer"
    claims = mfa.claims(body["access_token"], audience=API)
    assert claims["amr"] == ["pwd", "mfa"]
    assert claims["sub"] == enrolled.user_id
    assert error_of(mfa.recover(mfa.mfa_token(), enrolled.recovery_code)) == INVALID_RECOVERY_CODE
    again = mfa.recover(mfa.mfa_token(), new_code)
    assert again.status_code == 200, again.text
    assert again.json()["recovery_code"] not in (new_code, enrolled.recovery_code)


def test_recovery_code_as_people_type_it(mfa: Mfa) -> None:
    enrolled = mfa.enroll()
    typed = recovery.display(enrolled.recovery_code).lower().replace("-", " ")

    response = mfa.recover(mfa.mfa_token(), typed)

    assert response.status_code == 200, response.text


def test_recovery_code_keeps_the_authenticator(mfa: Mfa) -> None:
    enrolled = mfa.enroll()
    mfa.recover(mfa.mfa_token(), enrolled.recovery_code)

    response = mfa.otp(mfa.mfa_token(), mfa.code(enrolled.secret))

    assert response.status_code == 200, response.text


def test_recovery_code_of_a_pending_enrollment_does_not_work(mfa: Mfa) -> None:
    mfa.set_policy("always")
    mfa_token = mfa.mfa_token()
    code = mfa.associate(mfa_token).json()["recovery_codes"][0]

    assert error_of(mfa.recover(mfa_token, code)) == INVALID_RECOVERY_CODE


def burned_by_a_concurrent_request(method: Any) -> Any:
    """``method`` of the factor service, run just after another request (sharing the mfa_token) burned it: the
    interleaving of two requests that both found the mfa_token live, made deterministic."""

    async def wrapper(self: FactorService, transaction: Any, *args: Any) -> Any:
        assert await mfa_queries.burn_transaction(self.session, transaction.id, datetime.now(UTC))
        await self.session.commit()
        return await method(self, transaction, *args)

    return wrapper


def test_a_recovery_that_loses_the_mfa_token_race_keeps_the_recovery_code(
    mfa: Mfa, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two requests share an mfa_token and the other one wins it. This one gets no tokens and no new code, so the
    code the user holds must still work: burning it would leave a recovery code that nobody ever saw."""
    enrolled = mfa.enroll()
    mfa_token = mfa.mfa_token()

    with monkeypatch.context() as patch:
        method = FactorService.redeem_recovery_code
        patch.setattr(FactorService, "redeem_recovery_code", burned_by_a_concurrent_request(method))
        lost = mfa.recover(mfa_token, enrolled.recovery_code)

    assert error_of(lost) == MALFORMED
    assert "recovery_code" not in lost.json()
    retry = mfa.recover(mfa.mfa_token(), enrolled.recovery_code)
    assert retry.status_code == 200, f"the recovery code was burned without a replacement being shown: {retry.text}"


def test_an_otp_that_loses_the_mfa_token_race_does_not_spend_the_code(
    mfa: Mfa, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same interleaving for mfa-otp: the loser's code was never used to issue anything, so it still works."""
    enrolled = mfa.enroll()
    mfa_token = mfa.mfa_token()
    code = mfa.code(enrolled.secret)

    with monkeypatch.context() as patch:
        patch.setattr(FactorService, "check_otp", burned_by_a_concurrent_request(FactorService.check_otp))
        lost = mfa.otp(mfa_token, code)

    assert error_of(lost) == MALFORMED
    retry = mfa.otp(mfa.mfa_token(), code)
    assert retry.status_code == 200, f"the code was spent on a request that issued nothing: {retry.text}"


def test_a_blocked_user_keeps_the_recovery_code_that_was_not_replaced(mfa: Mfa) -> None:
    """A recovery answered 401 ``user is blocked`` hands out no new code, so the old one must stay valid."""
    enrolled = mfa.enroll()
    mfa_token = mfa.mfa_token()
    alice = {"connection": "customers", "email": ALICE_EMAIL, "password": ALICE_CUSTOMER_PASSWORD}
    apply(mfa.settings, {"users": [{**alice, "blocked": True}]})
    try:
        blocked = mfa.recover(mfa_token, enrolled.recovery_code)
    finally:
        apply(mfa.settings, {"users": [{**alice, "blocked": False}]})

    assert error_of(blocked) == (401, "unauthorized", "user is blocked")
    retry = mfa.recover(mfa.mfa_token(), enrolled.recovery_code)
    assert retry.status_code == 200, f"the recovery code was burned without a replacement being shown: {retry.text}"


def test_recovery_code_grant_missing_code(mfa: Mfa) -> None:
    mfa.enroll()

    response = mfa.token(grant_type="http://auth0.com/oauth/grant-type/mfa-recovery-code", mfa_token=mfa.mfa_token())

    assert error_of(response) == (400, "invalid_request", "missing recovery_code parameter")


# --- The MFA API audience, DELETE /mfa/authenticators/{id} -------------------------------------------------------


def test_mfa_audience_token_removes_an_authenticator(mfa: Mfa) -> None:
    enrolled = mfa.enroll()
    mfa_token = mfa.mfa_token(audience=MFA_AUDIENCE)

    tokens = mfa.finish(mfa_token, enrolled.secret)

    assert tokens["scope"] == MFA_API_SCOPES
    assert tokens["expires_in"] == 600
    claims = mfa.claims(tokens["access_token"], audience=MFA_AUDIENCE)
    assert claims["aud"] == MFA_AUDIENCE
    assert claims["scope"] == MFA_API_SCOPES
    assert claims["amr"] == ["pwd", "mfa", "otp"]
    access_token = tokens["access_token"]
    listed = mfa.authenticators(access_token)
    assert listed.status_code == 200
    assert {a["id"] for a in listed.json() if a["authenticator_type"] == "otp"} == {enrolled.authenticator_id}

    with_mfa_token = mfa.delete(mfa.mfa_token(), enrolled.authenticator_id)
    assert with_mfa_token.status_code == 401
    assert with_mfa_token.json()["error"] == "invalid_token"
    assert "remove:authenticators" in with_mfa_token.headers["www-authenticate"]
    unknown = mfa.delete(access_token, "totp|dev_doesnotexist")
    assert unknown.status_code == 404
    assert unknown.json()["error"] == "not_found"

    removed = mfa.delete(access_token, enrolled.authenticator_id)

    assert removed.status_code == 204
    assert removed.content == b""
    assert mfa.delete(access_token, enrolled.authenticator_id).status_code == 404
    assert mfa.authenticators(access_token).json() == []
    after = mfa.login()
    assert after.status_code == 200, after.text  # if-enrolled, and no factor left


def test_an_api_access_token_cannot_remove_authenticators(mfa: Mfa) -> None:
    enrolled = mfa.enroll()
    api_tokens = mfa.finish(mfa.mfa_token(), enrolled.secret)

    response = mfa.delete(api_tokens["access_token"], enrolled.authenticator_id)

    assert response.status_code == 401
    assert response.json()["error"] == "invalid_token"
    assert mfa.authenticators(mfa.mfa_token()).json()[1]["active"] is True


def test_mfa_audience_token_expires_after_600_seconds(mfa: Mfa) -> None:
    enrolled = mfa.enroll()
    access_token = mfa.finish(mfa.mfa_token(audience=MFA_AUDIENCE), enrolled.secret)["access_token"]

    mfa.clock.advance(600)
    response = mfa.delete(access_token, enrolled.authenticator_id)

    assert response.status_code == 401
    assert response.json()["error"] == "invalid_token"


def test_a_user_cannot_remove_another_users_authenticator(mfa: Mfa) -> None:
    customer = mfa.enroll()
    employee = mfa.enroll(realm="employees")
    employee_token = mfa.finish(mfa.mfa_token(realm="employees", audience=MFA_AUDIENCE), employee.secret)

    response = mfa.delete(employee_token["access_token"], customer.authenticator_id)

    assert response.status_code == 404
    assert mfa.otp(mfa.mfa_token(), mfa.code(customer.secret)).status_code == 200


def test_removing_the_recovery_code(mfa: Mfa) -> None:
    enrolled = mfa.enroll()
    access_token = mfa.finish(mfa.mfa_token(audience=MFA_AUDIENCE), enrolled.secret)["access_token"]
    recovery_id = mfa.authenticators(access_token).json()[0]["id"]

    assert mfa.delete(access_token, recovery_id).status_code == 204

    assert [a["authenticator_type"] for a in mfa.authenticators(access_token).json()] == ["otp"]
    assert error_of(mfa.recover(mfa.mfa_token(), enrolled.recovery_code)) == INVALID_RECOVERY_CODE


# --- Two directories ---------------------------------------------------------------------------------------------


def test_users_in_two_directories_have_independent_factors(mfa: Mfa) -> None:
    customer = mfa.enroll()
    # Same email, other directory: not enrolled, so no MFA under if-enrolled.
    assert mfa.login(realm="employees").status_code == 200

    employee = mfa.enroll(realm="employees")

    assert employee.user_id != customer.user_id
    assert employee.secret != customer.secret
    assert employee.recovery_code != customer.recovery_code
    employee_token = mfa.mfa_token(realm="employees")
    customer_token = mfa.mfa_token()
    # Each directory's alice only has her own authenticator.
    employee_ids = {a["id"] for a in mfa.authenticators(employee_token).json()}
    customer_ids = {a["id"] for a in mfa.authenticators(customer_token).json()}
    assert employee.authenticator_id in employee_ids
    assert customer.authenticator_id in customer_ids
    assert not employee_ids & customer_ids
    # The other one's code and recovery code do not open the account.
    assert error_of(mfa.otp(employee_token, mfa.code(customer.secret))) == INVALID_OTP
    assert error_of(mfa.recover(employee_token, customer.recovery_code)) == INVALID_RECOVERY_CODE
    tokens = mfa.finish(employee_token, employee.secret)
    assert mfa.claims(tokens["access_token"], audience=API)["sub"] == employee.user_id
    tokens = mfa.finish(customer_token, customer.secret)
    assert mfa.claims(tokens["access_token"], audience=API)["sub"] == customer.user_id


def test_mfa_token_remembers_the_directory(mfa: Mfa) -> None:
    mfa.enroll()
    employee = mfa.enroll(realm="employees")

    tokens = mfa.finish(mfa.mfa_token(realm="employees", scope="openid profile"), employee.secret)

    id_claims = mfa.claims(tokens["id_token"], audience="public-app")
    assert id_claims["sub"] == employee.user_id
    assert id_claims["name"] == "Alice E"


# --- At rest -----------------------------------------------------------------------------------------------------


def test_nothing_secret_is_stored_in_clear(mfa: Mfa) -> None:
    """Dump every text column of every table: no TOTP secret, recovery code or mfa_token appears in clear."""
    replaced = mfa.associate(mfa.mfa_token(audience=MFA_AUDIENCE)).json()  # a pending one, then replaced
    customer = mfa.enroll(fresh=True)
    employee = mfa.enroll(realm="employees", fresh=True)
    mfa.finish(mfa.mfa_token(), customer.secret)
    mfa.recover(mfa.mfa_token(realm="employees"), employee.recovery_code)  # rotated: a new one is stored
    mfa.set_policy("always")
    mfa.mfa_token()  # unspent
    mfa.mfa_token(audience=MFA_AUDIENCE)  # unspent
    mfa.associate(mfa.mfa_token(realm="employees", audience=MFA_AUDIENCE))  # refused: already enrolled
    assert mfa.recover(mfa.mfa_token(), "ABCD-EFGH-JKLM-NPQR-STUV-WXYZ").status_code == 403

    dumped = dump_text(mfa.db)

    assert dumped["authenticator"], "the authenticator rows were not found"
    for sealed in [value for value in dumped["authenticator"] if value.startswith("v1.")]:
        assert sealed.startswith("v1.test1.")
    secrets_seen = [replaced["secret"], *replaced["recovery_codes"], *mfa.seen_secrets]
    assert {customer.secret, customer.recovery_code, employee.secret, employee.recovery_code} <= set(secrets_seen)
    assert len(secrets_seen) >= 16  # 4 TOTP secrets, 4 recovery codes, 8 mfa_tokens
    everything = "\n".join(value for values in dumped.values() for value in values)
    for secret in secrets_seen:
        for form in {secret, secret.lower(), recovery.display(secret)}:
            assert form not in everything, f"{secret[:4]}... is stored in clear"
    # The raw TOTP keys are not there in any common encoding either.
    for secret in (customer.secret, employee.secret):
        raw = base64.b32decode(secret)
        for encoded in (raw.hex(), base64.b64encode(raw).decode(), base64.urlsafe_b64encode(raw).decode().rstrip("=")):
            assert encoded not in everything
