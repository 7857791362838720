"""``identity users set-blocked|set-password|delete``: the same UserService as the Management API."""

from __future__ import annotations

import json
from typing import Any

from click.testing import CliRunner
from litestar.testing import TestClient

from identity.app import create_app
from identity.cli import main
from identity.settings import Settings
from tests.cli.test_tenant_export import env
from tests.conftest import ALICE_CUSTOMER_PASSWORD


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
