"""The enrollment pages as a person uses them: Chromium, a real QR decoder, a real TOTP generator, a real server.

Sign in, photograph the QR code (screenshot), decode it with ``zbarimg``, compute the code with ``oathtool``, turn
the factor on, read the recovery code; then, over HTTP, the password grant answers ``mfa_required`` and the mfa-otp
grant with a fresh ``oathtool`` code returns tokens. Every step leaves a screenshot in docs/screenshots/.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import httpx
import pytest

from identity.oauth2.grants import MFA_OTP
from tests.browser.conftest import MFA_CLIENT
from tests.e2e.conftest import (
    ALICE_CUSTOMER_PASSWORD,
    ALICE_EMAIL,
    API,
    AppliedTenant,
    IdentityServer,
    verify_access_token,
)
from tests.e2e.mfa_support import oathtool as oathtool_at

PERIOD = 30
LAPTOP = {"width": 1280, "height": 860}
PHONE = {"width": 390, "height": 844}


def decode_qr(image: Path) -> str:
    """The text of the one QR code in ``image``, read by zbarimg."""
    result = subprocess.run(["zbarimg", "--raw", "-q", str(image)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"zbarimg found no QR code in {image}: {result.stderr}"
    return result.stdout.strip()


def oathtool(secret: str) -> tuple[str, int]:
    """The current TOTP code for ``secret`` from oathtool, and the time step it belongs to.

    oathtool is told the time (``--now``, the middle of the step): on its own it reads time(2), a coarse clock that
    can lag time.time() by milliseconds, so just after a step began it printed the code of the step before, one the
    server had accepted already (seen in CI).
    """
    step = int(time.time() // PERIOD)
    return oathtool_at(secret, at=step * PERIOD + PERIOD / 2), step


def wait_for_step_after(step: int) -> None:
    """Sleep until the TOTP time step is later than ``step`` (a code is accepted once per step)."""
    while int(time.time() // PERIOD) <= step:
        time.sleep(0.25)


def password_grant(server: IdentityServer) -> httpx.Response:
    return httpx.post(
        server.token_url,
        data={
            "grant_type": "password",
            "client_id": MFA_CLIENT,
            "username": ALICE_EMAIL,
            "password": ALICE_CUSTOMER_PASSWORD,
            "scope": "openid",
        },
        timeout=30,
    )


class Shots:
    """Full-page screenshots, one per step, named in order."""

    def __init__(self, page: Any, directory: Path) -> None:
        self.page = page
        self.directory = directory
        self.taken: list[Path] = []

    def take(self, name: str) -> Path:
        path = self.directory / f"{len(self.taken) + 1:02d}-{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        self.taken.append(path)
        return path


@pytest.fixture
def page(browser: Any) -> Any:
    context = browser.new_context(viewport=LAPTOP, device_scale_factor=1, locale="en-GB")
    page = context.new_page()
    page.problems = []
    # Refusals by the Content-Security-Policy are reported on the console; scripts errors as page errors.
    page.on("console", lambda message: page.problems.append(message.text) if "Refused" in message.text else None)
    page.on("pageerror", lambda error: page.problems.append(str(error)))
    yield page
    context.close()


def assert_trustworthy(page: Any) -> None:
    """No script on the page but the static security-key one, the stylesheet applied, nothing refused by the CSP."""
    scripts = page.locator("script")
    assert scripts.count() == 1 and scripts.get_attribute("src") == "/static/webauthn.js"
    assert scripts.inner_text() == ""
    assert page.evaluate("getComputedStyle(document.body).backgroundColor") == "rgb(243, 245, 248)"
    assert page.problems == []


def test_enroll_in_a_browser_then_sign_in_with_mfa_over_http(
    page: Any, server: IdentityServer, applied_tenant: AppliedTenant, screenshots: Path
) -> None:
    shots = Shots(page, screenshots)
    base = server.base_url

    # The root page links to the enrollment pages.
    page.goto(base + "/")
    shots.take("home")
    page.get_by_role("link", name="set up or manage your authenticator app").click()
    page.wait_for_url(base + "/enroll")
    assert page.locator("#realm").input_value() == "customers"  # the tenant's default directory, preselected
    shots.take("sign-in")

    # A wrong password: the token endpoint's generic text.
    page.get_by_label("Email or username").fill(ALICE_EMAIL)
    page.get_by_label("Password").fill("not the password")
    page.get_by_role("button", name="Sign in").click()
    assert page.get_by_role("alert").inner_text() == "Wrong email or password."
    shots.take("wrong-password")

    page.get_by_label("Password").fill(ALICE_CUSTOMER_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(base + "/enroll/setup")
    assert_trustworthy(page)
    enroll_shot = shots.take("enroll")

    # Read the QR code from the screenshot, as a phone camera would.
    uri = decode_qr(enroll_shot)
    parts = urlsplit(uri)
    query = parse_qs(parts.query)
    assert (parts.scheme, parts.netloc) == ("otpauth", "totp")
    assert unquote(parts.path) == f"/E2E:{ALICE_EMAIL}"
    assert query["issuer"] == ["E2E"]
    assert (query["digits"], query["period"], query["algorithm"]) == (["6"], ["30"], ["SHA1"])
    secret = query["secret"][0]
    # The key and the labels on the page are the ones in the QR code.
    assert page.locator(".secret").inner_text().replace(" ", "") == secret
    assert ALICE_EMAIL in page.locator(".details").inner_text()
    assert secret not in page.url
    qr_box = page.locator(".qr svg").bounding_box()
    assert 250 <= qr_box["width"] <= 310, qr_box

    # The same page on a phone: still one readable QR code.
    page.set_viewport_size(PHONE)
    assert decode_qr(shots.take("enroll-phone")) == uri
    page.set_viewport_size(LAPTOP)

    # A wrong code first: nothing activates, and the page says what to do.
    code, _ = oathtool(secret)
    page.get_by_label("6-digit code").fill("000000" if code != "000000" else "111111")
    page.get_by_role("button", name="Turn on").click()
    assert "That code is not right" in page.get_by_role("alert").inner_text()
    shots.take("wrong-code")

    code, step = oathtool(secret)
    page.get_by_label("6-digit code").fill(code)
    page.get_by_role("button", name="Turn on").click()
    recovery_code = page.locator("#recovery-code").inner_text()
    assert len(recovery_code.replace("-", "")) == 24
    assert "shown only once" in page.content()
    assert_trustworthy(page)
    shots.take("recovery-code")

    page.get_by_role("link", name="I have saved it, continue").click()
    page.wait_for_url(base + "/enroll/manage")
    assert "Two-step verification is on" in page.get_by_role("status").inner_text()
    shots.take("manage")

    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(base + "/enroll?notice=signed-out")
    assert page.get_by_role("status").inner_text() == "You have signed out."
    shots.take("signed-out")

    # Over HTTP: the password grant now asks for the second factor...
    answer = password_grant(server)
    assert answer.status_code == 403, answer.text
    assert answer.json()["error"] == "mfa_required"
    mfa_token = answer.json()["mfa_token"]
    # ...and the mfa-otp grant with a fresh code (the next time step: each step is accepted once) returns tokens.
    wait_for_step_after(step)
    fresh_code, fresh_step = oathtool(secret)
    tokens = httpx.post(
        server.token_url,
        data={"grant_type": MFA_OTP, "client_id": MFA_CLIENT, "mfa_token": mfa_token, "otp": fresh_code},
        timeout=30,
    )
    assert tokens.status_code == 200, tokens.text
    body = tokens.json()
    assert body["token_type"] == "Bearer" and body["id_token"]
    claims = verify_access_token(server, body["access_token"], audience=API)
    assert claims["sub"] == applied_tenant.user_ids[("customers", ALICE_EMAIL)]

    # Back in the browser: a user with a factor must pass it before anything can change.
    page.get_by_label("Email or username").fill(ALICE_EMAIL)
    page.get_by_label("Password").fill(ALICE_CUSTOMER_PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(base + "/enroll/verify")
    page.goto(base + "/enroll/manage")
    page.wait_for_url(base + "/enroll/verify")
    assert_trustworthy(page)
    shots.take("second-factor-gate")

    # The phone is "lost": the recovery code passes the gate and is replaced by a new one.
    page.get_by_text("Lost your phone? Use your recovery code").click()
    page.get_by_label("Recovery code").fill(recovery_code.lower())
    page.get_by_role("button", name="Use recovery code").click()
    new_recovery_code = page.locator("#recovery-code").inner_text()
    assert new_recovery_code != recovery_code
    shots.take("new-recovery-code")
    page.get_by_role("link", name="I have saved it, continue").click()
    page.wait_for_url(base + "/enroll/manage")

    # Removing the app needs a fresh code: the one the grant just used is refused.
    page.get_by_label("6-digit code").fill(fresh_code)
    page.get_by_role("button", name="Remove", exact=True).click()
    assert "That code is not right" in page.get_by_role("alert").inner_text()
    shots.take("remove-refused")
    wait_for_step_after(fresh_step)
    page.get_by_label("6-digit code").fill(oathtool(secret)[0])
    page.get_by_role("button", name="Remove", exact=True).click()
    page.wait_for_url(base + "/enroll/setup")
    assert "was removed" in page.get_by_role("status").inner_text()
    shots.take("removed")

    # Without a factor, the password grant issues tokens again.
    assert password_grant(server).status_code == 200
    assert all(path.stat().st_size > 10_000 for path in shots.taken)
