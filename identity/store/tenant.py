"""Queries for the tenant's configuration: settings, connections, APIs, clients."""

from __future__ import annotations

import functools
from collections.abc import Iterable

from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from identity.audiences import mfa_api_audience
from identity.oauth2.interfaces import Api, Client, ClientGrant, Connection, RefreshTokenPolicy, TenantSettings
from identity.store.config import TenantConfig, cached_config
from identity.store.models import (
    ApiRow,
    ClientConnectionRow,
    ClientGrantRow,
    ClientRow,
    ConnectionRow,
    TenantRow,
    row_id,
)

__all__ = [
    "MANAGEMENT_API_SCOPES",
    "MFA_API_SCOPES",
    "SqlTenantStore",
    "api_from_row",
    "api_scopes",
    "api_signing_algs",
    "client_from_row",
    "connection_from_row",
    "is_management_audience",
    "management_api",
    "mfa_api",
    "tenant_row",
    "tenant_settings",
]

MFA_API_SCOPES = ("enroll", "read:authenticators", "remove:authenticators")
_MFA_API_LIFETIME = 600  # fixed, as Auth0's (API.md §2.1)


def mfa_api(issuer: str) -> Api:
    """The built-in MFA API (audience ``<issuer>mfa/``): its tokens are only issued after a second factor."""
    return Api(
        identifier=mfa_api_audience(issuer),
        name="MFA API",
        scopes=MFA_API_SCOPES,
        token_lifetime=_MFA_API_LIFETIME,
        requires_mfa=True,
    )


# The Management API's scopes, by Auth0's names (API.md §6).
MANAGEMENT_API_SCOPES = (
    "read:users",
    "create:users",
    "update:users",
    "delete:users",
    "read:authentication_methods",
    "delete:authentication_methods",
    "delete:guardian_enrollments",
    "read:guardian_factors",
    "update:guardian_factors",
    "read:mfa_policies",
    "update:mfa_policies",
    "read:clients",
    "create:clients",
    "update:clients",
    "delete:clients",
    "read:client_grants",
    "create:client_grants",
    "update:client_grants",
    "delete:client_grants",
    "read:connections",
    "create:connections",
    "update:connections",
    "delete:connections",
    "read:resource_servers",
    "create:resource_servers",
    "update:resource_servers",
    "delete:resource_servers",
    "read:tenant_settings",
    "update:tenant_settings",
    "read:attack_protection",
    "update:attack_protection",
    "read:rules",
    "update:rules",
    "read:logs",
    "read:logs_users",
)


def management_api(issuer: str) -> Api:
    """The built-in Management API (audience ``<issuer>api/v2/``), for client_credentials tokens only."""
    return Api(
        identifier=issuer + "api/v2/",
        name="Management API",
        scopes=MANAGEMENT_API_SCOPES,
        token_lifetime=86_400,
        machine_only=True,
    )


def is_management_audience(audience: str, issuer: str | None) -> bool:
    """Whether ``audience`` is the built-in Management API's (without an issuer: any ending in ``/api/v2/``)."""
    return audience == issuer + "api/v2/" if issuer is not None else audience.endswith("/api/v2/")


async def api_scopes(session: AsyncSession, audience: str, *, issuer: str | None) -> tuple[str, ...] | None:
    """The scopes of the API ``audience`` (the Management API's included), or ``None`` when there is no such API."""
    if is_management_audience(audience, issuer):
        return MANAGEMENT_API_SCOPES
    row = (await session.execute(select(ApiRow).where(col(ApiRow.identifier) == audience))).scalar()
    return tuple(row.scopes) if row is not None else None


@functools.cache
def _builtin_apis(issuer: str) -> dict[str, Api]:
    return {api.identifier: api for api in (mfa_api(issuer), management_api(issuer))}


def connection_from_row(row: ConnectionRow) -> Connection:
    """The engine's view of a connection row."""
    return Connection(id=row_id(row), name=row.name, strategy=row.strategy)


def api_from_row(row: ApiRow) -> Api:
    """The engine's view of an API row."""
    return Api(
        identifier=row.identifier,
        name=row.name,
        scopes=tuple(row.scopes),
        signing_alg=row.signing_alg,
        token_lifetime=row.token_lifetime,
        allow_offline_access=row.allow_offline_access,
    )


def client_from_row(row: ClientRow, connections: Iterable[str]) -> Client:
    """The engine's view of a client row and the names of its enabled connections."""
    return Client(
        client_id=row.client_id,
        name=row.name,
        token_endpoint_auth_method=row.token_endpoint_auth_method,
        secret_hash=row.secret_hash,
        grant_types=frozenset(row.grant_types),
        connections=frozenset(connections),
        metadata=dict(row.client_metadata),
        refresh_token=RefreshTokenPolicy(**row.refresh_token),
        ip_header_trusted=row.is_token_endpoint_ip_header_trusted,
    )


async def tenant_row(session: AsyncSession) -> TenantRow:
    """The tenant row (defaults when none was applied)."""
    return await session.get(TenantRow, 1) or TenantRow(id=1)


async def tenant_settings(session: AsyncSession) -> TenantRow:
    """The tenant row to read: the request's cached snapshot (`identity.store.config`) or the database's row.

    Never change the row it returns: it may be shared by every request of the process.
    """
    config = cached_config(session)
    return config.tenant if config is not None else await tenant_row(session)


async def api_signing_algs(session: AsyncSession) -> set[str]:
    """The signing algorithms the tenant's APIs use."""
    return set((await session.execute(select(ApiRow.signing_alg).distinct())).scalars())


class SqlTenantStore:
    """`identity.oauth2.interfaces.TenantStore` over the database.

    With a `TenantConfig` (given, or the one the request's session was opened with) every answer comes from that
    in-memory snapshot; without one, from the database.
    """

    def __init__(self, session: AsyncSession, *, issuer: str, config: TenantConfig | None = None) -> None:
        self.session = session
        self.builtin_apis = _builtin_apis(issuer)
        self.config = config or cached_config(session)

    async def settings(self) -> TenantSettings:
        """The tenant settings row, or defaults when none was applied."""
        if self.config is not None:
            return self.config.settings
        row = await tenant_row(self.session)
        return TenantSettings(
            default_directory=row.default_directory,
            default_audience=row.default_audience,
            mfa_policy=row.mfa_policy,
        )

    async def client(self, client_id: str) -> Client | None:
        """The client and the names of its enabled connections."""
        if self.config is not None:
            return self.config.clients.get(client_id)
        row = (await self.session.execute(select(ClientRow).where(col(ClientRow.client_id) == client_id))).scalar()
        if row is None:
            return None
        names = await self.session.execute(
            select(ConnectionRow.name)
            .join(ClientConnectionRow, col(ClientConnectionRow.connection_id) == ConnectionRow.id)
            .where(col(ClientConnectionRow.client_pk) == row.id)
        )
        return client_from_row(row, names.scalars())

    async def connection(self, name: str) -> Connection | None:
        """The connection with exactly this name."""
        if self.config is not None:
            return self.config.connections.get(name)
        row = (await self.session.execute(select(ConnectionRow).where(col(ConnectionRow.name) == name))).scalar()
        # SQLite compares ASCII case-insensitively only with NOCASE; '=' is exact, but check anyway.
        return connection_from_row(row) if row is not None and row.name == name else None

    async def connections(self) -> list[Connection]:
        """Every connection, by name."""
        if self.config is not None:
            return [self.config.connections[name] for name in sorted(self.config.connections)]
        rows = await self.session.execute(select(ConnectionRow).order_by(col(ConnectionRow.name)))
        return [connection_from_row(row) for row in rows.scalars()]

    async def api(self, identifier: str) -> Api | None:
        """The API with exactly this identifier (built-in ones first)."""
        if identifier in self.builtin_apis:
            return self.builtin_apis[identifier]
        if self.config is not None:
            return self.config.apis.get(identifier)
        row = (await self.session.execute(select(ApiRow).where(col(ApiRow.identifier) == identifier))).scalar()
        return api_from_row(row) if row is not None else None

    async def client_grant(self, client_id: str, audience: str) -> ClientGrant | None:
        """The client grant of ``client_id`` for ``audience``."""
        query = (
            select(ClientGrantRow)
            .join(ClientRow, col(ClientRow.id) == ClientGrantRow.client_pk)
            .where(col(ClientRow.client_id) == client_id, col(ClientGrantRow.audience) == audience)
        )
        row = (await self.session.execute(query)).scalar()
        if row is None:
            return None
        return ClientGrant(id=row.public_id, client_id=client_id, audience=row.audience, scopes=tuple(row.scopes))
