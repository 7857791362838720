"""Fixtures shared by the unit tests: a fresh, migrated SQLite database per test, for units over the store."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from identity.settings import normalize_database_url
from identity.store.db import create_engine, create_sessionmaker, migrate


@pytest.fixture(scope="session")
def migrated_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated, empty SQLite database, migrated once and copied by `db_sessions`."""
    path = tmp_path_factory.mktemp("unit-db") / "template.db"
    migrate(normalize_database_url(f"sqlite:///{path}"))
    return path


@pytest.fixture
async def db_sessions(migrated_template: Path, tmp_path: Path) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """Sessions over a database of the test's own (tenant settings and the like are global to a database)."""
    path = tmp_path / "identity.db"
    shutil.copy(migrated_template, path)
    engine = create_engine(normalize_database_url(f"sqlite:///{path}"))
    try:
        yield create_sessionmaker(engine)
    finally:
        await engine.dispose()
