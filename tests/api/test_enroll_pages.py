"""The enrollment pages over HTTP: sign-in, the second-factor gate, enrollment, removal, sessions and hardening.

The app runs on a frozen clock set to now (authenticator rows carry wall-clock timestamps), so TOTP codes, the QR
code's expiry and the session's idle timeout are driven by ``clock.advance``.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Iterator
from typing import Any

import pyotp
import pytest
from httpx import Response
from litestar import Litestar
from litestar.testing import TestClient
from sqlalchemy import text

from identity.accounts.factors import PENDING_ENROLLMENT_SECONDS
from identity.app import create_app
from identity.clock import FrozenClock
from identity.oauth2.grants import MFA_OTP, MFA_RECOVERY_CODE
from identity.settings import Settings
from identity.web.enroll import MAX_SESSION_SECONDS
from identity.web.enroll.sessions import IDLE_SECONDS, session_config
from tests.conftest import (
    ALICE_CUSTOMER_PASSWORD,
    ALICE_EMPLOYEE_PASSWORD,
    BOB_PASSWORD,
    ISSUER,
    PASSWORD_GRANTS,
    apply,
    run_db,
    standard_tenant,
)

ALICE = "alice@example.test"
EVE = "eve<i>&'x'@example.test"
EVE_PASSWORD = "eve's password 1234"
FRIENDLY_NAME = 'Acme <b>"Tools"</b> & Co'
SESSION_COOKIE = "__Host-identity-session"
CSRF_COOKIE = "__Host-csrftoken"


def pages_tenant(**tenant: Any) -> dict[str, Any]:
    """The standard tenant; ``public-app`` may also use the MFA grants, and Eve has an awkward email."""
    data = standard_tenant()
    data["tenant"].update(tenant)
    data["clients"][0]["grant_types"] = [*PASSWORD_GRANTS, MFA_OTP, MFA_RECOVERY_CODE]
    data["users"].append({"connection": "customers", "email": EVE, "password": EVE_PASSWORD})
    return data


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(time.time())


def _forget_web_sessions(settings: Settings) -> None:
    async def work(session: Any, _: Any) -> None:
        await session.execute(text("DELETE FROM web_session"))
        await session.commit()

    run_db(settings, work)


def web_session_rows(settings: Settings) -> list[tuple[str, bytes]]:
    async def work(session: Any, _: Any) -> list[tuple[str, bytes]]:
        rows = (await session.execute(text("SELECT key_hash, data FROM web_session"))).all()
        return [(row[0], bytes(row[1])) for row in rows]

    return run_db(settings, work)


def make_app(settings: Settings, clock: FrozenClock) -> Litestar:
    return create_app(settings, clock=clock)


@pytest.fixture
def pages(settings: Settings, clock: FrozenClock) -> Iterator[TestClient[Litestar]]:
    """A browser-like client on the pages (https issuer), on a fresh tenant."""
    apply(settings, pages_tenant())
    _forget_web_sessions(settings)
    with TestClient(make_app(settings, clock), base_url="https://identity.test") as client:
        yield client


# --- helpers -------------------------------------------------------------------------------------------------------


def csrf_token(html: str) -> str:
    match = re.search(r'name="_csrf_token" value="([^"]+)"', html)
    assert match, "no CSRF field in the page"
    return match.group(1)


def post(client: TestClient[Litestar], path: str, page: Response, **fields: str) -> Response:
    """Submit a form of ``page`` (with its CSRF token) without following the redirect."""
    return client.post(path, data={"_csrf_token": csrf_token(page.text), **fields}, follow_redirects=False)


def sign_in(
    client: TestClient[Litestar], username: str = ALICE, password: str = ALICE_CUSTOMER_PASSWORD, **fields: str
) -> Response:
    return post(client, "/enroll/sign-in", client.get("/enroll"), username=username, password=password, **fields)


def secret_on(html: str) -> str:
    match = re.search(r'<code class="secret">(.*?)</code>', html, re.S)
    assert match, "no secret on the page"
    return re.sub(r"<[^>]+>|\s", "", match.group(1))


def recovery_code_on(html: str) -> str:
    match = re.search(r'<code id="recovery-code">(.*?)</code>', html, re.S)
    assert match, "no recovery code on the page"
    return re.sub(r"<[^>]+>", "", match.group(1))


def totp(secret: str, clock: FrozenClock) -> str:
    return str(pyotp.TOTP(secret).at(clock.now()))


def alert(html: str) -> str:
    match = re.search(r'role="alert"[^>]*>(.*?)</p>', html, re.S)
    assert match, "no error message on the page"
    return match.group(1)


def enroll(client: TestClient[Litestar], clock: FrozenClock) -> tuple[str, str]:
    """Sign Alice in and enroll an app; returns its secret and the recovery code."""
    assert sign_in(client).headers["location"] == "/enroll/setup"
    setup = client.get("/enroll/setup")
    secret = secret_on(setup.text)
    done = post(client, "/enroll/setup", setup, otp=totp(secret, clock))
    assert done.status_code == 200, done.text
    return secret, recovery_code_on(done.text)


def password_grant(client: TestClient[Litestar]) -> Response:
    return client.post(
        "/oauth/token",
        data={
            "grant_type": "password",
            "client_id": "public-app",
            "username": ALICE,
            "password": ALICE_CUSTOMER_PASSWORD,
        },
    )


def set_cookie(response: Response, name: str) -> str:
    headers = [value for value in response.headers.get_list("set-cookie") if value.startswith(name + "=")]
    assert headers, f"no {name} cookie set"
    return headers[-1]


# --- sign-in ---------------------------------------------------------------------------------------------------------


def test_root_page_links_to_the_enrollment_pages(pages: TestClient[Litestar]) -> None:
    assert 'href="/enroll"' in pages.get("/").text


def test_sign_in_form_offers_the_directories_with_the_default_selected(pages: TestClient[Litestar]) -> None:
    page = pages.get("/enroll")
    assert page.status_code == 200
    assert '<select id="realm" name="realm">' in page.text
    assert '<option value="customers" selected>' in page.text
    assert '<option value="employees">' in page.text
    assert 'name="username"' in page.text and 'name="password"' in page.text
    assert '<label for="username">' in page.text and '<label for="password">' in page.text


def test_a_single_directory_needs_no_select(settings: Settings, clock: FrozenClock) -> None:
    apply(settings, {"tenant": {"default_directory": "only"}, "connections": [{"name": "only"}]})
    with TestClient(make_app(settings, clock), base_url="https://identity.test") as client:
        assert 'name="realm"' not in client.get("/enroll").text


def test_signs_in_to_the_chosen_directory(pages: TestClient[Litestar]) -> None:
    answer = sign_in(pages, "alice", ALICE_EMPLOYEE_PASSWORD, realm="employees")
    assert (answer.status_code, answer.headers["location"]) == (303, "/enroll/setup")
    assert "Signed in as <strong>alice@example.test</strong>" in pages.get("/enroll/setup").text


def test_wrong_password_and_unknown_user_get_the_same_generic_answer(pages: TestClient[Litestar]) -> None:
    wrong = sign_in(pages, ALICE, "not the password")
    unknown = sign_in(pages, "nobody@example.test", "not the password")
    for answer in (wrong, unknown):
        assert answer.status_code == 401
        assert alert(answer.text) == "Wrong email or password."
        assert SESSION_COOKIE not in answer.headers.get("set-cookie", "")
    assert pages.get("/enroll/setup", follow_redirects=False).headers["location"] == "/enroll"


def test_blocked_user_is_refused_even_with_the_right_password(pages: TestClient[Litestar]) -> None:
    answer = sign_in(pages, "bob@example.test", BOB_PASSWORD)
    assert answer.status_code == 403
    assert "blocked" in alert(answer.text)
    assert pages.get("/enroll/setup", follow_redirects=False).headers["location"] == "/enroll"


def test_unknown_directory_is_refused(pages: TestClient[Litestar]) -> None:
    answer = sign_in(pages, realm="nope")
    assert answer.status_code == 400
    assert alert(answer.text) == "Choose a directory from the list."


def test_empty_fields_are_refused_without_a_password_check(pages: TestClient[Litestar]) -> None:
    answer = sign_in(pages, "", "")
    assert answer.status_code == 400
    assert "Enter your email or username and your password." in answer.text


# --- enrollment ------------------------------------------------------------------------------------------------------


def test_enrollment_page_shows_qr_code_key_and_labels(pages: TestClient[Litestar]) -> None:
    sign_in(pages)
    page = pages.get("/enroll/setup")
    assert page.status_code == 200
    svg = re.search(r"<svg [^>]*role=\"img\"[^>]*>", page.text)
    assert svg, "no QR code"
    size = int(re.search(r'width="(\d+)"', svg.group(0)).group(1))  # type: ignore[union-attr]
    assert 250 <= size <= 310
    assert "style=" not in svg.group(0)
    secret = secret_on(page.text)
    assert re.fullmatch(r"[A-Z2-7]{32}", secret)
    assert re.search(r"<span>[A-Z2-7]{4}</span> <span>", page.text)  # groups of four
    assert "<dt>Account</dt><dd>alice@example.test</dd>" in page.text
    assert "<dt>Issuer</dt><dd>Test</dd>" in page.text
    assert 'name="otp"' in page.text
    # The same pending authenticator until it expires: a reload shows the same QR code.
    assert secret_on(pages.get("/enroll/setup").text) == secret


def test_a_wrong_code_activates_nothing(pages: TestClient[Litestar], clock: FrozenClock) -> None:
    sign_in(pages)
    setup = pages.get("/enroll/setup")
    secret = secret_on(setup.text)
    wrong = "000000" if totp(secret, clock) != "000000" else "111111"
    answer = post(pages, "/enroll/setup", setup, otp=wrong)
    assert answer.status_code == 400
    assert "That code is not right" in alert(answer.text)
    assert secret_on(answer.text) == secret  # same QR code, try again
    malformed = post(pages, "/enroll/setup", setup, otp="12ab")
    assert (malformed.status_code, alert(malformed.text)) == (400, "Enter the 6-digit code your app shows.")
    assert password_grant(pages).status_code == 200  # no second factor yet


def test_enrollment_then_the_password_grant_needs_the_code(pages: TestClient[Litestar], clock: FrozenClock) -> None:
    secret, recovery_code = enroll(pages, clock)
    assert re.fullmatch(r"([A-Z2-9]{4}-){5}[A-Z2-9]{4}", recovery_code)
    assert pages.get("/enroll", follow_redirects=False).headers["location"] == "/enroll/manage"
    manage = pages.get("/enroll/manage")
    assert "Authenticator app" in manage.text and recovery_code not in manage.text  # shown once

    answer = password_grant(pages)
    assert (answer.status_code, answer.json()["error"]) == (403, "mfa_required")
    clock.advance(30)  # the enrollment code's time step is spent
    tokens = pages.post(
        "/oauth/token",
        data={
            "grant_type": MFA_OTP,
            "client_id": "public-app",
            "mfa_token": answer.json()["mfa_token"],
            "otp": totp(secret, clock),
        },
    )
    assert tokens.status_code == 200, tokens.text
    assert tokens.json()["access_token"]


def test_the_qr_code_expires(pages: TestClient[Litestar], clock: FrozenClock) -> None:
    sign_in(pages)
    setup = pages.get("/enroll/setup")
    old_secret = secret_on(setup.text)
    clock.advance(PENDING_ENROLLMENT_SECONDS + 1)  # the page session (15 min idle) outlives the QR code
    answer = post(pages, "/enroll/setup", setup, otp=totp(old_secret, clock))
    assert answer.status_code == 400
    assert "expired" in alert(answer.text)
    new_secret = secret_on(answer.text)
    assert new_secret != old_secret
    assert post(pages, "/enroll/setup", answer, otp=totp(new_secret, clock)).status_code == 200


def test_too_many_wrong_codes_are_rate_limited(pages: TestClient[Litestar], clock: FrozenClock) -> None:
    sign_in(pages)
    setup = pages.get("/enroll/setup")
    secret = secret_on(setup.text)
    wrong = "000000" if totp(secret, clock) != "000000" else "111111"
    statuses = [post(pages, "/enroll/setup", setup, otp=wrong).status_code for _ in range(10)]
    assert statuses == [400] * 10
    limited = post(pages, "/enroll/setup", setup, otp=totp(secret, clock))
    assert limited.status_code == 429
    assert "Too many wrong codes" in alert(limited.text)


# --- the gate for users who already have a factor -----------------------------------------------------------------


@pytest.fixture
def enrolled(pages: TestClient[Litestar], clock: FrozenClock) -> tuple[str, str]:
    """Alice has an app; the pages are signed out."""
    secret, recovery_code = enroll(pages, clock)
    page = pages.get("/enroll/manage")
    post(pages, "/enroll/sign-out", page)
    clock.advance(30)
    return secret, recovery_code


def test_existing_factor_must_be_passed_before_anything_changes(
    pages: TestClient[Litestar], clock: FrozenClock, enrolled: tuple[str, str]
) -> None:
    secret, _ = enrolled
    assert sign_in(pages).headers["location"] == "/enroll/verify"
    for path in ("/enroll", "/enroll/setup", "/enroll/manage"):
        assert pages.get(path, follow_redirects=False).headers["location"] == "/enroll/verify", path
    verify = pages.get("/enroll/verify")
    assert 'name="otp"' in verify.text and 'name="recovery_code"' in verify.text
    # Posting to the other pages changes nothing.
    for path in ("/enroll/setup", "/enroll/remove"):
        answer = post(pages, path, verify, otp=totp(secret, clock), authenticator_id="x")
        assert answer.headers["location"] == "/enroll/verify", path
    assert password_grant(pages).json()["error"] == "mfa_required"

    wrong = post(pages, "/enroll/verify", verify, otp="000000" if totp(secret, clock) != "000000" else "111111")
    assert wrong.status_code == 400
    assert "That code is not right" in alert(wrong.text)
    right = post(pages, "/enroll/verify", verify, otp=totp(secret, clock))
    assert right.headers["location"] == "/enroll/manage"
    assert pages.get("/enroll/manage").status_code == 200


def test_recovery_code_passes_the_gate_once_and_is_replaced(
    pages: TestClient[Litestar], enrolled: tuple[str, str]
) -> None:
    _, recovery_code = enrolled
    sign_in(pages)
    verify = pages.get("/enroll/verify")
    answer = post(pages, "/enroll/verify", verify, recovery_code=recovery_code.lower().replace("-", " "))
    assert answer.status_code == 200
    new_code = recovery_code_on(answer.text)
    assert new_code != recovery_code
    assert "Your new recovery code" in answer.text
    assert pages.get("/enroll/manage").status_code == 200

    pages.post("/enroll/sign-out", data={"_csrf_token": csrf_token(answer.text)})
    sign_in(pages)
    again = post(pages, "/enroll/verify", pages.get("/enroll/verify"), recovery_code=recovery_code)
    assert again.status_code == 400
    assert alert(again.text) == "That recovery code is not right."


def test_removal_needs_a_fresh_code(pages: TestClient[Litestar], clock: FrozenClock, enrolled: tuple[str, str]) -> None:
    secret, _ = enrolled
    sign_in(pages)
    gate_code = totp(secret, clock)
    post(pages, "/enroll/verify", pages.get("/enroll/verify"), otp=gate_code)
    manage = pages.get("/enroll/manage")
    authenticator_id = re.search(r'name="authenticator_id" value="([^"]+)"', manage.text).group(1)  # type: ignore[union-attr]

    reused = post(pages, "/enroll/remove", manage, authenticator_id=authenticator_id, otp=gate_code)
    assert reused.status_code == 400
    assert "That code is not right" in alert(reused.text)
    assert password_grant(pages).json()["error"] == "mfa_required"

    clock.advance(30)
    removed = post(pages, "/enroll/remove", manage, authenticator_id=authenticator_id, otp=totp(secret, clock))
    assert removed.headers["location"] == "/enroll"
    setup = pages.get("/enroll", follow_redirects=True)
    assert str(setup.url).endswith("/enroll/setup")
    assert "The authenticator app was removed" in setup.text
    assert password_grant(pages).status_code == 200


# --- sessions ------------------------------------------------------------------------------------------------------


def test_sign_out_ends_the_session(pages: TestClient[Litestar], settings: Settings) -> None:
    sign_in(pages)
    cookie = pages.cookies[SESSION_COOKIE]
    setup = pages.get("/enroll/setup")
    answer = post(pages, "/enroll/sign-out", setup)
    assert (answer.status_code, answer.headers["location"]) == (303, "/enroll?notice=signed-out")
    assert "Max-Age=0" in set_cookie(answer, SESSION_COOKIE)
    assert web_session_rows(settings) == []
    assert "You have signed out." in pages.get(answer.headers["location"]).text
    # The old cookie is worthless now.
    pages.cookies.set(SESSION_COOKIE, cookie, domain="identity.test")
    assert pages.get("/enroll/setup", follow_redirects=False).headers["location"].startswith("/enroll?")


def test_session_ends_after_15_idle_minutes(pages: TestClient[Litestar], clock: FrozenClock) -> None:
    sign_in(pages)
    clock.advance(IDLE_SECONDS - 60)
    assert pages.get("/enroll/setup").status_code == 200  # activity keeps it alive
    clock.advance(IDLE_SECONDS - 60)
    assert pages.get("/enroll/setup").status_code == 200
    clock.advance(IDLE_SECONDS + 1)
    answer = pages.get("/enroll/setup", follow_redirects=False)
    assert answer.headers["location"] == "/enroll?notice=expired"
    assert "Your session ended" in pages.get(answer.headers["location"]).text


def test_session_ends_an_hour_after_sign_in_however_active(pages: TestClient[Litestar], clock: FrozenClock) -> None:
    sign_in(pages)
    for _ in range(MAX_SESSION_SECONDS // 600):
        clock.advance(600)
        assert pages.get("/enroll/setup").status_code == 200
    clock.advance(600)
    assert pages.get("/enroll/setup", follow_redirects=False).headers["location"] == "/enroll?notice=expired"


def test_sessions_are_shared_by_instances_on_one_database(
    pages: TestClient[Litestar], settings: Settings, clock: FrozenClock
) -> None:
    sign_in(pages)
    with TestClient(make_app(settings, clock), base_url="https://identity.test") as other:
        other.cookies.set(SESSION_COOKIE, pages.cookies[SESSION_COOKIE], domain="identity.test")
        assert other.get("/enroll/setup").status_code == 200
        assert "alice@example.test" in other.get("/enroll/setup").text


def test_forged_or_unsigned_session_cookies_are_ignored(pages: TestClient[Litestar]) -> None:
    sign_in(pages)
    session_id, _, signature = pages.cookies[SESSION_COOKIE].rpartition(".")
    for forged in (session_id, f"{session_id}.{'0' * len(signature)}", f"x{session_id}.{signature}"):
        pages.cookies.set(SESSION_COOKIE, forged, domain="identity.test")
        assert pages.get("/enroll/setup", follow_redirects=False).status_code == 303


def test_session_id_changes_at_sign_in_and_after_the_second_factor(
    pages: TestClient[Litestar], clock: FrozenClock, enrolled: tuple[str, str]
) -> None:
    secret, _ = enrolled
    sign_in(pages)
    first = pages.cookies[SESSION_COOKIE]
    sign_in(pages)
    second = pages.cookies[SESSION_COOKIE]
    post(pages, "/enroll/verify", pages.get("/enroll/verify"), otp=totp(secret, clock))
    third = pages.cookies[SESSION_COOKIE]
    assert len({first, second, third}) == 3
    pages.cookies.set(SESSION_COOKIE, first, domain="identity.test")
    assert pages.get("/enroll/verify", follow_redirects=False).status_code == 303


def test_session_rows_hold_no_secret_and_not_the_cookie(
    pages: TestClient[Litestar], settings: Settings, clock: FrozenClock
) -> None:
    secret, recovery_code = enroll(pages, clock)
    (key_hash, data), *others = web_session_rows(settings)
    assert others == []
    session_id = pages.cookies[SESSION_COOKIE].rpartition(".")[0]
    assert session_id not in key_hash
    stored = json.loads(data)
    assert set(stored) == {"user_id", "connection", "mfa", "since"}
    assert stored["mfa"] is True and stored["connection"] == "customers"
    for value in (secret, recovery_code, recovery_code.replace("-", ""), ALICE_CUSTOMER_PASSWORD):
        assert value.encode() not in data


# --- CSRF, headers, escaping, secrets -----------------------------------------------------------------------------


def test_forms_without_a_valid_csrf_token_are_refused(pages: TestClient[Litestar]) -> None:
    page = pages.get("/enroll")
    fields = {"username": ALICE, "password": ALICE_CUSTOMER_PASSWORD}
    missing = pages.post("/enroll/sign-in", data=fields, follow_redirects=False)
    forged = pages.post("/enroll/sign-in", data={**fields, "_csrf_token": "0" * 128}, follow_redirects=False)
    for answer in (missing, forged):
        assert answer.status_code == 403
        assert answer.headers["content-type"].startswith("text/html")
        assert "This form has expired or did not come from this site" in answer.text
        assert SESSION_COOKIE not in answer.headers.get("set-cookie", "")
    # A token from the page is useless without the matching cookie (a cross-site form cannot send it).
    pages.cookies.delete(CSRF_COOKIE)
    stolen = pages.post(
        "/enroll/sign-in", data={**fields, "_csrf_token": csrf_token(page.text)}, follow_redirects=False
    )
    assert stolen.status_code == 403


def test_sign_out_without_a_csrf_token_is_refused(pages: TestClient[Litestar]) -> None:
    sign_in(pages)
    assert pages.post("/enroll/sign-out", follow_redirects=False).status_code == 403
    assert pages.get("/enroll/setup").status_code == 200


def test_api_routes_are_outside_csrf_and_sessions(pages: TestClient[Litestar]) -> None:
    # A fresh client, as an API client is: no cookie, no CSRF token.
    answer = password_grant(pages)
    assert answer.status_code == 200, answer.text
    for response in (answer, pages.get("/"), pages.get("/.well-known/jwks.json"), pages.get("/healthz")):
        assert "set-cookie" not in response.headers
    challenge = pages.post("/mfa/challenge", data={"client_id": "public-app", "mfa_token": "x"})
    assert challenge.headers["content-type"].startswith("application/json")
    assert "CSRF" not in challenge.text
    assert not pages.cookies


def test_pages_send_the_security_headers(pages: TestClient[Litestar], clock: FrozenClock) -> None:
    responses = [pages.get("/enroll")]
    sign_in(pages)
    setup = pages.get("/enroll/setup")
    responses += [setup, post(pages, "/enroll/setup", setup, otp=totp(secret_on(setup.text), clock))]
    responses += [pages.get("/enroll/manage"), pages.post("/enroll/sign-out", follow_redirects=False)]
    policy = responses[0].headers["content-security-policy"]
    assert "default-src 'none'" in policy and "frame-ancestors 'none'" in policy
    assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
    assert "script-src 'self';" in policy  # the one script is a static file of this origin (security keys)
    for response in responses[:-1]:  # ... and no page carries an inline one
        scripts = response.text.count("<script")
        assert scripts == response.text.count('<script src="/static/webauthn.js" defer></script>'), response.url
    for response in responses:
        assert response.headers["content-security-policy"] == policy, response.url
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["referrer-policy"] == "no-referrer"
        assert "no-store" in response.headers["cache-control"]
        assert response.headers["x-content-type-options"] == "nosniff"
    assert responses[-1].status_code == 403  # the error page too


def test_cookies_are_httponly_samesite_and_secure_under_https(pages: TestClient[Litestar]) -> None:
    csrf = set_cookie(pages.get("/enroll"), CSRF_COOKIE)
    session = set_cookie(sign_in(pages), SESSION_COOKIE)
    for cookie, samesite in ((session, "lax"), (csrf, "strict")):
        attributes = {part.strip().lower() for part in cookie.split(";")[1:]}
        assert {"httponly", "secure", "path=/", f"samesite={samesite}"} <= attributes, cookie
    assert "max-age=900" in session.lower()
    assert re.fullmatch(r"[\w-]{43}\.[0-9a-f]{64}", session.split(";")[0].split("=", 1)[1])


def test_plain_http_issuer_gets_no_secure_cookie(settings: Settings) -> None:
    config = session_config(Settings(database_url=settings.database_url, issuer="http://127.0.0.1:8000/"))
    assert (config.key, config.secure, config.httponly, config.samesite) == ("identity-session", False, True, "lax")
    assert session_config(settings).key == SESSION_COOKIE and session_config(settings).secure
    assert settings.issuer == ISSUER


def test_user_supplied_strings_are_escaped(settings: Settings, clock: FrozenClock) -> None:
    apply(settings, pages_tenant(friendly_name=FRIENDLY_NAME))
    with TestClient(make_app(settings, clock), base_url="https://identity.test") as client:
        typed = sign_in(client, '<script>alert("x")</script>', "whatever password")
        assert "<script>" not in typed.text
        assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in typed.text
        assert sign_in(client, EVE, EVE_PASSWORD).headers["location"] == "/enroll/setup"
        setup = client.get("/enroll/setup").text
        assert "<b>" not in setup and "<i>" not in setup
        assert "Acme &lt;b&gt;&#34;Tools&#34;&lt;/b&gt; &amp; Co" in setup
        assert "eve&lt;i&gt;&amp;&#39;x&#39;@example.test" in setup


def test_no_secret_in_urls_hidden_fields_or_logs(
    pages: TestClient[Litestar], clock: FrozenClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    seen: list[Response] = []
    sign_in_page = pages.get("/enroll")
    seen += [
        sign_in_page,
        post(pages, "/enroll/sign-in", sign_in_page, username=ALICE, password=ALICE_CUSTOMER_PASSWORD),
    ]
    setup = pages.get("/enroll/setup")
    secret = secret_on(setup.text)
    done = post(pages, "/enroll/setup", setup, otp=totp(secret, clock))
    recovery_code = recovery_code_on(done.text)
    seen += [setup, done, pages.get("/enroll/manage", follow_redirects=True)]

    hidden = re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', setup.text)
    assert {name for name, _ in hidden} <= {"_csrf_token", "credential"}
    assert all(value == "" for name, value in hidden if name == "credential")  # filled by webauthn.js, if at all
    for response in seen:
        for url in [str(response.url), response.headers.get("location", ""), *(str(r.url) for r in response.history)]:
            assert secret not in url and recovery_code not in url
    for value in (secret, recovery_code, ALICE_CUSTOMER_PASSWORD):
        assert value not in caplog.text
    assert "enroll authenticator activated" in caplog.text


def test_oversized_forms_are_refused(pages: TestClient[Litestar]) -> None:
    page = pages.get("/enroll")
    answer = post(pages, "/enroll/sign-in", page, username="a" * 20_000, password="x")
    assert answer.status_code == 413
    assert "The form was too large." in answer.text


def test_only_authenticator_apps_can_be_removed(
    pages: TestClient[Litestar], clock: FrozenClock, enrolled: tuple[str, str]
) -> None:
    secret, _ = enrolled
    sign_in(pages)
    post(pages, "/enroll/verify", pages.get("/enroll/verify"), otp=totp(secret, clock))
    clock.advance(30)
    answer = post(
        pages,
        "/enroll/remove",
        pages.get("/enroll/manage"),
        authenticator_id="recovery-code|x",
        otp=totp(secret, clock),
    )
    assert answer.status_code == 404
    assert alert(answer.text) == "That authenticator no longer exists."
    assert password_grant(pages).json()["error"] == "mfa_required"
