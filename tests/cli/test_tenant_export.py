"""``identity tenant export``: the running tenant as a tenant file, without secrets or users, that applies back."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from identity.cli import main
from identity.settings import Settings
from identity.store.tenant import MANAGEMENT_API_SCOPES
from identity.tenant_file import validate
from tests.conftest import apply, standard_tenant

M2M_SECRET = "export-m2m-secret-0123456789abcdefghijklmn"


def env(settings: Settings) -> dict[str, str]:
    return {
        "IDENTITY_DATABASE_URL": settings.database_url,
        "IDENTITY_ENCRYPTION_KEYS": settings.encryption_keys.dump().replace("\n", ","),
        "IDENTITY_ISSUER": settings.issuer,
        "IDENTITY_HASH_WORKERS": "1",
        "IDENTITY_ENCRYPTION_KEY_FILE": "",
    }


def full_tenant() -> dict[str, Any]:
    data = standard_tenant()
    data["tenant"].update(mfa_policy="always", brute_force_max_attempts=5)
    data["clients"].append(
        {
            "client_id": "exporter",
            "name": "Exporter",
            "client_secret": M2M_SECRET,
            "grant_types": ["client_credentials", "refresh_token"],
            "metadata": {"team": "platform"},
            "refresh_token": {"rotation_type": "rotating", "leeway": 10},
        }
    )
    data["client_grants"] = [
        {"client_id": "exporter", "audience": "##ISSUER##api/v2/", "scope": list(MANAGEMENT_API_SCOPES[:3])},
        {"client_id": "exporter", "audience": "https://reports.example.test/", "scope": ["read:reports"]},
    ]
    data["rules"] = [
        {"name": "roles", "handler": "identity.rules.builtin:add_roles", "config": {"namespace": "https://x.test/"}},
        {"name": "off", "handler": "tests.rule_handlers:deny", "enabled": False, "timeout_seconds": 2.5},
    ]
    return data


def export(environ: dict[str, str], tmp_path: Path, name: str) -> tuple[str, dict[str, Any]]:
    path = tmp_path / name
    result = CliRunner().invoke(main, ["tenant", "export", "-o", str(path)], env=environ, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    text = path.read_text()
    return text, tomllib.loads(text)


def test_the_export_has_the_configuration_and_no_secret(settings: Settings, tmp_path: Path) -> None:
    apply(settings, full_tenant())
    text, data = export(env(settings), tmp_path, "export.toml")

    validate(data)
    assert "users" not in data
    assert M2M_SECRET not in text and "secret_hash" not in text
    assert not any("client_secret" in client for client in data["clients"])
    assert data["tenant"]["mfa_policy"] == "always" and data["tenant"]["brute_force_max_attempts"] == 5
    assert [c["name"] for c in data["connections"]] == ["customers", "employees", "partners"]
    exporter = next(c for c in data["clients"] if c["client_id"] == "exporter")
    assert exporter["metadata"] == {"team": "platform"} and exporter["refresh_token"]["leeway"] == 10
    assert data["client_grants"][0] == {
        "client_id": "exporter",
        "audience": "##ISSUER##api/v2/",
        "scope": list(MANAGEMENT_API_SCOPES[:3]),
    }
    assert [(r["name"], r["enabled"]) for r in data["rules"]] == [("roles", True), ("off", False)]
    # To standard output too.
    printed = CliRunner().invoke(main, ["tenant", "export"], env=env(settings), catch_exceptions=False)
    assert tomllib.loads(printed.output) == data


def test_applying_the_export_round_trips(settings: Settings, tmp_path: Path) -> None:
    apply(settings, full_tenant())
    _, first = export(env(settings), tmp_path, "first.toml")

    # On the same database: nothing changes, the secrets stay.
    runner = CliRunner()
    same = runner.invoke(main, ["tenant", "apply", str(tmp_path / "first.toml")], env=env(settings))
    assert same.exit_code == 0, same.output
    assert '"generated_client_secrets": {}' in same.output
    assert export(env(settings), tmp_path, "again.toml")[1] == first

    # On an empty database: the same configuration; confidential clients get new secrets, printed once.
    other = {**env(settings), "IDENTITY_DATABASE_URL": f"sqlite:///{tmp_path / 'other.db'}"}
    fresh = runner.invoke(main, ["tenant", "apply", str(tmp_path / "first.toml")], env=other)
    assert fresh.exit_code == 0, fresh.output
    assert '"exporter":' in fresh.output
    assert export(other, tmp_path, "other.toml")[1] == first
