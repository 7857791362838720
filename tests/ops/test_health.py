"""/readyz: 200 only when the database answers, the schema is at this release's head and the keys are loaded."""

from __future__ import annotations

import asyncio
from typing import Any

from litestar import Litestar
from litestar.testing import TestClient
from sqlalchemy import text

from identity.settings import Settings
from identity.store.db import create_engine, script_heads
from identity.web.deps import Services


def _services(app: Litestar) -> Services:
    services: Services = app.state.services
    return services


def test_ready_when_database_schema_and_keys_are(client: TestClient[Litestar]) -> None:
    response = client.get("/readyz")
    assert response.status_code == 200, response.text
    assert response.json() == {"status": "ready"}
    assert response.headers["cache-control"] == "no-store"
    assert client.get("/healthz").status_code == 200


def test_not_ready_while_the_database_is_unreachable(app: Litestar, client: TestClient[Litestar]) -> None:
    services = _services(app)
    working = services.engine
    # A real engine on a port nothing listens on: the check fails as it would with the database down.
    services.engine = create_engine("postgresql+asyncpg://nobody@127.0.0.1:1/none", pool_pre_ping=False)
    try:
        response = client.get("/readyz")
    finally:
        services.engine = working
    assert response.status_code == 503
    body: dict[str, Any] = response.json()
    assert body["status"] == "unavailable"
    assert "database" in body["checks"]
    assert client.get("/readyz").status_code == 200


def test_not_ready_on_a_schema_behind_this_release(
    settings: Settings, app: Litestar, client: TestClient[Litestar]
) -> None:
    (head,) = script_heads()

    async def set_revision(revision: str) -> None:
        engine = create_engine(settings.database_url)
        try:
            async with engine.begin() as conn:
                await conn.execute(text("UPDATE alembic_version SET version_num = :r"), {"r": revision})
        finally:
            await engine.dispose()

    services = _services(app)
    older = sorted(services.known_revisions - {head})[0]  # a revision of this release before its head
    asyncio.run(set_revision(older))
    try:
        behind = client.get("/readyz")
        asyncio.run(set_revision("0000newer0000"))  # migrated by a newer release: keep serving meanwhile
        ahead = client.get("/readyz")
    finally:
        asyncio.run(set_revision(head))
    assert behind.status_code == 503
    assert older in behind.json()["checks"]["migrations"]
    assert ahead.status_code == 200
    assert client.get("/readyz").status_code == 200


def test_not_ready_without_keys_or_while_draining(app: Litestar, client: TestClient[Litestar]) -> None:
    services = _services(app)
    keys, services.keys = services.keys, None
    try:
        assert client.get("/readyz").json()["checks"] == {"keys": "signing keys are not loaded"}
    finally:
        services.keys = keys
    services.draining = True
    try:
        response = client.get("/readyz")
        assert response.status_code == 503
        assert set(response.json()["checks"]) == {"shutdown"}
        assert client.get("/healthz").status_code == 200  # still alive: it finishes what it has
    finally:
        services.draining = False
