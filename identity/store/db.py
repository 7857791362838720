"""Engine and sessions, built from settings; migrations run through Alembic."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import threading
import weakref
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.util import await_only

__all__ = [
    "SQLITE_SYNCHRONOUS",
    "UnitOfWork",
    "WriteGate",
    "create_engine",
    "create_sessionmaker",
    "current_revisions",
    "migrate",
    "pending_migrations",
    "script_heads",
    "script_revisions",
    "write_gate",
]

_SQLITE_BUSY_TIMEOUT_MS = 10_000
SQLITE_SYNCHRONOUS = ("NORMAL", "FULL")


def create_engine(
    database_url: str,
    *,
    sqlite_synchronous: str = "NORMAL",
    sqlite_busy_timeout_ms: int = _SQLITE_BUSY_TIMEOUT_MS,
    **options: Any,
) -> AsyncEngine:
    """An async engine. SQLite gets WAL and a busy timeout so that readers never block writers.

    On SQLite the driver's own transaction handling is turned off and every write transaction starts with ``BEGIN
    IMMEDIATE`` after passing the process's `WriteGate`: a write unit (`UnitOfWork.write`) does both up front; any
    other transaction reads in autocommit until its first write statement, and that statement first passes the gate
    and starts ``BEGIN IMMEDIATE``. So no writer waits in SQLite's busy handler, and no write finds out halfway that
    another connection wrote since its snapshot (``SQLITE_BUSY_SNAPSHOT``, "database is locked").
    ``sqlite_synchronous``: ``NORMAL`` (a process crash loses nothing; a power cut may lose the last commits) or
    ``FULL`` (every commit is fsynced). ``sqlite_busy_timeout_ms``: how long a writer that bypassed the gate may wait
    in the busy handler (tests set 0 to prove nobody does).
    """
    if database_url.startswith("sqlite"):
        if sqlite_synchronous not in SQLITE_SYNCHRONOUS:
            raise ValueError(f"sqlite synchronous must be one of {', '.join(SQLITE_SYNCHRONOUS)}")
        memory = ":memory:" in database_url or "mode=memory" in database_url
        if not memory:
            # Every connection beyond the pool's size is opened (a thread, the pragmas) and closed again per checkout:
            # at the default 5, eight concurrent logins spent more on that than on their queries.
            options.setdefault("pool_size", 10)
            options.setdefault("max_overflow", 10)
        engine = create_async_engine(database_url, connect_args={"timeout": sqlite_busy_timeout_ms / 1000}, **options)

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA busy_timeout={int(sqlite_busy_timeout_ms)}")
            cursor.execute(f"PRAGMA synchronous={sqlite_synchronous}")
            cursor.close()
            dbapi_connection.isolation_level = None  # we emit BEGIN ourselves (below)

        _sqlite_transactions(engine)
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


_LAZY = "identity_begin_on_write"
_GATED = "identity_gated"
_DBAPI = "identity_dbapi_connection"
_WRITES = ("INSERT", "UPDATE", "DELETE", "REPLACE", "CREATE", "DROP", "ALTER", "SAVEPOI")  # SAVEPOINT would BEGIN
_GATE_TIMEOUT_S = _SQLITE_BUSY_TIMEOUT_MS / 1000


def _sqlite_transactions(engine: AsyncEngine) -> None:
    gate = write_gate(engine)
    if gate is None:
        raise TypeError("not a SQLite engine")

    @event.listens_for(engine.sync_engine, "begin")
    def _begin(connection: Connection) -> None:
        connection.info[_LAZY] = True

    @event.listens_for(engine.sync_engine, "before_cursor_execute")
    def _before(connection: Connection, _cursor: Any, statement: str, *_: Any) -> None:
        if connection.info.get(_LAZY) and statement.lstrip()[:7].upper().startswith(_WRITES):
            connection.info[_LAZY] = False
            if not gate.held_by_this_task():  # else a unit of work of this request holds it, until it ends
                # In SQLAlchemy's asyncio bridge: this sync hook may wait for a coroutine.
                await_only(asyncio.wait_for(gate.acquire(), _GATE_TIMEOUT_S))
                connection.info[_GATED] = True
            dbapi_connection: Any = connection.connection.dbapi_connection
            connection.info[_DBAPI] = dbapi_connection
            cursor = dbapi_connection.cursor()
            try:
                cursor.execute("BEGIN IMMEDIATE")
            except BaseException:
                if connection.info.pop(_GATED, None):
                    gate.release()
                raise
            finally:
                cursor.close()

    def _end(connection: Connection, finish: str) -> None:
        connection.info.pop(_LAZY, None)
        dbapi_connection = connection.info.pop(_DBAPI, None)
        if connection.info.pop(_GATED, False):
            try:
                getattr(dbapi_connection, finish)()  # SQLAlchemy's own call is then a no-op
            finally:
                gate.release()

    event.listen(engine.sync_engine, "commit", lambda connection: _end(connection, "commit"))
    event.listen(engine.sync_engine, "rollback", lambda connection: _end(connection, "rollback"))


def _begin_immediate(connection: Connection) -> None:
    connection.info[_LAZY] = False
    connection.exec_driver_sql("BEGIN IMMEDIATE")


class WriteGate:
    """Serialises one SQLite database's writers, so that no write waits in SQLite's busy handler.

    SQLite has one write lock per database, and a connection that finds it taken sleeps and polls (1, 2, 5 ... 100 ms)
    until it is free: under load, requests queue in those sleeps while the CPU idles. Here a writer first takes an
    asyncio lock (the writers of this process queue in order and are woken the moment it is free), then an exclusive
    ``flock`` on ``<database>-writer.lock`` (the writers of other processes on this machine: the kernel wakes the
    waiter when the holder releases it, again without polling), and only then ``BEGIN IMMEDIATE``, which therefore
    finds the lock free. A process that does not use the gate (an old version, the sqlite3 shell) still works: then
    the busy handler is the fallback.
    """

    def __init__(self, lock_path: str | None) -> None:
        # One asyncio lock per event loop (a process normally has one; tests and the CLI start several in turn).
        self._locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = weakref.WeakKeyDictionary()
        self._fd: int | None = None
        self._path = lock_path
        self._pid = 0
        self._waiter: ThreadPoolExecutor | None = None
        self._guard = threading.Lock()
        self._owner: asyncio.Task[Any] | None = None

    def _file(self) -> int | None:
        # Opened lazily and per process: a descriptor inherited over fork would share the lock with the parent.
        if self._path is None:
            return None
        with self._guard:
            if self._fd is None or self._pid != os.getpid():
                self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
                self._pid = os.getpid()
                self._waiter = ThreadPoolExecutor(max_workers=1, thread_name_prefix="identity-sqlite-gate")
            return self._fd

    @property
    def _lock(self) -> asyncio.Lock:
        loop = asyncio.get_running_loop()
        lock = self._locks.get(loop)
        if lock is None:
            lock = self._locks[loop] = asyncio.Lock()
        return lock

    def held_by_this_task(self) -> bool:
        """Whether the running task holds the gate."""
        return self._owner is not None and self._owner is asyncio.current_task()

    async def acquire(self) -> None:
        """Wait for the gate (this process first, then the other processes)."""
        await self._take()
        self._owner = asyncio.current_task()

    async def _take(self) -> None:
        await self._lock.acquire()
        try:
            fd = self._file()
            if fd is None:
                return
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                pass
            waiting = asyncio.get_running_loop().run_in_executor(self._waiter, fcntl.flock, fd, fcntl.LOCK_EX)
            try:
                await asyncio.shield(waiting)
            except asyncio.CancelledError:
                # The thread will get the lock eventually: hand it back then, and only then let the next one in.
                loop, lock = asyncio.get_running_loop(), self._lock
                waiting.add_done_callback(lambda _: loop.call_soon_threadsafe(self._unlock, lock))
                raise
        except asyncio.CancelledError:
            raise
        except BaseException:
            self._lock.release()
            raise

    def release(self) -> None:
        """Let the next writer in."""
        self._unlock(self._lock)

    def _unlock(self, lock: asyncio.Lock) -> None:
        self._owner = None
        if self._fd is not None and self._pid == os.getpid():
            with contextlib.suppress(OSError):
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        lock.release()


_GATES: dict[str, WriteGate] = {}


def write_gate(engine: AsyncEngine) -> WriteGate | None:
    """The gate of ``engine``'s SQLite database (one per database file and process); ``None`` for PostgreSQL."""
    url = engine.url
    if url.get_backend_name() != "sqlite":
        return None
    key = str(url)
    if key not in _GATES:
        database = make_url(key).database
        memory = not database or database == ":memory:" or database.startswith("file::memory:")
        _GATES[key] = WriteGate(None if memory or database is None else os.path.abspath(database) + "-writer.lock")
    return _GATES[key]


class UnitOfWork:
    """One request's transaction: the request, not the modules it calls, decides when it commits.

    `write` says "from here on this request writes": on SQLite it takes the `WriteGate` and starts ``BEGIN
    IMMEDIATE`` (ending a read transaction first, whose snapshot could be stale); on PostgreSQL it does nothing, since
    the single-use guarantees there come from conditional updates and row locks inside the transaction. `commit` and
    `rollback` end the transaction and open the gate. `close` (always called) rolls back what was not committed.
    """

    def __init__(self, session: AsyncSession, gate: WriteGate | None) -> None:
        self.session = session
        self.gate = gate
        self._gated = False

    @property
    def writing(self) -> bool:
        """Whether the write lock is held (SQLite) ."""
        return self._gated

    async def write(self) -> None:
        """Start (or continue) the write transaction."""
        if self.gate is None or self._gated:
            return
        if self.session.in_transaction():
            connection = await self.session.connection()
            if not await connection.run_sync(lambda sync: bool(sync.info.get(_LAZY))):
                await self.session.commit()  # it wrote already: that work is its own transaction
        # The connection first, then the gate, as the writers that take the gate at their first write statement do:
        # the other order deadlocks when the gate's holder waits for a pooled connection its waiters hold. (Reads
        # before this ran in autocommit: there is no snapshot to go stale.)
        connection = await self.session.connection()
        await self.gate.acquire()
        self._gated = True
        try:
            await connection.run_sync(_begin_immediate)
        except BaseException:
            self._open()
            raise

    async def commit(self) -> None:
        """Make the work durable and let the next writer in."""
        try:
            await self.session.commit()
        finally:
            self._open()

    async def rollback(self) -> None:
        """Undo the work and let the next writer in."""
        try:
            await self.session.rollback()
        finally:
            self._open()

    async def close(self) -> None:
        """End the unit: roll back whatever was not committed."""
        if self.session.in_transaction() or self._gated:
            await self.rollback()

    def _open(self) -> None:
        if self._gated and self.gate is not None:
            self._gated = False
            self.gate.release()
