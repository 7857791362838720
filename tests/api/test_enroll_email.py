"""Codes by email on the enrollment pages (issue 15), in process, with a real SMTP server.

Every code typed here is read from the email that `tests.smtp_support.SmtpSink` (aiosmtpd on 127.0.0.1) received:
nothing is taken from the server's memory or database, and the sender is not mocked. The app runs on a frozen
clock, as in tests/api/test_enroll_pages.py, whose helpers these tests share.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from typing import Any

import pytest
from httpx import Response
from litestar import Litestar
from litestar.testing import TestClient
from sqlalchemy import text

from identity.accounts.factors import ATTEMPT_CAPACITY
from identity.accounts.factors.email import CODE_SECONDS, SEND_CAPACITY
from identity.clock import FrozenClock
from identity.settings import Settings
from tests.api.test_enroll_pages import (
    ALICE,
    _forget_web_sessions,
    alert,
    clock,  # noqa: F401  (fixture)
    make_app,
    pages_tenant,
    password_grant,
    post,
    recovery_code_on,
    secret_on,
    sign_in,
    totp,
    web_session_rows,
)
from tests.conftest import apply, run_db
from tests.smtp_support import SmtpSink

ADDRESS = "alice.codes@mail.example"
MASKED = "a***@mail.example"
NOT_SENT = "We could not send the email. Try again later."


@pytest.fixture(scope="module")
def sink() -> Iterator[SmtpSink]:
    with SmtpSink() as server:
        yield server


@pytest.fixture
def mail_settings(settings: Settings, sink: SmtpSink) -> Settings:
    sink.fail_with(None)
    sink.clear()
    return dataclasses.replace(settings, smtp=sink.settings(timeout=3))


@pytest.fixture
def pages(mail_settings: Settings, clock: FrozenClock) -> Iterator[TestClient[Litestar]]:  # noqa: F811
    """The pages with a mail server, on a fresh tenant."""
    apply_tenant(mail_settings)
    with TestClient(make_app(mail_settings, clock), base_url="https://identity.test") as client:
        yield client


def apply_tenant(settings: Settings) -> None:
    apply(settings, pages_tenant())
    _forget_web_sessions(settings)


def send(client: TestClient[Litestar], page: Response, **fields: str) -> Response:
    return post(client, "/enroll/email/send", page, **fields)


def confirm(client: TestClient[Litestar], code: str) -> Response:
    return post(client, "/enroll/email/confirm", client.get("/enroll/email"), code=code)


def wrong(code: str) -> str:
    return "000000" if code != "000000" else "111111"


def enroll_email(client: TestClient[Litestar], sink: SmtpSink, address: str = ADDRESS) -> str:
    """Sign Alice in and turn codes by email on from the setup page; the recovery code shown."""
    assert sign_in(client).headers["location"] == "/enroll/setup"
    sent = send(client, client.get("/enroll/setup"), email=address)
    assert (sent.status_code, sent.headers["location"]) == (303, "/enroll/email"), sent.text
    done = confirm(client, sink.code_for(address))
    assert done.status_code == 200, done.text
    sink.clear()
    return recovery_code_on(done.text)


def sign_out(client: TestClient[Litestar]) -> None:
    page = client.get("/enroll")
    assert post(client, "/enroll/sign-out", page).status_code == 303


def sql(settings: Settings, statement: str) -> list[Any]:
    async def work(session: Any, _: Any) -> list[Any]:
        return list((await session.execute(text(statement))).all())

    return run_db(settings, work)


# --- setup ---------------------------------------------------------------------------------------------------------


def test_setup_offers_email_with_the_users_address(pages: TestClient[Litestar], sink: SmtpSink) -> None:
    sign_in(pages)
    setup = pages.get("/enroll/setup")
    assert "Or get codes by email" in setup.text
    form = re.search(r'<form method="post" action="/enroll/email/send">(.*?)</form>', setup.text, re.S)
    assert form and 'name="_csrf_token"' in form.group(1)
    assert 'name="email" class="address" type="email"' in form.group(1) and f'value="{ALICE}"' in form.group(1)
    assert sink.messages == []  # showing the offer sends nothing


def test_enroll_by_email_code_arrives_confirms_and_is_listed(
    pages: TestClient[Litestar], sink: SmtpSink, mail_settings: Settings
) -> None:
    sign_in(pages)
    sent = send(pages, pages.get("/enroll/setup"), email=ADDRESS)
    assert (sent.status_code, sent.headers["location"]) == (303, "/enroll/email")
    code = sink.code_for(ADDRESS)
    form = pages.get("/enroll/email")
    assert form.status_code == 200 and MASKED in form.text and ADDRESS not in form.text
    assert 'autocomplete="one-time-code"' in form.text
    # The session keeps the binding, never the code; the database keeps hashes only.
    assert all(code.encode() not in data for _, data in web_session_rows(mail_settings))
    (kind, consumed), *_ = sql(mail_settings, "SELECT kind, consumed_at FROM mfa_transaction")
    assert (kind, consumed) == ("page_email", None)

    done = post(pages, "/enroll/email/confirm", form, code=code)
    assert done.status_code == 200, done.text
    assert "a code we email to you" in done.text and "access to your email" in done.text
    assert re.fullmatch(r"([A-Z2-9]{4}-){5}[A-Z2-9]{4}", recovery_code_on(done.text))
    manage = pages.get("/enroll/manage")
    assert f"Codes by email to {MASKED}" in manage.text
    assert [row[0] is not None for row in sql(mail_settings, "SELECT consumed_at FROM mfa_transaction")] == [True]
    # The code was used once: the form is gone, and a replay changes nothing.
    assert pages.get("/enroll/email", follow_redirects=False).headers["location"] == "/enroll/manage"
    assert post(pages, "/enroll/email/confirm", manage, code=code).headers["location"] == "/enroll/manage"
    assert password_grant(pages).json()["error"] == "mfa_required"


def test_a_wrong_code_is_refused_and_draws_from_the_attempt_bucket(pages: TestClient[Litestar], sink: SmtpSink) -> None:
    sign_in(pages)
    send(pages, pages.get("/enroll/setup"), email=ADDRESS)
    code = sink.code_for(ADDRESS)
    refused = confirm(pages, wrong(code))
    assert refused.status_code == 400
    assert alert(refused.text) == "That code is not right. Enter the 6-digit code from the latest email."
    assert confirm(pages, "12345").status_code == 400  # not a code: costs nothing
    for _ in range(int(ATTEMPT_CAPACITY) - 1):
        assert confirm(pages, wrong(code)).status_code == 400
    limited = confirm(pages, code)
    assert limited.status_code == 429 and "Too many wrong codes" in alert(limited.text)
    assert pages.get("/enroll", follow_redirects=False).headers["location"] == "/enroll/setup"  # nothing turned on


def test_an_expired_code_is_refused_and_a_new_one_works(
    pages: TestClient[Litestar],
    sink: SmtpSink,
    clock: FrozenClock,  # noqa: F811
) -> None:
    sign_in(pages)
    send(pages, pages.get("/enroll/setup"), email=ADDRESS)
    code = sink.code_for(ADDRESS)
    clock.advance(CODE_SECONDS + 1)
    expired = confirm(pages, code)
    assert expired.status_code == 400 and alert(expired.text) == "That code has expired. Send a new one."
    sink.clear()
    send(pages, pages.get("/enroll/setup"), email=ADDRESS)
    assert confirm(pages, sink.code_for(ADDRESS)).status_code == 200


def test_a_new_code_replaces_the_one_before(pages: TestClient[Litestar], sink: SmtpSink) -> None:
    sign_in(pages)
    send(pages, pages.get("/enroll/setup"), email=ADDRESS)
    first = sink.code_for(ADDRESS)
    send(pages, pages.get("/enroll/setup"), email=ADDRESS)
    sink.wait_for(ADDRESS, count=2)
    second = sink.code_for(ADDRESS)
    if first != second:  # one chance in a million that they are the same
        assert confirm(pages, first).status_code == 400
    assert confirm(pages, second).status_code == 200


def test_a_code_works_only_in_the_page_session_that_asked(
    pages: TestClient[Litestar],
    sink: SmtpSink,
    mail_settings: Settings,
    clock: FrozenClock,  # noqa: F811
) -> None:
    sign_in(pages)
    send(pages, pages.get("/enroll/setup"), email=ADDRESS)
    code = sink.code_for(ADDRESS)
    with TestClient(make_app(mail_settings, clock), base_url="https://identity.test") as other:
        sign_in(other)
        assert other.get("/enroll/email", follow_redirects=False).headers["location"] == "/enroll/setup"
        taken = post(other, "/enroll/email/confirm", other.get("/enroll/setup"), code=code)
        assert taken.headers["location"] == "/enroll/setup"
    assert confirm(pages, code).status_code == 200


def test_a_bad_address_is_refused_on_the_page(pages: TestClient[Litestar], sink: SmtpSink) -> None:
    sign_in(pages)
    for address in ("not an address", "a@b.example, c@d.example", "Alice <a@b.example>"):
        answer = send(pages, pages.get("/enroll/setup"), email=address)
        assert answer.status_code == 400
        assert alert(answer.text) == "Enter one email address, like name@example.com."
    assert sink.messages == []


# --- failures ------------------------------------------------------------------------------------------------------


def test_a_failing_mail_server_shows_a_message_not_an_error_page(
    pages: TestClient[Litestar], sink: SmtpSink, mail_settings: Settings
) -> None:
    sign_in(pages)
    sink.fail_with(554)
    answer = send(pages, pages.get("/enroll/setup"), email=ADDRESS)
    assert answer.status_code == 503
    assert alert(answer.text) == NOT_SENT and "Or get codes by email" in answer.text
    assert sql(mail_settings, "SELECT id FROM oob_code") == []  # the code that never left is gone
    assert pages.get("/enroll/email", follow_redirects=False).headers["location"] == "/enroll/setup"
    sink.fail_with(None)
    send(pages, pages.get("/enroll/setup"), email=ADDRESS)
    assert confirm(pages, sink.code_for(ADDRESS)).status_code == 200


def test_too_many_emails_are_refused_with_a_message(pages: TestClient[Litestar], sink: SmtpSink) -> None:
    sign_in(pages)
    for _ in range(int(SEND_CAPACITY)):
        assert send(pages, pages.get("/enroll/setup"), email=ADDRESS).status_code == 303
    limited = send(pages, pages.get("/enroll/setup"), email=ADDRESS)
    assert limited.status_code == 429
    assert alert(limited.text) == "Too many codes were sent. Try again later."
    assert len(sink.wait_for(ADDRESS, count=int(SEND_CAPACITY))) == SEND_CAPACITY
    assert confirm(pages, sink.code_for(ADDRESS)).status_code == 200  # the refusal left the last code good


def test_email_forms_need_the_csrf_token(pages: TestClient[Litestar], sink: SmtpSink) -> None:
    sign_in(pages)
    setup = pages.get("/enroll/setup")
    missing = pages.post("/enroll/email/send", data={"email": ADDRESS}, follow_redirects=False)
    forged = pages.post("/enroll/email/send", data={"email": ADDRESS, "_csrf_token": "0" * 128})
    for answer in (missing, forged):
        assert answer.status_code == 403 and "did not come from this site" in answer.text
    assert sink.messages == []
    send(pages, setup, email=ADDRESS)
    code = sink.code_for(ADDRESS)
    assert pages.post("/enroll/email/confirm", data={"code": code}, follow_redirects=False).status_code == 403
    assert confirm(pages, code).status_code == 200


def test_without_a_mail_server_there_is_no_email_option(settings: Settings, clock: FrozenClock) -> None:  # noqa: F811
    apply_tenant(settings)
    with TestClient(make_app(settings, clock), base_url="https://identity.test") as client:
        sign_in(client)
        setup = client.get("/enroll/setup")
        assert "/enroll/email" not in setup.text and "by email" not in setup.text
        assert send(client, setup, email=ADDRESS).status_code == 404
        done = post(client, "/enroll/setup", setup, otp=totp(secret_on(setup.text), clock))
        assert done.status_code == 200
        manage = client.get("/enroll/manage")
        assert "/enroll/email" not in manage.text and "by email" not in manage.text


# --- the second factor at sign-in ----------------------------------------------------------------------------------


def test_with_email_the_only_factor_signing_in_sends_the_code(pages: TestClient[Litestar], sink: SmtpSink) -> None:
    enroll_email(pages, sink)
    sign_out(pages)
    assert sign_in(pages).headers["location"] == "/enroll/email"
    code = sink.code_for(ADDRESS)
    form = pages.get("/enroll/email")
    assert "Send a new code" in form.text and 'href="/enroll/verify"' in form.text
    refused = post(pages, "/enroll/email/confirm", form, code=wrong(code))
    assert refused.status_code == 400
    passed = post(pages, "/enroll/email/confirm", form, code=code)
    assert passed.headers["location"] == "/enroll/manage"
    assert pages.get("/enroll/manage").status_code == 200


def test_signing_in_when_the_mail_server_fails_says_so(pages: TestClient[Litestar], sink: SmtpSink) -> None:
    recovery_code = enroll_email(pages, sink)
    sign_out(pages)
    sink.fail_with(451)
    assert sign_in(pages).headers["location"] == "/enroll/verify"
    verify = pages.get("/enroll/verify")
    assert verify.status_code == 503 and alert(verify.text) == NOT_SENT
    assert "Email me a code" in verify.text and 'name="recovery_code"' in verify.text
    assert pages.get("/enroll/verify").status_code == 200  # said once
    passed = post(pages, "/enroll/verify", verify, recovery_code=recovery_code)
    assert passed.status_code == 200 and "Your new recovery code" in passed.text


def test_with_an_app_too_the_email_is_sent_only_when_asked(
    pages: TestClient[Litestar],
    sink: SmtpSink,
    clock: FrozenClock,  # noqa: F811
) -> None:
    # An app first, then an address added on the manage page.
    assert sign_in(pages).headers["location"] == "/enroll/setup"
    setup = pages.get("/enroll/setup")
    secret = secret_on(setup.text)
    assert post(pages, "/enroll/setup", setup, otp=totp(secret, clock)).status_code == 200
    manage = pages.get("/enroll/manage")
    assert "Get codes by email" in manage.text
    assert send(pages, manage, email=ADDRESS).headers["location"] == "/enroll/email"
    added = confirm(pages, sink.code_for(ADDRESS))
    assert added.headers["location"] == "/enroll/manage"
    manage = pages.get("/enroll/manage")
    assert "Codes by email are on" in manage.text and f"Codes by email to {MASKED}" in manage.text
    assert "Authenticator app" in manage.text
    sign_out(pages)
    sink.clear()

    assert sign_in(pages).headers["location"] == "/enroll/verify"
    verify = pages.get("/enroll/verify")
    assert f"Email me a code at {MASKED}" in verify.text and 'name="otp"' in verify.text
    assert sink.messages == []  # nothing sent until asked
    assert send(pages, verify).headers["location"] == "/enroll/email"
    assert confirm(pages, sink.code_for(ADDRESS)).headers["location"] == "/enroll/manage"


# --- removal -------------------------------------------------------------------------------------------------------


def test_an_emailed_code_turns_the_email_factor_off(pages: TestClient[Litestar], sink: SmtpSink) -> None:
    enroll_email(pages, sink)
    manage = pages.get("/enroll/manage")
    assert "Turn off codes by email" in manage.text and "Email me a code to turn them off" in manage.text
    (factor,) = re.findall(r'name="authenticator_id" value="([^"]+)"', manage.text)[:1]
    asked = send(pages, manage, intent="remove", authenticator_id=factor)
    assert asked.headers["location"] == "/enroll/email"
    code = sink.code_for(ADDRESS)
    form = pages.get("/enroll/email")
    assert 'class="danger wide">Remove' in form.text
    assert post(pages, "/enroll/email/confirm", form, code=wrong(code)).status_code == 400
    removed = post(pages, "/enroll/email/confirm", form, code=code)
    assert removed.headers["location"] == "/enroll"
    setup = pages.get("/enroll/setup")
    assert "Codes by email were turned off, and the recovery code no longer works." in setup.text


def test_the_recovery_code_turns_the_email_factor_off(pages: TestClient[Litestar], sink: SmtpSink) -> None:
    recovery_code = enroll_email(pages, sink)
    manage = pages.get("/enroll/manage")
    factor = re.findall(r'name="authenticator_id" value="([^"]+)"', manage.text)[0]
    refused = post(pages, "/enroll/email/remove", manage, authenticator_id=factor, recovery_code="AAAA-BBBB")
    assert refused.status_code == 400 and alert(refused.text) == "That recovery code is not right."
    no_proof = post(pages, "/enroll/email/remove", manage, authenticator_id=factor)
    assert no_proof.status_code == 400
    removed = post(pages, "/enroll/email/remove", manage, authenticator_id=factor, recovery_code=recovery_code)
    assert removed.headers["location"] == "/enroll"
    assert pages.get("/enroll", follow_redirects=False).headers["location"] == "/enroll/setup"
    assert sink.messages == []
