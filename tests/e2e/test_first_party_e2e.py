"""draft-ietf-oauth-first-party-apps-03 over real HTTP against ``identity serve`` (SQLite or PostgreSQL).

An app drives the Authorization Challenge Endpoint the way the draft's examples do: password → OTP (Debian's
oathtool) → authorization code → tokens, password → security key (soft-webauthn) → code → tokens, and a later
step-up on the same ``auth_session``; every refusal of the draft and of identity's catalogue; races on one step and
on one code; and tokens of both dialects (Auth0's password grant and this one) checked alike with PyJWT's
``PyJWKClient``. Nothing on the server side is mocked.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import jwt
import pytest

from tests.e2e.conftest import verify_access_token
from tests.e2e.first_party_support import (
    API,
    CONNECTION,
    LEGACY,
    MULTI_FACTOR,
    OTHER,
    PASSWORD_REALM,
    PEOPLE,
    POST,
    PUBLIC,
    App,
    email,
    error_of,
    first_party_server,
    pkce,
)
from tests.e2e.mfa_support import Phone, oathtool_path
from tests.e2e.webauthn_support import SoftKey, concurrently

INVALID_CODE = (403, "invalid_grant", "Invalid authorization code")
WRONG = "Wrong email or password."
RACERS = 24


@pytest.fixture(scope="module")
def app(e2e_env: dict[str, str], database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    oathtool_path()
    with first_party_server(e2e_env, database_url, tmp_path_factory.mktemp("first-party")) as started:
        yield started


@pytest.fixture(scope="module")
def ana_phone(app: App) -> Phone:
    return app.enroll_otp("ana")


@pytest.fixture(scope="module")
def kai_key(app: App) -> SoftKey:
    return app.enroll_key("kai")


def claims(app: App, token: str) -> dict[str, Any]:
    return verify_access_token(app.server, token, audience=API)


def code_of(response: httpx.Response) -> tuple[str, str]:
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    return body["authorization_code"], body["auth_session"]


def asked(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 401, response.text
    body: dict[str, Any] = response.json()
    assert body["error"] == "insufficient_authorization", body
    return body


def test_discovery_names_the_endpoint_twice(app: App) -> None:
    document = httpx.get(app.server.base_url + "/.well-known/oauth-authorization-server", timeout=30).json()
    assert document["authorization_challenge_endpoint"] == app.server.issuer + "oauth/authorize-challenge"
    assert document["native_authorization_endpoint"] == document["authorization_challenge_endpoint"]
    assert "authorization_code" in document["grant_types_supported"]


def test_password_then_otp_then_code_then_tokens(app: App, ana_phone: Phone) -> None:
    verifier, challenge = pkce()
    first = asked(app.start("ana", challenge, scope="openid offline_access read:things"))
    assert first["methods"] == ["otp", "recovery-code"] and first["otp_required"] is True
    # The draft's example: the auth_session and the OTP, form-encoded, nothing else.
    code, session = code_of(httpx.post(app.challenge_url, data={"auth_session": first["auth_session"],
                                                                 "otp": ana_phone.code()}, timeout=30))  # fmt: skip
    assert session == first["auth_session"]
    tokens = app.redeem(code, verifier)
    assert tokens.status_code == 200, tokens.text
    body = tokens.json()
    access = claims(app, body["access_token"])
    assert access["sub"] == app.user_ids["ana"] and access["azp"] == PUBLIC
    assert access["amr"] == ["pwd", "mfa", "otp"] and access["acr"] == MULTI_FACTOR
    assert access["scope"] == "openid read:things offline_access"
    refreshed = app.token(grant_type="refresh_token", refresh_token=body["refresh_token"])
    assert refreshed.status_code == 200, refreshed.text


def test_password_then_security_key_then_code_then_tokens(app: App, kai_key: SoftKey) -> None:
    verifier, challenge = pkce()
    first = asked(app.start("kai", challenge))
    assert first["methods"] == ["webauthn", "recovery-code"] and "otp_required" not in first
    options = first["webauthn"]["publicKey"]
    assert [c["id"] for c in options["allowCredentials"]] == [kai_key.credential_id]
    assertion = kai_key.get(options, app.origin)
    # Auth0's authn_response object, in a JSON intermediate request (the draft allows JSON there).
    response = app.challenge_json({"client_id": PUBLIC, "auth_session": first["auth_session"],
                                   "authn_response": assertion})  # fmt: skip
    code, _ = code_of(response)
    access = claims(app, app.redeem(code, verifier).json()["access_token"])
    assert access["amr"] == ["pwd", "mfa", "swk"] and access["acr"] == MULTI_FACTOR
    # The same key answers again with Okta's form fields; a replayed assertion does not.
    verifier, challenge = pkce()
    second = asked(app.start("kai", challenge))
    form = kai_key.get(second["webauthn"]["publicKey"], app.origin)["response"]
    code, _ = code_of(app.challenge(auth_session=second["auth_session"], **form))
    assert app.redeem(code, verifier).status_code == 200
    third = asked(app.start("kai", challenge))
    replayed = app.challenge(auth_session=third["auth_session"], **form)
    assert error_of(replayed) == (400, "invalid_grant", "Invalid WebAuthn response.")


def test_a_later_step_up_on_the_same_auth_session(app: App, ana_phone: Phone) -> None:
    verifier, challenge = pkce()
    session = asked(app.start("ana", challenge))["auth_session"]
    code, _ = code_of(app.challenge(auth_session=session, otp=ana_phone.code()))
    before = claims(app, app.redeem(code, verifier).json()["access_token"])
    # Later the API wants a recent second factor (RFC 9470): a new authorization on the same session.
    verifier, challenge = pkce()
    step_up = asked(app.challenge(auth_session=session, response_type="code", code_challenge=challenge,
                                  code_challenge_method="S256", acr_values=MULTI_FACTOR, audience=API,
                                  scope="write:things"))  # fmt: skip
    assert step_up["auth_session"] == session and step_up["otp_required"] is True
    assert "password_required" not in step_up
    code, again = code_of(app.challenge(auth_session=session, otp=ana_phone.code()))
    assert again == session
    after = claims(app, app.redeem(code, verifier).json()["access_token"])
    assert after["acr"] == MULTI_FACTOR and after["scope"] == "write:things"
    assert after["auth_time"] >= before["auth_time"] and after["sub"] == before["sub"]


def test_tokens_of_both_dialects_verify_alike_through_the_jwks(app: App) -> None:
    verifier, challenge = pkce()
    code, _ = code_of(app.start("lou", challenge, scope="openid profile email read:things"))
    first_party = app.redeem(code, verifier).json()
    password = app.token(grant_type=PASSWORD_REALM, realm=CONNECTION, username=email("lou"), password=PEOPLE["lou"],
                         audience=API, scope="openid profile email read:things").json()  # fmt: skip
    client = jwt.PyJWKClient(app.server.jwks_url)
    decoded = []
    for body in (first_party, password):
        key = client.get_signing_key_from_jwt(body["access_token"])
        access = jwt.decode(body["access_token"], key.key, algorithms=["RS256"], audience=API, issuer=app.server.issuer)
        id_key = client.get_signing_key_from_jwt(body["id_token"])
        identity = jwt.decode(body["id_token"], id_key.key, algorithms=["RS256"], audience=PUBLIC)
        decoded.append((access, identity))
    (fp_access, fp_id), (pw_access, pw_id) = decoded
    assert set(fp_access) == set(pw_access) | {"auth_time"} and set(fp_id) == set(pw_id) | {"auth_time"}
    for name in ("iss", "sub", "aud", "azp", "scope", "gty"):
        assert fp_access[name] == pw_access[name], name
    assert set(first_party) == set(password)


def test_refusals_of_the_challenge_endpoint(app: App, ana_phone: Phone) -> None:
    _, challenge = pkce()
    start = {"response_type": "code", "code_challenge": challenge, "code_challenge_method": "S256",
             "realm": CONNECTION, "username": email("lou"), "password": PEOPLE["lou"], "audience": API}  # fmt: skip
    without = {k: v for k, v in start.items() if k != "response_type"}
    assert error_of(app.challenge(**without)) == (400, "invalid_request", "missing response_type parameter")
    assert error_of(app.challenge(**{**start, "code_challenge_method": "plain"}))[:2] == (400, "invalid_request")
    assert error_of(app.challenge(**{**start, "password": "wrong"})) == (400, "invalid_grant", WRONG)
    assert error_of(app.challenge(**{**start, "username": email("nobody")})) == (400, "invalid_grant", WRONG)
    blocked = app.challenge(**{**start, "username": email("max"), "password": PEOPLE["max"]})
    assert error_of(blocked) == (400, "access_denied", "user is blocked")
    assert error_of(app.challenge(LEGACY, **start))[:2] == (400, "unauthorized_client")
    assert error_of(app.challenge(POST, **start, client_secret="wrong-secret-0123456789abcdefghijk"))[:2] == (
        401,
        "invalid_client",
    )
    asked_password = asked(app.challenge(**{k: v for k, v in start.items() if k != "password"}))
    assert asked_password["password_required"] is True and "auth_session" not in asked_password
    # Sessions: unknown, another client's, expired.
    session = asked(app.start("ana", challenge))["auth_session"]
    assert error_of(app.challenge(auth_session="x" * 43, otp="123456"))[:2] == (400, "invalid_session")
    assert error_of(app.challenge(OTHER, auth_session=session, otp="123456"))[:2] == (400, "invalid_session")
    app.age(session, 1)
    assert error_of(app.challenge(auth_session=session, otp=ana_phone.code()))[:2] == (400, "invalid_session")
    # A wrong code keeps the step; the right one then passes.
    session = asked(app.start("ana", challenge))["auth_session"]
    wrong = app.challenge(auth_session=session, otp=ana_phone.wrong_code())
    assert error_of(wrong) == (400, "invalid_grant", "Invalid otp_code.")
    code_of(app.challenge(auth_session=session, otp=ana_phone.code()))


def test_refusals_of_the_code(app: App) -> None:
    verifier, challenge = pkce()
    code, _ = code_of(app.start("lou", challenge, scope="offline_access read:things"))
    assert error_of(app.redeem(code, pkce()[0])) == (403, "invalid_grant", "Failed to verify code verifier")
    assert error_of(app.redeem(code, verifier, OTHER)) == INVALID_CODE
    tokens = app.redeem(code, verifier)
    assert tokens.status_code == 200, tokens.text
    # Used again with its verifier: refused, and the refresh tokens it gave are revoked (RFC 6749 §4.1.2).
    assert error_of(app.redeem(code, verifier)) == INVALID_CODE
    revoked = app.token(grant_type="refresh_token", refresh_token=tokens.json()["refresh_token"])
    assert error_of(revoked)[:2] == (403, "invalid_grant")
    # Expired.
    verifier, challenge = pkce()
    code, _ = code_of(app.start("lou", challenge))
    app.age(code, 1)
    assert error_of(app.redeem(code, verifier)) == INVALID_CODE


def test_brute_force_protection_answers_429(app: App) -> None:
    _, challenge = pkce()
    for _ in range(10):
        assert error_of(app.start("zoe", challenge, password="not zoe's password"))[:2] == (400, "invalid_grant")
    assert error_of(app.start("zoe", challenge))[:2] == (429, "too_many_attempts")


def test_concurrent_redemptions_of_one_code_issue_once(app: App) -> None:
    verifier, challenge = pkce()
    code, _ = code_of(app.start("lou", challenge))
    body = app.form(PUBLIC, grant_type="authorization_code", code=code, code_verifier=verifier)
    answers = concurrently(app.server.token_url, [body] * RACERS)
    outcomes = Counter(error_of(a) if a.status_code != 200 else (200, None, None) for a in answers)
    print(f"{RACERS} redemptions of one code: {dict(outcomes)}")
    assert outcomes == Counter({(200, None, None): 1, INVALID_CODE: RACERS - 1}), outcomes


def test_concurrent_submissions_of_one_step_yield_one_code(app: App) -> None:
    phone = app.enroll_otp("rae")
    _, challenge = pkce()
    session = asked(app.start("rae", challenge))["auth_session"]
    body = app.form(PUBLIC, auth_session=session, otp=phone.code(valid_for=20))
    answers = concurrently(app.challenge_url, [body] * RACERS)
    assert all(answer.status_code < 500 for answer in answers), [a.text for a in answers]
    print(f"{RACERS} submissions of one step: {dict(Counter(a.status_code for a in answers))}")
    winners = [answer for answer in answers if answer.status_code == 200]
    assert len(winners) == 1, Counter(error_of(a) for a in answers if a.status_code != 200)
    losers = {error_of(answer)[:2] for answer in answers if answer.status_code != 200}
    assert losers <= {(400, "invalid_grant"), (400, "invalid_request"), (429, "too_many_attempts")}, losers
