"""The tenant configuration (settings, connections, APIs, clients, signing keys), cached in each process.

Every request needs the tenant's configuration and it changes rarely, so each process keeps one immutable snapshot
(`TenantConfig`) instead of reading the same rows on every request. What keeps several instances right is a version
counter in the database (table ``config_version``): whatever changes configuration calls `bump_config_version` in
the same transaction (``identity tenant apply``, key rotation, the Management API). Each request's first statement
reads the database's version (one primary-key lookup, `ConfigCache.attach`), and a new snapshot is loaded only
when it moved: a request sees every change committed before it began, on every instance (the contract asks for
5 seconds). Paths without a database session (JWKS) compare at most every `CHECK_INTERVAL_S` seconds. A snapshot
older than `MAX_AGE_S` is reloaded anyway, so a change made behind the service's back (SQL by hand) is picked up
too, only later.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

from sqlalchemy import event, update
from sqlalchemy import select as sa_select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session
from sqlmodel import select

from identity.oauth2.interfaces import Api, Client, Connection, TenantSettings
from identity.store.models import ApiRow, ClientConnectionRow, ClientRow, ConfigVersionRow, ConnectionRow, TenantRow

__all__ = [
    "CHECK_INTERVAL_S",
    "MAX_AGE_S",
    "ConfigCache",
    "TenantConfig",
    "bump_config_version",
    "cached_config",
    "config_version",
    "invalidate_all",
    "load_config",
]

CHECK_INTERVAL_S = 1.0
MAX_AGE_S = 60.0
_SESSION_KEY = "identity_tenant_config"
_VERSION = cast(Any, ConfigVersionRow).__table__
_READ_VERSION = sa_select(_VERSION.c.version).where(_VERSION.c.id == 1)  # built once: read on every request
_BUMPED = "identity_config_bumped"
_CACHES: weakref.WeakSet[ConfigCache] = weakref.WeakSet()


async def bump_config_version(session: AsyncSession) -> None:
    """Tell every instance that tenant configuration changed: call it in the transaction that changes it.

    Settings, connections, APIs, clients (and their connections or secrets), rules and signing keys all count.
    The new version is seen by other instances once the transaction commits.
    """
    result = await session.execute(update(_VERSION).where(_VERSION.c.id == 1).values(version=_VERSION.c.version + 1))
    if cast(Any, result).rowcount == 0:
        # The seed row was deleted (a test emptying every table): start again from a number never used before.
        session.add(ConfigVersionRow(id=1, version=time.time_ns() // 1000))
        await session.flush()
    session.info[_BUMPED] = True


def invalidate_all() -> None:
    """Make every cache of this process reload at its next use.

    For changes that did not bump the version, e.g. SQL run by a test.
    """
    for cache in list(_CACHES):
        cache.invalidate()


@event.listens_for(Session, "after_commit")
def _changed_here(session: Session) -> None:
    """A change committed by this process: its caches reload at their next use, not a second later."""
    if session.info.pop(_BUMPED, False):
        invalidate_all()


@event.listens_for(Session, "after_rollback")
def _not_changed(session: Session) -> None:
    session.info.pop(_BUMPED, None)


async def config_version(session: AsyncSession) -> int:
    """The current configuration version (0 without the seed row)."""
    version = (await session.execute(_READ_VERSION)).scalar()
    return int(version) if version is not None else 0


@dataclass(frozen=True)
class TenantConfig:
    """One consistent view of the tenant's configuration, immutable, shared by every request of a process."""

    version: int
    tenant: TenantRow
    """The settings row (detached: read it, never change or add it to a session)."""
    clients: Mapping[str, Client]
    connections: Mapping[str, Connection]
    apis: Mapping[str, Api]
    loaded_at: float = field(default_factory=time.monotonic)

    @property
    def settings(self) -> TenantSettings:
        """The settings the token endpoint uses."""
        return TenantSettings(
            default_directory=self.tenant.default_directory,
            default_audience=self.tenant.default_audience,
            mfa_policy=self.tenant.mfa_policy,
        )

    @property
    def signing_algs(self) -> frozenset[str]:
        """The algorithms the tenant's tokens are signed with (RS256 always: ID tokens)."""
        return frozenset({"RS256", *(api.signing_alg for api in self.apis.values())})


async def load_config(session: AsyncSession, version: int) -> TenantConfig:
    """Read the whole configuration (four queries)."""
    from identity.store.tenant import api_from_row, client_from_row, connection_from_row

    tenant = await session.get(TenantRow, 1) or TenantRow(id=1)
    if tenant in session:
        session.expunge(tenant)
    connection_rows = (await session.execute(select(ConnectionRow))).scalars().all()
    names = {row.id: row.name for row in connection_rows}
    client_connections: dict[int, set[str]] = {}
    for client_pk, connection_id in (
        await session.execute(select(ClientConnectionRow.client_pk, ClientConnectionRow.connection_id))
    ).all():
        if connection_id in names:
            client_connections.setdefault(client_pk, set()).add(names[connection_id])
    clients = {
        row.client_id: client_from_row(row, client_connections.get(row.id or 0, ()))
        for row in (await session.execute(select(ClientRow))).scalars()
    }
    apis = {row.identifier: api_from_row(row) for row in (await session.execute(select(ApiRow))).scalars()}
    connections = {row.name: connection_from_row(row) for row in connection_rows}
    return TenantConfig(version=version, tenant=tenant, clients=clients, connections=connections, apis=apis)


def cached_config(session: AsyncSession) -> TenantConfig | None:
    """The snapshot the request's session was opened with (`ConfigCache.attach`), if any."""
    config = session.info.get(_SESSION_KEY)
    return config if isinstance(config, TenantConfig) else None


class ConfigCache:
    """This process's current `TenantConfig`, checked against the database's version.

    `attach` (every request with a database session) reads the version with the request's first statement, so a
    change committed on any instance holds from the next request on; `get` (paths without a session) checks at most
    every ``check_interval`` seconds.

    ``on_reload`` runs after each new snapshot is loaded (with a session), e.g. to reload the signing keys; with
    ``max_age`` 0 (no caching) only when the version changed.
    """

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        *,
        on_reload: Callable[[AsyncSession, TenantConfig], Awaitable[None]] | None = None,
        check_interval: float = CHECK_INTERVAL_S,
        max_age: float = MAX_AGE_S,
    ) -> None:
        self.sessions = sessions
        self.on_reload = on_reload
        self.check_interval = check_interval
        self.max_age = max_age
        self._config: TenantConfig | None = None
        self._checked = 0.0
        self._lock: asyncio.Lock | None = None
        _CACHES.add(self)

    async def get(self) -> TenantConfig:
        """The current snapshot (from memory, except about once a second: one version read)."""
        config = self._config
        if config is not None and time.monotonic() - self._checked < self.check_interval:
            return config
        async with self.sessions() as session:
            version = await config_version(session)
            config = self._config
            if config is None or version != config.version or time.monotonic() - config.loaded_at >= self.max_age:
                config = await self._reload(session, version)
            await session.commit()
        self._checked = time.monotonic()
        return config

    def invalidate(self) -> None:
        """Reload at the next `get` (this process changed the configuration itself)."""
        self._config = None

    async def attach(self, session: AsyncSession) -> TenantConfig:
        """Open ``session``'s request with the current snapshot (`cached_config` reads it back).

        The request's first statement reads the version (one primary-key lookup), so a request sees every change
        committed before it began, on any instance; the snapshot is reloaded only when the version moved.
        """
        version = await config_version(session)
        config = self._config
        if config is None or config.version != version or time.monotonic() - config.loaded_at >= self.max_age:
            config = await self._reload(session, version)
        self._checked = time.monotonic()
        session.info[_SESSION_KEY] = config
        return config

    async def _reload(self, session: AsyncSession, version: int) -> TenantConfig:
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            config = self._config
            fresh = config is not None and time.monotonic() - config.loaded_at < self.max_age
            if config is not None and fresh and config.version == version:
                return config  # another request loaded it meanwhile
            changed = config is None or config.version != version or self.max_age > 0
            config = await load_config(session, version)
            if self.on_reload is not None and changed:
                await self.on_reload(session, config)
            self._config = config
            return config
