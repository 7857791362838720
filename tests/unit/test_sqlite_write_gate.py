"""SQLite writers pass the write gate, so none of them ever needs SQLite's busy handler.

The proof: the busy timeout is set to 0, so a writer that found the write lock taken would fail at once with
"database is locked" (and a read-then-write transaction whose snapshot went stale would fail the same way). Many
concurrent writers, in one process and in two, must all succeed. A control run of the same workload on a plain
engine (the driver's own transaction handling, no gate) shows that the workload does collide without the gate.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from identity.store.db import UnitOfWork, create_engine, create_sessionmaker, write_gate

WRITERS = 40
ROUNDS = 5


async def _schema(engine: AsyncEngine) -> None:
    async with engine.begin() as connection:
        await connection.execute(text("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, who TEXT, seen INT)"))


async def _read_then_write(engine: AsyncEngine, who: str, *, unit: bool) -> None:
    """A transaction that reads, yields to the others, then writes what it read (the stale-snapshot pattern)."""
    async with create_sessionmaker(engine)() as session:
        work = UnitOfWork(session, write_gate(engine))
        try:
            if unit:
                await work.write()
            seen = (await session.execute(text("SELECT count(*) FROM t"))).scalar_one()
            await asyncio.sleep(0)
            await session.execute(text("INSERT INTO t (who, seen) VALUES (:who, :seen)"), {"who": who, "seen": seen})
            await asyncio.sleep(0)
            await work.commit()
        finally:
            await work.close()


async def _rows(engine: AsyncEngine) -> list[tuple[str, int]]:
    async with engine.connect() as connection:
        return [tuple(row) for row in (await connection.execute(text("SELECT who, seen FROM t ORDER BY id"))).all()]


def test_concurrent_writers_in_one_process_never_wait_in_the_busy_handler(tmp_path: Path) -> None:
    async def go() -> list[tuple[str, int]]:
        engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'gate.db'}", sqlite_busy_timeout_ms=0)
        try:
            await _schema(engine)
            for round_ in range(ROUNDS):
                await asyncio.gather(
                    *(_read_then_write(engine, f"{round_}-{n}", unit=n % 2 == 0) for n in range(WRITERS))
                )
            return await _rows(engine)
        finally:
            await engine.dispose()

    rows = asyncio.run(go())

    assert len(rows) == WRITERS * ROUNDS
    _units_were_serialised(rows)


def _units_were_serialised(rows: list[tuple[str, int]]) -> None:
    """A write unit runs alone from its first statement: each saw a different number of rows committed before it.

    (The other writers read outside any transaction until their first write, so what they saw may repeat.)
    """
    seen = [count for who, count in rows if int(who.rsplit("-", 1)[1]) % 2 == 0]
    assert len(seen) == len(rows) // 2
    assert len(set(seen)) == len(seen)


def test_the_same_workload_collides_without_the_gate(tmp_path: Path) -> None:
    async def go() -> list[BaseException | None]:
        engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'plain.db'}", connect_args={"timeout": 0})
        try:
            await _schema(engine)
            async with engine.connect() as connection:
                await connection.exec_driver_sql("PRAGMA journal_mode=WAL")

            async def plain(who: str) -> None:
                async with create_sessionmaker(engine)() as session:
                    await session.execute(text("BEGIN"))
                    seen = (await session.execute(text("SELECT count(*) FROM t"))).scalar_one()
                    await asyncio.sleep(0.001)
                    await session.execute(text("INSERT INTO t (who, seen) VALUES (:w, :s)"), {"w": who, "s": seen})
                    await session.commit()

            outcomes = await asyncio.gather(*(plain(str(n)) for n in range(WRITERS)), return_exceptions=True)
        finally:
            await engine.dispose()
        return outcomes

    outcomes = asyncio.run(go())  # every writer finished (and closed its connection) before the engine went

    locked = [o for o in outcomes if isinstance(o, OperationalError) and "database is locked" in str(o)]
    assert locked, outcomes


_WORKER = textwrap.dedent(
    """
    import asyncio, sys
    from tests.unit.test_sqlite_write_gate import ROUNDS, WRITERS, _read_then_write
    from identity.store.db import create_engine

    async def main(path, name):
        engine = create_engine("sqlite+aiosqlite:///" + path, sqlite_busy_timeout_ms=0)
        try:
            for round_ in range(ROUNDS):
                await asyncio.gather(
                    *(_read_then_write(engine, f"{name}-{round_}-{n}", unit=n % 2 == 0) for n in range(WRITERS // 2))
                )
        finally:
            await engine.dispose()

    asyncio.run(main(sys.argv[1], sys.argv[2]))
    """
)


def test_writers_in_two_processes_never_wait_in_the_busy_handler(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"

    async def prepare() -> None:
        engine = create_engine(f"sqlite+aiosqlite:///{path}")
        try:
            await _schema(engine)
        finally:
            await engine.dispose()

    asyncio.run(prepare())
    root = Path(__file__).resolve().parents[2]
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", _WORKER, str(path), name],
            cwd=root,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in ("a", "b")
    ]
    for worker in workers:
        _, stderr = worker.communicate(timeout=120)
        assert worker.returncode == 0, stderr

    async def rows() -> list[tuple[str, int]]:
        engine = create_engine(f"sqlite+aiosqlite:///{path}")
        try:
            return await _rows(engine)
        finally:
            await engine.dispose()

    stored = asyncio.run(rows())
    assert len(stored) == WRITERS * ROUNDS
    _units_were_serialised(stored)
