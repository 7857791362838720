"""Brute-force protection on the password grants (API.md §4.1): per identifier and IP, unknown identifiers too."""

from __future__ import annotations

import json
import re
import time
from typing import Any

from click.testing import CliRunner
from litestar import Litestar
from litestar.testing import TestClient
from sqlalchemy import select

from identity.accounts.attack import user_blocks
from identity.app import create_app
from identity.cli import main
from identity.clock import FrozenClock
from identity.oauth2.grants.password import BLOCKED
from identity.settings import Settings
from identity.store import audit
from identity.store.models import AttackCounterRow
from tests.conftest import ALICE_CUSTOMER_PASSWORD, CONFIDENTIAL_SECRET, apply, run_db, standard_tenant

TOO_MANY = {"error": "too_many_attempts", "error_description": BLOCKED}


def login(client: TestClient[Litestar], password: str, username: str = "alice@example.test") -> Any:
    return client.post(
        "/oauth/token",
        data={"grant_type": "password", "client_id": "public-app", "username": username, "password": password},
    )


def with_limits(attempts: int, seconds: int = 900) -> dict[str, Any]:
    data = standard_tenant()
    data["tenant"].update(brute_force_max_attempts=attempts, brute_force_block_seconds=seconds)
    return data


def test_the_pair_is_blocked_after_the_threshold_even_for_the_right_password(settings: Settings, app: Litestar) -> None:
    apply(settings, with_limits(3))
    with TestClient(app) as client:
        for _ in range(3):
            assert login(client, "wrong").json()["error"] == "invalid_grant"
        blocked = login(client, ALICE_CUSTOMER_PASSWORD)
        assert blocked.status_code == 429 and blocked.json() == TOO_MANY
        assert blocked.headers["cache-control"] == "no-store"
        # Another identifier from the same address is unaffected, and so is another directory.
        other = login(client, "wrong", username="bob@example.test")
        assert other.json()["error"] == "invalid_grant"


def test_a_success_resets_the_count(settings: Settings, app: Litestar) -> None:
    apply(settings, with_limits(3))
    with TestClient(app) as client:
        for _ in range(2):
            login(client, "wrong")
        assert login(client, ALICE_CUSTOMER_PASSWORD).status_code == 200
        for _ in range(2):
            login(client, "wrong")
        assert login(client, ALICE_CUSTOMER_PASSWORD).status_code == 200


def test_unknown_identifiers_are_counted_the_same_way(settings: Settings, app: Litestar) -> None:
    apply(settings, with_limits(2))
    with TestClient(app) as client:
        answers = [login(client, "wrong", username="nobody@example.test").json() for _ in range(3)]
    assert answers[:2] == [{"error": "invalid_grant", "error_description": "Wrong email or password."}] * 2
    assert answers[2] == TOO_MANY


def test_the_block_lifts_after_its_time_on_the_injected_clock(settings: Settings) -> None:
    apply(settings, with_limits(2, seconds=60))
    clock = FrozenClock(time.time())
    with TestClient(create_app(settings, clock=clock)) as client:
        login(client, "wrong")
        login(client, "wrong")
        assert login(client, ALICE_CUSTOMER_PASSWORD).status_code == 429
        clock.advance(59)
        assert login(client, ALICE_CUSTOMER_PASSWORD).status_code == 429
        clock.advance(2)
        assert login(client, ALICE_CUSTOMER_PASSWORD).status_code == 200
    rows = run_db(settings, lambda session, _: session.execute(select(AttackCounterRow)))
    assert "alice" not in str(rows)  # only hashes of the identifier are stored, beside the address


def test_a_block_says_nothing_about_whether_the_account_exists(settings: Settings, app: Litestar) -> None:
    apply(settings, with_limits(3))
    with TestClient(app) as client:
        known = [login(client, "wrong").json() for _ in range(4)]
        unknown = [login(client, "wrong", username="nobody@example.test").json() for _ in range(4)]
        assert known == unknown
        assert known[-1] == TOO_MANY
        # The operator's view is the same too: a block is listed for the unknown identifier as for the known one.
    listed = {name: blocks_of(settings, name) for name in ("alice@example.test", "nobody@example.test")}
    assert [block["connection"] for block in listed["alice@example.test"]] == ["customers"]
    assert [block["connection"] for block in listed["nobody@example.test"]] == ["customers"]


def test_identity_users_unblock_lifts_the_block_and_is_logged(settings: Settings, app: Litestar) -> None:
    apply(settings, with_limits(2))
    with TestClient(app) as client:
        login(client, "wrong")
        login(client, "wrong")
        assert login(client, ALICE_CUSTOMER_PASSWORD).status_code == 429
        env = {"IDENTITY_DATABASE_URL": settings.database_url, "IDENTITY_ENCRYPTION_KEYS": keys_text(settings)}
        runner = CliRunner()
        listed = runner.invoke(main, ["users", "blocks", "ALICE@example.test"], env=env, catch_exceptions=False)
        assert listed.exit_code == 0, listed.output
        assert [block["connection"] for block in json.loads(listed.output)["blocked_for"]] == ["customers"]
        result = runner.invoke(main, ["users", "unblock", "ALICE@example.test"], env=env, catch_exceptions=False)
        assert result.exit_code == 0, result.output
        assert json.loads(result.output)["removed"] == 1
        assert login(client, ALICE_CUSTOMER_PASSWORD).status_code == 200
    assert blocks_of(settings, "alice@example.test") == []
    assert "ublkdu" in event_types(settings)


def test_a_password_change_lifts_the_block(settings: Settings, app: Litestar) -> None:
    apply(settings, with_limits(2))
    with TestClient(app) as client:
        login(client, "wrong")
        login(client, "wrong")
        assert login(client, ALICE_CUSTOMER_PASSWORD).status_code == 429
        data = with_limits(2)
        new_password = "a brand new password for alice"
        data["users"][0]["password"] = new_password
        apply(settings, data)
        assert login(client, new_password).status_code == 200


def test_the_enrollment_sign_in_counts_and_blocks_the_same_way(settings: Settings, app: Litestar) -> None:
    apply(settings, with_limits(2))
    with TestClient(app, base_url="https://identity.test") as client:
        for _ in range(2):
            assert sign_in(client, "wrong").status_code == 401
        blocked = sign_in(client, ALICE_CUSTOMER_PASSWORD)
        assert blocked.status_code == 429
        # The pages and the token endpoint share one count per identifier and address.
        assert login(client, ALICE_CUSTOMER_PASSWORD).status_code == 429


def test_account_lockout_mode_blocks_from_every_address_with_growing_waits(settings: Settings) -> None:
    data = with_limits(2, seconds=60)
    data["tenant"]["brute_force_mode"] = "count_per_identifier"
    data["clients"][1]["is_token_endpoint_ip_header_trusted"] = True
    apply(settings, data)
    clock = FrozenClock(time.time())
    with TestClient(create_app(settings, clock=clock)) as client:
        assert from_address(client, "wrong", "192.0.2.1").status_code == 403
        assert from_address(client, "wrong", "198.51.100.2").status_code == 403
        assert from_address(client, ALICE_CUSTOMER_PASSWORD, "203.0.113.3").status_code == 429  # a third address
        clock.advance(61)
        assert from_address(client, "wrong", "192.0.2.1").status_code == 403
        assert from_address(client, "wrong", "192.0.2.1").status_code == 403
        clock.advance(61)  # the second lockout lasts twice as long
        assert from_address(client, ALICE_CUSTOMER_PASSWORD, "192.0.2.9").status_code == 429
        clock.advance(60)
        assert from_address(client, ALICE_CUSTOMER_PASSWORD, "192.0.2.9").status_code == 200
    assert "limit_sul" in event_types(settings)


def test_allow_listed_addresses_are_not_counted(settings: Settings, app: Litestar) -> None:
    data = with_limits(2)
    data["tenant"]["brute_force_allowlist"] = ["198.51.100.0/24"]
    data["clients"][1]["is_token_endpoint_ip_header_trusted"] = True
    apply(settings, data)
    with TestClient(app) as client:
        for _ in range(4):
            assert from_address(client, "wrong", "198.51.100.7").status_code == 403
        assert from_address(client, ALICE_CUSTOMER_PASSWORD, "198.51.100.7").status_code == 200
        for _ in range(2):
            from_address(client, "wrong", "192.0.2.7")
        assert from_address(client, ALICE_CUSTOMER_PASSWORD, "192.0.2.7").status_code == 429


def from_address(client: TestClient[Litestar], password: str, address: str) -> Any:
    """A login through the confidential client that vouches for the end user's address (auth0-forwarded-for)."""
    return client.post(
        "/oauth/token",
        data={
            "grant_type": "password",
            "client_id": "confidential-app",
            "client_secret": CONFIDENTIAL_SECRET,
            "username": "alice@example.test",
            "password": password,
        },
        headers={"auth0-forwarded-for": address},
    )


def sign_in(client: TestClient[Litestar], password: str) -> Any:
    page = client.get("/enroll/")
    token = re.search(r'name="_csrf_token" value="([^"]+)"', page.text)
    assert token is not None, page.text
    return client.post(
        "/enroll/sign-in",
        data={
            "_csrf_token": token.group(1),
            "username": "alice@example.test",
            "password": password,
            "realm": "customers",
        },
        follow_redirects=False,
    )


def blocks_of(settings: Settings, identifier: str) -> list[dict[str, Any]]:
    return run_db(settings, lambda session, _: user_blocks(session, identifier, now=time.time()))


def event_types(settings: Settings) -> list[str]:
    async def read(session: Any, _: Any) -> list[str]:
        return [event.type for event in await audit.search(session, per_page=1000)]

    return run_db(settings, read)


def keys_text(settings: Settings) -> str:
    return settings.encryption_keys.dump().strip().replace("\n", ",")
