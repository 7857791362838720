"""Codes sent by email (issue 15): enrollment, challenge, the mfa-oob grant, limits and failures.

A real SMTP server (aiosmtpd on 127.0.0.1, `tests.smtp_support.SmtpSink`) receives every message: the code the
tests type is the one read from the email's text part, never one taken from the server's memory or database.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import text

from identity.settings import EncryptionKeys
from tests.api.email_support import ADDRESS, add_email_factor, associate_email, enroll_email
from tests.api.mfa_support import (
    ALICE_EMAIL,
    MFA_AUDIENCE,
    MFA_OOB,
    Mfa,
    dump_text,
    error_of,
    open_mfa,
    reset,
)
from tests.conftest import API
from tests.smtp_support import SmtpSink

INVALID_BINDING = (403, "invalid_grant", "Invalid binding_code.")
OTHER_MFA_TOKEN = (400, "invalid_request", "The oob_code doesn't match the mfa_token")
EXPIRED_CODE = (403, "expired_token", "oob_code is expired")
MALFORMED = (403, "invalid_grant", "Malformed mfa_token")
TOO_MANY = (429, "too_many_attempts", "Too many failed attempts. Please try again later.")
BAD_GATEWAY = (400, "bad_gateway", "The code could not be sent. Please try again later.")


@pytest.fixture(scope="module")
def sink() -> Iterator[SmtpSink]:
    with SmtpSink() as server:
        yield server


@pytest.fixture(scope="module")
def module_mfa(database_url: str, encryption_keys: EncryptionKeys, sink: SmtpSink) -> Iterator[Mfa]:
    with open_mfa(database_url, encryption_keys, smtp=sink.settings(timeout=3)) as driver:
        yield driver


@pytest.fixture
def mfa(module_mfa: Mfa, sink: SmtpSink) -> Mfa:
    sink.fail_with(None)
    sink.clear()
    reset(module_mfa)
    module_mfa.db.sql("DELETE FROM mfa_send", "DELETE FROM oob_code")
    return module_mfa


def oob(mfa: Mfa, mfa_token: str, oob_code: str, binding_code: str | None, **params: Any) -> Any:
    return mfa.token(grant_type=MFA_OOB, mfa_token=mfa_token, oob_code=oob_code, binding_code=binding_code, **params)


def challenge_email(mfa: Mfa, mfa_token: str, **params: Any) -> str:
    answer = mfa.challenge(mfa_token, **params)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["challenge_type"] == "oob" and body["binding_method"] == "prompt", body
    return str(body["oob_code"])


# --- Enrollment --------------------------------------------------------------------------------------------------


def test_enrolling_an_address_sends_a_code_that_confirms_it_and_finishes_the_login(mfa, sink):
    mfa_token = mfa.mfa_token(audience=MFA_AUDIENCE)
    answer = associate_email(mfa, mfa_token)
    assert answer.status_code == 200, answer.text
    assert answer.headers["cache-control"] == "no-store"
    body = answer.json()
    assert body["authenticator_type"] == "oob" and body["oob_channel"] == "email"
    assert body["binding_method"] == "prompt" and len(body["oob_code"]) >= 43
    assert len(body["recovery_codes"]) == 1
    (message,) = sink.wait_for(ADDRESS)
    assert "Test" in message["Subject"] and message["To"] == ADDRESS
    assert message.get_body(("html",)) is not None
    (pending,) = [a for a in mfa.authenticators(mfa_token).json() if a["authenticator_type"] == "oob"]
    assert pending["active"] is False and pending["oob_channel"] == "email"
    assert pending["name"] == "a***@mail.example"

    confirmed = oob(mfa, mfa_token, body["oob_code"], sink.code_for(ADDRESS))
    assert confirmed.status_code == 200, confirmed.text
    claims = mfa.claims(confirmed.json()["access_token"], audience=MFA_AUDIENCE)
    assert claims["amr"] == ["pwd", "mfa", "otp"]
    assert claims["acr"] == "http://schemas.openid.net/pape/policies/2007/06/multi-factor"
    bearer = confirmed.json()["access_token"]
    (active,) = [a for a in mfa.authenticators(bearer).json() if a["authenticator_type"] == "oob"]
    assert active["active"] is True and active["id"] == pending["id"]


def test_the_address_defaults_to_the_users_own_and_must_be_one_address(mfa, sink):
    mfa_token = mfa.mfa_token(audience=MFA_AUDIENCE)
    assert associate_email(mfa, mfa_token, address=None).status_code == 200
    sink.wait_for(ALICE_EMAIL)
    lone_surrogate = b'{"authenticator_types":["oob"],"oob_channels":["email"],"email":"\\ud800@example.com"}'
    refused = mfa.client.post(
        "/mfa/associate",
        content=lone_surrogate,
        headers={"Authorization": f"Bearer {mfa.mfa_token(audience=MFA_AUDIENCE)}", "Content-Type": "application/json"},
    )
    assert error_of(refused) == (400, "invalid_request", "email must be one email address")
    for bad in ("not an address", "a@b", "x@y.test, z@w.test", "<a@b.test>", "a" * 250 + "@b.test",
                "a\x01b@example.com", "\u00e9@example.com"):  # fmt: skip
        refused = associate_email(mfa, mfa.mfa_token(audience=MFA_AUDIENCE), bad)
        assert error_of(refused) == (400, "invalid_request", "email must be one email address"), bad
    for channels in (["sms"], ["email", "sms"], [], None):
        body = {"authenticator_types": ["oob"], "oob_channels": channels, "email": ADDRESS}
        refused = mfa.client.post("/mfa/associate", json=body, headers={"Authorization": f"Bearer {mfa_token}"})
        assert refused.status_code == 400 and refused.json()["error"] == "invalid_request", channels


def test_an_enrolled_user_cannot_add_an_address_with_an_mfa_token(mfa, sink):
    enroll_email(mfa, sink)
    mfa_token = mfa.mfa_token(audience=MFA_AUDIENCE)
    refused = associate_email(mfa, mfa_token, "attacker@evil.example")
    assert error_of(refused) == (403, "access_denied", "User is already enrolled")
    with pytest.raises(AssertionError):
        sink.wait_for("attacker@evil.example", timeout=0.5)


def test_the_form_encoded_enrollment_works_too(mfa, sink):
    mfa_token = mfa.mfa_token(audience=MFA_AUDIENCE)
    answer = mfa.client.post(
        "/mfa/associate",
        data={"authenticator_types": "oob", "oob_channels": "email", "email": ADDRESS},
        headers={"Authorization": f"Bearer {mfa_token}"},
    )
    assert answer.status_code == 200, answer.text
    assert oob(mfa, mfa_token, answer.json()["oob_code"], sink.code_for(ADDRESS)).status_code == 200


# --- Challenge and the mfa-oob grant ---------------------------------------------------------------------------


def test_a_code_arrives_by_email_and_is_used_once(mfa, sink):
    enroll_email(mfa, sink)
    mfa_token = mfa.mfa_token()
    oob_code = challenge_email(mfa, mfa_token)  # the only factor: chosen without being asked
    code = sink.code_for(ADDRESS)
    tokens = oob(mfa, mfa_token, oob_code, code)
    assert tokens.status_code == 200, tokens.text
    assert tokens.headers["cache-control"] == "no-store"
    claims = mfa.claims(tokens.json()["access_token"], audience=API)
    assert claims["amr"] == ["pwd", "mfa", "otp"] and claims["auth_time"] == int(mfa.clock.now())
    assert error_of(oob(mfa, mfa_token, oob_code, code)) == MALFORMED  # the mfa_token is spent with it
    # A new login: the old code and oob_code are worth nothing there.
    second = mfa.mfa_token()
    assert error_of(oob(mfa, second, oob_code, code)) == (403, "invalid_grant", "Invalid oob_code.")


def test_a_code_is_refused_for_another_mfa_token(mfa, sink):
    enroll_email(mfa, sink)
    first, second = mfa.mfa_token(), mfa.mfa_token()
    oob_code = challenge_email(mfa, first)
    code = sink.code_for(ADDRESS)
    assert error_of(oob(mfa, second, oob_code, code)) == OTHER_MFA_TOKEN
    assert oob(mfa, first, oob_code, code).status_code == 200  # ... and still good for its own


def test_a_code_expires_after_five_minutes(mfa, sink):
    enroll_email(mfa, sink)
    mfa_token = mfa.mfa_token()
    oob_code = challenge_email(mfa, mfa_token)
    code = sink.code_for(ADDRESS)
    mfa.clock.advance(300)
    assert error_of(oob(mfa, mfa_token, oob_code, code)) == EXPIRED_CODE


def test_a_code_just_inside_its_five_minutes_still_works(mfa, sink):
    enroll_email(mfa, sink)
    mfa_token = mfa.mfa_token()
    oob_code = challenge_email(mfa, mfa_token)
    mfa.clock.advance(299)
    assert oob(mfa, mfa_token, oob_code, sink.code_for(ADDRESS)).status_code == 200


def test_a_new_code_replaces_the_one_before_it(mfa, sink):
    enroll_email(mfa, sink)
    mfa_token = mfa.mfa_token()
    first = challenge_email(mfa, mfa_token)
    first_code = sink.code_for(ADDRESS)
    second = challenge_email(mfa, mfa_token)
    sink.wait_for(ADDRESS, count=2)
    second_code = sink.code_for(ADDRESS)
    assert error_of(oob(mfa, mfa_token, first, first_code)) == (403, "invalid_grant", "Invalid oob_code.")
    assert oob(mfa, mfa_token, second, second_code).status_code == 200


def test_the_binding_code_is_required_and_a_wrong_one_costs_an_attempt(mfa, sink):
    enroll_email(mfa, sink)
    mfa_token = mfa.mfa_token()
    oob_code = challenge_email(mfa, mfa_token)
    code = sink.code_for(ADDRESS)
    assert error_of(oob(mfa, mfa_token, oob_code, None)) == (400, "invalid_request", "binding_code is required")
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    for _ in range(10):
        assert error_of(oob(mfa, mfa_token, oob_code, wrong)) == INVALID_BINDING
    # The bucket (shared with OTP and recovery codes) is empty: even the right code waits now.
    assert error_of(oob(mfa, mfa_token, oob_code, code)) == TOO_MANY
    mfa.clock.advance(360)  # one attempt back; the code has expired by then
    assert error_of(oob(mfa, mfa_token, oob_code, code)) == EXPIRED_CODE


def test_an_unknown_oob_code_is_refused_without_costing_an_attempt(mfa, sink):
    enroll_email(mfa, sink)
    mfa_token = mfa.mfa_token()
    oob_code = challenge_email(mfa, mfa_token)
    for _ in range(12):
        assert error_of(oob(mfa, mfa_token, "x" * 43, "123456")) == (403, "invalid_grant", "Invalid oob_code.")
    assert oob(mfa, mfa_token, oob_code, sink.code_for(ADDRESS)).status_code == 200


def test_the_grant_needs_the_mfa_token_of_the_same_client(mfa, sink):
    enroll_email(mfa, sink)
    mfa_token = mfa.mfa_token()
    oob_code = challenge_email(mfa, mfa_token)
    refused = mfa.token("confidential-app", grant_type=MFA_OOB, mfa_token=mfa_token, oob_code=oob_code,
                        binding_code=sink.code_for(ADDRESS))  # fmt: skip
    assert error_of(refused) == (400, "invalid_request", "mfa_token not issued to this client")


# --- Which challenge ---------------------------------------------------------------------------------------------


def test_with_an_app_and_an_address_the_app_is_chosen_unless_the_email_is_asked_for(mfa, sink):
    enrolled = mfa.enroll()  # an authenticator app first
    add_email_factor(mfa, enrolled.user_id, ADDRESS)
    sink.clear()
    mfa_token = mfa.mfa_token()
    assert mfa.challenge(mfa_token).json() == {"challenge_type": "otp"}
    assert mfa.challenge(mfa_token, challenge_type="otp oob").json() == {"challenge_type": "otp"}
    with pytest.raises(AssertionError):
        sink.wait_for(ADDRESS, timeout=0.3)
    oob_code = challenge_email(mfa, mfa_token, challenge_type="oob")
    assert oob(mfa, mfa_token, oob_code, sink.code_for(ADDRESS)).status_code == 200


# --- Limits and failures -----------------------------------------------------------------------------------------


def test_ten_emails_an_hour_then_too_many(mfa, sink):
    enroll_email(mfa, sink)  # one email already
    mfa_token = mfa.mfa_token()
    for _ in range(9):
        challenge_email(mfa, mfa_token)
    refused = mfa.challenge(mfa_token)
    assert error_of(refused) == (429, "too_many_attempts", "Too many codes were sent. Please try again later.")
    assert refused.headers["retry-after"] == "3600"
    assert len(sink.wait_for(ADDRESS, count=9)) == 9
    mfa.clock.advance(3600)  # one more an hour later (on a new login: the mfa_token lives ten minutes)
    mfa_token = mfa.mfa_token()
    challenge_email(mfa, mfa_token)
    assert error_of(mfa.challenge(mfa_token))[0] == 429


@pytest.mark.parametrize("failure", [554, 451])
def test_a_failing_mail_server_answers_bad_gateway_and_spends_nothing(mfa, sink, failure):
    enroll_email(mfa, sink)
    mfa_token = mfa.mfa_token()
    stored = codes_stored(mfa)
    sink.fail_with(failure)
    for _ in range(12):  # more than the bucket holds: a failed send gives its email back
        refused = mfa.challenge(mfa_token)
        assert error_of(refused) == BAD_GATEWAY
        assert ADDRESS not in refused.text and "alice" not in refused.text
    assert codes_stored(mfa) == stored  # no code exists that nobody received
    sink.fail_with(None)
    oob_code = challenge_email(mfa, mfa_token)
    assert oob(mfa, mfa_token, oob_code, sink.code_for(ADDRESS)).status_code == 200


def test_a_mail_server_that_is_down_answers_bad_gateway_at_enrollment(database_url, encryption_keys):
    from identity.settings import SmtpSettings
    from tests.smtp_support import unused_port

    down = SmtpSettings.parse(f"smtp://127.0.0.1:{unused_port()}?timeout=2", "identity@example.test")
    with open_mfa(database_url, encryption_keys, smtp=down) as driver:
        mfa_token = driver.mfa_token(audience=MFA_AUDIENCE)
        refused = associate_email(driver, mfa_token)
        assert error_of(refused) == BAD_GATEWAY
        assert ADDRESS not in refused.text
        # Nothing was spent: the code is gone, and the email went back to the bucket.
        assert codes_stored(driver) == 0


def test_without_a_mail_server_there_is_no_email_factor(database_url, encryption_keys):
    with open_mfa(database_url, encryption_keys) as driver:
        mfa_token = driver.mfa_token(audience=MFA_AUDIENCE)
        refused = associate_email(driver, mfa_token)
        assert error_of(refused) == (400, "invalid_request", "Email codes are not enabled for this application")
        discovery = driver.client.get("/.well-known/openid-configuration").json()
        assert MFA_OOB not in discovery["grant_types_supported"]


# --- At rest -----------------------------------------------------------------------------------------------------


def test_neither_the_code_nor_the_oob_code_nor_the_address_is_stored_in_clear(mfa, sink):
    enroll_email(mfa, sink)
    mfa_token = mfa.mfa_token()
    oob_code = challenge_email(mfa, mfa_token)
    code = sink.code_for(ADDRESS)
    stored = dump_text(mfa.db)
    everything = "\n".join(value for values in stored.values() for value in values)
    assert oob_code not in everything and ADDRESS not in everything
    assert code not in everything.split("\n")
    assert codes_stored(mfa) == 2  # the enrollment's (used) and the challenge's


def codes_stored(mfa: Mfa) -> int:
    async def work(conn: Any) -> int:
        return int((await conn.execute(text("SELECT count(*) FROM oob_code"))).scalar())

    return mfa.db.run(work)


def test_purge_deletes_the_codes_that_expired(mfa, sink):
    from datetime import UTC, datetime

    from identity.housekeeping import purge
    from tests.conftest import run_db

    enroll_email(mfa, sink)
    challenge_email(mfa, mfa.mfa_token())
    assert codes_stored(mfa) == 2
    soon = datetime.fromtimestamp(mfa.clock.now() + 10, UTC)
    assert run_db(mfa.settings, lambda session, _: purge(session, now=soon))["oob_codes"] == 0
    later = datetime.fromtimestamp(mfa.clock.now() + 301, UTC)
    assert run_db(mfa.settings, lambda session, _: purge(session, now=later))["oob_codes"] == 2
    assert codes_stored(mfa) == 0


def test_the_management_api_names_the_email_factor_email():
    from datetime import UTC, datetime

    from identity.accounts.factors import Factor, FactorType
    from identity.management.users import _method

    factor = Factor("email|dev_x", FactorType.EMAIL, True, datetime(2027, 1, 1, tzinfo=UTC), name="a***@b.test")
    assert _method(factor).type == "email"


def test_a_send_that_broke_off_midway_is_not_given_back(database_url, encryption_keys):
    """A mail server that takes the connection and then says nothing may still deliver: the email stays counted."""
    from identity.settings import SmtpSettings
    from tests.smtp_support import silent_server

    with silent_server() as port:
        hung = SmtpSettings.parse(f"smtp://127.0.0.1:{port}?timeout=1", "identity@example.test")
        with open_mfa(database_url, encryption_keys, smtp=hung) as driver:
            mfa_token = driver.mfa_token(audience=MFA_AUDIENCE)
            assert error_of(associate_email(driver, mfa_token)) == BAD_GATEWAY
            assert codes_stored(driver) == 0

            async def tokens(conn: Any) -> float:
                return float((await conn.execute(text("SELECT tokens FROM mfa_send"))).scalar())

            assert driver.db.run(tokens) == 9  # spent, not refunded
