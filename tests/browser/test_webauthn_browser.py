"""A security key enrolled on the enrollment page in Chromium, then used in the direct flow over HTTP.

Chromium's virtual authenticator (DevTools protocol ``WebAuthn.addVirtualAuthenticator``: CTAP2, internal transport,
resident keys, user verification) plays the key. The pages are opened at ``http://localhost:<port>`` since WebAuthn
refuses IP-address origins; the server's issuer is its 127.0.0.1 URL, so the RP id defaults to ``localhost``.

Enroll the key on the setup page (``static/webauthn.js`` runs ``navigator.credentials.create``), read the recovery
code, see the key listed; then over HTTP: the password grant answers ``mfa_required``, ``/mfa/challenge`` gives
WebAuthn request options, the same virtual authenticator signs them in the page, and the mfa-webauthn grant returns
tokens. Back on the pages: the key passes the second-factor gate and removes itself. Screenshots go beside the OTP
ones (docs/screenshots/webauthn-*.png).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from identity.oauth2.grants import MFA_WEBAUTHN
from tests.browser.conftest import MFA_CLIENT
from tests.browser.test_enroll_browser import LAPTOP, assert_trustworthy
from tests.e2e.conftest import (
    API,
    DAVE_EMAIL,
    DAVE_PASSWORD,
    PASSWORD_REALM,
    AppliedTenant,
    IdentityServer,
    verify_access_token,
)

# navigator.credentials.get() in the page, with the server's JSON options; the assertion comes back as JSON.
GET_ASSERTION = """async (options) => {
  const bytes = (text) => Uint8Array.from(
    atob(text.replace(/-/g, "+").replace(/_/g, "/") + "===".slice((text.length + 3) % 4)), (c) => c.charCodeAt(0)
  ).buffer;
  const text = (buffer) => btoa(String.fromCharCode(...new Uint8Array(buffer)))
    .replace(/\\+/g, "-").replace(/\\//g, "_").replace(/=+$/, "");
  const credential = await navigator.credentials.get({ publicKey: {
    ...options,
    challenge: bytes(options.challenge),
    allowCredentials: options.allowCredentials.map((c) => ({ ...c, id: bytes(c.id) })),
  } });
  const r = credential.response;
  return {
    id: credential.id, rawId: text(credential.rawId), type: credential.type,
    authenticatorAttachment: credential.authenticatorAttachment,
    response: {
      clientDataJSON: text(r.clientDataJSON), authenticatorData: text(r.authenticatorData),
      signature: text(r.signature), userHandle: r.userHandle ? text(r.userHandle) : null,
    },
    clientExtensionResults: {},
  };
}"""


class KeyShots:
    """Full-page screenshots named webauthn-NN-step.png."""

    def __init__(self, page: Any, directory: Path) -> None:
        self.page = page
        self.directory = directory
        self.taken: list[Path] = []

    def take(self, name: str) -> Path:
        path = self.directory / f"webauthn-{len(self.taken) + 1:02d}-{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        self.taken.append(path)
        return path


@pytest.fixture
def key_page(browser: Any) -> Any:
    context = browser.new_context(viewport=LAPTOP, device_scale_factor=1, locale="en-GB")
    page = context.new_page()
    page.problems = []
    page.on("console", lambda message: page.problems.append(message.text) if "Refused" in message.text else None)
    page.on("pageerror", lambda error: page.problems.append(str(error)))
    cdp = context.new_cdp_session(page)
    cdp.send("WebAuthn.enable")
    added = cdp.send(
        "WebAuthn.addVirtualAuthenticator",
        {
            "options": {
                "protocol": "ctap2",
                "transport": "internal",
                "hasResidentKey": True,
                "hasUserVerification": True,
                "isUserVerified": True,
                "automaticPresenceSimulation": True,
            }
        },
    )
    page.authenticator = (cdp, added["authenticatorId"])
    yield page
    context.close()


def sign_in(page: Any, base: str) -> None:
    page.goto(base + "/enroll")
    page.select_option("#realm", "employees")
    page.get_by_label("Email or username").fill(DAVE_EMAIL)
    page.get_by_label("Password").fill(DAVE_PASSWORD)
    page.get_by_role("button", name="Sign in").click()


def test_enroll_a_key_in_chromium_then_the_direct_flow(
    key_page: Any, server: IdentityServer, applied_tenant: AppliedTenant, screenshots: Path
) -> None:
    page = key_page
    shots = KeyShots(page, screenshots)
    base = f"http://localhost:{server.port}"  # WebAuthn needs a domain: localhost, not 127.0.0.1

    sign_in(page, base)
    page.wait_for_url(base + "/enroll/setup")
    assert_trustworthy(page)
    assert page.get_by_role("button", name="Add security key").is_visible()  # webauthn.js showed the form
    shots.take("setup")

    page.get_by_label("Name of the key").fill("Laptop passkey")
    page.get_by_role("button", name="Add security key").click()
    page.wait_for_selector("#recovery-code")
    assert "your security key" in page.get_by_role("status").inner_text()
    recovery_code = page.locator("#recovery-code").inner_text()
    assert len(recovery_code.replace("-", "")) == 24
    shots.take("recovery-code")
    cdp, authenticator_id = page.authenticator
    stored = cdp.send("WebAuthn.getCredentials", {"authenticatorId": authenticator_id})["credentials"]
    assert len(stored) == 1 and stored[0]["isResidentCredential"]  # residentKey "preferred": a passkey
    assert stored[0]["rpId"] == "localhost"

    page.get_by_role("link", name="I have saved it, continue").click()
    page.wait_for_url(base + "/enroll/manage")
    assert "Security key “Laptop passkey”" in page.locator(".factors").inner_text()
    assert_trustworthy(page)
    shots.take("manage")
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(base + "/enroll?notice=signed-out")

    # The direct flow over HTTP: mfa_required, WebAuthn request options, an assertion by the same authenticator.
    answer = httpx.post(
        server.token_url,
        data={
            "grant_type": PASSWORD_REALM,
            "client_id": MFA_CLIENT,
            "realm": "employees",
            "username": DAVE_EMAIL,
            "password": DAVE_PASSWORD,
            "scope": "openid",
        },
        timeout=30,
    )
    assert answer.status_code == 403 and answer.json()["error"] == "mfa_required", answer.text
    mfa_token = answer.json()["mfa_token"]
    challenge = httpx.post(
        server.base_url + "/mfa/challenge",
        data={"client_id": MFA_CLIENT, "mfa_token": mfa_token, "challenge_type": "webauthn"},
        timeout=30,
    )
    assert challenge.status_code == 200, challenge.text
    options = challenge.json()["publicKey"]
    assert len(options["allowCredentials"]) == 1
    assertion = page.evaluate(GET_ASSERTION, options)  # on the page's origin, http://localhost:<port>
    tokens = httpx.post(
        server.token_url,
        json={"grant_type": MFA_WEBAUTHN, "client_id": MFA_CLIENT, "mfa_token": mfa_token, "authn_response": assertion},
        timeout=30,
    )
    assert tokens.status_code == 200, tokens.text
    claims = verify_access_token(server, tokens.json()["access_token"], audience=API)
    assert claims["sub"] == applied_tenant.dave["user_id"]
    assert claims["amr"] == ["pwd", "mfa", "swk"]  # attestation none: nothing proves hardware
    replayed = httpx.post(
        server.token_url,
        json={"grant_type": MFA_WEBAUTHN, "client_id": MFA_CLIENT, "mfa_token": mfa_token, "authn_response": assertion},
        timeout=30,
    )
    assert replayed.status_code == 403

    # Back on the pages: the key is the second factor of the sign-in, and removing it needs it again.
    sign_in(page, base)
    page.wait_for_url(base + "/enroll/verify")
    assert page.get_by_role("button", name="Use security key").is_visible()
    shots.take("second-factor-gate")
    page.get_by_role("button", name="Use security key").click()
    page.wait_for_url(base + "/enroll/manage")
    page.get_by_role("button", name="Remove with a security key").click()
    page.wait_for_url(base + "/enroll/setup")
    assert "security key was removed" in page.get_by_role("status").inner_text()
    assert_trustworthy(page)
    shots.take("removed")
    assert all(path.stat().st_size > 10_000 for path in shots.taken)
