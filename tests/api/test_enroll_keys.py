"""Security keys on the enrollment pages, in process: what ``static/webauthn.js`` posts, signed by soft-webauthn.

The browser test (tests/browser/test_webauthn_browser.py) runs the script in Chromium; this module checks the
server's side of each step on both databases: CSRF on the JSON option endpoints, the ceremony bound to the page
session and used once, the recovery code after a first key, the key as the pages' second factor, and its removal.
"""

from __future__ import annotations

import json
import re

from litestar import Litestar
from litestar.testing import TestClient

from tests.api.test_enroll_pages import clock, csrf_token, pages, sign_in  # noqa: F401  (fixtures)
from tests.e2e.webauthn_support import SoftKey

ORIGIN = "https://identity.test"


def options(client: TestClient[Litestar], path: str, page_html: str) -> dict[str, object]:
    response = client.post(path, headers={"X-CSRFToken": csrf_token(page_html)}, json={})
    assert response.status_code == 200, response.text
    public_key: dict[str, object] = response.json()["publicKey"]
    return public_key


def test_a_key_on_the_pages_from_setup_to_removal(pages: TestClient[Litestar]) -> None:  # noqa: F811
    # The option endpoints are CSRF-protected, and only for a signed-in visitor.
    start = pages.get("/enroll")
    assert pages.post("/enroll/keys/register-options", json={}).status_code == 403
    refused = pages.post("/enroll/keys/register-options", headers={"X-CSRFToken": csrf_token(start.text)}, json={})
    assert refused.status_code == 403
    sign_in(pages)
    setup = pages.get("/enroll/setup")
    assert 'data-webauthn="register"' in setup.text and "Add security key" in setup.text
    creation = options(pages, "/enroll/keys/register-options", setup.text)
    assert creation["rp"]["id"] == "identity.test"  # type: ignore[index]
    assert creation["authenticatorSelection"]["residentKey"] == "preferred"  # type: ignore[index]
    key = SoftKey()
    credential = json.dumps(key.create(creation, ORIGIN))
    form = {"_csrf_token": csrf_token(setup.text), "credential": credential, "name": "YubiKey"}
    added = pages.post("/enroll/keys/add", data=form)
    assert added.status_code == 200, added.text
    assert "your security key" in added.text and 'id="recovery-code"' in added.text
    # The same ceremony again: the session's binding was used, and the visitor is now past setup.
    again = pages.post("/enroll/keys/add", data=form, follow_redirects=False)
    assert again.status_code in (303, 400)
    manage = pages.get("/enroll/manage")
    assert "Security key “YubiKey”" in manage.text

    # Sign out and in: the key passes the pages' second factor; a wrong origin does not.
    pages.post("/enroll/sign-out", data={"_csrf_token": csrf_token(manage.text)})
    sign_in(pages)
    verify = pages.get("/enroll/verify")
    assert 'data-webauthn="assert"' in verify.text
    request = options(pages, "/enroll/keys/assert-options", verify.text)
    wrong = json.dumps(key.get(request, "https://evil.test"))
    refused = pages.post("/enroll/keys/verify", data={"_csrf_token": csrf_token(verify.text), "credential": wrong})
    assert refused.status_code == 400 and "could not be verified" in refused.text
    request = options(pages, "/enroll/keys/assert-options", refused.text)
    good = json.dumps(key.get(request, ORIGIN))
    passed = pages.post(
        "/enroll/keys/verify",
        data={"_csrf_token": csrf_token(refused.text), "credential": good},
        follow_redirects=False,
    )
    assert passed.status_code == 303 and passed.headers["location"] == "/enroll/manage"

    # Removal needs a fresh assertion of a key: the one that passed the gate is spent.
    manage = pages.get("/enroll/manage")
    key_id = re.search(r'name="authenticator_id" value="(webauthn\|[^"]+)"', manage.text)
    assert key_id is not None
    form = {"_csrf_token": csrf_token(manage.text), "authenticator_id": key_id.group(1), "credential": good}
    replayed = pages.post("/enroll/keys/remove", data=form)
    assert replayed.status_code == 400 and "could not be verified" in replayed.text
    request = options(pages, "/enroll/keys/assert-options", replayed.text)
    form["credential"] = json.dumps(key.get(request, ORIGIN))
    form["_csrf_token"] = csrf_token(replayed.text)
    removed = pages.post("/enroll/keys/remove", data=form)
    assert removed.status_code == 200 and "The security key was removed" in removed.text  # back on setup
    assert "Set up your authenticator app" in removed.text
