"""The newcomer's path: ``identity demo`` in an empty directory prints a curl command; pasting it returns a token.

The demo runs exactly as the README tells a newcomer to run it: no IDENTITY_* variable at all, so it creates the
embedded SQLite database and its encryption key file in the working directory.
"""

from __future__ import annotations

import itertools
import json
import shlex
import shutil
import subprocess
import time
import tomllib
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from tests.e2e.conftest import IdentityServer, ServerSpec, clean_environ, start_servers, stop_and_check

EXAMPLE_TENANT = Path(__file__).resolve().parents[2] / "examples" / "tenant.toml"


def curl_commands(output: str) -> list[list[str]]:
    """Every ``curl`` command in ``output``, its backslash-continued lines joined, split as a shell would."""
    commands: list[list[str]] = []
    current: str | None = None
    for line in output.splitlines():
        stripped = line.strip()
        if current is None:
            if not stripped.startswith("curl "):
                continue
            current = ""
        current += " " + stripped.removesuffix("\\")
        if not stripped.endswith("\\"):
            commands.append(shlex.split(current))
            current = None
    return commands


def run_curl(argv: list[str]) -> str:
    """Run the command as pasted into a shell: with curl when there is one, else replayed with httpx."""
    assert argv[0] == "curl"
    if shutil.which("curl"):
        result = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
        assert result.returncode == 0, f"curl failed ({result.returncode}): {result.stderr}"
        return result.stdout
    url, data = None, []
    args = iter(argv[1:])
    for arg in args:
        if arg in {"-d", "--data"}:
            data.append(next(args))
        elif arg in {"-s", "--silent"}:
            continue
        elif arg.startswith("-"):
            raise AssertionError(f"cannot replay the curl option {arg}")
        else:
            url = arg
    assert url is not None
    # curl -d sends its arguments as they are, joined with '&', as a form.
    response = httpx.post(
        url, content="&".join(data).encode(), headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    return response.text


def form_value(argv: list[str], name: str) -> str:
    """The value of ``-d name=value`` in a curl command."""
    for flag, value in itertools.pairwise(argv):
        if flag == "-d" and value.startswith(name + "="):
            return value.removeprefix(name + "=")
    raise AssertionError(f"no -d {name}=... in {argv}")


def wait_for_curl_commands(demo: IdentityServer, timeout: float = 60) -> tuple[str, list[list[str]]]:
    """Read the demo's standard output until the curl block has been printed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        output = demo.process.stdout()
        commands = curl_commands(output)
        if commands and "Get a token" in output:
            return output, commands
        time.sleep(0.05)
    pytest.fail(f"identity demo printed no curl command\n{demo.process.describe()}")


def test_demo_prints_a_curl_command_that_returns_a_token(tmp_path: Path) -> None:
    workdir = tmp_path / "fresh-checkout"
    workdir.mkdir()
    spec = ServerSpec(
        name="demo", args=lambda port: ["demo", "--port", str(port)], env=lambda _: clean_environ(), cwd=workdir
    )
    (demo,) = start_servers([spec], tmp_path)
    try:
        output, commands = wait_for_curl_commands(demo)
        example = tomllib.loads(EXAMPLE_TENANT.read_text())

        assert demo.issuer in output
        assert (workdir / "identity.db").is_file()
        assert (workdir / ".identity" / "encryption.keys").is_file()

        subjects = []
        management = [c for c in commands if any("/api/v2/" in part for part in c)]
        commands = [c for c in commands if c not in management]
        token_command, users_command = management
        machine: dict[str, Any] = json.loads(run_curl(token_command))
        audience = demo.issuer + "api/v2/"
        machine_claims = jwt.decode(
            machine["access_token"],
            demo.jwks.get_signing_key_from_jwt(machine["access_token"]).key,
            algorithms=["RS256"],
            audience=audience,
            issuer=demo.issuer,
        )
        assert machine_claims["sub"] == form_value(token_command, "client_id") + "@clients"
        assert "read:users" in machine_claims["scope"].split()
        # The printed Management API call, with the token pasted in where it says ACCESS_TOKEN.
        assert users_command[-1] == "Authorization: Bearer ACCESS_TOKEN"
        listed = httpx.get(users_command[2], headers={"Authorization": f"Bearer {machine['access_token']}"})
        assert listed.status_code == 200, listed.text
        assert {user["email"] for user in listed.json()} >= {"alice@acme.test"}
        for command in commands:
            body: dict[str, Any] = json.loads(run_curl(command))
            assert "access_token" in body, body
            assert body["token_type"] == "Bearer"
            # The token is the real thing: signed with a key the demo publishes, for the example's default API.
            signing_key = demo.jwks.get_signing_key_from_jwt(body["access_token"])
            claims = jwt.decode(
                body["access_token"],
                signing_key.key,
                algorithms=["RS256"],
                audience=example["tenant"]["default_audience"],
                issuer=demo.issuer,
            )
            assert claims["azp"] == form_value(command, "client_id")
            subjects.append(claims["sub"])
            if "openid" in body["scope"].split():
                id_claims = jwt.decode(
                    body["id_token"],
                    demo.jwks.get_signing_key_from_jwt(body["id_token"]).key,
                    algorithms=["RS256"],
                    audience=form_value(command, "client_id"),
                    issuer=demo.issuer,
                )
                assert id_claims["sub"] == claims["sub"]
                assert id_claims["email"] == form_value(command, "username")
        # The second command logs the same email into the other directory: another user.
        assert len(commands) == 2
        assert len(set(subjects)) == 2
    finally:
        stop_and_check(demo)
