"""The first-party apps endpoint (draft-ietf-oauth-first-party-apps-03) and the authorization_code grant, in process.

Every answer of the draft and of identity's catalogue, on an app with a frozen clock: the chains (password → code,
password → OTP → code, a later step-up on the same auth_session), the errors of each step, single use of steps and
codes, lifetimes, what is stored, and what the tokens say. Over HTTP against a real server, with oathtool and a
software authenticator: ``tests/e2e/test_first_party_e2e.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import jwt
import pytest

from identity.store.config import invalidate_all
from tests.api.fpa_support import (
    AUTHORIZATION_CODE,
    MULTI_FACTOR,
    OTHER_APP,
    Fpa,
    open_fpa,
    pkce,
    reset_fpa,
)
from tests.api.mfa_support import ALICE_EMAIL, MFA_OTP, dump_text, error_of
from tests.conftest import API, BOB_PASSWORD, apply

WRONG = "Wrong email or password."
INVALID_CODE = "Invalid authorization code"


@pytest.fixture(scope="module")
def module_fpa(database_url: str, encryption_keys: Any) -> Iterator[Fpa]:
    with open_fpa(database_url, encryption_keys) as driver:
        yield driver


@pytest.fixture
def fpa(module_fpa: Fpa) -> Fpa:
    return reset_fpa(module_fpa)


def claims(fpa: Fpa, token: str, audience: str = API) -> dict[str, Any]:
    return fpa.mfa.claims(token, audience=audience)


# --- the chains ------------------------------------------------------------------------------------------------


def test_a_user_without_a_second_factor_gets_a_code_for_the_password(fpa: Fpa) -> None:
    verifier, challenge = pkce()
    code, session = fpa.code(fpa.start(challenge, scope="openid profile offline_access read:things"))
    assert len(code) >= 43 and len(session) >= 43  # 256 random bits each
    tokens = fpa.redeem(code, verifier).json()
    assert tokens["token_type"] == "Bearer" and "refresh_token" in tokens and "id_token" in tokens
    assert "auth_session" not in tokens  # kept only as a hash: the app keeps the one it was given
    access = claims(fpa, tokens["access_token"])
    assert access["scope"] == "openid profile read:things offline_access"  # as the password grant orders them
    assert access["auth_time"] == int(fpa.mfa.clock.now()) and "acr" not in access and "amr" not in access
    assert access["azp"] == "public-app" and access["gty"] == "password"
    identity = jwt.decode(tokens["id_token"], options={"verify_signature": False})
    assert identity["auth_time"] == access["auth_time"] and identity["aud"] == "public-app"


def test_password_then_otp_then_code_then_tokens(fpa: Fpa) -> None:
    enrolled = fpa.mfa.enroll()
    verifier, challenge = pkce()
    asked = fpa.asked(fpa.start(challenge))
    assert asked["methods"] == ["otp", "recovery-code"] and asked["otp_required"] is True
    assert asked["error_description"] == "Multifactor authentication required"
    # The draft's intermediate request: the auth_session and the OTP, nothing else (the session names its client).
    code, session = fpa.code(fpa.post(None, auth_session=asked["auth_session"], otp=fpa.mfa.code(enrolled.secret)))
    assert session == asked["auth_session"]
    tokens = fpa.redeem(code, verifier).json()
    access = claims(fpa, tokens["access_token"])
    assert access["amr"] == ["pwd", "mfa", "otp"] and access["acr"] == MULTI_FACTOR
    assert access["auth_time"] == int(fpa.mfa.clock.now()) and access["sub"] == enrolled.user_id


def test_intermediate_requests_may_be_json_and_carry_the_otp_with_the_password(fpa: Fpa) -> None:
    enrolled = fpa.mfa.enroll()
    verifier, challenge = pkce()
    session = fpa.asked(fpa.start(challenge))["auth_session"]
    code, _ = fpa.code(fpa.post(json=True, auth_session=session, otp=fpa.mfa.code(enrolled.secret)))
    assert fpa.redeem(code, verifier).status_code == 200
    fpa.mfa.next_step()
    verifier, challenge = pkce()  # everything at once: the password and the app's code
    code, _ = fpa.code(fpa.start(challenge, otp=fpa.mfa.code(enrolled.secret)))
    assert claims(fpa, fpa.redeem(code, verifier).json()["access_token"])["amr"] == ["pwd", "mfa", "otp"]


def test_a_recovery_code_is_swapped_and_the_new_one_comes_with_the_code(fpa: Fpa) -> None:
    enrolled = fpa.mfa.enroll()
    verifier, challenge = pkce()
    session = fpa.asked(fpa.start(challenge))["auth_session"]
    answer = fpa.post(auth_session=session, recovery_code=enrolled.recovery_code)
    code, _ = fpa.code(answer)
    assert answer.json()["recovery_code"] != enrolled.recovery_code
    assert claims(fpa, fpa.redeem(code, verifier).json()["access_token"])["amr"] == ["pwd", "mfa"]


def test_step_up_on_the_same_auth_session_asks_the_second_factor_again(fpa: Fpa) -> None:
    enrolled = fpa.mfa.enroll()
    fpa.mfa.set_policy("never")  # the login itself needs no second factor: the API asks for more later
    verifier, challenge = pkce()
    code, session = fpa.code(fpa.start(challenge))
    first = claims(fpa, fpa.redeem(code, verifier).json()["access_token"])
    assert "acr" not in first
    fpa.mfa.clock.advance(3600)
    # Nothing is pending on the session now: an OTP alone is no request.
    assert error_of(fpa.post(auth_session=session, otp=fpa.mfa.code(enrolled.secret)))[:2] == (400, "invalid_request")
    verifier, challenge = pkce()
    step_up = {"response_type": "code", "code_challenge": challenge, "code_challenge_method": "S256"}
    asked = fpa.asked(fpa.post(auth_session=session, acr_values=MULTI_FACTOR, scope="read:things", **step_up))
    assert asked["auth_session"] == session and "password_required" not in asked and asked["otp_required"]
    code, again = fpa.code(fpa.post(auth_session=session, otp=fpa.mfa.code(enrolled.secret)))
    assert again == session
    stepped = claims(fpa, fpa.redeem(code, verifier).json()["access_token"])
    assert stepped["acr"] == MULTI_FACTOR and stepped["amr"] == ["pwd", "mfa", "otp"]
    assert stepped["auth_time"] == first["auth_time"] + 3600 and stepped["scope"] == "read:things"
    # Without acr_values a new authorization on the session still costs the second factor, never the password.
    fpa.mfa.next_step()
    verifier, challenge = pkce()
    step_up["code_challenge"] = challenge
    code, _ = fpa.code(fpa.post(auth_session=session, otp=fpa.mfa.code(enrolled.secret), **step_up))
    assert fpa.redeem(code, verifier).status_code == 200


def test_the_session_lives_a_day_from_the_login_then_is_invalid(fpa: Fpa) -> None:
    enrolled = fpa.mfa.enroll()
    _, session, _ = fpa.login_with_otp(enrolled.secret)
    _, challenge = pkce()
    step_up = {"response_type": "code", "code_challenge": challenge, "code_challenge_method": "S256"}
    fpa.mfa.clock.advance(86_000)
    assert fpa.asked(fpa.post(auth_session=session, **step_up))["auth_session"] == session
    fpa.mfa.clock.advance(400)
    again = fpa.post(auth_session=session, **step_up)
    assert error_of(again) == (400, "invalid_session", "The auth_session is invalid, expired or revoked.")


def test_a_pending_session_lives_the_mfa_token_lifetime(fpa: Fpa) -> None:
    enrolled = fpa.mfa.enroll()
    _, challenge = pkce()
    session = fpa.asked(fpa.start(challenge))["auth_session"]
    fpa.mfa.clock.advance(601)
    assert error_of(fpa.post(auth_session=session, otp=fpa.mfa.code(enrolled.secret)))[:2] == (400, "invalid_session")


# --- the initial request ---------------------------------------------------------------------------------------


def test_the_password_is_asked_when_missing(fpa: Fpa) -> None:
    _, challenge = pkce()
    for params in ({}, {"username": ALICE_EMAIL}, {"login_hint": ALICE_EMAIL}):
        asked = fpa.asked(
            fpa.post(response_type="code", code_challenge=challenge, code_challenge_method="S256", **params)
        )
        assert asked["methods"] == ["password"] and asked["password_required"] is True
        assert "auth_session" not in asked  # nothing is known yet, and nothing says whether the user exists


def test_login_hint_stands_for_the_username(fpa: Fpa) -> None:
    verifier, challenge = pkce()
    response = fpa.start(challenge, username=None, login_hint=ALICE_EMAIL)  # type: ignore[arg-type]
    code, _ = fpa.code(response)
    assert fpa.redeem(code, verifier).status_code == 200


@pytest.mark.parametrize(
    ("params", "status", "error", "description"),
    [
        ({"response_type": None}, 400, "invalid_request", "missing response_type parameter"),
        ({"response_type": "token"}, 400, "unsupported_response_type", "response_type must be code"),
        ({"code_challenge": None}, 400, "invalid_request", None),
        ({"code_challenge_method": None}, 400, "invalid_request", "code_challenge_method must be S256"),
        ({"code_challenge_method": "plain"}, 400, "invalid_request", "code_challenge_method must be S256"),
        ({"code_challenge": "short"}, 400, "invalid_request", None),
        ({"acr_values": "urn:example:gold"}, 400, "unmet_authentication_requirements", None),
        ({"max_age": "soon"}, 400, "invalid_request", "max_age must be a number of seconds"),
        ({"password": "wrong"}, 400, "invalid_grant", WRONG),
        ({"username": "nobody@example.test"}, 400, "invalid_grant", WRONG),
        ({"username": "bob@example.test", "password": BOB_PASSWORD}, 400, "access_denied", "user is blocked"),
        ({"audience": "https://unknown.test/"}, 400, "access_denied", "Service not found: https://unknown.test/"),
        ({"audience": API, "resource": "https://other.test/"}, 400, "invalid_request", None),
        ({"realm": "partners"}, 400, "invalid_request", "the connection was disabled"),
    ],
)
def test_initial_request_errors(
    fpa: Fpa, params: dict[str, Any], status: int, error: str, description: str | None
) -> None:
    _, challenge = pkce()
    base: dict[str, Any] = {"response_type": "code", "code_challenge": challenge, "code_challenge_method": "S256"}
    base.update(username=ALICE_EMAIL, password="alice customer password")
    base.update(params)
    got = error_of(fpa.post(**base))
    assert got[:2] == (status, error), got
    if description is not None:
        assert got[2] == description


def test_the_client_is_authenticated_as_at_the_token_endpoint(fpa: Fpa) -> None:
    _, challenge = pkce()
    ok = fpa.start(challenge, client_id="confidential-app")
    assert ok.status_code == 200, ok.text
    wrong = fpa.start(challenge, client_id="confidential-app", client_secret="not-the-secret-0123456789abcdefgh")
    assert error_of(wrong)[:2] == (401, "invalid_client")
    basic = fpa.start(challenge, client_id="basic-app")
    assert basic.status_code == 200, basic.text
    wrong_basic = fpa.client.post(
        "/oauth/authorize-challenge", data={"response_type": "code"}, auth=("basic-app", "wrong-secret")
    )
    assert error_of(wrong_basic)[:2] == (401, "invalid_client")
    assert wrong_basic.headers["www-authenticate"].startswith("Basic ")
    # A confidential client authenticates on every request, the intermediate ones too.
    fpa.mfa.enroll()
    session = fpa.asked(fpa.start(challenge, client_id="confidential-app"))["auth_session"]
    assert error_of(fpa.post(None, auth_session=session, otp="123456"))[:2] == (401, "invalid_client")


def test_a_client_without_the_grant_is_refused(fpa: Fpa) -> None:
    _, challenge = pkce()
    refused = fpa.start(challenge, client_id="realm-only-app", realm="employees")
    denied = "Grant type 'authorization_code' not allowed for the client."
    assert error_of(refused) == (400, "unauthorized_client", denied)


def test_acr_values_multi_factor_forces_the_second_factor_and_fails_without_one(fpa: Fpa) -> None:
    _, challenge = pkce()
    unmet = error_of(fpa.start(challenge, acr_values=MULTI_FACTOR))
    assert unmet[:2] == (400, "unmet_authentication_requirements")
    fpa.mfa.enroll()
    fpa.mfa.set_policy("never")
    assert fpa.asked(fpa.start(challenge, acr_values=f"urn:other {MULTI_FACTOR}"))["otp_required"] is True
    assert fpa.start(challenge).status_code == 200  # policy never, no acr_values: the password is enough


def test_policy_always_without_a_factor_is_unmet(fpa: Fpa) -> None:
    fpa.mfa.set_policy("always")
    _, challenge = pkce()
    got = error_of(fpa.start(challenge))
    assert got[:2] == (400, "unmet_authentication_requirements") and "enroll" in (got[2] or "")


def test_brute_force_protection_answers_429(fpa: Fpa) -> None:
    _, challenge = pkce()
    for _ in range(10):
        assert error_of(fpa.start(challenge, password="wrong"))[:2] == (400, "invalid_grant")
    blocked = fpa.start(challenge)  # the right password, too late
    assert error_of(blocked)[:2] == (429, "too_many_attempts")


def test_rules_run_with_the_first_party_protocol_and_can_deny(fpa: Fpa) -> None:
    from tests import rule_handlers

    apply(fpa.mfa.settings, {"rules": [{"name": "record", "handler": "tests.rule_handlers:record"},
                                       {"name": "claims", "handler": "tests.rule_handlers:claims"}]})  # fmt: skip
    invalidate_all()
    try:
        rule_handlers.SEEN.clear()
        verifier, challenge = pkce()
        code, _ = fpa.code(fpa.start(challenge))
        assert [seen["protocol"] for seen in rule_handlers.SEEN] == ["oauth2-first-party"]
        access = claims(fpa, fpa.redeem(code, verifier).json()["access_token"])
        assert access["https://example.test/plan"] == "gold"
        apply(fpa.mfa.settings, {"rules": [{"name": "deny", "handler": "tests.rule_handlers:deny"}]})
        invalidate_all()
        assert error_of(fpa.start(challenge))[:2] == (400, "access_denied")
    finally:
        apply(fpa.mfa.settings, {"rules": []})
        invalidate_all()


def test_rules_see_the_acr_values_of_a_step_up_on_an_existing_session(fpa: Fpa) -> None:
    from tests import rule_handlers

    fpa.mfa.enroll()
    fpa.mfa.set_policy("never")
    apply(fpa.mfa.settings, {"rules": [{"name": "record", "handler": "tests.rule_handlers:record"}]})
    invalidate_all()
    try:
        _, challenge = pkce()
        _, session = fpa.code(fpa.start(challenge))
        rule_handlers.SEEN.clear()
        step_up = {"response_type": "code", "code_challenge": pkce()[1], "code_challenge_method": "S256"}
        fpa.asked(fpa.post(auth_session=session, acr_values=MULTI_FACTOR, **step_up))
        assert [seen["acr_values"] for seen in rule_handlers.SEEN] == [(MULTI_FACTOR,)]
    finally:
        apply(fpa.mfa.settings, {"rules": []})
        invalidate_all()


# --- intermediate requests -------------------------------------------------------------------------------------


def test_without_a_mail_server_an_email_factor_is_not_offered(fpa: Fpa) -> None:
    from tests.api.email_support import add_email_factor

    enrolled = fpa.mfa.enroll()
    add_email_factor(fpa.mfa, enrolled.user_id)  # this module's app has no mail server
    _, challenge = pkce()
    asked = fpa.asked(fpa.start(challenge))
    assert asked["methods"] == ["otp", "recovery-code"]
    refused = fpa.post(auth_session=asked["auth_session"], challenge_type="email")
    assert error_of(refused)[:2] == (400, "unsupported_challenge_type")


def test_second_factor_errors(fpa: Fpa) -> None:
    enrolled = fpa.mfa.enroll()
    _, challenge = pkce()
    session = fpa.asked(fpa.start(challenge))["auth_session"]
    assert error_of(fpa.post(auth_session=session, otp="000000")) == (400, "invalid_grant", "Invalid otp_code.")
    both = fpa.post(auth_session=session, otp="000000", recovery_code="X" * 24)
    assert error_of(both)[:2] == (400, "invalid_request")
    assert fpa.asked(fpa.post(auth_session=session))["auth_session"] == session  # ask again: what is needed
    assert error_of(fpa.post(auth_session="not-a-session", otp="000000"))[:2] == (400, "invalid_session")
    assert error_of(fpa.post(OTHER_APP, auth_session=session, otp="000000"))[:2] == (400, "invalid_session")
    for _ in range(9):  # ten attempts in the bucket: one spent above
        fpa.post(auth_session=session, otp="000000")
    assert error_of(fpa.post(auth_session=session, otp="000000"))[:2] == (429, "too_many_attempts")
    refused = fpa.post(auth_session=session, otp=fpa.mfa.code(enrolled.secret))
    assert error_of(refused)[:2] == (429, "too_many_attempts")  # the bucket is the user's, whatever the dialect


def test_each_step_is_single_use(fpa: Fpa) -> None:
    enrolled = fpa.mfa.enroll()
    _, challenge = pkce()
    session = fpa.asked(fpa.start(challenge))["auth_session"]
    otp = fpa.mfa.code(enrolled.secret)
    fpa.code(fpa.post(auth_session=session, otp=otp))
    replay = fpa.post(auth_session=session, otp=otp)
    assert error_of(replay)[:2] == (400, "invalid_request")


def test_a_blocked_user_cannot_continue(fpa: Fpa) -> None:
    enrolled = fpa.mfa.enroll()
    _, challenge = pkce()
    session = fpa.asked(fpa.start(challenge))["auth_session"]
    fpa.mfa.db.sql(f"UPDATE users SET blocked = true WHERE user_id = '{enrolled.user_id}'")
    got = error_of(fpa.post(auth_session=session, otp=fpa.mfa.code(enrolled.secret)))
    assert got == (400, "access_denied", "user is blocked")


def test_ending_the_users_sessions_ends_the_auth_sessions(fpa: Fpa) -> None:
    """A new password, an MFA reset and ``users revoke-sessions`` end them (`end_user_sessions`)."""
    from identity.accounts.sessions import end_user_sessions
    from identity.store import users as user_queries
    from identity.store.models import utcnow
    from tests.conftest import run_db

    enrolled = fpa.mfa.enroll()
    _, session, _ = fpa.login_with_otp(enrolled.secret)

    async def end(db: Any, _: Any) -> None:
        found = await user_queries.by_user_id(db, enrolled.user_id)
        assert found is not None and found[0].id is not None
        await end_user_sessions(db, found[0].id, enrolled.user_id, "admin", utcnow())
        await db.commit()

    run_db(fpa.mfa.settings, end)
    _, challenge = pkce()
    again = fpa.post(auth_session=session, response_type="code", code_challenge=challenge, code_challenge_method="S256")
    assert error_of(again)[:2] == (400, "invalid_session")


def test_sessions_and_codes_are_not_mfa_tokens_and_are_stored_as_hashes(fpa: Fpa) -> None:
    enrolled = fpa.mfa.enroll()
    _, challenge = pkce()
    session = fpa.asked(fpa.start(challenge))["auth_session"]
    as_mfa_token = fpa.mfa.otp(session, fpa.mfa.code(enrolled.secret))
    assert error_of(as_mfa_token) == (403, "invalid_grant", "Malformed mfa_token")
    code, _ = fpa.code(fpa.post(auth_session=session, otp=fpa.mfa.code(enrolled.secret)))
    assert fpa.mfa.token(grant_type=MFA_OTP, mfa_token=code, otp="123456").json()["error"] == "invalid_grant"
    stored = "\n".join(value for values in dump_text(fpa.mfa.db).values() for value in values)
    assert session not in stored and code not in stored


# --- the token request -----------------------------------------------------------------------------------------


def test_code_errors_at_the_token_endpoint(fpa: Fpa) -> None:
    verifier, challenge = pkce()
    code, _ = fpa.code(fpa.start(challenge))
    assert error_of(fpa.redeem(code, None)) == (400, "invalid_request", "missing code_verifier parameter")
    assert error_of(fpa.redeem(code, pkce()[0])) == (403, "invalid_grant", "Failed to verify code verifier")
    assert error_of(fpa.redeem(code, "short")) == (403, "invalid_grant", "Failed to verify code verifier")
    assert error_of(fpa.redeem(code, verifier, client_id=OTHER_APP)) == (403, "invalid_grant", INVALID_CODE)
    assert error_of(fpa.redeem("no-such-code", verifier)) == (403, "invalid_grant", INVALID_CODE)
    # None of the refusals spent it: the app that holds the verifier still can.
    assert fpa.redeem(code, verifier).status_code == 200
    refused = fpa.redeem(code, verifier, client_id="realm-only-app")
    assert error_of(refused)[:2] == (403, "unauthorized_client")


def test_a_code_expires_after_a_minute(fpa: Fpa) -> None:
    verifier, challenge = pkce()
    code, _ = fpa.code(fpa.start(challenge))
    fpa.mfa.clock.advance(61)
    assert error_of(fpa.redeem(code, verifier)) == (403, "invalid_grant", INVALID_CODE)


def test_a_reused_code_fails_and_revokes_the_refresh_tokens_it_gave(fpa: Fpa) -> None:
    verifier, challenge = pkce()
    code, _ = fpa.code(fpa.start(challenge, scope="openid offline_access"))
    tokens = fpa.redeem(code, verifier).json()
    assert error_of(fpa.redeem(code, pkce()[0])) == (403, "invalid_grant", INVALID_CODE)
    refreshed = fpa.mfa.token(grant_type="refresh_token", refresh_token=tokens["refresh_token"])
    assert refreshed.status_code == 200  # a replay without the verifier proves nothing: no revocation
    assert error_of(fpa.redeem(code, verifier)) == (403, "invalid_grant", INVALID_CODE)
    family = fpa.mfa.token(grant_type="refresh_token", refresh_token=refreshed.json()["refresh_token"])
    assert error_of(family)[:2] == (403, "invalid_grant")


def test_a_redirect_uri_plays_no_part(fpa: Fpa) -> None:
    verifier, challenge = pkce()
    code, _ = fpa.code(fpa.start(challenge, redirect_uri="com.example.app:/callback"))
    assert fpa.redeem(code, verifier, redirect_uri="https://elsewhere.example/").status_code == 200


def test_both_dialects_issue_the_same_claims_shape(fpa: Fpa) -> None:
    verifier, challenge = pkce()
    code, _ = fpa.code(fpa.start(challenge, scope="openid profile email read:things"))
    first_party = fpa.redeem(code, verifier).json()
    password = fpa.mfa.login(scope="openid profile email read:things").json()
    fp_access, pw_access = claims(fpa, first_party["access_token"]), claims(fpa, password["access_token"])
    assert set(fp_access) - set(pw_access) == {"auth_time"} and set(pw_access) <= set(fp_access)
    for name in ("iss", "sub", "aud", "azp", "scope", "gty"):
        assert fp_access[name] == pw_access[name], name
    fp_id = jwt.decode(first_party["id_token"], options={"verify_signature": False})
    pw_id = jwt.decode(password["id_token"], options={"verify_signature": False})
    assert set(fp_id) - set(pw_id) == {"auth_time"}
    assert set(first_party) == set(password)


def test_each_step_is_audited_with_auth0_codes(fpa: Fpa) -> None:
    import time

    from identity.store import audit
    from tests.conftest import run_db

    def events(at_least: int) -> list[Any]:
        deadline = time.monotonic() + 20
        while True:
            found = run_db(fpa.mfa.settings, lambda session, _: audit.search(session, per_page=100, newest_first=False))
            if len(found) >= at_least or time.monotonic() > deadline:
                return list(found)
            time.sleep(0.05)

    enrolled = fpa.mfa.enroll()
    while not any(event.type == "gd_enrollment_complete" for event in events(1)):  # the enrollment's last event
        time.sleep(0.05)
    fpa.mfa.db.sql("DELETE FROM log_event")
    verifier, challenge = pkce()
    fpa.start(challenge, password="wrong")  # fp
    session = fpa.asked(fpa.start(challenge))["auth_session"]  # mfar
    fpa.post(auth_session=session, otp="000000")  # gd_auth_failed
    code, _ = fpa.code(fpa.post(auth_session=session, otp=fpa.mfa.code(enrolled.secret)))  # gd_auth_succeed, s
    fpa.redeem(code, verifier)  # seacft
    fpa.redeem(code, verifier)  # feacft
    expected = ["fp", "mfar", "gd_auth_failed", "gd_auth_succeed", "s", "seacft", "feacft"]
    stored = events(len(expected))
    assert [event.type for event in stored] == expected
    assert all(event.client_id == "public-app" for event in stored)
    assert [event.user_id for event in stored] == [enrolled.user_id] * len(expected)
    assert stored[1].details == {"protocol": "oauth2-first-party"}


def test_answers_match_the_openapi_document(fpa: Fpa) -> None:
    import jsonschema

    operation = fpa.client.get("/schema").json()["paths"]["/oauth/authorize-challenge"]["post"]

    def check(response: Any) -> None:
        schema = operation["responses"][str(response.status_code)]["content"]["application/json"]["schema"]
        jsonschema.validate(response.json(), schema)

    enrolled = fpa.mfa.enroll()
    _, challenge = pkce()
    check(fpa.post(response_type="code", code_challenge=challenge, code_challenge_method="S256"))  # 401 password
    asked = fpa.start(challenge)
    check(asked)  # 401 otp
    check(fpa.post(auth_session=asked.json()["auth_session"], otp="000000"))  # 400
    check(fpa.post(auth_session=asked.json()["auth_session"], recovery_code=enrolled.recovery_code))  # 200
    assert operation["requestBody"]["content"].keys() >= {"application/x-www-form-urlencoded", "application/json"}


def test_discovery_lists_the_endpoint_under_both_names(fpa: Fpa) -> None:
    document = fpa.client.get("/.well-known/openid-configuration").json()
    url = "https://identity.test/oauth/authorize-challenge"
    assert document["authorization_challenge_endpoint"] == document["native_authorization_endpoint"] == url
    assert AUTHORIZATION_CODE in document["grant_types_supported"]
    assert document["code_challenge_methods_supported"] == ["S256"]
