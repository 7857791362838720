"""End-to-end fixtures: the real ``identity`` command, run as subprocesses, on the test session's database.

Nothing here is mocked. The tenant is written as a TOML file and applied with ``identity tenant apply``; users may be
added with ``identity users create``; the server is ``identity serve`` on a free port, with its settings in the
environment (IDENTITY_DATABASE_URL, IDENTITY_ISSUER, IDENTITY_ENCRYPTION_KEYS), exactly as an operator runs it. When a
test fails, the output of every server still running is attached to the failure report.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import IO, Any

import httpx
import jwt
import pytest
from sqlalchemy import text
from sqlmodel import SQLModel

import identity.store.models  # noqa: F401  (registers the tables on SQLModel.metadata)
from identity.settings import EncryptionKeys
from identity.store.db import create_engine
from tests.conftest import LOG_FILES

# --- The e2e tenant ---------------------------------------------------------------------------------------------

API = "https://api.e2e.test/"
API_SCOPES = ("read:things", "write:things", "delete:things")
API_LIFETIME = 7200
REPORTS_API = "https://reports.e2e.test/"
REPORTS_LIFETIME = 600
PASSWORD_REALM = "http://auth0.com/oauth/grant-type/password-realm"

PUBLIC_CLIENT = "e2e-public"
POST_CLIENT = "e2e-post"
POST_SECRET = "e2e-post-secret-0123456789abcdefghijklmn"
BASIC_CLIENT = "e2e-basic"
BASIC_SECRET = "e2e-basic-secret-0123456789abcdefghijklm"
REALM_ONLY_CLIENT = "e2e-realm-only"

ALICE_EMAIL = "alice@e2e.test"
ALICE_CUSTOMER_PASSWORD = "alice customer password"
ALICE_EMPLOYEE_PASSWORD = "employee password of A. in staff"
BOB_EMAIL = "bob@e2e.test"
BOB_PASSWORD = "bob password 1234"
DAVE_EMAIL = "dave@e2e.test"
DAVE_USERNAME = "dave"
DAVE_PASSWORD = "the password D. typed on stdin"

TENANT_TOML = f"""\
[tenant]
friendly_name = "E2E"
default_directory = "customers"
default_audience = "{API}"

# Every e2e request comes from 127.0.0.1: suspicious-IP throttling would end up refusing unrelated tests.
[tenant.suspicious_ip_throttling]
enabled = false

[[connections]]
name = "customers"

[[connections]]
name = "employees"

[[connections]]
name = "partners"

[[apis]]
identifier = "{API}"
name = "E2E API"
scopes = {json.dumps(list(API_SCOPES))}
signing_alg = "RS256"
token_lifetime = {API_LIFETIME}
allow_offline_access = true

[[apis]]
identifier = "{REPORTS_API}"
name = "E2E Reports"
scopes = ["read:reports"]
signing_alg = "ES256"
token_lifetime = {REPORTS_LIFETIME}

[[clients]]
client_id = "{PUBLIC_CLIENT}"
name = "E2E public client"
token_endpoint_auth_method = "none"
grant_types = ["password", "{PASSWORD_REALM}"]
connections = ["customers", "employees"]

[[clients]]
client_id = "{POST_CLIENT}"
name = "E2E client_secret_post client"
client_secret = "{POST_SECRET}"
token_endpoint_auth_method = "client_secret_post"
grant_types = ["password", "{PASSWORD_REALM}"]
connections = ["customers", "employees"]

[[clients]]
client_id = "{BASIC_CLIENT}"
name = "E2E client_secret_basic client"
client_secret = "{BASIC_SECRET}"
token_endpoint_auth_method = "client_secret_basic"
grant_types = ["password", "{PASSWORD_REALM}"]
connections = ["customers", "employees"]

[[clients]]
client_id = "{REALM_ONLY_CLIENT}"
name = "E2E password-realm only"
token_endpoint_auth_method = "none"
grant_types = ["{PASSWORD_REALM}"]
connections = ["employees"]

[[users]]
connection = "customers"
email = "{ALICE_EMAIL}"
password = "{ALICE_CUSTOMER_PASSWORD}"
name = "Alice (customer)"
email_verified = true

[[users]]
connection = "employees"
email = "{ALICE_EMAIL}"
username = "alice"
password = "{ALICE_EMPLOYEE_PASSWORD}"
name = "Alice (employee)"

[[users]]
connection = "customers"
email = "{BOB_EMAIL}"
password = "{BOB_PASSWORD}"
blocked = true
"""


@dataclass(frozen=True)
class AppliedTenant:
    """What ``identity tenant apply`` and ``identity users create`` reported."""

    report: dict[str, Any]
    user_ids: dict[tuple[str, str], str]
    """``user_id`` by (connection, email)."""
    dave: dict[str, Any]
    """The user created with ``identity users create``."""


# --- Processes --------------------------------------------------------------------------------------------------

STARTUP_TIMEOUT = 60.0
_RUNNING: list[ServerProcess] = []


def identity_command() -> list[str]:
    """The installed console script next to this interpreter, else ``python -m identity``."""
    script = Path(sys.executable).with_name("identity")
    return [str(script)] if script.exists() else [sys.executable, "-m", "identity"]


def clean_environ(**overrides: str) -> dict[str, str]:
    """This process's environment without any IDENTITY_* variable, plus ``overrides``."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("IDENTITY_")}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(overrides)
    return env


def database_environ(database_url: str, encryption_keys: EncryptionKeys, **overrides: str) -> dict[str, str]:
    """The environment of every process that shares the test session's database."""
    # Race tests fire dozens of password logins at once to get as many mfa_tokens: the hash queue takes them all
    # (load shedding has its own test, tests/e2e/test_attack_e2e.py, with a short queue).
    defaults = {"IDENTITY_HASH_QUEUE": "256", "IDENTITY_HASH_WAIT_MS": "120000"}
    return clean_environ(
        IDENTITY_DATABASE_URL=database_url,
        IDENTITY_ENCRYPTION_KEYS=encryption_keys.dump().strip().replace("\n", ","),
        **{**defaults, **overrides},
    )


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_identity(
    args: Sequence[str], env: dict[str, str], *, stdin: str | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run one ``identity`` command to completion; fail the test with its output when it fails."""
    result = subprocess.run(
        [*identity_command(), *args],
        env=env,
        cwd=cwd,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if result.returncode != 0:
        pytest.fail(
            f"identity {' '.join(args)} exited with {result.returncode}\n"
            f"--- stdout ---\n{result.stdout}\n--- stderr ---\n{result.stderr}"
        )
    return result


def apply_tenant_file(path: Path, env: dict[str, str]) -> dict[str, Any]:
    """``identity tenant apply PATH``, returning its JSON report."""
    report: dict[str, Any] = json.loads(run_identity(["tenant", "apply", str(path)], env).stdout)
    return report


def create_user(env: dict[str, str], connection: str, password: str, **identifiers: str) -> dict[str, Any]:
    """``identity users create`` with the password on standard input, returning the printed user."""
    args = ["users", "create", "--connection", connection]
    for name, value in identifiers.items():
        args += [f"--{name}", value]
    user: dict[str, Any] = json.loads(run_identity(args, env, stdin=password + "\n").stdout)
    return user


class ServerProcess:
    """A long-running ``identity`` subprocess whose output goes to files (no pipe can fill up and stall it)."""

    def __init__(self, name: str, args: Sequence[str], env: dict[str, str], cwd: Path | None, log_dir: Path) -> None:
        self.name = name
        self.args = list(args)
        self.killed = False
        self.stdout_path = log_dir / f"{name}.stdout.log"
        self.stderr_path = log_dir / f"{name}.stderr.log"
        LOG_FILES.append(self.stderr_path)  # the server's log, scanned for secrets at the end of the run
        self._files: list[IO[bytes]] = [self.stdout_path.open("wb"), self.stderr_path.open("wb")]
        self.process = subprocess.Popen(
            [*identity_command(), *self.args],
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=self._files[0],
            stderr=self._files[1],
        )
        _RUNNING.append(self)

    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def describe(self) -> str:
        """Command, exit status and output, for failure messages."""
        status = self.process.poll()
        return (
            f"$ identity {' '.join(self.args)}  ({'running' if status is None else f'exited with {status}'})\n"
            f"--- stderr ---\n{self.stderr()}\n--- stdout ---\n{self.stdout()}"
        )

    def stop(self) -> int:
        """SIGTERM (uvicorn shuts down gracefully), SIGKILL if that takes too long; returns the exit status."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.killed = True
                self.process.kill()
                self.process.wait(timeout=15)
        for handle in self._files:
            handle.close()
        if self in _RUNNING:
            _RUNNING.remove(self)
        return self.process.returncode


@dataclass
class IdentityServer:
    """A running server: where it listens, the issuer it was given, and its process."""

    port: int
    issuer: str
    process: ServerProcess

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def domain(self) -> str:
        """What Auth0's SDK calls the domain (used with ``protocol="http"``)."""
        return f"127.0.0.1:{self.port}"

    @property
    def token_url(self) -> str:
        return f"{self.base_url}/oauth/token"

    @property
    def jwks_url(self) -> str:
        return f"{self.base_url}/.well-known/jwks.json"

    @cached_property
    def jwks(self) -> jwt.PyJWKClient:
        """PyJWT's JWKS client on this server's published keys."""
        return jwt.PyJWKClient(self.jwks_url)

    def wait_ready(self, timeout: float = STARTUP_TIMEOUT) -> None:
        """Poll ``/healthz`` until it answers 200; fail with the server's output if it exits or times out."""
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=2.0) as client:
            while time.monotonic() < deadline:
                if self.process.process.poll() is not None:
                    raise ServerDied(self.process)
                try:
                    if client.get(f"{self.base_url}/healthz").status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                time.sleep(0.05)
        pytest.fail(f"identity did not become healthy within {timeout} s\n{self.process.describe()}")


class ServerDied(Exception):
    """The server process exited before it was ready."""

    def __init__(self, process: ServerProcess) -> None:
        super().__init__(process.describe())
        self.process = process

    @property
    def port_taken(self) -> bool:
        text = self.process.stderr().lower()
        return "address already in use" in text or "errno 98" in text


@dataclass(frozen=True)
class ServerSpec:
    """How to start one server once its port is known."""

    name: str
    args: Callable[[int], list[str]]
    env: Callable[[int], dict[str, str]]
    issuer: Callable[[int], str] = lambda port: f"http://127.0.0.1:{port}/"
    cwd: Path | None = None


def serve_spec(name: str, env: dict[str, str], *, issuer: str | None = None) -> ServerSpec:
    """``identity serve`` on the given environment; the issuer is the listen URL unless one is given."""

    def issuer_for(port: int) -> str:
        return issuer or f"http://127.0.0.1:{port}/"

    return ServerSpec(
        name=name,
        args=lambda port: ["serve", "--host", "127.0.0.1", "--port", str(port)],
        env=lambda port: {**env, "IDENTITY_ISSUER": issuer_for(port)},
        issuer=issuer_for,
    )


def start_servers(specs: Sequence[ServerSpec], log_dir: Path, *, attempts: int = 3) -> list[IdentityServer]:
    """Start every server at once, then wait until all are healthy. Retries when a picked port got taken."""
    for attempt in range(1, attempts + 1):
        servers = []
        for spec in specs:
            port = free_port()
            process = ServerProcess(f"{spec.name}-{attempt}", spec.args(port), spec.env(port), spec.cwd, log_dir)
            servers.append(IdentityServer(port=port, issuer=spec.issuer(port), process=process))
        try:
            for server in servers:
                server.wait_ready()
        except ServerDied as died:
            for server in servers:
                server.process.stop()
            if died.port_taken and attempt < attempts:
                continue
            pytest.fail(f"identity exited before it was ready\n{died}")
        except BaseException:
            for server in servers:
                server.process.stop()
            raise
        return servers
    raise AssertionError("unreachable")


def stop_and_check(server: IdentityServer) -> None:
    """Stop the server; fail if it logged an unhandled error at any point, or did not shut down gracefully."""
    status = server.process.stop()
    log = server.process.stderr()
    if "Traceback" in log or "unhandled error" in log:
        pytest.fail(f"the server logged an unhandled error\n{server.process.describe()}")
    # uvicorn re-raises SIGTERM once its graceful shutdown is complete.
    if server.process.killed or status not in {0, -signal.SIGTERM}:
        pytest.fail(f"the server did not shut down gracefully on SIGTERM\n{server.process.describe()}")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[pytest.TestReport]:
    """Attach the output of every running server to a failed test's report."""
    report: pytest.TestReport = yield
    if report.failed:
        for running in list(_RUNNING):
            report.sections.append((f"identity server {running.name}", running.describe()))
    return report


# --- Database ---------------------------------------------------------------------------------------------------


def empty_database(database_url: str, tables: Sequence[str] | None = None) -> None:
    """Delete every row of ``tables``; by default of every table of the service but the signing keys (generating
    keys is slow-ish, and their handling has its own test)."""
    if tables is None:
        tables = [table.name for table in reversed(SQLModel.metadata.sorted_tables) if table.name != "signing_key"]

    async def go() -> None:
        engine = create_engine(database_url)
        try:
            async with engine.begin() as conn:
                if database_url.startswith("postgresql"):
                    await conn.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
                else:
                    for table in tables:
                        await conn.execute(text(f"DELETE FROM {table}"))
        finally:
            await engine.dispose()

    asyncio.run(go())


def query(database_url: str, sql: str) -> list[tuple[Any, ...]]:
    """Rows of one read-only query on the shared database."""

    async def go() -> list[tuple[Any, ...]]:
        engine = create_engine(database_url)
        try:
            async with engine.connect() as conn:
                return [tuple(row) for row in (await conn.execute(text(sql))).all()]
        finally:
            await engine.dispose()

    return asyncio.run(go())


# --- Fixtures ---------------------------------------------------------------------------------------------------


# Package-scoped: the modules that only log in share one tenant and one server. A module that needs more (its own
# servers, fresh signing keys) starts its own processes and only adds to the shared database, never empties it.


@pytest.fixture(scope="package")
def e2e_env(database_url: str, encryption_keys: EncryptionKeys) -> dict[str, str]:
    """The environment of the e2e processes, on the emptied shared database."""
    empty_database(database_url)
    return database_environ(database_url, encryption_keys)


@pytest.fixture(scope="package")
def tenant_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("tenant") / "tenant.toml"
    path.write_text(TENANT_TOML)
    return path


@pytest.fixture(scope="package")
def applied_tenant(e2e_env: dict[str, str], tenant_file: Path) -> AppliedTenant:
    """The e2e tenant applied with the CLI, plus one user made with ``identity users create``."""
    report = apply_tenant_file(tenant_file, e2e_env)
    dave = create_user(e2e_env, "employees", DAVE_PASSWORD, email=DAVE_EMAIL, username=DAVE_USERNAME)
    user_ids = {(user["connection"], user["email"]): user["user_id"] for user in report["users"]}
    return AppliedTenant(report=report, user_ids=user_ids, dave=dave)


@pytest.fixture(scope="package")
def server(
    e2e_env: dict[str, str], applied_tenant: AppliedTenant, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[IdentityServer]:
    """One ``identity serve`` on the applied tenant, its issuer its own URL."""
    (started,) = start_servers([serve_spec("serve", e2e_env)], tmp_path_factory.mktemp("server-logs"))
    try:
        yield started
    finally:
        stop_and_check(started)


# --- Token checks -----------------------------------------------------------------------------------------------

REQUIRED_CLAIMS = ["iss", "sub", "aud", "iat", "exp"]


def verify_access_token(
    server: IdentityServer, token: str, *, audience: str, alg: str = "RS256", issuer: str | None = None
) -> dict[str, Any]:
    """Verify ``token`` with PyJWT against the server's JWKS; returns the claims."""
    header = jwt.get_unverified_header(token)
    assert header["alg"] == alg
    assert header.get("kid")
    signing_key = server.jwks.get_signing_key_from_jwt(token)
    assert signing_key.key_id == header["kid"]
    claims: dict[str, Any] = jwt.decode(
        token,
        signing_key.key,
        algorithms=[alg],
        audience=audience,
        issuer=issuer or server.issuer,
        options={"require": [*REQUIRED_CLAIMS, "azp", "scope", "gty", "jti"]},
    )
    return claims


def verify_id_token(server: IdentityServer, token: str, *, client_id: str, issuer: str | None = None) -> dict[str, Any]:
    """Verify an ID token (RS256, audience = the client) against the server's JWKS."""
    assert jwt.get_unverified_header(token)["alg"] == "RS256"
    signing_key = server.jwks.get_signing_key_from_jwt(token)
    claims: dict[str, Any] = jwt.decode(
        token,
        signing_key.key,
        algorithms=["RS256"],
        audience=client_id,
        issuer=issuer or server.issuer,
        options={"require": REQUIRED_CLAIMS},
    )
    assert claims["aud"] == client_id
    return claims
