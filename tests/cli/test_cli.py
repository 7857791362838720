"""The admin CLI: ``identity tenant apply`` and ``identity users create``, through click's CliRunner."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from litestar.testing import TestClient
from sqlalchemy import func, select

from identity.app import create_app
from identity.cli import main
from identity.settings import Settings
from identity.store.models import ApiRow, ClientConnectionRow, ClientRow, ConnectionRow, TenantRow, UserRow
from tests.conftest import apply, run_db

TENANT_TOML = """
[tenant]
friendly_name = "CLI test"
default_directory = "staff"
default_audience = "https://cli-api.example.test/"

[[connections]]
name = "staff"

[[connections]]
name = "guests"

[[apis]]
identifier = "https://cli-api.example.test/"
name = "CLI API"
scopes = ["read:x", "write:x"]

[[clients]]
client_id = "cli-public"
name = "CLI public"
token_endpoint_auth_method = "none"
grant_types = ["password", "http://auth0.com/oauth/grant-type/password-realm"]
connections = ["staff", "guests"]

[[clients]]
client_id = "cli-generated"
name = "CLI generated secret"
token_endpoint_auth_method = "client_secret_post"
grant_types = ["password"]
connections = ["staff"]

[[users]]
connection = "staff"
email = "dana@example.test"
password = "dana's password"
"""
TABLES = {
    "tenant": TenantRow,
    "connection": ConnectionRow,
    "api": ApiRow,
    "client": ClientRow,
    "client_connection": ClientConnectionRow,
    "users": UserRow,
}


@pytest.fixture
def env(settings: Settings) -> dict[str, str]:
    return {
        "IDENTITY_DATABASE_URL": settings.database_url,
        "IDENTITY_ENCRYPTION_KEYS": settings.encryption_keys.dump().replace("\n", ","),
        "IDENTITY_ISSUER": settings.issuer,
        "IDENTITY_HASH_WORKERS": "1",
        "IDENTITY_ENCRYPTION_KEY_FILE": "",
    }


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def invoke(runner: CliRunner, env: dict[str, str], *args: str, input: str | None = None) -> Result:
    return runner.invoke(main, list(args), env=env, input=input, catch_exceptions=False)


def counts(settings: Settings) -> dict[str, int]:
    async def work(session, _hasher):
        return {
            name: (await session.execute(select(func.count()).select_from(model))).scalar_one()
            for name, model in TABLES.items()
        }

    return run_db(settings, work)


def tenant_file(tmp_path: Path, text: str = TENANT_TOML) -> str:
    path = tmp_path / "tenant.toml"
    path.write_text(text)
    return str(path)


def logins(settings: Settings, *requests: dict[str, str]) -> list[Any]:
    """Post each request to the token endpoint of an app on ``settings``."""
    with TestClient(create_app(settings), base_url="https://identity.test") as client:
        return [client.post("/oauth/token", data=params) for params in requests]


@pytest.fixture
def directories(settings: Settings) -> None:
    """Just the two directories (no users, no app): cheap."""
    apply(settings, {"connections": [{"name": "customers"}, {"name": "employees"}]})


# -- identity tenant apply ------------------------------------------------------------------------------------------


def test_tenant_apply_creates_the_tenant(runner, env, settings, tmp_path):
    result = invoke(runner, env, "tenant", "apply", tenant_file(tmp_path))
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert {
        "connection staff",
        "connection guests",
        "api https://cli-api.example.test/",
        "client cli-public",
        "client cli-generated",
    } <= set(report["created"])
    assert [user["email"] for user in report["users"]] == ["dana@example.test"]
    assert report["users"][0]["user_id"].startswith("auth0|")
    assert counts(settings) == {
        "tenant": 1,
        "connection": 2,
        "api": 1,
        "client": 2,
        "client_connection": 3,
        "users": 1,
    }


def test_tenant_apply_is_idempotent(runner, env, settings, tmp_path):
    path = tenant_file(tmp_path)
    first = json.loads(invoke(runner, env, "tenant", "apply", path).stdout)
    before = counts(settings)
    second_result = invoke(runner, env, "tenant", "apply", path)
    assert second_result.exit_code == 0, second_result.output
    second = json.loads(second_result.stdout)
    assert second["created"] == []
    assert second["generated_client_secrets"] == {}
    assert set(first["created"]) == set(second["updated"])
    assert counts(settings) == before
    assert second["users"][0]["user_id"] == first["users"][0]["user_id"], "re-applying keeps the user's id"


def test_generated_client_secret_is_printed_once_and_works(runner, env, settings, tmp_path):
    path = tenant_file(tmp_path)
    first = json.loads(invoke(runner, env, "tenant", "apply", path).stdout)
    secret = first["generated_client_secrets"]["cli-generated"]
    assert len(secret) >= 32
    assert list(first["generated_client_secrets"]) == ["cli-generated"], "public clients get no secret"
    second = json.loads(invoke(runner, env, "tenant", "apply", path).stdout)
    assert second["generated_client_secrets"] == {}

    params = {"grant_type": "password", "username": "dana@example.test", "password": "dana's password"}
    ok, wrong = logins(
        settings,
        {"client_id": "cli-generated", "client_secret": secret, **params},
        {"client_id": "cli-generated", "client_secret": secret + "x", **params},
    )
    assert ok.status_code == 200, ok.text
    assert wrong.status_code == 401


DANA = {
    "grant_type": "password",
    "client_id": "cli-public",
    "username": "dana@example.test",
    "password": "dana's password",
}


def test_applied_tenant_serves_tokens_and_updates_apply(runner, env, settings, tmp_path):
    invoke(runner, env, "tenant", "apply", tenant_file(tmp_path))
    (response,) = logins(settings, DANA)
    assert response.status_code == 200, response.text
    assert response.json()["scope"] == "read:x write:x"

    changed = TENANT_TOML.replace('scopes = ["read:x", "write:x"]', 'scopes = ["read:x", "write:x", "admin:x"]')
    result = invoke(runner, env, "tenant", "apply", tenant_file(tmp_path, changed))
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["created"] == []
    (response,) = logins(settings, DANA)
    assert response.json()["scope"] == "read:x write:x admin:x"


@pytest.mark.parametrize(
    ("text", "mentions"),
    [
        pytest.param(TENANT_TOML.replace('name = "guests"', 'name = "guests"\ncolour = "blue"'), "colour", id="key"),
        pytest.param(TENANT_TOML + "\n[branding]\nlogo = 'x'\n", "branding", id="section"),
        pytest.param(TENANT_TOML.replace("default_audience", "default_audiance"), "default_audiance", id="typo"),
        pytest.param(TENANT_TOML.replace('scopes = ["read:x"', 'scope = ["read:x"'), "scope", id="api key"),
    ],
)
def test_tenant_apply_refuses_unknown_keys_and_writes_nothing(runner, env, settings, tmp_path, text, mentions):
    result = invoke(runner, env, "tenant", "apply", tenant_file(tmp_path, text))
    assert result.exit_code != 0
    assert "unknown" in result.output
    assert mentions in result.output
    assert "Traceback" not in result.output
    assert set(counts(settings).values()) == {0}


def test_tenant_apply_refuses_a_reference_to_an_unknown_connection_and_writes_nothing(runner, env, settings, tmp_path):
    text = TENANT_TOML.replace('connections = ["staff"]', 'connections = ["staff", "nowhere"]')
    result = invoke(runner, env, "tenant", "apply", tenant_file(tmp_path, text))
    assert result.exit_code != 0
    assert "nowhere" in result.output
    assert set(counts(settings).values()) == {0}


def test_tenant_apply_reports_toml_syntax_errors(runner, env, settings, tmp_path):
    result = invoke(runner, env, "tenant", "apply", tenant_file(tmp_path, "[tenant\nfriendly_name = 'x'"))
    assert result.exit_code != 0
    assert "tenant.toml" in result.output
    assert "Traceback" not in result.output


def test_tenant_apply_needs_an_existing_file(runner, env, tmp_path):
    result = invoke(runner, env, "tenant", "apply", str(tmp_path / "missing.toml"))
    assert result.exit_code != 0
    assert "missing.toml" in result.output


# -- identity users create ------------------------------------------------------------------------------------------


LONG_ENOUGH = "a long enough password"


def create_user(runner, env, *args: str, password: str = LONG_ENOUGH) -> Result:
    return invoke(runner, env, "users", "create", *args, input=password + "\n")


def test_users_create_reads_the_password_from_stdin_and_prints_json(runner, env, client, settings):
    result = create_user(
        runner, env, "--connection", "customers", "--email", "carol@example.test", password="carol pw 1234 5678"
    )
    assert result.exit_code == 0, result.output
    assert "carol pw 1234 5678" not in result.output
    user = json.loads(result.stdout)
    assert user["user_id"].startswith("auth0|")
    assert user["connection"] == "customers"
    assert user["email"] == "carol@example.test"
    assert user["blocked"] is False

    params = {"grant_type": "password", "client_id": "public-app", "username": "carol@example.test"}
    response = client.post("/oauth/token", data={**params, "password": "carol pw 1234 5678"})
    assert response.status_code == 200, response.text
    import jwt

    assert jwt.decode(response.json()["access_token"], options={"verify_signature": False})["sub"] == user["user_id"]
    assert client.post("/oauth/token", data={**params, "password": "carol pw 1234 56789"}).status_code == 403


def test_users_create_with_username_only(runner, env, client):
    result = create_user(
        runner, env, "--connection", "employees", "--username", "erin", password="the password of e. 2026"
    )
    assert result.exit_code == 0, result.output
    user = json.loads(result.stdout)
    assert (user["username"], user["email"]) == ("erin", None)
    params = {"grant_type": PASSWORD_REALM, "client_id": "public-app", "realm": "employees", "username": "erin"}
    assert client.post("/oauth/token", data={**params, "password": "the password of e. 2026"}).status_code == 200


def test_users_create_same_email_in_another_directory_is_another_user(runner, env, directories):
    first = json.loads(create_user(runner, env, "--connection", "customers", "--email", "frank@example.test").stdout)
    second = json.loads(create_user(runner, env, "--connection", "employees", "--email", "frank@example.test").stdout)
    assert first["user_id"] != second["user_id"]


@pytest.mark.parametrize("email", ["alice@example.test", "ALICE@example.test", " alice@example.test "])
def test_users_create_duplicate_is_a_clear_error(runner, env, directories, settings, email):
    assert create_user(runner, env, "--connection", "customers", "--email", "alice@example.test").exit_code == 0
    before = counts(settings)["users"]
    result = create_user(runner, env, "--connection", "customers", "--email", email)
    assert result.exit_code == 1
    assert "already exists" in result.output
    assert "Traceback" not in result.output
    assert counts(settings)["users"] == before


def test_users_create_duplicate_username_is_a_clear_error(runner, env, directories):
    assert create_user(runner, env, "--connection", "employees", "--username", "alice").exit_code == 0
    result = create_user(runner, env, "--connection", "employees", "--username", "ALICE")
    assert result.exit_code == 1
    assert "already exists" in result.output


@pytest.mark.parametrize(
    ("args", "password", "message"),
    [
        (["--connection", "nowhere", "--email", "g@example.test"], "long enough pw", "no connection named 'nowhere'"),
        (["--connection", "Customers", "--email", "g@example.test"], "long enough pw", "no connection named"),
        (["--connection", "customers", "--email", "g@example.test"], "short", "at least 15 characters"),
        (["--connection", "customers", "--email", "g@example.test"], "", "at least 15 characters"),
        (["--connection", "customers", "--email", "not-an-email"], "long enough pw", "email address is not valid"),
        (["--connection", "customers"], "long enough pw", "email or a username"),
        (["--connection", "customers", "--username", "has@sign"], "long enough pw", "username"),
    ],
)
def test_users_create_refuses_bad_input_clearly(runner, env, directories, settings, args, password, message):
    before = counts(settings)["users"]
    result = create_user(runner, env, *args, password=password)
    assert result.exit_code == 1
    assert message in result.output
    assert "Traceback" not in result.output
    assert counts(settings)["users"] == before


def test_users_create_requires_the_connection_option(runner, env):
    result = create_user(runner, env, "--email", "h@example.test")
    assert result.exit_code == 2
    assert "--connection" in result.output


PASSWORD_REALM = "http://auth0.com/oauth/grant-type/password-realm"
