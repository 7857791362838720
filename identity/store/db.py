"""Engine and sessions, built from settings; migrations run through Alembic."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

__all__ = [
    "create_engine",
    "create_sessionmaker",
    "current_revisions",
    "migrate",
    "pending_migrations",
    "script_heads",
    "script_revisions",
]

_SQLITE_BUSY_TIMEOUT_MS = 10_000


def create_engine(database_url: str, **options: Any) -> AsyncEngine:
    """An async engine. SQLite gets WAL and a busy timeout so that readers never block writers."""
    if database_url.startswith("sqlite"):
        engine = create_async_engine(database_url, connect_args={"timeout": _SQLITE_BUSY_TIMEOUT_MS / 1000}, **options)

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA busy_timeout={_SQLITE_BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

        return engine
    options.setdefault("pool_size", 10)
    options.setdefault("max_overflow", 10)
    options.setdefault("pool_pre_ping", True)
    return create_async_engine(database_url, **options)


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions that keep loaded objects usable after commit."""
    return async_sessionmaker(engine, class_=AsyncSession, expire_on_commit=False)


def _alembic_config(database_url: str) -> Any:
    from alembic.config import Config

    from identity.resources import resource

    config = Config(str(resource("alembic.ini")))
    config.set_main_option("script_location", str(resource("alembic")))
    config.attributes["database_url"] = database_url
    config.attributes["configure_logging"] = False
    return config


def migrate(database_url: str, revision: str = "head") -> None:
    """Upgrade the database to ``revision`` (blocking; call it before the event loop or in a thread)."""
    from alembic import command

    command.upgrade(_alembic_config(database_url), revision)


def pending_migrations(database_url: str) -> list[str]:
    """Revisions not yet applied to the database (blocking)."""
    import asyncio

    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(_alembic_config(database_url))

    async def current() -> set[str]:
        engine = create_engine(database_url)
        try:
            async with engine.connect() as connection:
                return await connection.run_sync(lambda sync: set(MigrationContext.configure(sync).get_current_heads()))
        finally:
            await engine.dispose()

    heads = asyncio.run(current())
    pending = []
    for rev in script.walk_revisions():
        if rev.revision in heads:
            break
        pending.append(rev.revision)
    return pending if heads != set(script.get_heads()) else []


def script_heads() -> set[str]:
    """The head revisions of the migrations this release ships (blocking: reads the migration files)."""
    from alembic.script import ScriptDirectory

    return set(ScriptDirectory.from_config(_alembic_config("sqlite://")).get_heads())


def script_revisions() -> set[str]:
    """Every revision this release ships (blocking)."""
    from alembic.script import ScriptDirectory

    return {rev.revision for rev in ScriptDirectory.from_config(_alembic_config("sqlite://")).walk_revisions()}


async def current_revisions(engine: AsyncEngine) -> set[str]:
    """The revisions the database is at (empty for a database never migrated)."""
    from alembic.runtime.migration import MigrationContext

    async with engine.connect() as connection:
        return await connection.run_sync(lambda sync: set(MigrationContext.configure(sync).get_current_heads()))
