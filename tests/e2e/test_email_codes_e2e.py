"""Emailed one-time codes end to end and under attack (issue 15): ``identity serve --workers 2`` on the shared e2e
database, a real SMTP server (`tests.smtp_support.SmtpSink`) receiving every message, and every code typed by the
tests read from an email.

- The story: Auth0's Python SDK logs in, the MFA API enrolls an address, the code from the email finishes the login
  (mfa-oob through the SDK's own client-authenticated POST: it has no method for the MFA grants); a second login
  is challenged and finished the same way. Tokens are checked with PyJWT against the server's JWKS.
- The attacks, each with its exact outcome: one code raced 32 times; two codes of one mfa_token raced; 40 wrong codes
  at once against the attempt bucket (10); 30 challenges at once against the send bucket (10 emails); spoofed
  ``X-Forwarded-For`` headers (honoured: the server trusts 127.0.0.1 as a proxy) that must not refill a per-user
  bucket; a mail server that is down, and one that never answers, while the rest of the service keeps answering.

Bursts go through the last-byte-synchronised harness (`tests.adversarial.races.burst`). Every server must stop
without an unhandled error, and no address, code or oob_code may appear in a server's log.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pyotp
import pytest
from auth0.authentication import GetToken
from sqlalchemy import text

from identity.store.db import create_engine
from tests import log_scan
from tests.adversarial.races import Shot, burst
from tests.e2e.conftest import (
    IdentityServer,
    ServerSpec,
    apply_tenant_file,
    query,
    serve_spec,
    start_servers,
    stop_and_check,
    verify_access_token,
    verify_id_token,
)
from tests.smtp_support import SmtpSink, silent_server, unused_port

try:  # auth0-python 4.x
    from auth0.exceptions import Auth0Error  # type: ignore[import-not-found,unused-ignore]
except ImportError:  # auth0-python 5.x and later
    from auth0.authentication.exceptions import Auth0Error  # type: ignore[import-not-found,no-redef,unused-ignore]

MFA_OOB = "http://auth0.com/oauth/grant-type/mfa-oob"
MFA_OTP = "http://auth0.com/oauth/grant-type/mfa-otp"
MFA_RECOVERY_CODE = "http://auth0.com/oauth/grant-type/mfa-recovery-code"
PASSWORD_REALM = "http://auth0.com/oauth/grant-type/password-realm"
API = "https://api.email.e2e.test/"
CONNECTION = "email-customers"
PUBLIC = "email-e2e-public"
POST = "email-e2e-post"
POST_SECRET = "email-e2e-post-secret-0123456789abcdefgh"
USER_PASSWORD = "email e2e password 1234"
USERS = ("erin", "same", "two", "twice", "apps", "wrong", "sends", "spoof", "down", "unenrolled", "silent")

INVALID_BINDING = (403, "invalid_grant", "Invalid binding_code.")
INVALID_OOB = (403, "invalid_grant", "Invalid oob_code.")
MALFORMED = (403, "invalid_grant", "Malformed mfa_token")
TOO_MANY = (429, "too_many_attempts", "Too many failed attempts. Please try again later.")
TOO_MANY_SENT = (429, "too_many_attempts", "Too many codes were sent. Please try again later.")
BAD_GATEWAY = (400, "bad_gateway", "The code could not be sent. Please try again later.")
SMTP_TIMEOUT = 2.0

Outcome = tuple[int, str | None, str | None]


def login_name(who: str) -> str:
    return f"{who}@email.e2e.test"


def inbox(who: str) -> str:
    """The address of ``who``'s email factor: not the login name, so it has no business in any log line."""
    return f"{who}.inbox@mail.e2e.test"


def tenant_toml() -> str:
    grants = f'["{PASSWORD_REALM}", "{MFA_OOB}", "{MFA_OTP}", "{MFA_RECOVERY_CODE}"]'
    text = f"""\
[[connections]]
name = "{CONNECTION}"

[[apis]]
identifier = "{API}"
name = "Email e2e API"
scopes = ["read:things"]

[[clients]]
client_id = "{PUBLIC}"
name = "Email e2e public client"
token_endpoint_auth_method = "none"
grant_types = {grants}
connections = ["{CONNECTION}"]

[[clients]]
client_id = "{POST}"
name = "Email e2e client_secret_post client"
client_secret = "{POST_SECRET}"
token_endpoint_auth_method = "client_secret_post"
grant_types = {grants}
connections = ["{CONNECTION}"]
"""
    for who in USERS:
        text += f'\n[[users]]\nconnection = "{CONNECTION}"\nemail = "{login_name(who)}"\npassword = "{USER_PASSWORD}"\n'
    return text


# --- HTTP ----------------------------------------------------------------------------------------------------------


def form(client_id: str = PUBLIC, **params: str) -> dict[str, str]:
    body = {"client_id": client_id, **params}
    if client_id == POST:
        body["client_secret"] = POST_SECRET
    return body


def outcome(response: httpx.Response) -> Outcome:
    body = response.json()
    return response.status_code, body.get("error"), body.get("error_description")


def login(server: IdentityServer, who: str, *, audience: str = API) -> httpx.Response:
    body = form(
        grant_type=PASSWORD_REALM, realm=CONNECTION, username=login_name(who), password=USER_PASSWORD, audience=audience
    )
    return httpx.post(server.token_url, data=body, timeout=30)


def mfa_token(server: IdentityServer, who: str, *, audience: str = API) -> str:
    response = login(server, who, audience=audience)
    assert response.status_code == 403 and response.json()["error"] == "mfa_required", response.text
    return str(response.json()["mfa_token"])


def associate_email(server: IdentityServer, token: str, address: str) -> httpx.Response:
    log_scan.remember(address)
    return httpx.post(
        f"{server.base_url}/mfa/associate",
        json={"authenticator_types": ["oob"], "oob_channels": ["email"], "email": address},
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )


def challenge(server: IdentityServer, token: str, **params: str) -> httpx.Response:
    return httpx.post(f"{server.base_url}/mfa/challenge", data=form(mfa_token=token, **params), timeout=30)


def oob_form(token: str, oob_code: str, binding_code: str) -> dict[str, str]:
    return form(grant_type=MFA_OOB, mfa_token=token, oob_code=oob_code, binding_code=binding_code)


def oob(server: IdentityServer, token: str, oob_code: str, binding_code: str, **headers: str) -> httpx.Response:
    return httpx.post(server.token_url, data=oob_form(token, oob_code, binding_code), headers=headers, timeout=30)


def tally(responses: list[Any]) -> Counter[Outcome]:
    """Outcomes by (status, error, description); no exception and no 5xx among them."""
    counted: Counter[Outcome] = Counter()
    for response in responses:
        assert not isinstance(response, BaseException), repr(response)
        assert response.status_code < 500, response.text
        counted[outcome(response)] += 1
    return counted


def other_code(code: str, step: int = 1) -> str:
    return f"{(int(code) + step) % 1_000_000:06d}"


def spoofed(number: int) -> dict[str, str]:
    """Headers claiming to come from someone else each time (TEST-NET-3 addresses)."""
    address = f"203.0.113.{number % 250 + 1}"
    return {"X-Forwarded-For": address, "auth0-forwarded-for": address, "True-Client-IP": address}


# --- The module's servers --------------------------------------------------------------------------------------------


@dataclass
class EmailSetup:
    server: IdentityServer
    env: dict[str, str]
    sink: SmtpSink
    user_ids: dict[str, str]
    codes: list[str] = field(default_factory=list)
    """Every code read from an email: checked against the servers' logs at the end."""

    def code_for(self, who: str, count: int) -> str:
        """The code of the ``count``-th email to ``who``'s factor (waiting for it)."""
        self.sink.wait_for(inbox(who), count=count)
        code = self.sink.code_for(inbox(who))
        self.codes.append(code)
        return code

    def sent_to(self, who: str) -> int:
        """Emails to ``who``'s factor so far (without waiting)."""
        return sum(1 for message in self.sink.messages if message["To"] == inbox(who))

    def enroll(self, who: str) -> None:
        """An active email factor for ``who`` (one email spent): enrolled with an mfa_token for the MFA API."""
        token = mfa_token(self.server, who, audience=self.server.issuer + "mfa/")
        associated = associate_email(self.server, token, inbox(who))
        assert associated.status_code == 200, associated.text
        confirmed = oob(self.server, token, associated.json()["oob_code"], self.code_for(who, 1))
        assert confirmed.status_code == 200, confirmed.text

    def challenged(self, who: str, token: str, count: int) -> tuple[str, str]:
        """Send ``who`` a code for ``token`` (the ``count``-th email): its oob_code and the code from the email."""
        answer = challenge(self.server, token)
        assert answer.status_code == 200, answer.text
        return str(answer.json()["oob_code"]), self.code_for(who, count)


def cheap_hashing(env: dict[str, str]) -> dict[str, str]:
    return {**env, "IDENTITY_ARGON2_TIME_COST": "1", "IDENTITY_ARGON2_MEMORY_KIB": "1024"}


@pytest.fixture(scope="module")
def sink() -> Iterator[SmtpSink]:
    with SmtpSink() as server:
        yield server


@pytest.fixture(scope="module")
def email_setup(
    e2e_env: dict[str, str], sink: SmtpSink, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[EmailSetup]:
    """The tenant applied; ``identity serve --workers 2`` with the sink as its mail server, trusting 127.0.0.1 as
    a proxy (so a forged ``X-Forwarded-For`` is taken for the client's address, as behind a real proxy)."""
    tmp = tmp_path_factory.mktemp("email-e2e")
    env = cheap_hashing({**e2e_env, **sink.env, "IDENTITY_TRUSTED_PROXIES": "127.0.0.1"})
    path = tmp / "email-tenant.toml"
    path.write_text(tenant_toml())
    report = apply_tenant_file(path, env)
    user_ids = {user["email"].split("@")[0]: user["user_id"] for user in report["users"]}
    spec = ServerSpec(
        name="email-workers-2",
        args=lambda port: ["serve", "--host", "127.0.0.1", "--port", str(port), "--workers", "2"],
        env=lambda port: {**env, "IDENTITY_ISSUER": f"http://127.0.0.1:{port}/"},
    )
    (server,) = start_servers([spec], tmp)
    setup = EmailSetup(server, env, sink, user_ids)
    try:
        yield setup
    finally:
        stop_and_check(server)
        assert_nothing_logged(server, setup)


def assert_nothing_logged(server: IdentityServer, setup: EmailSetup) -> None:
    """No factor address and no code read from an email in the server's log (oob_codes: the session's log scan)."""
    log = server.process.stderr() + server.process.stdout()
    for who in USERS:
        assert inbox(who) not in log, f"{inbox(who)} in the log of {server.process.name}"
    for code in setup.codes:
        assert not re.search(rf"(?<!\d){code}(?!\d)", log), f"an emailed code in the log of {server.process.name}"


# --- The story -------------------------------------------------------------------------------------------------------


def sdk_grant(get_token: GetToken, **data: str) -> Any:
    """An MFA grant through the SDK's own client-authenticated POST (it has no method for them)."""
    url = f"{get_token.protocol}://{get_token.domain}/oauth/token"
    return get_token.authenticated_post(url, data={"client_id": get_token.client_id, **data})


def sdk_mfa_required(get_token: GetToken, audience: str) -> str:
    with pytest.raises(Auth0Error) as caught:
        get_token.login(login_name("erin"), USER_PASSWORD, realm=CONNECTION, audience=audience, scope="openid")
    error = caught.value
    assert (error.status_code, error.error_code) == (403, "mfa_required"), error
    token = str(error.content["mfa_token"])
    log_scan.remember(token)  # the SDK posts with requests: the httpx wrapper does not see it
    return token


def test_enroll_an_address_and_log_in_twice_with_codes_from_the_emails(email_setup: EmailSetup) -> None:
    server, sink = email_setup.server, email_setup.sink
    get_token = GetToken(server.domain, POST, client_secret=POST_SECRET, protocol="http")

    # Enrollment: an mfa_token for the MFA API, the address given to /mfa/associate, the code from the email.
    enrolling = sdk_mfa_required(get_token, server.issuer + "mfa/")
    associated = associate_email(server, enrolling, inbox("erin"))
    assert associated.status_code == 200, associated.text
    body = associated.json()
    assert (body["authenticator_type"], body["oob_channel"], body["binding_method"]) == ("oob", "email", "prompt")
    assert len(body["recovery_codes"]) == 1
    (message,) = sink.wait_for(inbox("erin"))
    assert message["To"] == inbox("erin")
    code = email_setup.code_for("erin", 1)
    tokens = sdk_grant(get_token, grant_type=MFA_OOB, mfa_token=enrolling, oob_code=body["oob_code"], binding_code=code)
    log_scan.remember(tokens["access_token"])
    claims = verify_access_token(server, tokens["access_token"], audience=server.issuer + "mfa/")
    assert claims["sub"] == email_setup.user_ids["erin"] and claims["azp"] == POST
    assert claims["amr"] == ["pwd", "mfa", "otp"]

    # A second login: the email factor is the only one, so /mfa/challenge picks it unasked and sends a code.
    token = sdk_mfa_required(get_token, API)
    challenged = httpx.post(f"{server.base_url}/mfa/challenge", data=form(POST, mfa_token=token), timeout=30)
    assert challenged.status_code == 200, challenged.text
    assert challenged.headers["cache-control"] == "no-store"
    assert set(challenged.json()) == {"challenge_type", "oob_code", "binding_method"}
    assert challenged.json()["challenge_type"] == "oob" and challenged.json()["binding_method"] == "prompt"
    oob_code = challenged.json()["oob_code"]
    code = email_setup.code_for("erin", 2)
    tokens = sdk_grant(get_token, grant_type=MFA_OOB, mfa_token=token, oob_code=oob_code, binding_code=code)
    log_scan.remember(tokens["access_token"], tokens["id_token"])
    claims = verify_access_token(server, tokens["access_token"], audience=API)
    assert claims["sub"] == email_setup.user_ids["erin"]
    assert claims["amr"] == ["pwd", "mfa", "otp"]
    assert claims["acr"] == "http://schemas.openid.net/pape/policies/2007/06/multi-factor"
    assert verify_id_token(server, tokens["id_token"], client_id=POST)["sub"] == claims["sub"]

    # The same code again: the mfa_token went with it.
    with pytest.raises(Auth0Error) as replayed:
        sdk_grant(get_token, grant_type=MFA_OOB, mfa_token=token, oob_code=oob_code, binding_code=code)
    assert (replayed.value.status_code, replayed.value.error_code, replayed.value.message) == MALFORMED


# --- Races -----------------------------------------------------------------------------------------------------------


def test_one_code_raced_32_times_gets_tokens_once(email_setup: EmailSetup, database_url: str) -> None:
    email_setup.enroll("same")
    token = mfa_token(email_setup.server, "same")
    oob_code, code = email_setup.challenged("same", token, 2)

    responses = burst(email_setup.server.base_url, [Shot("/oauth/token", form=oob_form(token, oob_code, code))] * 32)

    outcomes = tally(responses)
    print(f"\nemailed code raced 32 times: {dict(outcomes)}")
    assert outcomes[(200, None, None)] == 1, outcomes
    assert set(outcomes) <= {(200, None, None), INVALID_OOB, MALFORMED}, outcomes
    (won,) = [r for r in responses if r.status_code == 200]
    assert verify_access_token(email_setup.server, won.json()["access_token"], audience=API)["amr"] == [
        "pwd",
        "mfa",
        "otp",
    ]
    user = f"(SELECT id FROM users WHERE user_id = '{email_setup.user_ids['same']}')"
    assert query(database_url, f"SELECT count(*) FROM oob_code WHERE user_pk = {user} AND consumed_at IS NULL") == [
        (0,)
    ]


def test_two_codes_of_one_mfa_token_raced_only_the_latest_wins_once(email_setup: EmailSetup) -> None:
    email_setup.enroll("two")
    token = mfa_token(email_setup.server, "two")
    first, first_code = email_setup.challenged("two", token, 2)
    second, second_code = email_setup.challenged("two", token, 3)
    shots = [
        Shot("/oauth/token", form=oob_form(token, *((first, first_code) if n % 2 else (second, second_code))))
        for n in range(32)
    ]

    responses = burst(email_setup.server.base_url, shots)

    outcomes = tally(responses)
    print(f"\ntwo codes of one mfa_token raced: {dict(outcomes)}")
    assert outcomes[(200, None, None)] == 1, outcomes
    assert set(outcomes) <= {(200, None, None), INVALID_OOB, MALFORMED}, outcomes
    # The first code was retired when the second was sent: the winner is one of the second code's requests.
    assert [number % 2 for number, response in enumerate(responses) if response.status_code == 200] == [0]


# --- Enrollments raced ------------------------------------------------------------------------------------------------


def test_an_enrollment_raced_with_the_confirmation_of_another_leaves_one_factor(
    email_setup: EmailSetup, database_url: str
) -> None:
    """An mfa_token enrolls only a first factor. The confirmation of address A races 8 enrollments of other
    addresses (other mfa_tokens of the same password). Whichever got in first, every code that arrived is then
    tried: exactly one confirmation succeeds, one factor is active, and the recovery code its enrollment showed is
    the user's. (Eight: with the first, nine of the ten emails an hour. On PostgreSQL, before enrollments held the
    user's bucket, some answered 500, and an enrollment that read "no active factor" just before A was activated
    could be confirmed as a second factor.)"""
    server = email_setup.server
    mfa_audience = server.issuer + "mfa/"
    first = mfa_token(server, "twice", audience=mfa_audience)
    associated = associate_email(server, first, inbox("twice"))
    assert associated.status_code == 200, associated.text
    code = email_setup.code_for("twice", 1)
    tokens = [mfa_token(server, "twice", audience=mfa_audience) for _ in range(8)]
    addresses = [f"twice.{n}.other@mail.e2e.test" for n in range(8)]
    log_scan.remember(*addresses)
    shots = [Shot("/oauth/token", form=oob_form(first, associated.json()["oob_code"], code))]
    shots += [
        Shot(
            "/mfa/associate",
            form={"authenticator_types": "oob", "oob_channels": "email", "email": address},
            headers={"Authorization": f"Bearer {token}"},
        )
        for token, address in zip(tokens, addresses, strict=True)
    ]

    responses = burst(server.base_url, shots)

    raced, enrollments = responses[0], responses[1:]
    outcomes = tally(enrollments)
    print(f"\n8 enrollments racing a confirmation: {dict(outcomes)}; the confirmation: {outcome(raced)}")
    assert set(outcomes) <= {(200, None, None), (403, "access_denied", "User is already enrolled")}, outcomes
    assert outcome(raced) in {(200, None, None), INVALID_OOB}, raced.text  # A replaced by a later enrollment
    confirmed = [associated.json()["recovery_codes"][0]] if raced.status_code == 200 else []
    for token, address, response in zip(tokens, addresses, enrollments, strict=True):
        if response.status_code == 200:
            answer = oob(server, token, response.json()["oob_code"], email_setup.sink.code_for(address))
            assert outcome(answer) in {(200, None, None), INVALID_OOB}, answer.text
            if answer.status_code == 200:
                confirmed.append(response.json().get("recovery_codes", ["(none shown)"])[0])
    assert len(confirmed) == 1, f"{len(confirmed)} enrollments were confirmed"
    user = f"(SELECT id FROM users WHERE user_id = '{email_setup.user_ids['twice']}')"
    active = f"SELECT count(*) FROM authenticator WHERE user_pk = {user} AND active = true"
    assert query(database_url, active) == [(1,)]
    assert recover(server, mfa_token(server, "twice"), confirmed[0]).status_code == 200


def test_first_enrollments_of_an_app_at_once_never_fail_and_leave_one_factor(
    email_setup: EmailSetup, database_url: str
) -> None:
    """The same for authenticator apps (``/mfa/associate`` with ``otp``, the code of the Auth0 factor ``otp``): 16
    first enrollments at once all answer 200 (on PostgreSQL, before the recovery code was upserted, about half
    answered 500), and of the 16 secrets shown only one confirms, with the recovery code shown beside it."""
    server = email_setup.server
    tokens = [mfa_token(server, "apps", audience=server.issuer + "mfa/") for _ in range(16)]
    shots = [
        Shot("/mfa/associate", form={"authenticator_types": "otp"}, headers={"Authorization": f"Bearer {token}"})
        for token in tokens
    ]

    responses = burst(server.base_url, shots)

    outcomes = tally(responses)
    print(f"\n16 app enrollments at once: {dict(outcomes)}")
    assert outcomes == {(200, None, None): 16}, outcomes
    confirmed = []
    user = f"(SELECT id FROM users WHERE user_id = '{email_setup.user_ids['apps']}')"
    for token, response in zip(tokens, responses, strict=True):
        body = response.json()
        execute(database_url, f"DELETE FROM mfa_attempt WHERE user_pk = {user}")  # a wrong secret costs an attempt
        answer = httpx.post(
            server.token_url,
            data=form(grant_type=MFA_OTP, mfa_token=token, otp=pyotp.TOTP(body["secret"]).now()),
            timeout=30,
        )
        assert outcome(answer) in {(200, None, None), (403, "invalid_grant", "Invalid otp_code.")}, answer.text
        if answer.status_code == 200:
            confirmed.append(body["recovery_codes"][0])
    assert len(confirmed) == 1, f"{len(confirmed)} enrollments were confirmed"
    active = f"SELECT count(*) FROM authenticator WHERE user_pk = {user} AND active = true"
    assert query(database_url, active) == [(1,)]
    assert recover(server, mfa_token(server, "apps"), confirmed[0]).status_code == 200


def execute(database_url: str, sql: str) -> None:
    """One statement on the shared database, committed."""

    async def go() -> None:
        engine = create_engine(database_url)
        try:
            async with engine.begin() as conn:
                await conn.execute(text(sql))
        finally:
            await engine.dispose()

    asyncio.run(go())


def recover(server: IdentityServer, token: str, code: str) -> httpx.Response:
    return httpx.post(
        server.token_url, data=form(grant_type=MFA_RECOVERY_CODE, mfa_token=token, recovery_code=code), timeout=30
    )


# --- Bursts against the per-user buckets ------------------------------------------------------------------------------


def test_40_wrong_codes_at_once_get_10_checked_and_then_the_right_code_waits(email_setup: EmailSetup) -> None:
    """The attempt bucket holds 10 and is held before the code is compared: a burst cannot outrun it. Each guess
    claims another client address."""
    email_setup.enroll("wrong")
    token = mfa_token(email_setup.server, "wrong")
    oob_code, code = email_setup.challenged("wrong", token, 2)
    shots = [
        Shot("/oauth/token", form=oob_form(token, oob_code, other_code(code, n + 1)), headers=spoofed(n))
        for n in range(40)
    ]

    outcomes = tally(burst(email_setup.server.base_url, shots))

    print(f"\n40 wrong emailed codes at once: {dict(outcomes)}")
    assert outcomes == {INVALID_BINDING: 10, TOO_MANY: 30}, outcomes
    assert outcome(oob(email_setup.server, token, oob_code, code, **spoofed(99))) == TOO_MANY


def test_30_challenges_at_once_send_what_is_left_of_10_emails(email_setup: EmailSetup, database_url: str) -> None:
    """The send bucket holds 10 emails (the enrollment took one): 9 more go out of 30 asked at once, each asking
    from another claimed address, and only the last code stored is still good."""
    email_setup.enroll("sends")
    assert email_setup.sent_to("sends") == 1
    token = mfa_token(email_setup.server, "sends")
    shots = [Shot("/mfa/challenge", form=form(mfa_token=token), headers=spoofed(n)) for n in range(30)]

    responses = burst(email_setup.server.base_url, shots)

    outcomes = tally(responses)
    print(f"\n30 challenges at once: {dict(outcomes)}")
    assert outcomes == {(200, None, None): 9, TOO_MANY_SENT: 21}
    assert {r.headers["retry-after"] for r in responses if r.status_code == 429} == {"3600"}
    email_setup.sink.wait_for(inbox("sends"), count=10)
    with pytest.raises(AssertionError):
        email_setup.sink.wait_for(inbox("sends"), count=11, timeout=1)
    user = f"(SELECT id FROM users WHERE user_id = '{email_setup.user_ids['sends']}')"
    live = f"SELECT count(*) FROM oob_code WHERE user_pk = {user} AND consumed_at IS NULL"
    assert query(database_url, live) == [(1,)]  # each new code retired the one before it, even at once
    # Another claimed address does not make another bucket.
    assert outcome(challenge(email_setup.server, token)) == TOO_MANY_SENT


def test_a_forged_client_address_does_not_refill_the_attempt_bucket(email_setup: EmailSetup, database_url: str) -> None:
    """Buckets are per user, not per address: eleven wrong codes from eleven claimed addresses, one after the
    other, are ten failures and a 429. The server did take the addresses (audit log), so the test means something."""
    email_setup.enroll("spoof")
    token = mfa_token(email_setup.server, "spoof")
    oob_code, code = email_setup.challenged("spoof", token, 2)

    answers = [outcome(oob(email_setup.server, token, oob_code, other_code(code), **spoofed(n))) for n in range(11)]

    assert answers == [INVALID_BINDING] * 10 + [TOO_MANY]
    assert outcome(oob(email_setup.server, token, oob_code, code, **spoofed(50))) == TOO_MANY
    user_id = email_setup.user_ids["spoof"]
    deadline = time.monotonic() + 10
    while True:  # the audit log is written behind the responses
        rows = query(database_url, f"SELECT DISTINCT ip FROM log_event WHERE user_id = '{user_id}'")
        seen = {ip for (ip,) in rows}
        if {"203.0.113.1", "203.0.113.11"} <= seen or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert {"203.0.113.1", "203.0.113.11"} <= seen, seen


# --- A mail server that fails ---------------------------------------------------------------------------------------


@dataclass
class BrokenMail:
    down: IdentityServer
    silent: IdentityServer


@pytest.fixture(scope="module")
def broken_mail(email_setup: EmailSetup, tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokenMail]:
    """Two more servers (one worker each) on the same database: one whose mail server is down (connections
    refused), one whose mail server accepts connections and never answers (``timeout=2``)."""
    with silent_server() as hung:
        down_env = {**email_setup.env, "IDENTITY_SMTP_URL": f"smtp://127.0.0.1:{unused_port()}"}
        silent_env = {**email_setup.env, "IDENTITY_SMTP_URL": f"smtp://127.0.0.1:{hung}?timeout={SMTP_TIMEOUT:g}"}
        down, silent = start_servers(
            [serve_spec("email-smtp-down", down_env), serve_spec("email-smtp-silent", silent_env)],
            tmp_path_factory.mktemp("email-broken-mail"),
        )
        try:
            yield BrokenMail(down, silent)
        finally:
            for server in (down, silent):
                try:
                    stop_and_check(server)
                finally:
                    assert_nothing_logged(server, email_setup)


def assert_silent_about(response: httpx.Response, who: str) -> None:
    assert outcome(response) == BAD_GATEWAY, response.text
    assert inbox(who) not in response.text and login_name(who) not in response.text
    assert "127.0.0.1" not in response.text  # nor the mail server


def test_a_mail_server_that_is_down_answers_bad_gateway_and_spends_no_email(
    email_setup: EmailSetup, broken_mail: BrokenMail
) -> None:
    server = broken_mail.down
    enrolling = mfa_token(server, "unenrolled", audience=server.issuer + "mfa/")
    assert_silent_about(associate_email(server, enrolling, inbox("unenrolled")), "unenrolled")

    email_setup.enroll("down")
    token = mfa_token(server, "down")
    for _ in range(12):  # more than the bucket holds: each failed send gives its email back
        assert_silent_about(challenge(server, token), "down")
    # The email is still there to send, through a mail server that works.
    working = mfa_token(email_setup.server, "down")
    oob_code, code = email_setup.challenged("down", working, 2)
    assert oob(email_setup.server, working, oob_code, code).status_code == 200


async def _challenges_while_hung(
    broken: BrokenMail, token: str, count: int
) -> tuple[list[httpx.Response], list[float]]:
    """``count`` challenges that hang on the mail server; while they hang, JWKS requests, each one timed."""
    limits = httpx.Limits(max_connections=count + 1)
    async with httpx.AsyncClient(base_url=broken.silent.base_url, limits=limits, timeout=30) as client:
        hanging = [asyncio.create_task(client.post("/mfa/challenge", data=form(mfa_token=token))) for _ in range(count)]
        await asyncio.sleep(0.5)  # the sends are waiting on the mail server now
        timings = []
        for _ in range(5):
            started = time.perf_counter()
            jwks = await client.get("/.well-known/jwks.json")
            timings.append(time.perf_counter() - started)
            assert jwks.status_code == 200 and jwks.json()["keys"]
        assert not any(task.done() for task in hanging), "a send did not hang: the test proves nothing"
        return list(await asyncio.gather(*hanging)), timings


def test_a_mail_server_that_never_answers_blocks_nothing_else(email_setup: EmailSetup, broken_mail: BrokenMail) -> None:
    """Nine sends (the nine emails left, one more than the mailer's eight connections) hang on a silent mail server;
    the same (single) worker keeps answering JWKS requests in milliseconds, and each send gives up after the timeout
    with ``bad_gateway``."""
    email_setup.enroll("silent")
    token = mfa_token(broken_mail.silent, "silent")

    started = time.monotonic()
    responses, timings = asyncio.run(_challenges_while_hung(broken_mail, token, 9))
    elapsed = time.monotonic() - started

    print(f"\nJWKS while 9 sends hang: {max(timings) * 1000:.0f} ms at most; the sends gave up after {elapsed:.1f} s")
    assert max(timings) < SMTP_TIMEOUT / 4, timings
    for response in responses:
        assert_silent_about(response, "silent")
    assert SMTP_TIMEOUT * 0.9 <= elapsed < SMTP_TIMEOUT * 3, elapsed
    # A send that got a connection and then hung may have been delivered: it stays counted (only one that never
    # got a connection is given back), so at most one email is left, and after it none.
    assert outcome(challenge(broken_mail.silent, token)) in (BAD_GATEWAY, TOO_MANY_SENT)
    assert outcome(challenge(broken_mail.silent, token)) == TOO_MANY_SENT


def test_the_logs_of_the_failed_sends_name_the_server_only(broken_mail: BrokenMail) -> None:
    for server in (broken_mail.down, broken_mail.silent):
        lines = [line for line in server.process.stderr().splitlines() if "mail failed" in line]
        assert lines, f"{server.process.name} logged no failed send"
        for line in lines:
            assert "@" not in line, line
            assert not re.search(r"(?<![\d.])\d{6}(?![\d.])", line), line
