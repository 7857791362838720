"""``identity users set-blocked|set-password|delete|mfa-reset|unblock``: the same services as the Management API,
and the same audit events."""

from __future__ import annotations

import json
import time
from typing import Any

from click.testing import CliRunner
from litestar.testing import TestClient

from identity.app import create_app
from identity.cli import main
from identity.settings import Settings
from identity.store import audit
from identity.store.audit import LogEvent, LogFilter
from tests.api.management_support import OPS, open_management
from tests.cli.test_tenant_export import env
from tests.conftest import ALICE_CUSTOMER_PASSWORD, run_db


def run(settings: Settings, *args: str, stdin: str | None = None) -> Any:
    result = CliRunner().invoke(main, list(args), env=env(settings), input=stdin)
    return result


def login(settings: Settings, password: str) -> int:
    with TestClient(create_app(settings), base_url="https://identity.test") as client:
        response = client.post(
            "/oauth/token",
            data={
                "grant_type": "password",
                "client_id": "public-app",
                "username": "alice@example.test",
                "password": password,
            },
        )
        return response.status_code


def test_block_password_and_delete_from_the_command_line(settings: Settings, tenant: Any) -> None:
    alice = next(user["user_id"] for user in tenant.users if user["email"] == "alice@example.test")

    blocked = run(settings, "users", "set-blocked", alice, "true")
    assert blocked.exit_code == 0 and json.loads(blocked.output)["blocked"] is True
    assert login(settings, ALICE_CUSTOMER_PASSWORD) == 401
    assert json.loads(run(settings, "users", "set-blocked", alice, "false").output)["blocked"] is False
    assert login(settings, ALICE_CUSTOMER_PASSWORD) == 200

    short = run(settings, "users", "set-password", alice, stdin="short\n")
    assert short.exit_code == 1 and "at least 15 characters" in short.output
    assert run(settings, "users", "set-password", alice, stdin="a brand new password\n").exit_code == 0
    assert login(settings, ALICE_CUSTOMER_PASSWORD) == 403
    assert login(settings, "a brand new password") == 200

    assert run(settings, "users", "delete", alice).exit_code == 0
    missing = run(settings, "users", "set-blocked", alice, "true")
    assert missing.exit_code == 1 and "no user" in missing.output


ADMIN_EVENTS = ("gd_unenroll", "ublkdu", "sdu")


def admin_events(settings: Settings, *, at_least: int, timeout: float = 20.0) -> list[LogEvent]:
    """The stored administrative events, oldest first (the API's are stored by a background writer)."""
    criteria = LogFilter(types=ADMIN_EVENTS)
    deadline = time.monotonic() + timeout
    while True:
        found = run_db(settings, lambda session, _: audit.search(session, criteria, per_page=100, newest_first=False))
        if len(found) >= at_least or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def test_the_cli_and_the_api_log_the_same_events_for_the_same_actions(settings: Settings) -> None:
    """MFA reset, lifted block and deletion go through identity.management.operations from both surfaces."""
    with open_management(settings) as api:
        users = {}
        for surface in ("cli", "api"):
            body = {"connection": "customers", "email": f"{surface}@example.test", "password": "a long password 2026"}
            created = api.post("/api/v2/users", json=body)
            assert created.status_code == 201, created.text
            users[surface] = created.json()["user_id"]

        assert run(settings, "users", "mfa-reset", users["cli"]).exit_code == 0
        assert run(settings, "users", "unblock", "cli@example.test").exit_code == 0
        assert run(settings, "users", "delete", users["cli"]).exit_code == 0
        assert api.delete(f"/api/v2/users/{users['api']}/authentication-methods").status_code == 204
        assert api.delete("/api/v2/user-blocks", params={"identifier": "api@example.test"}).status_code == 204
        assert api.delete(f"/api/v2/users/{users['api']}").status_code == 204
        events = admin_events(settings, at_least=6)

    by_surface = {
        surface: [
            event for event in events if event.user_id == users[surface] or event.user_name == f"{surface}@example.test"
        ]
        for surface in users
    }

    def shape(event: LogEvent) -> tuple[Any, ...]:
        return event.type, event.description, event.connection, event.strategy

    assert [shape(e) for e in by_surface["cli"]] == [shape(e) for e in by_surface["api"]]
    assert [e.type for e in by_surface["cli"]] == ["gd_unenroll", "ublkdu", "sdu"]
    assert by_surface["cli"][0].connection == "customers" and by_surface["cli"][2].user_name == "cli@example.test"
    assert all(e.details.get("source") == "cli" and e.client_id is None for e in by_surface["cli"])
    assert all(e.client_id == OPS and e.ip == "testclient" for e in by_surface["api"])
