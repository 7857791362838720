"""Codes by email on the enrollment pages, as a person uses them: Chromium, a real server, a real SMTP server.

``identity serve`` runs with ``IDENTITY_SMTP_URL`` pointing at `tests.smtp_support.SmtpSink`; each code typed is read
from the email that arrived there. Alice (employees) turns codes by email on from the setup page, signs in again with
the code the sign-in sends, and turns them off with an emailed code. Screenshots go where test_enroll_browser's do.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser.test_enroll_browser import Shots, assert_trustworthy, page  # noqa: F401  (fixture)
from tests.e2e.conftest import (
    ALICE_EMAIL,
    ALICE_EMPLOYEE_PASSWORD,
    AppliedTenant,
    IdentityServer,
    serve_spec,
    start_servers,
    stop_and_check,
)
from tests.smtp_support import SmtpSink

MASKED = "a***@e2e.test"


@pytest.fixture(scope="module")
def sink() -> Iterator[SmtpSink]:
    with SmtpSink() as server:
        yield server


@pytest.fixture(scope="module")
def mail_server(
    e2e_env: dict[str, str],
    applied_tenant: AppliedTenant,
    sink: SmtpSink,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[IdentityServer]:
    """``identity serve`` with a mail server (the package's shared server has none)."""
    spec = serve_spec("serve-mail", {**e2e_env, **sink.env})
    (started,) = start_servers([spec], tmp_path_factory.mktemp("mail-server-logs"))
    try:
        yield started
    finally:
        stop_and_check(started)


def sign_in(browser_page: Any, base: str) -> None:
    browser_page.goto(base + "/enroll")
    browser_page.select_option("#realm", "employees")
    browser_page.get_by_label("Email or username").fill("alice")
    browser_page.get_by_label("Password").fill(ALICE_EMPLOYEE_PASSWORD)
    browser_page.get_by_role("button", name="Sign in").click()


def test_codes_by_email_from_setup_to_sign_in_to_removal(
    page: Any,  # noqa: F811
    mail_server: IdentityServer,
    sink: SmtpSink,
    screenshots: Path,
) -> None:
    shots = Shots(page, screenshots)
    base = mail_server.base_url
    sink.clear()

    # The setup page offers email next to the app, the user's own address filled in; nothing is sent yet.
    sign_in(page, base)
    page.wait_for_url(base + "/enroll/setup")
    assert page.get_by_label("Email address").input_value() == ALICE_EMAIL
    assert sink.messages == []
    assert_trustworthy(page)
    shots.take("email-01-setup")

    page.get_by_role("button", name="Email me a code").click()
    page.wait_for_url(base + "/enroll/email")
    assert MASKED in page.locator(".lead").inner_text()
    code = sink.code_for(ALICE_EMAIL)
    page.get_by_label("6-digit code").fill("000000" if code != "000000" else "111111")
    page.get_by_role("button", name="Turn on").click()
    assert "That code is not right" in page.get_by_role("alert").inner_text()
    assert_trustworthy(page)
    shots.take("email-02-code")

    page.get_by_label("6-digit code").fill(code)
    page.get_by_role("button", name="Turn on").click()
    assert "a code we email to you" in page.get_by_role("status").inner_text()
    assert len(page.locator("#recovery-code").inner_text().replace("-", "")) == 24
    shots.take("email-03-recovery-code")
    page.get_by_role("link", name="I have saved it, continue").click()
    page.wait_for_url(base + "/enroll/manage")
    assert f"Codes by email to {MASKED}" in page.locator(".factors").inner_text()
    shots.take("email-04-manage")

    # Signing in again: email is the only factor, so the sign-in sends the code.
    sink.clear()
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(base + "/enroll?notice=signed-out")
    sign_in(page, base)
    page.wait_for_url(base + "/enroll/email")
    page.get_by_label("6-digit code").fill(sink.code_for(ALICE_EMAIL))
    page.get_by_role("button", name="Continue").click()
    page.wait_for_url(base + "/enroll/manage")

    # Turning it off: an emailed code is the fresh proof.
    sink.clear()
    page.get_by_role("button", name="Email me a code to turn them off").click()
    page.wait_for_url(base + "/enroll/email")
    page.get_by_label("6-digit code").fill(sink.code_for(ALICE_EMAIL))
    shots.take("email-05-turn-off")
    page.get_by_role("button", name="Remove").click()
    page.wait_for_url(base + "/enroll/setup")
    assert "Codes by email were turned off" in page.get_by_role("status").inner_text()
    assert_trustworthy(page)
    assert all(path.stat().st_size > 10_000 for path in shots.taken)
