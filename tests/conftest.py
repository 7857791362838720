"""Shared fixtures: one migrated database per test session (SQLite by default, PostgreSQL when
IDENTITY_TEST_DATABASE_URL names one), emptied between tests; settings built directly, never from os.environ."""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import pytest
from litestar import Litestar
from litestar.testing import TestClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from identity.accounts.passwords import PasswordHasher
from identity.app import create_app
from identity.settings import EncryptionKeys, Settings, normalize_database_url
from identity.store.config import invalidate_all
from identity.store.db import create_engine, create_sessionmaker, migrate
from identity.tenant_file import apply_tenant, validate

T = TypeVar("T")

# --- The log of the run, scanned for secrets at its end (tests/log_scan.py) -------------------------------------

LOG_FILES: list[Path] = []
"""Log files of the run to scan: the in-process log, and the standard error of every e2e server."""


def pytest_configure(config: pytest.Config) -> None:
    import contextlib
    import logging
    import tempfile

    import httpx

    from identity.observability.logging import JsonFormatter
    from tests import log_scan

    path = Path(tempfile.mkdtemp(prefix="identity-test-log-")) / "identity.log"
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(JsonFormatter())
    logging.getLogger("identity").addHandler(handler)
    logging.getLogger("identity").setLevel(logging.DEBUG)
    LOG_FILES.append(path)
    config.stash[_LOG_HANDLER] = handler

    original = httpx.Client.send

    def send(self: httpx.Client, request: httpx.Request, **kwargs: Any) -> httpx.Response:
        log_scan.record_request(request.content, request.headers.get("content-type", ""))
        response = original(self, request, **kwargs)
        if "json" in response.headers.get("content-type", ""):
            log_scan.record_response(response.read())
        return response

    httpx.Client.send = send  # type: ignore[method-assign]

    original_async = httpx.AsyncClient.send

    async def send_async(self: httpx.AsyncClient, request: httpx.Request, **kwargs: Any) -> httpx.Response:
        # The race and burst tests post with httpx's async client: their winners' tokens are secrets of the run too.
        with contextlib.suppress(httpx.RequestNotRead):  # a streamed body (the race harness's) is not read here
            log_scan.record_request(request.content, request.headers.get("content-type", ""))
        response = await original_async(self, request, **kwargs)
        if "json" in response.headers.get("content-type", ""):
            with contextlib.suppress(httpx.ResponseNotRead):
                log_scan.record_response(response.content)
        return response

    httpx.AsyncClient.send = send_async  # type: ignore[method-assign]


_LOG_HANDLER = pytest.StashKey[Any]()


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the run when any log of it contains a secret the tests used."""
    from tests import log_scan
    from tests.e2e import conftest as e2e

    handler = session.config.stash.get(_LOG_HANDLER, None)
    if handler is not None:
        handler.flush()
    fixed = {
        value
        for module in (globals(), vars(e2e))
        for name, value in module.items()
        if isinstance(value, str) and name.isupper() and name.endswith(("PASSWORD", "SECRET"))
    }
    leaks = log_scan.find_leaks(log_scan.read_logs(LOG_FILES), fixed | log_scan.SECRETS)
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if leaks:
        if reporter is not None:
            reporter.write_sep("=", "secrets found in the logs of this run", red=True)
            for leak in leaks[:50]:
                reporter.write_line(leak)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
    else:
        if reporter is not None:
            reporter.write_line(
                f"log scan: {len(LOG_FILES)} log files, {len(fixed | log_scan.SECRETS)} secrets of the run: none logged"
            )
        if handler is not None:
            handler.close()
            shutil.rmtree(Path(handler.baseFilename).parent, ignore_errors=True)


ISSUER = "https://identity.test/"
API = "https://api.example.test/"
REPORTS_API = "https://reports.example.test/"
CONFIDENTIAL_SECRET = "confidential-secret-0123456789abcdefghij"
BASIC_SECRET = "basic-secret-0123456789abcdefghijklmnopqrs"
ALICE_CUSTOMER_PASSWORD = "alice customer password"
ALICE_EMPLOYEE_PASSWORD = "employee password of A. in staff"
BOB_PASSWORD = "bob password 1234"
PASSWORD_GRANTS = ["password", "http://auth0.com/oauth/grant-type/password-realm"]

# Tables emptied between tests. Signing keys are kept: generating an RSA key per test would be slow,
# and key handling has its own tests.
_TABLES = [
    "webauthn_challenge",
    "webauthn_credential",
    "webauthn_user",
    "attack_counter",
    "log_event",
    "userinfo_claims",
    "web_session",
    "rule",
    "refresh_token",
    "mfa_attempt",
    "mfa_transaction",
    "recovery_code",
    "authenticator",
    "users",
    "client_grant",
    "client_connection",
    "client",
    "api",
    "connection",
    "tenant",
]


def standard_tenant() -> dict[str, Any]:
    """The tenant most tests use: two directories with the same email, two APIs, four clients."""
    return {
        "tenant": {
            "friendly_name": "Test",
            "default_directory": "customers",
            "default_audience": API,
            # Every test request comes from one address: suspicious-IP throttling (100 failures across accounts)
            # would end up refusing unrelated tests. Its own tests turn it on (tests/api/test_attack_protection.py).
            "suspicious_ip_throttling": {"enabled": False},
        },
        "connections": [{"name": "customers"}, {"name": "employees"}, {"name": "partners"}],
        "apis": [
            {
                "identifier": API,
                "name": "Example API",
                "scopes": ["read:things", "write:things", "delete:things"],
                "allow_offline_access": True,
            },
            {
                "identifier": REPORTS_API,
                "name": "Reports",
                "scopes": ["read:reports"],
                "signing_alg": "ES256",
                "token_lifetime": 600,
            },
        ],
        "clients": [
            {
                "client_id": "public-app",
                "name": "Public App",
                "token_endpoint_auth_method": "none",
                "grant_types": PASSWORD_GRANTS,
                "connections": ["customers", "employees"],
            },
            {
                "client_id": "confidential-app",
                "name": "Confidential App",
                "client_secret": CONFIDENTIAL_SECRET,
                "token_endpoint_auth_method": "client_secret_post",
                "grant_types": PASSWORD_GRANTS,
                "connections": ["customers", "employees"],
            },
            {
                "client_id": "basic-app",
                "name": "Basic App",
                "client_secret": BASIC_SECRET,
                "token_endpoint_auth_method": "client_secret_basic",
                "grant_types": PASSWORD_GRANTS,
                "connections": ["customers"],
            },
            {
                "client_id": "realm-only-app",
                "name": "Realm only",
                "token_endpoint_auth_method": "none",
                "grant_types": ["http://auth0.com/oauth/grant-type/password-realm"],
                "connections": ["employees"],
            },
        ],
        "users": [
            {
                "connection": "customers",
                "email": "alice@example.test",
                "password": ALICE_CUSTOMER_PASSWORD,
                "name": "Alice C",
                "email_verified": True,
            },
            {
                "connection": "employees",
                "email": "alice@example.test",
                "username": "alice",
                "password": ALICE_EMPLOYEE_PASSWORD,
                "name": "Alice E",
            },
            {
                "connection": "customers",
                "email": "bob@example.test",
                "password": BOB_PASSWORD,
                "blocked": True,
            },
        ],
    }


def _postgres_database(admin_url: str) -> tuple[str, Callable[[], None]]:
    """Create a fresh database next to ``admin_url``; returns its URL and a dropper."""
    import asyncpg

    parts = urlsplit(admin_url.replace("postgresql+asyncpg://", "postgresql://"))
    name = f"identity_test_{secrets.token_hex(4)}"
    plain_admin = urlunsplit(parts)

    async def run(sql: str) -> None:
        conn = await asyncpg.connect(plain_admin)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run(f'CREATE DATABASE "{name}"'))
    url = urlunsplit(parts._replace(path="/" + name))
    return url, lambda: asyncio.run(run(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A migrated database for the whole session."""
    admin_url = os.environ.get("IDENTITY_TEST_DATABASE_URL")
    if admin_url:
        url, drop = _postgres_database(admin_url)
    else:
        url, drop = f"sqlite:///{tmp_path_factory.mktemp('db') / 'identity.db'}", lambda: None
    url = normalize_database_url(url)
    migrate(url)
    try:
        yield url
    finally:
        drop()


@pytest.fixture(scope="session")
def encryption_keys() -> EncryptionKeys:
    return EncryptionKeys.generate("test1")


def run_db(settings: Settings, work: Callable[[AsyncSession, PasswordHasher], Awaitable[T]]) -> T:
    """Run ``work`` with its own engine and session (outside the app's event loop)."""

    async def go() -> T:
        engine = create_engine(settings.database_url)
        hasher = PasswordHasher(settings.argon2, workers=2)
        try:
            async with create_sessionmaker(engine)() as session:
                return await work(session, hasher)
        finally:
            hasher.close()
            await engine.dispose()

    try:
        return asyncio.run(go())
    finally:
        invalidate_all()  # the work may have changed configuration rows: the apps must not keep the old ones


def _empty(database_url: str) -> None:
    async def go() -> None:
        engine = create_engine(database_url)
        try:
            async with engine.begin() as conn:
                if database_url.startswith("postgresql"):
                    await conn.execute(text(f"TRUNCATE {', '.join(_TABLES)} RESTART IDENTITY CASCADE"))
                else:
                    for table in _TABLES:
                        await conn.execute(text(f"DELETE FROM {table}"))
        finally:
            await engine.dispose()

    asyncio.run(go())
    invalidate_all()  # the apps of the test session must not keep the old configuration


@pytest.fixture
def settings(database_url: str, encryption_keys: EncryptionKeys) -> Iterator[Settings]:
    """Settings for one test, on an emptied database."""
    _empty(database_url)
    yield Settings(
        database_url=database_url,
        issuer=ISSUER,
        encryption_keys=encryption_keys,
        hash_workers=2,
    )


def apply(settings: Settings, data: dict[str, Any]) -> Any:
    """Apply a tenant description (validated like a file)."""
    validate(data)
    return run_db(settings, lambda session, hasher: apply_tenant(session, data, hasher, issuer=settings.issuer))


@pytest.fixture
def tenant(settings: Settings) -> Any:
    """The standard tenant, applied."""
    return apply(settings, standard_tenant())


@pytest.fixture
def app(settings: Settings) -> Litestar:
    return create_app(settings)


@pytest.fixture
def client(app: Litestar, tenant: Any) -> Iterator[TestClient[Litestar]]:
    """An HTTP client on the app, with the standard tenant applied."""
    with TestClient(app, base_url="https://identity.test") as test_client:
        yield test_client


@pytest.fixture
def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent


@pytest.fixture
def smtp_sink() -> Iterator[Any]:
    """A real SMTP server on 127.0.0.1 (plain SMTP) that keeps what it receives: a `tests.smtp_support.SmtpSink`."""
    from tests.smtp_support import SmtpSink

    with SmtpSink() as sink:
        yield sink
