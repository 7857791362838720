"""Every single-use value, raced: N concurrent requests (64 by default) per round, over real HTTP, on both databases.

Each row spends one value per round and must see exactly one success, and no 5xx at all:

- ``otp-step``: one TOTP code sent on N different mfa_tokens (the step is accepted once per authenticator);
- ``recovery-code``: one recovery code on N mfa_tokens (it is swapped for a new one once);
- ``mfa-token``: one mfa_token, half the requests with the current code, half with the recovery code: the code and
  the recovery code are independent, so only the mfa_token's burn keeps the second one out;
- ``refresh-token``: one refresh token rotated N times (leeway 0);
- ``enrollment-api``: a pending authenticator confirmed with one code on N mfa_tokens (activated once);
- ``enrollment-page``: the enrollment page's confirmation form posted N times in one session;
- ``session-rotation``: the second-factor form of the enrollment page posted N times in one session, half with the
  code and half with the recovery code: both are right, and the session must still be rotated (a new session
  created) once;
- ``webauthn-challenge``: one WebAuthn assertion (its challenge bound to one mfa_token) sent N times;
- ``authorization-code``: one authorization code of the first-party apps endpoint redeemed N times at
  ``/oauth/token``, each with its PKCE verifier;
- ``auth-session-step``: the OTP step of one ``auth_session`` at ``/oauth/authorize-challenge`` sent N times with
  the right code (the step advances, and a code is issued, once);
- ``emailed-code``: one emailed code (its ``oob_code`` and the code read from the email) sent N times with its
  mfa_token at the mfa-oob grant (a second server, with a real SMTP server, runs these rows);
- ``emailed-code-or-recovery``: one mfa_token, half the requests with the emailed code, half with the recovery code:
  the code is spent before the mfa_token is burned, so a loser of the burn must give its code back.
- ``auth-session-email``: the emailed code of one ``auth_session`` at ``/oauth/authorize-challenge`` sent N times (one
  authorization code);
- ``page-email``: the enrollment page's emailed sign-in code posted N times in one page session (signed in once).

And the brute-force threshold: N wrong passwords for one identifier from one address: at most 10 evaluated.

Rounds and concurrency: ``IDENTITY_RACE_ROUNDS`` (default `ROUNDS_IN_CI`), ``IDENTITY_RACE_CONCURRENCY`` (64).
The figures of each row are printed (``pytest -s``) as one JSON line, for docs/security.md.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from identity.settings import EncryptionKeys
from tests import log_scan
from tests.adversarial.conftest import (
    API,
    MFA_OTP,
    MFA_RECOVERY_CODE,
    MFA_WEBAUTHN,
    PASSWORD,
    PUBLIC,
    Target,
    db,
    db_run,
    email,
    env_int,
    start_target,
)
from tests.adversarial.races import DEFAULT_CONCURRENCY, Shot, burst, clone_mfa_tokens
from tests.e2e.conftest import apply_tenant_file, create_user, stop_and_check
from tests.smtp_support import SmtpSink

ROUNDS_IN_CI = 3
"""CI runs 3 rounds per row to stay within its budget (a round costs 1 to 4 s on the shared 2-core machine);
``IDENTITY_RACE_ROUNDS=20`` is the full run (docs/security.md)."""


def rounds() -> int:
    return env_int("IDENTITY_RACE_ROUNDS", ROUNDS_IN_CI)


def concurrency() -> int:
    return env_int("IDENTITY_RACE_CONCURRENCY", DEFAULT_CONCURRENCY)


def statuses(responses: list[Any]) -> Counter[str]:
    counted: Counter[str] = Counter()
    for response in responses:
        if isinstance(response, BaseException):
            counted[type(response).__name__] += 1
            continue
        error = ""
        if response.headers.get("content-type", "").startswith("application/json") and response.content:
            body = response.json()
            error = str(body.get("error", "")) if isinstance(body, dict) else ""
        counted[f"{response.status_code} {error}".strip()] += 1
    return counted


class RaceReport:
    """Successes per round and every answer, for one row; printed as one JSON line at the end."""

    def __init__(self, row: str) -> None:
        self.row = row
        self.successes: list[int] = []
        self.answers: Counter[str] = Counter()
        self.started = time.monotonic()

    def add(self, responses: list[Any], succeeded: Callable[[Any], bool]) -> int:
        self.answers.update(statuses(responses))
        wins = sum(1 for response in responses if not isinstance(response, BaseException) and succeeded(response))
        self.successes.append(wins)
        return wins

    def check(self, *, expected: int = 1) -> None:
        figures = {
            "row": self.row,
            "rounds": len(self.successes),
            "concurrency": concurrency(),
            "successes_per_round": self.successes,
            "answers": dict(self.answers.most_common()),
            "seconds": round(time.monotonic() - self.started, 1),
        }
        print("race:", json.dumps(figures))
        assert not any(name.startswith("5") or not name[0].isdigit() for name in self.answers), figures
        assert self.successes == [expected] * len(self.successes), figures


def ok(response: Any) -> bool:
    return bool(response.status_code == 200)


def token_shot(target: Target, **params: str) -> Shot:
    form, auth = target.token_form(**params)
    return Shot("/oauth/token", form=form, auth=auth)


def fresh_mfa_tokens(target: Target, who: str, count: int, **login: str) -> list[str]:
    return clone_mfa_tokens(target.database_url, target.mfa_token(who, **login), count)


# --- second factors ----------------------------------------------------------------------------------------------


def test_race_otp_step(target: Target) -> None:
    enrolled = target.enroll("otp")
    report = RaceReport("otp-step")
    for _ in range(rounds()):
        target.forget_used_steps("otp")
        tokens = fresh_mfa_tokens(target, "otp", concurrency())
        code = enrolled.code()
        shots = [token_shot(target, grant_type=MFA_OTP, mfa_token=token, otp=code) for token in tokens]
        report.add(burst(target.base_url, shots), ok)
    report.check()
    target.assert_clean_log()


def test_race_recovery_code(target: Target) -> None:
    enrolled = target.enroll("recovery")
    report = RaceReport("recovery-code")
    for _ in range(rounds()):
        target.refill_attempts("recovery")
        tokens = fresh_mfa_tokens(target, "recovery", concurrency())
        shots = [
            token_shot(target, grant_type=MFA_RECOVERY_CODE, mfa_token=token, recovery_code=enrolled.recovery_code)
            for token in tokens
        ]
        responses = burst(target.base_url, shots)
        report.add(responses, ok)
        replaced = [r.json()["recovery_code"] for r in responses if not isinstance(r, BaseException) and ok(r)]
        if replaced:
            enrolled.recovery_code = replaced[0]
    report.check()
    target.assert_clean_log()


def test_race_mfa_token(target: Target) -> None:
    enrolled = target.enroll("mfa-token")
    report = RaceReport("mfa-token")
    for _ in range(rounds()):
        target.forget_used_steps("mfa-token")
        mfa_token = target.mfa_token("mfa-token")
        code = enrolled.code()
        shots = [
            token_shot(target, grant_type=MFA_OTP, mfa_token=mfa_token, otp=code)
            if number % 2
            else token_shot(
                target, grant_type=MFA_RECOVERY_CODE, mfa_token=mfa_token, recovery_code=enrolled.recovery_code
            )
            for number in range(concurrency())
        ]
        responses = burst(target.base_url, shots)
        report.add(responses, ok)
        for response in responses:
            if not isinstance(response, BaseException) and ok(response) and "recovery_code" in response.json():
                enrolled.recovery_code = response.json()["recovery_code"]
    report.check()
    target.assert_clean_log()


def test_race_refresh_token(target: Target) -> None:
    report = RaceReport("refresh-token")
    for _ in range(rounds()):
        login = target.login("refresh", scope="offline_access read:things")
        assert login.status_code == 200, login.text
        token = login.json()["refresh_token"]
        shots = [token_shot(target, grant_type="refresh_token", refresh_token=token) for _ in range(concurrency())]
        report.add(burst(target.base_url, shots), ok)
    report.check()
    target.assert_clean_log()


def _reset_factors(target: Target, who: str) -> None:
    pk = target.user_pk(who)
    db_run(
        target.database_url,
        [
            (f"DELETE FROM {table} WHERE user_pk = :pk", {"pk": pk})
            for table in ("authenticator", "recovery_code", "mfa_attempt", "mfa_transaction")
        ],
    )


def test_race_enrollment_confirmation_api(target: Target) -> None:
    import pyotp

    report = RaceReport("enrollment-api")
    for _ in range(rounds()):
        _reset_factors(target, "enroll-api")
        mfa_token = target.mfa_token("enroll-api", audience=target.issuer + "mfa/")
        associated = httpx.post(
            f"{target.base_url}/mfa/associate",
            json={"authenticator_types": ["otp"]},
            headers={"Authorization": f"Bearer {mfa_token}"},
            timeout=30,
        )
        assert associated.status_code == 200, associated.text
        code = pyotp.TOTP(associated.json()["secret"]).now()
        tokens = clone_mfa_tokens(target.database_url, mfa_token, concurrency())
        shots = [token_shot(target, grant_type=MFA_OTP, mfa_token=token, otp=code) for token in tokens]
        report.add(burst(target.base_url, shots), ok)
        active = db(
            target.database_url,
            "SELECT count(*) FROM authenticator WHERE user_pk = :pk AND active = :yes",
            pk=target.user_pk("enroll-api"),
            yes=True,
        )
        assert active == [(1,)]
    report.check()
    target.assert_clean_log()


# --- the enrollment pages ------------------------------------------------------------------------------------------

SESSION_COOKIE = "identity-session"


def _csrf(html: str) -> str:
    match = re.search(r'name="_csrf_token" value="([^"]+)"', html)
    assert match, html[:500]
    return match.group(1)


def _sign_in(target: Target, who: str) -> tuple[httpx.Client, httpx.Response]:
    browser = httpx.Client(base_url=target.base_url, timeout=30, follow_redirects=True)
    page = browser.get("/enroll")
    landed = browser.post(
        "/enroll/sign-in", data={"_csrf_token": _csrf(page.text), "username": email(who), "password": PASSWORD}
    )
    assert landed.status_code == 200, landed.text
    return browser, landed


def _new_sessions(responses: list[Any], old: str) -> set[str]:
    """Session ids handed out by the responses (a rotation), other than the old one."""
    found = set()
    for response in responses:
        if isinstance(response, BaseException):
            continue
        for value in response.headers.get_list("set-cookie"):
            name, _, rest = value.partition("=")
            cookie = rest.split(";")[0].strip('"')
            if name == SESSION_COOKIE and cookie and cookie != old:
                found.add(cookie)
    return found


def _live_sessions(target: Target, who: str) -> int:
    ((user_id,),) = db(target.database_url, "SELECT user_id FROM users WHERE email = :e", e=email(who))
    ((count,),) = db(target.database_url, "SELECT count(*) FROM web_session WHERE user_id = :u", u=user_id)
    return int(count)


def test_race_enrollment_confirmation_page(target: Target) -> None:
    import pyotp

    report = RaceReport("enrollment-page")
    for _ in range(rounds()):
        _reset_factors(target, "enroll-page")
        db(target.database_url, "DELETE FROM web_session")
        browser, setup = _sign_in(target, "enroll-page")
        try:
            assert setup.url.path == "/enroll/setup", setup.url
            shown = re.search(r'<code class="secret">(.*?)</code>', setup.text, re.S)
            assert shown, setup.text[:500]
            secret = re.sub(r"<[^>]+>|\s", "", shown.group(1))
            old = browser.cookies[SESSION_COOKIE]
            form = {"_csrf_token": _csrf(setup.text), "otp": pyotp.TOTP(secret).now()}
            shots = [Shot("/enroll/setup", form=form) for _ in range(concurrency())]
            responses = burst(target.base_url, shots, cookies=dict(browser.cookies))
        finally:
            browser.close()
        wins = report.add(responses, lambda r: r.status_code == 200 and 'id="recovery-code"' in r.text)
        assert len(_new_sessions(responses, old)) == wins
        assert _live_sessions(target, "enroll-page") == 1
    report.check()
    target.assert_clean_log()


def test_race_session_rotation(target: Target) -> None:
    enrolled = target.enroll("session")
    report = RaceReport("session-rotation")
    for _ in range(rounds()):
        target.forget_used_steps("session")
        db(target.database_url, "DELETE FROM web_session")
        browser, verify = _sign_in(target, "session")
        try:
            assert verify.url.path == "/enroll/verify", verify.url
            old = browser.cookies[SESSION_COOKIE]
            token = _csrf(verify.text)
            code = enrolled.code()
            shots = [
                Shot("/enroll/verify", form={"_csrf_token": token, "otp": code})
                if number % 2
                else Shot("/enroll/verify", form={"_csrf_token": token, "recovery_code": enrolled.recovery_code})
                for number in range(concurrency())
            ]
            responses = burst(target.base_url, shots, cookies=dict(browser.cookies))
        finally:
            browser.close()
        report.add(responses, lambda r, old=old: bool(_new_sessions([r], old)))
        for response in responses:
            match = re.search(r'<code id="recovery-code">(.*?)</code>', getattr(response, "text", ""), re.S)
            if match:
                enrolled.recovery_code = re.sub(r"<[^>]+>|\s|-", "", match.group(1))
        assert _live_sessions(target, "session") == 1
    report.check()
    target.assert_clean_log()


# --- WebAuthn ------------------------------------------------------------------------------------------------------


def test_race_webauthn_challenge(target: Target) -> None:
    """One assertion (one challenge, bound to one mfa_token) sent 64 times: the challenge is burned once."""
    from tests.e2e.webauthn_support import SoftKey, okta_form

    origin = f"http://localhost:{target.server.port}"
    key = SoftKey()
    enrolling = target.mfa_token("webauthn", audience=target.issuer + "mfa/")
    associated = httpx.post(
        f"{target.base_url}/mfa/associate",
        json={"authenticator_types": ["webauthn"]},
        headers={"Authorization": f"Bearer {enrolling}"},
        timeout=30,
    )
    assert associated.status_code == 200, associated.text
    created = key.create(associated.json()["publicKey"], origin)
    confirmed = target.token(grant_type=MFA_WEBAUTHN, mfa_token=enrolling, **created["response"])
    assert confirmed.status_code == 200, confirmed.text
    report = RaceReport("webauthn-challenge")
    for _ in range(rounds()):
        target.refill_attempts("webauthn")
        mfa_token = target.mfa_token("webauthn")
        challenged = httpx.post(
            f"{target.base_url}/mfa/challenge",
            data={"client_id": PUBLIC, "mfa_token": mfa_token, "challenge_type": "webauthn"},
            timeout=30,
        )
        assert challenged.status_code == 200, challenged.text
        form = okta_form(key.get(challenged.json()["publicKey"], origin))
        shots = [token_shot(target, grant_type=MFA_WEBAUTHN, mfa_token=mfa_token, **form) for _ in range(concurrency())]
        report.add(burst(target.base_url, shots), ok)
    report.check()
    target.assert_clean_log()


# --- the first-party apps endpoint (draft-ietf-oauth-first-party-apps) -------------------------------------------

CHALLENGE_PATH = "/oauth/authorize-challenge"


def _pkce() -> tuple[str, str]:
    """(code_verifier, S256 code_challenge)."""
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def _authorize_challenge(target: Target, who: str, code_challenge: str) -> httpx.Response:
    """The initial request of the draft: email and password, ``response_type=code``, PKCE."""
    return httpx.post(
        target.base_url + CHALLENGE_PATH,
        data={
            "client_id": PUBLIC,
            "response_type": "code",
            "code_challenge": code_challenge,
            "code_challenge_method": "S256",
            "realm": "customers",
            "username": email(who),
            "password": PASSWORD,
            "audience": API,
        },
        timeout=30,
    )


def test_race_authorization_code(target: Target) -> None:
    """One code (a user without a second factor gets it at once) redeemed N times with its verifier."""
    report = RaceReport("authorization-code")
    for _ in range(rounds()):
        verifier, challenge = _pkce()
        started = _authorize_challenge(target, "code", challenge)
        assert started.status_code == 200, started.text
        code = started.json()["authorization_code"]
        shots = [
            token_shot(target, grant_type="authorization_code", code=code, code_verifier=verifier)
            for _ in range(concurrency())
        ]
        report.add(burst(target.base_url, shots), ok)
    report.check()
    target.assert_clean_log()


def test_race_auth_session_step(target: Target) -> None:
    """One auth_session waiting for its OTP step; the right code sent N times: one authorization code."""
    enrolled = target.enroll("fpa-step")
    report = RaceReport("auth-session-step")
    for _ in range(rounds()):
        target.forget_used_steps("fpa-step")
        _, challenge = _pkce()
        asked = _authorize_challenge(target, "fpa-step", challenge)
        assert asked.status_code == 401 and asked.json()["error"] == "insufficient_authorization", asked.text
        form = {"client_id": PUBLIC, "auth_session": asked.json()["auth_session"], "otp": enrolled.code()}
        shots = [Shot(CHALLENGE_PATH, form=form) for _ in range(concurrency())]
        report.add(burst(target.base_url, shots), lambda r: ok(r) and "authorization_code" in r.json())
    report.check()
    target.assert_clean_log()


# --- emailed codes (issue 15) ---------------------------------------------------------------------------------------

MFA_OOB = "http://auth0.com/oauth/grant-type/mfa-oob"
EMAIL_CLIENT = "adv-email"
"""A public client with the mfa-oob grant, on a server of its own with a mail server: the other rows' clients and
the fuzz's stay as they were."""


@dataclass
class EmailTarget:
    target: Target
    sink: SmtpSink
    recovery_codes: dict[str, str] = field(default_factory=dict)
    """The current recovery code of each user enrolled here."""

    def address(self, who: str) -> str:
        return f"{who}.inbox@adv.test"

    def mfa_token(self, who: str, **params: str) -> str:
        return self.target.mfa_token(who, client_id=EMAIL_CLIENT, **params)

    def code(self, who: str) -> str:
        """The code of the latest email to ``who`` (waiting for one)."""
        return self.sink.code_for(self.address(who))

    def challenged(self, who: str, mfa_token: str) -> tuple[str, str]:
        """A code sent for ``mfa_token``: its oob_code and the code from the email."""
        self.sink.clear()
        answer = httpx.post(
            f"{self.target.base_url}/mfa/challenge",
            data={"client_id": EMAIL_CLIENT, "mfa_token": mfa_token},
            timeout=30,
        )
        assert answer.status_code == 200 and answer.json()["challenge_type"] == "oob", answer.text
        return str(answer.json()["oob_code"]), self.code(who)

    def enroll(self, who: str) -> None:
        """A user made with the CLI and an email factor confirmed with the code from its first email."""
        create_user(self.target.env, "customers", PASSWORD, email=email(who))
        log_scan.remember(self.address(who))
        mfa_token = self.mfa_token(who, audience=self.target.issuer + "mfa/")
        self.sink.clear()
        associated = httpx.post(
            f"{self.target.base_url}/mfa/associate",
            json={"authenticator_types": ["oob"], "oob_channels": ["email"], "email": self.address(who)},
            headers={"Authorization": f"Bearer {mfa_token}"},
            timeout=30,
        )
        assert associated.status_code == 200, associated.text
        oob_code = associated.json()["oob_code"]
        confirmed = self.target.token(
            EMAIL_CLIENT, grant_type=MFA_OOB, mfa_token=mfa_token, oob_code=oob_code, binding_code=self.code(who)
        )
        assert confirmed.status_code == 200, confirmed.text
        self.recovery_codes[who] = associated.json()["recovery_codes"][0]

    def refill(self, who: str) -> None:
        """A full attempt bucket and a full bucket of emails: the rows are about the race, not the limits."""
        pk = self.target.user_pk(who)
        db_run(
            self.target.database_url,
            [(f"DELETE FROM {table} WHERE user_pk = :pk", {"pk": pk}) for table in ("mfa_attempt", "mfa_send")],
        )


@pytest.fixture(scope="module")
def email_target(
    target: Target, encryption_keys: EncryptionKeys, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[EmailTarget]:
    """A second ``identity serve`` on the package's database, its mail going to a real SMTP server."""
    log_dir = tmp_path_factory.mktemp("adversarial-email")
    client = log_dir / "email-client.toml"
    client.write_text(
        f'[[clients]]\nclient_id = "{EMAIL_CLIENT}"\nname = "{EMAIL_CLIENT}"\ntoken_endpoint_auth_method = "none"\n'
        f'grant_types = {json.dumps(["password", MFA_OOB, MFA_RECOVERY_CODE])}\nconnections = ["customers"]\n'
    )
    apply_tenant_file(client, {**target.env, "IDENTITY_ISSUER": target.issuer})
    with SmtpSink() as sink:
        server, environ = start_target(
            target.database_url, encryption_keys, log_dir, name="adversarial-email", **sink.env
        )
        found = EmailTarget(Target(server, target.database_url, environ), sink)
        try:
            yield found
        finally:
            stop_and_check(server)


def test_race_emailed_code(email_target: EmailTarget) -> None:
    """One emailed code (oob_code and binding code) on its one mfa_token, N times: the code is spent once."""
    target = email_target.target
    email_target.enroll("email-code")
    report = RaceReport("emailed-code")
    for _ in range(rounds()):
        email_target.refill("email-code")
        mfa_token = email_target.mfa_token("email-code")
        oob_code, code = email_target.challenged("email-code", mfa_token)
        form = {"grant_type": MFA_OOB, "mfa_token": mfa_token, "oob_code": oob_code, "binding_code": code}
        shots = [token_shot(target, client_id=EMAIL_CLIENT, **form) for _ in range(concurrency())]
        report.add(burst(target.base_url, shots), ok)
    report.check()
    target.assert_clean_log()


def test_race_emailed_code_or_recovery_code(email_target: EmailTarget) -> None:
    """One mfa_token, half the requests with the emailed code and half with the recovery code: one burn."""
    target = email_target.target
    email_target.enroll("email-or-recovery")
    report = RaceReport("emailed-code-or-recovery")
    for _ in range(rounds()):
        email_target.refill("email-or-recovery")
        mfa_token = email_target.mfa_token("email-or-recovery")
        oob_code, code = email_target.challenged("email-or-recovery", mfa_token)
        recovery_code = email_target.recovery_codes["email-or-recovery"]
        shots = [
            token_shot(
                target, client_id=EMAIL_CLIENT, grant_type=MFA_OOB, mfa_token=mfa_token, oob_code=oob_code,
                binding_code=code,
            )
            if number % 2
            else token_shot(
                target, client_id=EMAIL_CLIENT, grant_type=MFA_RECOVERY_CODE, mfa_token=mfa_token,
                recovery_code=recovery_code,
            )
            for number in range(concurrency())
        ]  # fmt: skip
        responses = burst(target.base_url, shots)
        report.add(responses, ok)
        for response in responses:
            if not isinstance(response, BaseException) and ok(response) and "recovery_code" in response.json():
                email_target.recovery_codes["email-or-recovery"] = response.json()["recovery_code"]
    report.check()
    target.assert_clean_log()


def test_race_auth_session_email_code(email_target: EmailTarget) -> None:
    """One auth_session waiting for the code emailed at its password step; the code sent N times: one authorization
    code (the first-party apps endpoint spends it with `EmailCodes.check_in_unit`, as the mfa-oob grant does)."""
    target = email_target.target
    email_target.enroll("fpa-email")
    report = RaceReport("auth-session-email")
    for _ in range(rounds()):
        email_target.refill("fpa-email")
        email_target.sink.clear()
        _, challenge = _pkce()
        asked = _authorize_challenge(target, "fpa-email", challenge)
        assert asked.status_code == 401 and asked.json().get("email_code_required") is True, asked.text
        form = {
            "client_id": PUBLIC,
            "auth_session": asked.json()["auth_session"],
            "email_code": email_target.code("fpa-email"),
        }
        shots = [Shot(CHALLENGE_PATH, form=form) for _ in range(concurrency())]
        report.add(burst(target.base_url, shots), lambda r: ok(r) and "authorization_code" in r.json())
    report.check()
    target.assert_clean_log()


def test_race_page_email_code(email_target: EmailTarget) -> None:
    """The enrollment page's sign-in, email the only factor: the emailed code posted N times in one page session
    signs in (rotates the session) once."""
    target = email_target.target
    email_target.enroll("page-email")
    report = RaceReport("page-email")
    for _ in range(rounds()):
        email_target.refill("page-email")
        email_target.sink.clear()
        db(target.database_url, "DELETE FROM web_session")
        browser, asked = _sign_in(target, "page-email")
        try:
            assert asked.url.path == "/enroll/email", asked.url
            old = browser.cookies[SESSION_COOKIE]
            form = {"_csrf_token": _csrf(asked.text), "code": email_target.code("page-email")}
            shots = [Shot("/enroll/email/confirm", form=form) for _ in range(concurrency())]
            responses = burst(target.base_url, shots, cookies=dict(browser.cookies))
        finally:
            browser.close()
        wins = report.add(responses, lambda r, old=old: r.status_code == 303 and bool(_new_sessions([r], old)))
        signed_in = [r for r in responses if getattr(r, "headers", {}).get("location") == "/enroll/manage"]
        assert len(signed_in) == wins  # a loser is told the code is spent, or sent to sign in again
        assert _live_sessions(target, "page-email") == 1
    report.check()
    target.assert_clean_log()


# --- brute force ---------------------------------------------------------------------------------------------------


def test_race_brute_force_threshold(target: Target) -> None:
    report = RaceReport("brute-force")
    for _ in range(rounds()):
        db(target.database_url, "DELETE FROM attack_counter")
        shots = [
            token_shot(target, grant_type="password", username=email("brute"), password=f"wrong {n}")
            for n in range(concurrency())
        ]
        responses = burst(target.base_url, shots)
        report.add(responses, lambda r: r.status_code == 403 and r.json().get("error") == "invalid_grant")
    print("race:", json.dumps({"row": "brute-force", "evaluated_per_round": report.successes}))
    assert max(report.successes) <= 10, report.successes
    assert min(report.successes) >= 1, report.successes
    target.assert_clean_log()
