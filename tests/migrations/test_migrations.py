"""Migrations: the chain goes up and down on an empty database, and models and migrations agree (no drift)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from alembic.script import ScriptDirectory

from alembic import command
from identity.settings import normalize_database_url
from identity.store.db import _alembic_config, migrate, pending_migrations
from tests.conftest import _postgres_database


@pytest.fixture
def empty_database(tmp_path) -> Iterator[str]:  # type: ignore[no-untyped-def]
    admin_url = os.environ.get("IDENTITY_TEST_DATABASE_URL")
    if admin_url:
        url, drop = _postgres_database(admin_url)
    else:
        url, drop = f"sqlite:///{tmp_path / 'empty.db'}", lambda: None
    try:
        yield normalize_database_url(url)
    finally:
        drop()


def test_single_head() -> None:
    script = ScriptDirectory.from_config(_alembic_config("sqlite://"))
    assert len(script.get_heads()) == 1


def test_upgrade_downgrade_upgrade_and_no_drift(empty_database: str) -> None:
    config = _alembic_config(empty_database)
    assert pending_migrations(empty_database)  # an empty database needs every revision
    migrate(empty_database)
    assert pending_migrations(empty_database) == []
    command.check(config)  # raises when the models differ from what the migrations built
    command.downgrade(config, "base")
    assert pending_migrations(empty_database)
    migrate(empty_database)
    command.check(config)
