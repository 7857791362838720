"""The defects a security review found (issue 12), one or more tests each; every one of them failed before its fix.

1. rules overstepping their bounds (scopes, registered claims, offline access);
2. a signed-out enrollment session brought back by a request in flight;
3. enrollment sessions outliving a password change or an MFA reset;
4. the enrollment page's sign-in skipping the rules;
5. ``app_metadata`` written by rules at ``mfa_required``;
6. the MFA API's answers to bad bearers, deleted and blocked users, clients without MFA grants, repeated members;
7. ``assert`` as control flow.
"""

from __future__ import annotations

import ast
import asyncio
import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pyotp
import pytest
from litestar import Litestar
from litestar.testing import TestClient
from sqlalchemy import text

from identity.app import create_app
from identity.clock import FrozenClock
from identity.oauth2.errors import ServerError
from identity.oauth2.grants.mfa import MfaRecoveryCodeGrant
from identity.oauth2.interfaces import FactorCheck, MfaTransaction
from identity.oauth2.requests import TokenRequest
from identity.settings import Settings
from tests import rule_handlers
from tests.api.test_enroll_pages import (
    ALICE,
    alert,
    csrf_token,
    enroll,
    pages_tenant,
    post,
    sign_in,
    totp,
)
from tests.conftest import (
    ALICE_CUSTOMER_PASSWORD,
    ALICE_EMPLOYEE_PASSWORD,
    API,
    ISSUER,
    REPORTS_API,
    apply,
    run_db,
    standard_tenant,
)
from tests.live_server import free_port, serve_in_thread

MFA_OTP = "http://auth0.com/oauth/grant-type/mfa-otp"
MFA_RECOVERY_CODE = "http://auth0.com/oauth/grant-type/mfa-recovery-code"
REALM = "http://auth0.com/oauth/grant-type/password-realm"
MFA_AUDIENCE = ISSUER + "mfa/"


def rule(name: str, handler: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "handler": f"tests.rule_handlers:{handler}", **extra}


def tenant_with(*rules: dict[str, Any], refresh_for_public_app: bool = False) -> dict[str, Any]:
    data = standard_tenant()
    data["rules"] = list(rules)
    for client in data["clients"]:
        client["grant_types"] = [*client["grant_types"], MFA_OTP, MFA_RECOVERY_CODE]
    if refresh_for_public_app:
        data["clients"][0]["grant_types"].append("refresh_token")
    return data


@pytest.fixture
def start(settings: Settings) -> Iterator[Any]:
    """Apply a tenant, then start the app on it (rules are loaded at start)."""
    clients: list[TestClient[Litestar]] = []

    def go(data: dict[str, Any], clock: FrozenClock | None = None) -> TestClient[Litestar]:
        apply(settings, data)
        client = TestClient(create_app(settings, clock=clock), base_url="https://identity.test")
        client.__enter__()
        clients.append(client)
        return client

    rule_handlers.SEEN.clear()
    yield go
    for client in clients:
        client.__exit__(None, None, None)


def login(client: TestClient[Litestar], **extra: str) -> httpx.Response:
    data = {
        "grant_type": "password",
        "client_id": "public-app",
        "username": ALICE,
        "password": ALICE_CUSTOMER_PASSWORD,
        **extra,
    }
    return client.post("/oauth/token", data=data)


def employee_login(client: TestClient[Litestar], **extra: str) -> httpx.Response:
    data = {
        "grant_type": REALM,
        "client_id": "public-app",
        "realm": "employees",
        "username": "alice",
        "password": ALICE_EMPLOYEE_PASSWORD,
        **extra,
    }
    return client.post("/oauth/token", data=data)


def verified(client: TestClient[Litestar], token: str, audience: str) -> dict[str, Any]:
    keys = client.get("/.well-known/jwks.json").json()["keys"]
    header = jwt.get_unverified_header(token)
    key = jwt.PyJWK(next(k for k in keys if k["kid"] == header["kid"]))
    claims: dict[str, Any] = jwt.decode(token, key, algorithms=[header["alg"]], audience=audience, issuer=ISSUER)
    return claims


def totp_now(secret: str) -> str:
    return str(pyotp.TOTP(secret).now())


def sql(settings: Settings, statement: str, **params: Any) -> list[tuple[Any, ...]]:
    async def work(session: Any, _: Any) -> list[tuple[Any, ...]]:
        result = await session.execute(text(statement), params)
        rows = [tuple(row) for row in result.all()] if result.returns_rows else []
        await session.commit()
        return rows

    return run_db(settings, work)


def app_metadata(settings: Settings, username: str) -> dict[str, Any]:
    ((value,),) = sql(settings, "SELECT app_metadata FROM users WHERE username = :u", u=username)
    return dict(json.loads(value) if isinstance(value, str) else value)


# --- 1. rules within bounds ----------------------------------------------------------------------------------------


def test_rules_editing_scopes_and_claims_directly_cannot_exceed_policy(start: Any) -> None:
    client = start(tenant_with(rule("tamper", "tamper_directly")))
    response = login(client, scope="openid read:things")

    assert response.status_code == 200, response.text
    body = response.json()
    assert "refresh_token" not in body  # public-app has no refresh_token grant
    assert body["scope"] == "openid read:things"
    access = verified(client, body["access_token"], API)
    assert access["scope"] == "openid read:things"
    for claim in ("amr", "acr", "nbf", "auth_time"):
        assert claim not in access, claim
    assert access["iss"] == ISSUER
    assert access["sub"].startswith("auth0|") and access["sub"] != "someone-else"
    assert access["https://example.test/kept"] == 1
    id_token = verified(client, body["id_token"], "public-app")
    assert "auth_time" not in id_token and "amr" not in id_token
    assert id_token["sub"] == access["sub"]
    assert id_token["https://example.test/kept"] == 2


def test_a_rule_adding_offline_access_gets_no_refresh_token_unless_policy_allows_and_it_was_asked(
    start: Any,
) -> None:
    client = start(tenant_with(rule("offline", "add_offline_access"), refresh_for_public_app=True))

    # The client may refresh, but the Reports API does not allow offline access.
    reports = login(client, audience=REPORTS_API, scope="read:reports")
    assert reports.status_code == 200, reports.text
    assert "refresh_token" not in reports.json()
    assert "offline_access" not in reports.json()["scope"].split()
    # The API allows it and the client may refresh, but nobody asked: a rule cannot add it.
    unasked = login(client, scope="read:things")
    assert "refresh_token" not in unasked.json()
    assert unasked.json()["scope"] == "read:things"
    # Asked and allowed: issued as before.
    asked = login(client, scope="read:things offline_access")
    assert "refresh_token" in asked.json()


# --- 5. app_metadata only with the tokens --------------------------------------------------------------------------


def test_app_metadata_set_by_rules_is_saved_only_when_the_second_factor_completes(
    start: Any, settings: Settings
) -> None:
    client = start(tenant_with(rule("mfa", "mfa_for_employees"), rule("meta", "set_metadata")))

    paused = employee_login(client)
    assert paused.status_code == 403 and paused.json()["error"] == "mfa_required"
    assert "last_rule_login" not in app_metadata(settings, "alice")  # only the password was shown

    mfa_token = paused.json()["mfa_token"]
    headers = {"Authorization": f"Bearer {mfa_token}"}
    secret = client.post("/mfa/associate", json={"authenticator_types": ["otp"]}, headers=headers).json()["secret"]
    done = client.post(
        "/oauth/token",
        data={
            "grant_type": MFA_OTP,
            "client_id": "public-app",
            "mfa_token": mfa_token,
            "otp": pyotp.TOTP(secret).now(),
        },
    )
    assert done.status_code == 200, done.text
    assert app_metadata(settings, "alice")["last_rule_login"] == "yes"


# --- 4. the enrollment page runs the rules' decision ----------------------------------------------------------------


def test_enrollment_sign_in_runs_the_rules_and_honours_a_denial(start: Any, settings: Settings) -> None:
    data = pages_tenant()
    data["rules"] = [rule("record", "record"), rule("no pages", "deny_enrollment_page")]
    pages = start(data, FrozenClock(1_800_000_000.0))

    answer = sign_in(pages)

    assert answer.status_code == 403, answer.text
    assert alert(answer.text) == "Not from the enrollment page"
    assert "identity-session" not in answer.headers.get("set-cookie", "")
    assert sql(settings, "SELECT count(*) FROM web_session") == [(0,)]
    (seen,) = rule_handlers.SEEN
    assert seen["protocol"] == "enrollment-page"
    assert seen["client"] == "identity:enrollment-page"
    assert seen["connection"] == "customers" and seen["email"] == ALICE
    # The token endpoint is unaffected by that rule.
    assert login(pages).status_code == 200


# --- 3. password change and MFA reset end web sessions -------------------------------------------------------------


def _still_signed_in(pages: TestClient[Litestar], path: str) -> bool:
    response = pages.get(path, follow_redirects=False)
    return response.status_code == 200


def test_a_password_change_ends_the_users_enrollment_sessions(start: Any, settings: Settings) -> None:
    clock = FrozenClock(1_800_000_000.0)
    pages = start(pages_tenant(), clock)
    enroll(pages, clock)
    assert _still_signed_in(pages, "/enroll/manage")

    apply(settings, {"users": [{"connection": "customers", "email": ALICE, "password": "a brand new password 42"}]})

    answer = pages.get("/enroll/manage", follow_redirects=False)
    assert (answer.status_code, answer.headers["location"]) == (303, "/enroll?notice=expired")
    assert sql(settings, "SELECT count(*) FROM web_session") == [(0,)]


def test_an_mfa_reset_ends_the_users_enrollment_sessions(start: Any, settings: Settings) -> None:
    from identity.accounts.factors import FactorService
    from identity.crypto import SecretBox

    clock = FrozenClock(1_800_000_000.0)
    pages = start(pages_tenant(), clock)
    enroll(pages, clock)
    ((user_id,),) = sql(settings, "SELECT user_id FROM users WHERE email = :e AND username IS NULL", e=ALICE)

    async def reset(session: Any, _: Any) -> int:
        return await FactorService(session, SecretBox(settings.encryption_keys), clock).authenticators.reset(user_id)

    run_db(settings, reset)

    # Without the fix the session (which had passed MFA) went on, straight to enrolling a new factor.
    answer = pages.get("/enroll/setup", follow_redirects=False)
    assert (answer.status_code, answer.headers["location"]) == (303, "/enroll?notice=expired")
    assert sql(settings, "SELECT count(*) FROM web_session") == [(0,)]


# --- 2. a signed-out session stays signed out ----------------------------------------------------------------------

ROUNDS = 5
IN_FLIGHT = 10


def test_requests_in_flight_cannot_bring_a_signed_out_session_back(settings: Settings) -> None:
    """Each round: sign in, then 10 GETs of the pages and a sign-out at once; the old cookie must then be dead.

    Before the fix, every response upserted the session it had loaded, and one that loaded before the sign-out
    re-created the row after it (seen live: ``/enroll/manage`` still 200).
    """
    port = free_port()
    plain = dataclasses.replace(settings, issuer=f"http://127.0.0.1:{port}/")  # cookies without Secure, over http
    apply(plain, pages_tenant())
    clock = FrozenClock(1_800_000_000.0)

    async def round_trip(base: str) -> tuple[int, list[int]]:
        async with httpx.AsyncClient(base_url=base) as browser:
            page = await browser.get("/enroll")
            signed_in = await browser.post(
                "/enroll/sign-in",
                data={"_csrf_token": csrf_token(page.text), "username": ALICE, "password": ALICE_CUSTOMER_PASSWORD},
                follow_redirects=True,
            )
            assert signed_in.status_code == 200, signed_in.text  # followed to the setup page
            cookie = browser.cookies["identity-session"]
            token = csrf_token(signed_in.text)
            gets = [browser.get("/enroll/setup", follow_redirects=False) for _ in range(IN_FLIGHT)]
            sign_out = browser.post("/enroll/sign-out", data={"_csrf_token": token}, follow_redirects=False)
            answers = await asyncio.gather(*gets[: IN_FLIGHT // 2], sign_out, *gets[IN_FLIGHT // 2 :])
            assert answers[IN_FLIGHT // 2].status_code == 303
        async with httpx.AsyncClient(base_url=base, cookies={"identity-session": cookie}) as replay:
            after = await replay.get("/enroll/setup", follow_redirects=False)
        return after.status_code, [answer.status_code for answer in answers]

    with serve_in_thread(create_app(plain, clock=clock), port) as base:
        for _ in range(ROUNDS):
            status, statuses = asyncio.run(round_trip(base))
            assert 500 not in statuses
            assert status == 303, "a signed-out session answered again"
            assert sql(plain, "SELECT count(*) FROM web_session") == [(0,)]


def test_an_unchanged_session_is_not_written_back(start: Any, settings: Settings) -> None:
    clock = FrozenClock(1_800_000_000.0)
    pages = start(pages_tenant(), clock)
    sign_in(pages)
    ((stored,),) = sql(settings, "SELECT data FROM web_session")
    # The same session, spelled differently: a write-back of the loaded session would re-serialise it.
    respelled = json.dumps(json.loads(bytes(stored)), indent=2).encode()
    sql(settings, "UPDATE web_session SET data = :d", d=respelled)

    for path in ("/enroll/setup", "/enroll/setup", "/enroll"):
        pages.get(path)

    assert sql(settings, "SELECT data FROM web_session") == [(respelled,)]


# --- 6. the MFA API -------------------------------------------------------------------------------------------------


def _mfa_api_token(client: TestClient[Litestar]) -> tuple[str, str]:
    """Enroll Alice through the MFA API; an MFA-API access token and her TOTP secret."""
    paused = login(client, audience=MFA_AUDIENCE)
    assert paused.json()["error"] == "mfa_required", paused.text
    mfa_token = paused.json()["mfa_token"]
    headers = {"Authorization": f"Bearer {mfa_token}"}
    secret = client.post("/mfa/associate", json={"authenticator_types": ["otp"]}, headers=headers).json()["secret"]
    done = client.post(
        "/oauth/token",
        data={
            "grant_type": MFA_OTP,
            "client_id": "public-app",
            "mfa_token": mfa_token,
            "otp": pyotp.TOTP(secret).now(),
        },
    )
    assert done.status_code == 200, done.text
    return done.json()["access_token"], secret


def _assert_invalid_token(response: httpx.Response) -> None:
    assert response.status_code == 401, response.text
    assert response.json()["error"] == "invalid_token"
    assert 'error="invalid_token"' in response.headers["www-authenticate"]


def test_mfa_api_invalid_bearer_is_401_invalid_token(start: Any) -> None:
    client = start(tenant_with())
    for bearer in ("not-an-mfa-token", "x" * 43):
        _assert_invalid_token(client.get("/mfa/authenticators", headers={"Authorization": f"Bearer {bearer}"}))
        _assert_invalid_token(
            client.post(
                "/mfa/associate", json={"authenticator_types": ["otp"]}, headers={"Authorization": f"Bearer {bearer}"}
            )
        )


def test_mfa_api_token_of_a_deleted_user_is_401_not_500(start: Any, settings: Settings) -> None:
    client = start(tenant_with())
    access_token, _ = _mfa_api_token(client)
    paused = login(client)
    mfa_token = paused.json()["mfa_token"]
    sql(settings, "DELETE FROM users WHERE email = :e AND username IS NULL", e=ALICE)

    for bearer in (access_token, mfa_token):
        _assert_invalid_token(client.get("/mfa/authenticators", headers={"Authorization": f"Bearer {bearer}"}))
    _assert_invalid_token(
        client.delete("/mfa/authenticators/totp|dev_x", headers={"Authorization": f"Bearer {access_token}"})
    )


def test_mfa_api_refuses_a_blocked_user(start: Any, settings: Settings) -> None:
    client = start(tenant_with())
    access_token, _ = _mfa_api_token(client)
    mfa_token = login(client).json()["mfa_token"]
    sql(settings, "UPDATE users SET blocked = :b WHERE email = :e AND username IS NULL", b=True, e=ALICE)

    for bearer in (access_token, mfa_token):
        _assert_invalid_token(client.get("/mfa/authenticators", headers={"Authorization": f"Bearer {bearer}"}))
    listed = client.get("/mfa/authenticators", headers={"Authorization": f"Bearer {access_token}"})
    assert "user is blocked" in listed.json()["error_description"]
    challenge = client.post("/mfa/challenge", json={"client_id": "public-app", "mfa_token": mfa_token})
    assert (challenge.status_code, challenge.json()["error"]) == (401, "unauthorized")


def test_mfa_challenge_needs_a_client_with_an_mfa_grant(start: Any) -> None:
    data = tenant_with()
    data["clients"][0]["grant_types"] = ["password"]  # public-app: no MFA grant
    data["tenant"]["mfa_policy"] = "always"
    client = start(data)
    mfa_token = login(client).json()["mfa_token"]

    response = client.post("/mfa/challenge", json={"client_id": "public-app", "mfa_token": mfa_token})

    assert response.status_code == 403, response.text
    assert response.json()["error"] == "unauthorized_client"


def test_mfa_json_bodies_refuse_repeated_members(start: Any) -> None:
    data = tenant_with()
    data["tenant"]["mfa_policy"] = "always"
    client = start(data)
    mfa_token = login(client).json()["mfa_token"]
    headers = {"Authorization": f"Bearer {mfa_token}", "Content-Type": "application/json"}

    repeated = '{"authenticator_types": ["oob"], "authenticator_types": ["otp"]}'
    response = client.post("/mfa/associate", content=repeated, headers=headers)
    assert response.status_code == 400, response.text
    assert response.json() == {
        "error": "invalid_request",
        "error_description": "authenticator_types parameter must not be included more than once",
    }
    form = client.post(
        "/mfa/associate",
        content="authenticator_types=otp&client_id=public-app&client_id=public-app",
        headers={"Authorization": f"Bearer {mfa_token}", "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert form.status_code == 400 and form.json()["error"] == "invalid_request"
    challenge = client.post(
        "/mfa/challenge",
        content=f'{{"client_id": "public-app", "mfa_token": "{mfa_token}", "mfa_token": "x"}}',
        headers={"Content-Type": "application/json"},
    )
    assert challenge.status_code == 400 and challenge.json()["error"] == "invalid_request"


# --- 7. no assert as control flow ---------------------------------------------------------------------------------


def test_the_package_has_no_assert_statements() -> None:
    """``python -O`` strips asserts: a check written as one disappears in production."""
    package = Path(__file__).resolve().parents[2] / "identity"
    found = [
        f"{path.relative_to(package.parent)}:{node.lineno}"
        for path in sorted(package.rglob("*.py"))
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Assert)
    ]
    assert found == []


class _AcceptsWithoutReplacement:
    """An MfaService whose recovery-code swap says ACCEPTED but hands back no new code (a broken store)."""

    async def find(self, mfa_token: str) -> MfaTransaction:
        return MfaTransaction(1, "public-app", "auth0|x", "customers", "password", None, (), 4e9, False)

    async def user(self, transaction: MfaTransaction) -> Any:
        from identity.oauth2.interfaces import User

        return User(user_id="auth0|x", connection="customers")

    async def redeem_recovery_code(self, transaction: MfaTransaction, code: str) -> tuple[FactorCheck, None]:
        return FactorCheck.ACCEPTED, None


async def test_a_recovery_code_grant_without_a_replacement_code_issues_nothing() -> None:
    from identity.oauth2.interfaces import Client, Connection

    class Tenant:
        async def connection(self, name: str) -> Connection:
            return Connection(1, name)

        async def api(self, identifier: str) -> None:
            return None

    class Issuer:
        async def issue(self, result: Any) -> Any:
            raise AssertionError("tokens issued without a replacement recovery code")

    class Clock:
        def now(self) -> float:
            return 1.0

    client = Client("public-app", "P", "none", None, frozenset({MFA_RECOVERY_CODE}), frozenset({"customers"}))
    grant = MfaRecoveryCodeGrant(Tenant(), _AcceptsWithoutReplacement(), Issuer(), Clock())  # type: ignore[arg-type]
    request = TokenRequest({"grant_type": MFA_RECOVERY_CODE, "mfa_token": "t", "recovery_code": "c"})
    with pytest.raises(ServerError):
        await grant.handle(request, client)


def test_enrollment_tests_still_see_the_pages(start: Any) -> None:
    """A guard for the helpers above: the pages fixture of this module signs in and enrolls as the page tests do."""
    clock = FrozenClock(1_800_000_000.0)
    pages = start(pages_tenant(), clock)
    secret, code = enroll(pages, clock)
    assert len(secret) == 32 and code
    clock.advance(30)
    manage = pages.get("/enroll/manage")
    assert manage.status_code == 200
    answer = post(pages, "/enroll/sign-out", manage)
    assert answer.status_code == 303
    assert totp(secret, clock).isdigit()
