"""Emailed codes at the first-party apps endpoint (``email`` among the ``methods``), in process.

A real SMTP server (aiosmtpd on 127.0.0.1, `tests.smtp_support.SmtpSink`) receives every message: the code a test
types is the one read from the email, never one taken from the server's memory or database. The chains end at the
token endpoint (PKCE), and the tokens are verified against the JWKS.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from identity.settings import EncryptionKeys
from tests.api.email_support import ADDRESS, add_email_factor, enroll_email
from tests.api.fpa_support import MULTI_FACTOR, Fpa, open_fpa, pkce, reset_fpa
from tests.api.mfa_support import error_of
from tests.conftest import API
from tests.smtp_support import SmtpSink

MASKED = "a***@mail.example"
INVALID_CODE = (400, "invalid_grant", "Invalid email_code.")
NO_CODE = (400, "invalid_grant", "No email code is waiting on this auth_session: ask for one with challenge_type=email")
EXPIRED = (400, "invalid_grant", "The email code has expired: ask for a new one with challenge_type=email")
NOT_PENDING = "No authorization request is pending on this auth_session: send one with response_type=code"
BAD_GATEWAY = (400, "bad_gateway", "The code could not be sent. Please try again later.")
TOO_MANY_SENT = (429, "too_many_attempts", "Too many codes were sent. Please try again later.")


@pytest.fixture(scope="module")
def sink() -> Iterator[SmtpSink]:
    with SmtpSink() as server:
        yield server


@pytest.fixture(scope="module")
def module_fpa(database_url: str, encryption_keys: EncryptionKeys, sink: SmtpSink) -> Iterator[Fpa]:
    with open_fpa(database_url, encryption_keys, smtp=sink.settings(timeout=3)) as driver:
        yield driver


@pytest.fixture
def fpa(module_fpa: Fpa, sink: SmtpSink) -> Fpa:
    sink.fail_with(None)
    sink.clear()
    return reset_fpa(module_fpa)


def nothing_arrives(sink: SmtpSink) -> None:
    with pytest.raises(AssertionError):
        sink.wait_for(ADDRESS, timeout=0.3)


def email_only(fpa: Fpa, sink: SmtpSink) -> None:
    """Alice's one factor is her email (and the recovery code the enrollment gave her)."""
    enroll_email(fpa.mfa, sink)


def app_and_email(fpa: Fpa) -> str:
    """Alice has an authenticator app, then an email factor too; the app's secret."""
    enrolled = fpa.mfa.enroll()
    add_email_factor(fpa.mfa, enrolled.user_id)
    return enrolled.secret


def step_up(challenge: str) -> dict[str, str]:
    return {"response_type": "code", "code_challenge": challenge, "code_challenge_method": "S256"}


# --- the chains ------------------------------------------------------------------------------------------------


def test_password_then_the_emailed_code_then_tokens(fpa: Fpa, sink: SmtpSink) -> None:
    email_only(fpa, sink)
    verifier, challenge = pkce()
    asked = fpa.asked(fpa.start(challenge))  # the only factor: sent without being asked
    assert asked["methods"] == ["email", "recovery-code"]
    assert asked["email_code_required"] is True and asked["email_code_sent_to"] == MASKED
    (message,) = sink.wait_for(ADDRESS)
    assert message["To"] == ADDRESS
    code, session = fpa.code(fpa.post(None, auth_session=asked["auth_session"], email_code=sink.code_for(ADDRESS)))
    assert session == asked["auth_session"]
    tokens = fpa.redeem(code, verifier)
    assert tokens.status_code == 200, tokens.text
    access = fpa.mfa.claims(tokens.json()["access_token"], audience=API)  # verified with the JWKS
    assert access["amr"] == ["pwd", "mfa", "otp"] and access["acr"] == MULTI_FACTOR
    assert access["auth_time"] == int(fpa.mfa.clock.now()) and access["azp"] == "public-app"


def test_with_an_app_too_no_email_is_sent_until_asked(fpa: Fpa, sink: SmtpSink) -> None:
    app_and_email(fpa)
    verifier, challenge = pkce()
    asked = fpa.asked(fpa.start(challenge))
    assert asked["methods"] == ["otp", "email", "recovery-code"] and asked["otp_required"] is True
    assert "email_code_required" not in asked
    session = asked["auth_session"]
    again = fpa.asked(fpa.post(auth_session=session))  # asking what is needed sends nothing either
    assert "email_code_required" not in again
    nothing_arrives(sink)
    sent = fpa.asked(fpa.post(auth_session=session, challenge_type="email"))
    assert sent["auth_session"] == session and sent["email_code_required"] is True
    assert sent["email_code_sent_to"] == MASKED and sent["methods"] == asked["methods"]
    code, _ = fpa.code(fpa.post(json=True, auth_session=session, email_code=sink.code_for(ADDRESS)))
    assert fpa.mfa.claims(fpa.redeem(code, verifier).json()["access_token"], audience=API)["acr"] == MULTI_FACTOR


def test_no_email_is_sent_on_a_request_that_carries_a_factor(fpa: Fpa, sink: SmtpSink) -> None:
    secret = app_and_email(fpa)
    _, challenge = pkce()
    refused = fpa.start(challenge, challenge_type="email")  # no auth_session yet: the methods are not known
    assert error_of(refused)[:2] == (400, "invalid_request")
    session = fpa.asked(fpa.start(challenge))["auth_session"]
    mixed = fpa.post(auth_session=session, challenge_type="email", otp=fpa.mfa.code(secret))
    assert error_of(mixed) == (400, "invalid_request", "send challenge_type or a second factor, not both")
    fpa.code(fpa.post(auth_session=session, otp=fpa.mfa.code(secret)))
    nothing_arrives(sink)


def test_a_method_the_user_lacks_is_an_unsupported_challenge_type(fpa: Fpa, sink: SmtpSink) -> None:
    fpa.mfa.enroll()
    _, challenge = pkce()
    session = fpa.asked(fpa.start(challenge))["auth_session"]
    for lacking in ("email", "webauthn", "sms"):
        refused = fpa.post(auth_session=session, challenge_type=lacking)
        assert error_of(refused) == (
            400,
            "unsupported_challenge_type",
            "User does not have any authenticator of the requested challenge type",
        )
    nothing_arrives(sink)


# --- single use, expiry, attempts ------------------------------------------------------------------------------


def test_a_code_is_single_use_and_a_step_up_needs_a_new_one(fpa: Fpa, sink: SmtpSink) -> None:
    email_only(fpa, sink)
    _, challenge = pkce()
    session = fpa.asked(fpa.start(challenge))["auth_session"]
    code = sink.code_for(ADDRESS)
    fpa.code(fpa.post(auth_session=session, email_code=code))
    assert error_of(fpa.post(auth_session=session, email_code=code)) == (400, "invalid_request", NOT_PENDING)
    sink.clear()
    verifier, challenge = pkce()
    asked = fpa.asked(fpa.post(auth_session=session, acr_values=MULTI_FACTOR, **step_up(challenge)))
    assert asked["email_code_required"] is True  # the step-up made the factor due: a new code is sent
    assert error_of(fpa.post(auth_session=session, email_code=code)) == INVALID_CODE  # the used one is no good
    new_code, again = fpa.code(fpa.post(auth_session=session, email_code=sink.code_for(ADDRESS)))
    assert again == session and fpa.redeem(new_code, verifier).status_code == 200


def test_a_new_code_replaces_the_one_before_it(fpa: Fpa, sink: SmtpSink) -> None:
    email_only(fpa, sink)
    _, challenge = pkce()
    session = fpa.asked(fpa.start(challenge))["auth_session"]
    first = sink.code_for(ADDRESS)
    fpa.asked(fpa.post(auth_session=session, challenge_type="email"))
    assert len(sink.wait_for(ADDRESS, count=2)) == 2
    second = sink.code_for(ADDRESS)  # the latest
    if first != second:  # one chance in a million that they are equal
        assert error_of(fpa.post(auth_session=session, email_code=first)) == INVALID_CODE
    fpa.code(fpa.post(auth_session=session, email_code=second))


def test_a_code_expires_after_five_minutes(fpa: Fpa, sink: SmtpSink) -> None:
    email_only(fpa, sink)
    _, challenge = pkce()
    session = fpa.asked(fpa.start(challenge))["auth_session"]
    code = sink.code_for(ADDRESS)
    fpa.mfa.clock.advance(300)
    assert error_of(fpa.post(auth_session=session, email_code=code)) == EXPIRED
    sink.clear()
    fpa.asked(fpa.post(auth_session=session, challenge_type="email"))  # the session lives on: ask again
    fpa.mfa.clock.advance(299)
    fpa.code(fpa.post(auth_session=session, email_code=sink.code_for(ADDRESS)))


def test_a_wrong_code_costs_an_attempt_and_the_eleventh_try_is_429(fpa: Fpa, sink: SmtpSink) -> None:
    email_only(fpa, sink)
    _, challenge = pkce()
    session = fpa.asked(fpa.start(challenge))["auth_session"]
    code = sink.code_for(ADDRESS)
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    for _ in range(10):
        assert error_of(fpa.post(auth_session=session, email_code=wrong)) == INVALID_CODE
    limited = fpa.post(auth_session=session, email_code=code)  # even the right code waits now
    assert error_of(limited) == (429, "too_many_attempts", "Too many failed attempts. Please try again later.")


def test_a_code_sent_for_one_auth_session_is_refused_on_another(fpa: Fpa, sink: SmtpSink) -> None:
    app_and_email(fpa)
    _, first_challenge = pkce()
    first = fpa.asked(fpa.start(first_challenge))["auth_session"]
    _, second_challenge = pkce()
    second = fpa.asked(fpa.start(second_challenge))["auth_session"]
    fpa.asked(fpa.post(auth_session=first, challenge_type="email"))
    code = sink.code_for(ADDRESS)
    assert error_of(fpa.post(auth_session=second, email_code=code)) == NO_CODE
    sink.clear()
    fpa.asked(fpa.post(auth_session=second, challenge_type="email"))  # the second's own code is the one it takes
    if sink.code_for(ADDRESS) != code:  # one chance in a million that they are equal
        assert error_of(fpa.post(auth_session=second, email_code=code)) == INVALID_CODE
    fpa.code(fpa.post(auth_session=first, email_code=code))  # still good where it was sent


# --- limits and failures ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("failure", [554, 451])
def test_a_failing_mail_server_answers_bad_gateway_with_the_auth_session(
    fpa: Fpa, sink: SmtpSink, failure: int
) -> None:
    email_only(fpa, sink)
    sink.fail_with(failure)
    _, challenge = pkce()
    refused = fpa.start(challenge)
    assert error_of(refused) == BAD_GATEWAY
    assert refused.headers["cache-control"] == "no-store"
    assert ADDRESS not in refused.text and MASKED not in refused.text and "alice" not in refused.text
    session = refused.json()["auth_session"]  # the login went through: the app asks again later
    for _ in range(12):  # more than the bucket holds: a failed send gives its email back
        assert error_of(fpa.post(auth_session=session, challenge_type="email")) == BAD_GATEWAY
    sink.fail_with(None)
    fpa.asked(fpa.post(auth_session=session, challenge_type="email"))
    fpa.code(fpa.post(auth_session=session, email_code=sink.code_for(ADDRESS)))


def test_ten_emails_an_hour_then_too_many_with_the_auth_session(fpa: Fpa, sink: SmtpSink) -> None:
    email_only(fpa, sink)  # one email spent
    _, challenge = pkce()
    session = fpa.asked(fpa.start(challenge))["auth_session"]  # two
    for _ in range(8):
        fpa.asked(fpa.post(auth_session=session, challenge_type="email"))
    refused = fpa.post(auth_session=session, challenge_type="email")
    assert error_of(refused) == TOO_MANY_SENT
    assert refused.headers["retry-after"] == "3600" and refused.json()["auth_session"] == session
    assert len(sink.wait_for(ADDRESS, count=9)) == 9
    fpa.code(fpa.post(auth_session=session, email_code=sink.code_for(ADDRESS)))  # the last code still works


def test_a_login_refused_an_email_keeps_its_auth_session_for_the_recovery_code(fpa: Fpa, sink: SmtpSink) -> None:
    email_only(fpa, sink)
    fpa.mfa.db.sql("UPDATE mfa_send SET tokens = 0")  # the ten emails of the hour are spent
    _, challenge = pkce()
    refused = fpa.start(challenge)  # email is the only factor: the login would send one
    assert error_of(refused) == TOO_MANY_SENT
    session = refused.json()["auth_session"]
    # The session the answer names exists (on PostgreSQL the refusal once rolled its creation back).
    asked = fpa.asked(fpa.post(auth_session=session))
    assert asked["auth_session"] == session and "recovery-code" in asked["methods"]


def test_a_code_sent_before_a_step_up_does_not_answer_it(fpa: Fpa, sink: SmtpSink) -> None:
    secret = app_and_email(fpa)
    _, challenge = pkce()
    session = fpa.asked(fpa.start(challenge))["auth_session"]
    fpa.asked(fpa.post(auth_session=session, challenge_type="email"))
    early = sink.code_for(ADDRESS)
    fpa.code(fpa.post(auth_session=session, otp=fpa.mfa.code(secret)))  # the login answered with the app instead
    fpa.mfa.clock.advance(60)
    _, challenge = pkce()
    fpa.asked(fpa.post(auth_session=session, acr_values=MULTI_FACTOR, **step_up(challenge)))
    refused = fpa.post(auth_session=session, email_code=early)
    assert error_of(refused)[:2] == (400, "invalid_grant")


# --- step-up -----------------------------------------------------------------------------------------------------


def test_step_up_on_an_existing_session_with_an_emailed_code(fpa: Fpa, sink: SmtpSink) -> None:
    email_only(fpa, sink)
    fpa.mfa.set_policy("never")  # the login itself needs no second factor: the API asks for more later
    verifier, challenge = pkce()
    code, session = fpa.code(fpa.start(challenge))
    assert "acr" not in fpa.mfa.claims(fpa.redeem(code, verifier).json()["access_token"], audience=API)
    nothing_arrives(sink)
    fpa.mfa.clock.advance(3600)
    verifier, challenge = pkce()
    stepping = step_up(challenge)
    asked = fpa.asked(fpa.post(auth_session=session, acr_values=MULTI_FACTOR, scope="read:things", **stepping))
    assert asked["auth_session"] == session and asked["email_code_required"] is True
    code, again = fpa.code(fpa.post(auth_session=session, email_code=sink.code_for(ADDRESS)))
    assert again == session
    stepped = fpa.mfa.claims(fpa.redeem(code, verifier).json()["access_token"], audience=API)
    assert stepped["acr"] == MULTI_FACTOR and stepped["amr"] == ["pwd", "mfa", "otp"]
    assert stepped["auth_time"] == int(fpa.mfa.clock.now()) and stepped["scope"] == "read:things"


# --- what is logged and documented -----------------------------------------------------------------------------


def test_sends_are_audited_as_at_the_mfa_api(fpa: Fpa, sink: SmtpSink) -> None:
    from identity.store import audit
    from tests.conftest import run_db

    def events(at_least: int) -> list[Any]:
        deadline = time.monotonic() + 20
        while True:
            found = run_db(fpa.mfa.settings, lambda session, _: audit.search(session, per_page=100, newest_first=False))
            if len(found) >= at_least or time.monotonic() > deadline:
                return list(found)
            time.sleep(0.05)

    email_only(fpa, sink)
    while not any(event.type == "gd_enrollment_complete" for event in events(1)):  # the enrollment's last event
        time.sleep(0.05)
    fpa.mfa.db.sql("DELETE FROM log_event")
    _, challenge = pkce()
    session = fpa.asked(fpa.start(challenge))["auth_session"]  # gd_send_email, mfar
    wrong = f"{(int(sink.code_for(ADDRESS)) + 1) % 1_000_000:06d}"
    fpa.post(auth_session=session, email_code=wrong)  # gd_auth_failed
    sink.fail_with(554)
    fpa.post(auth_session=session, challenge_type="email")  # gd_send_email_failure
    sink.fail_with(None)
    sink.clear()
    fpa.asked(fpa.post(auth_session=session, challenge_type="email"))  # gd_send_email, mfar
    fpa.code(fpa.post(auth_session=session, email_code=sink.code_for(ADDRESS)))  # gd_auth_succeed, s
    expected = [
        "gd_send_email", "mfar", "gd_auth_failed", "gd_send_email_failure", "gd_send_email", "mfar",
        "gd_auth_succeed", "s",
    ]  # fmt: skip
    stored = events(len(expected))
    assert [event.type for event in stored] == expected
    assert all(event.client_id == "public-app" and event.user_id for event in stored)
    assert all(ADDRESS not in str(event.details) for event in stored)


def test_the_answers_match_the_openapi_document(fpa: Fpa, sink: SmtpSink) -> None:
    import jsonschema

    operation = fpa.client.get("/schema").json()["paths"]["/oauth/authorize-challenge"]["post"]

    def check(response: Any) -> None:
        schema = operation["responses"][str(response.status_code)]["content"]["application/json"]["schema"]
        jsonschema.validate(response.json(), schema)

    email_only(fpa, sink)
    _, challenge = pkce()
    asked = fpa.start(challenge)
    check(asked)  # 401 with email_code_required
    session = asked.json()["auth_session"]
    check(fpa.post(auth_session=session, email_code="x"))  # 400
    sink.fail_with(554)
    check(fpa.post(auth_session=session, challenge_type="email"))  # 400 bad_gateway
    sink.fail_with(None)
    check(fpa.post(auth_session=session, email_code=sink.code_for(ADDRESS)))  # 200
    request = operation["requestBody"]["content"]["application/x-www-form-urlencoded"]["schema"]["properties"]
    assert {"email_code", "challenge_type"} <= request.keys()


# --- a hung mail server (last: it builds an app of its own on the module's database) ---------------------------


def test_no_write_transaction_waits_for_a_hung_mail_server(database_url: str, encryption_keys: EncryptionKeys) -> None:
    """The code is stored and committed before the mail server is called, and the login gave its place in the
    password hash queue back: other requests write, and hash, meanwhile."""
    from concurrent.futures import ThreadPoolExecutor

    from identity.settings import SmtpSettings
    from tests.smtp_support import connection_pending, silent_listener

    with silent_listener() as listener:
        port = listener.getsockname()[1]
        hung = SmtpSettings.parse(f"smtp://127.0.0.1:{port}?timeout=5", "identity@example.test")
        with open_fpa(database_url, encryption_keys, smtp=hung) as driver, ThreadPoolExecutor(1) as pool:
            tokens = driver.mfa.login()  # no factor yet: tokens, and Alice's user id
            user_id = driver.mfa.claims(tokens.json()["access_token"], audience=API)["sub"]
            add_email_factor(driver.mfa, user_id)  # her only factor
            _, challenge = pkce()
            started = time.monotonic()
            login = pool.submit(driver.start, challenge)  # its email hangs until the timeout
            # Once its send has connected (the password hash is behind it, however slow the machine), the login
            # holds no place in the hash queue, and another login hashes and writes while the send hangs.
            assert connection_pending(listener, timeout=10)
            assert driver.client.app.state.services.hasher.admitted == 0
            other = driver.mfa.login()  # the password grant writes an mfa_token meanwhile
            assert error_of(other)[:2] == (403, "mfa_required")
            assert not login.done()  # the first send still hangs: the second login did not wait for it
            refused = login.result(timeout=30)
            assert error_of(refused) == BAD_GATEWAY and time.monotonic() - started >= 5
            assert "auth_session" in refused.json()
