"""Backups of the embedded SQLite database, and copies between databases (SQLite to PostgreSQL and back).

`backup_sqlite` uses SQLite's online backup API in one step: a consistent snapshot, taken while the server keeps
reading and writing (in WAL mode writers do not wait for it), checked with ``PRAGMA integrity_check``.

`copy_database` migrates the target to this release's schema, refuses a target that already holds data, and copies
every table in foreign-key order inside one read transaction of the source (a consistent snapshot), keeping primary
keys, since sealed values are bound to them (a refresh token's sealed successor names its row id). PostgreSQL
sequences are moved past the copied ids.

Neither contains the encryption keys (``IDENTITY_ENCRYPTION_KEYS`` / the key file): sealed values in a backup open
only with them, so they must be kept, apart from the backups.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Integer, func, select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlmodel import SQLModel

import identity.store.models  # noqa: F401  (registers the tables)
from identity.store.db import create_engine, migrate

__all__ = ["CopyError", "CopyReport", "backup_sqlite", "copy_database", "sqlite_path"]

_BATCH = 1000


class CopyError(Exception):
    """A backup or copy that cannot be made; the message says why."""


def sqlite_path(database_url: str) -> Path:
    """The file of a ``sqlite`` URL (``sqlite:///relative.db``, ``sqlite:////absolute.db``)."""
    _, sep, rest = database_url.partition(":///")
    if not database_url.startswith("sqlite") or not sep or not rest or rest.startswith(":memory:"):
        raise CopyError(f"not a SQLite database file: {database_url.split('://')[0]}://...")
    return Path(rest.split("?", 1)[0])


def backup_sqlite(database_url: str, target: Path) -> int:
    """Copy the live SQLite database to ``target`` with the online backup API; returns the size in bytes."""
    source_path = sqlite_path(database_url)
    if not source_path.is_file():
        raise CopyError(f"no database file at {source_path}")
    if target.exists():
        raise CopyError(f"{target} exists: choose a new file (a backup never overwrites)")
    partial = target.with_name(target.name + ".partial")
    source = sqlite3.connect(f"file:{source_path}?mode=ro", uri=True, timeout=30)
    try:
        destination = sqlite3.connect(partial)
        try:
            # One step: the copy is one read transaction, a snapshot that writers (WAL) do not disturb. Copying in
            # several steps would restart whenever another connection writes, never finishing under load.
            source.backup(destination, pages=-1)
            destination.execute("PRAGMA journal_mode=DELETE")  # a single self-contained file
            check = destination.execute("PRAGMA integrity_check").fetchone()
            if check is None or check[0] != "ok":
                raise CopyError(f"the copy failed its integrity check: {check}")
        finally:
            destination.close()
    finally:
        source.close()
    partial.rename(target)
    return target.stat().st_size


@dataclass
class CopyReport:
    """Rows copied, per table."""

    rows: dict[str, int]


def _tables() -> list[Any]:
    return list(SQLModel.metadata.sorted_tables)


# Tables whose rows the migrations themselves insert: an empty target has them, and the copy replaces them.
_SEEDED = frozenset({"config_version"})


async def _has_rows(connection: AsyncConnection) -> list[str]:
    filled = []
    for table in _tables():
        if table.name in _SEEDED:
            continue
        if (await connection.execute(select(func.count()).select_from(table))).scalar():
            filled.append(table.name)
    return filled


async def _reset_sequences(connection: AsyncConnection) -> None:
    for table in _tables():
        for column in table.primary_key.columns:
            if (
                isinstance(column.type, Integer)
                and column.autoincrement in (True, "auto")
                and len(table.primary_key.columns) == 1
            ):
                await connection.execute(
                    text(
                        f"SELECT setval(pg_get_serial_sequence('{table.name}', '{column.name}'), "  # noqa: S608
                        f"COALESCE((SELECT MAX({column.name}) FROM {table.name}), 0) + 1, false)"
                    )
                )


async def copy_database(
    source_url: str, target_url: str, *, progress: Callable[[str, int], None] | None = None
) -> CopyReport:
    """Copy every row of ``source_url`` into ``target_url`` (migrated here, and empty); see the module docstring."""
    import asyncio

    if source_url == target_url:
        raise CopyError("the source and the target are the same database")
    await asyncio.to_thread(migrate, target_url)
    source: AsyncEngine = create_engine(source_url)
    target: AsyncEngine = create_engine(target_url)
    rows: dict[str, int] = {}
    try:
        async with target.connect() as check:
            if filled := await _has_rows(check):
                raise CopyError(f"the target database already holds data ({', '.join(filled)}): use an empty one")
        async with source.connect() as reading, target.begin() as writing:
            if source_url.startswith("postgresql"):
                await reading.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY"))
            else:
                await reading.execute(text("BEGIN"))  # one read transaction: a snapshot of the WAL database
            for table in _tables():
                copied = 0
                if table.name in _SEEDED:
                    await writing.execute(table.delete())
                result = await reading.stream(select(table).order_by(*table.primary_key.columns))
                async for chunk in result.mappings().partitions(_BATCH):
                    await writing.execute(table.insert(), [dict(row) for row in chunk])
                    copied += len(chunk)
                rows[table.name] = copied
                if progress is not None:
                    progress(table.name, copied)
            if target_url.startswith("postgresql"):
                await _reset_sequences(writing)
            await reading.rollback()
    finally:
        await source.dispose()
        await target.dispose()
    return CopyReport(rows=rows)
