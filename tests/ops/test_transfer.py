"""identity db copy (SQLite to PostgreSQL and back, on the test suite's data) and identity db backup (online)."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from litestar import Litestar
from litestar.testing import TestClient
from sqlalchemy import select
from sqlmodel import SQLModel

from identity.app import create_app
from identity.settings import EncryptionKeys, Settings, normalize_database_url
from identity.store.db import create_engine, migrate
from identity.store.transfer import CopyError, backup_sqlite, copy_database
from tests.conftest import ALICE_CUSTOMER_PASSWORD, API, _postgres_database, apply, standard_tenant
from tests.e2e.conftest import database_environ, identity_command, serve_spec, start_servers, stop_and_check

POSTGRES_ADMIN = os.environ.get("IDENTITY_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


@pytest.fixture
def fresh(tmp_path: Path) -> Iterator[Callable[[str], str]]:
    """Make empty databases: ``fresh("sqlite")`` or ``fresh("postgresql")``."""
    drops: list[Callable[[], None]] = []

    def make(kind: str) -> str:
        if kind == "sqlite":
            return normalize_database_url(f"sqlite:///{tmp_path / f'copy-{len(drops)}.db'}")
        url, drop = _postgres_database(os.environ.get("IDENTITY_TEST_DATABASE_URL") or POSTGRES_ADMIN)
        drops.append(drop)
        return normalize_database_url(url)

    yield make
    for drop in drops:
        drop()


def snapshot(database_url: str) -> dict[str, list[dict[str, Any]]]:
    async def go() -> dict[str, list[dict[str, Any]]]:
        engine = create_engine(database_url)
        try:
            async with engine.connect() as conn:
                tables = {}
                for table in SQLModel.metadata.sorted_tables:
                    result = await conn.execute(select(table).order_by(*table.primary_key.columns))
                    tables[table.name] = [dict(row) for row in result.mappings()]
                return tables
        finally:
            await engine.dispose()

    return asyncio.run(go())


def refreshing_tenant() -> dict[str, Any]:
    """The standard tenant, its public client also allowed refresh tokens."""
    data = standard_tenant()
    for client in data["clients"]:
        if client["client_id"] == "public-app":
            client["grant_types"] = [*client["grant_types"], "refresh_token"]
    return data


def grant(client: TestClient[Litestar], **extra: str) -> dict[str, Any]:
    response = client.post(
        "/oauth/token",
        data={
            "grant_type": "password",
            "client_id": "public-app",
            "username": "alice@example.test",
            "password": ALICE_CUSTOMER_PASSWORD,
            "audience": API,
            "scope": "openid offline_access read:things",
            **extra,
        },
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_copy_to_the_other_database_and_back_keeps_every_row_and_every_token_working(
    settings: Settings, app: Litestar, fresh: Callable[[str], str]
) -> None:
    apply(settings, refreshing_tenant())
    with TestClient(app, base_url="https://identity.test") as client:
        check_copy(settings, client, fresh)


def check_copy(settings: Settings, client: TestClient[Litestar], fresh: Callable[[str], str]) -> None:
    first = grant(client)
    rotated = client.post(
        "/oauth/token",
        data={"grant_type": "refresh_token", "client_id": "public-app", "refresh_token": first["refresh_token"]},
    )
    assert rotated.status_code == 200
    live = grant(client)
    original = snapshot(settings.database_url)
    assert original["refresh_token"] and original["signing_key"] and original["users"]

    source_kind = "postgresql" if settings.database_url.startswith("postgresql") else "sqlite"
    other_kind = "sqlite" if source_kind == "postgresql" else "postgresql"
    there = fresh(other_kind)
    report = asyncio.run(copy_database(settings.database_url, there))
    assert report.rows["users"] == len(original["users"])
    assert snapshot(there) == original

    back = fresh(source_kind)
    asyncio.run(copy_database(there, back))
    assert snapshot(back) == original

    # The copy is the service: same keys, the same refresh tokens, new rows get new ids.
    moved = Settings(
        database_url=there, issuer=settings.issuer, encryption_keys=settings.encryption_keys, hash_workers=2
    )
    with TestClient(create_app(moved), base_url="https://identity.test") as copied:
        assert copied.get("/.well-known/jwks.json").json() == client.get("/.well-known/jwks.json").json()
        info = copied.get("/userinfo", headers={"Authorization": f"Bearer {live['access_token']}"})
        assert info.status_code == 200
        refreshed = copied.post(
            "/oauth/token",
            data={"grant_type": "refresh_token", "client_id": "public-app", "refresh_token": live["refresh_token"]},
        )
        assert refreshed.status_code == 200, refreshed.text
        grant(copied)  # inserts rows: the sequences were moved past the copied ids

    with pytest.raises(CopyError, match="already holds data"):
        asyncio.run(copy_database(settings.database_url, there))


def test_identity_db_copy_command(settings: Settings, tenant: Any, encryption_keys: EncryptionKeys, fresh: Any) -> None:
    target = fresh("sqlite")
    result = subprocess.run(
        [*identity_command(), "db", "copy", "--to", target.replace("+aiosqlite", "")],
        env=database_environ(settings.database_url, encryption_keys),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert json.loads(result.stdout)["copied_rows"]["users"] == 3
    assert snapshot(target)["users"] == snapshot(settings.database_url)["users"]


def test_online_backup_while_the_server_writes(tmp_path: Path, encryption_keys: EncryptionKeys) -> None:
    """identity db backup of a live SQLite database, with logins writing to it; the backup starts a working server."""
    live = normalize_database_url(f"sqlite:///{tmp_path / 'live.db'}")

    migrate(live)
    apply(
        Settings(database_url=live, issuer="https://identity.test/", encryption_keys=encryption_keys),
        refreshing_tenant(),
    )
    env = database_environ(live.replace("+aiosqlite", ""), encryption_keys)
    (server,) = start_servers([serve_spec("live", env)], tmp_path)
    stop = threading.Event()
    answers: list[int] = []

    def logins() -> None:
        with httpx.Client(timeout=30) as http:
            while not stop.is_set():
                answers.append(
                    http.post(
                        server.token_url,
                        data={
                            "grant_type": "password",
                            "client_id": "public-app",
                            "username": "alice@example.test",
                            "password": ALICE_CUSTOMER_PASSWORD,
                            "scope": "offline_access",
                            "audience": API,
                        },
                    ).status_code
                )

    writer = threading.Thread(target=logins)
    writer.start()
    try:
        deadline = time.monotonic() + 30
        while len(answers) < 3 and time.monotonic() < deadline:  # logins are committed, more are under way
            time.sleep(0.05)
        backup = tmp_path / "backup.db"
        result = subprocess.run(
            [*identity_command(), "db", "backup", str(backup)], env=env, capture_output=True, text=True, timeout=120
        )
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["integrity_check"] == "ok"
        with pytest.raises(CopyError, match="exists"):  # a backup never overwrites
            backup_sqlite(live, backup)
        jwks = httpx.get(server.jwks_url).json()
    finally:
        stop.set()
        writer.join(timeout=60)
        stop_and_check(server)
    assert answers and set(answers) == {200}

    with sqlite3.connect(backup) as copy:
        assert copy.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        tokens = copy.execute("SELECT COUNT(*) FROM refresh_token").fetchone()[0]
    assert tokens >= 1  # the writes before the backup are in it
    # Restoring is putting the file in place: a server on it has the same keys and users.
    restored = Settings(
        database_url=f"sqlite:///{backup}", issuer="https://identity.test/", encryption_keys=encryption_keys
    )
    with TestClient(create_app(restored), base_url="https://identity.test") as from_backup:
        response = from_backup.post(
            "/oauth/token",
            data={
                "grant_type": "password",
                "client_id": "public-app",
                "username": "alice@example.test",
                "password": ALICE_CUSTOMER_PASSWORD,
            },
        )
        assert response.status_code == 200
        assert from_backup.get("/.well-known/jwks.json").json() == jwks
