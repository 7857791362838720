"""Queries for the tenant's configuration: settings, connections, APIs, clients."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from identity.oauth2.interfaces import Api, Client, Connection, RefreshTokenPolicy, TenantSettings
from identity.store.models import ApiRow, ClientConnectionRow, ClientRow, ConnectionRow, TenantRow, row_id

__all__ = [
    "MFA_API_SCOPES",
    "SqlTenantStore",
    "api_from_row",
    "api_signing_algs",
    "connection_from_row",
    "mfa_api",
    "tenant_row",
]

MFA_API_SCOPES = ("enroll", "read:authenticators", "remove:authenticators")
_MFA_API_LIFETIME = 600  # fixed, as Auth0's (API.md §2.1)


def mfa_api(issuer: str) -> Api:
    """The built-in MFA API (audience ``<issuer>mfa/``): its tokens are only issued after a second factor."""
    return Api(
        identifier=issuer + "mfa/",
        name="MFA API",
        scopes=MFA_API_SCOPES,
        token_lifetime=_MFA_API_LIFETIME,
        requires_mfa=True,
    )


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


async def tenant_row(session: AsyncSession) -> TenantRow:
    """The tenant row (defaults when none was applied)."""
    return await session.get(TenantRow, 1) or TenantRow(id=1)


async def api_signing_algs(session: AsyncSession) -> set[str]:
    """The signing algorithms the tenant's APIs use."""
    return set((await session.execute(select(ApiRow.signing_alg).distinct())).scalars())


class SqlTenantStore:
    """`identity.oauth2.interfaces.TenantStore` over the database."""

    def __init__(self, session: AsyncSession, *, issuer: str) -> None:
        self.session = session
        self.builtin_apis = {api.identifier: api for api in (mfa_api(issuer),)}

    async def settings(self) -> TenantSettings:
        """The tenant settings row, or defaults when none was applied."""
        row = await tenant_row(self.session)
        return TenantSettings(
            default_directory=row.default_directory,
            default_audience=row.default_audience,
            mfa_policy=row.mfa_policy,
        )

    async def client(self, client_id: str) -> Client | None:
        """The client and the names of its enabled connections."""
        row = (await self.session.execute(select(ClientRow).where(col(ClientRow.client_id) == client_id))).scalar()
        if row is None:
            return None
        names = await self.session.execute(
            select(ConnectionRow.name)
            .join(ClientConnectionRow, col(ClientConnectionRow.connection_id) == ConnectionRow.id)
            .where(col(ClientConnectionRow.client_pk) == row.id)
        )
        return Client(
            client_id=row.client_id,
            name=row.name,
            token_endpoint_auth_method=row.token_endpoint_auth_method,
            secret_hash=row.secret_hash,
            grant_types=frozenset(row.grant_types),
            connections=frozenset(names.scalars()),
            metadata=dict(row.client_metadata),
            refresh_token=RefreshTokenPolicy(**row.refresh_token),
        )

    async def connection(self, name: str) -> Connection | None:
        """The connection with exactly this name."""
        row = (await self.session.execute(select(ConnectionRow).where(col(ConnectionRow.name) == name))).scalar()
        # SQLite compares ASCII case-insensitively only with NOCASE; '=' is exact, but check anyway.
        return connection_from_row(row) if row is not None and row.name == name else None

    async def connections(self) -> list[Connection]:
        """Every connection, by name."""
        rows = await self.session.execute(select(ConnectionRow).order_by(col(ConnectionRow.name)))
        return [connection_from_row(row) for row in rows.scalars()]

    async def api(self, identifier: str) -> Api | None:
        """The API with exactly this identifier (built-in ones first)."""
        if identifier in self.builtin_apis:
            return self.builtin_apis[identifier]
        row = (await self.session.execute(select(ApiRow).where(col(ApiRow.identifier) == identifier))).scalar()
        return api_from_row(row) if row is not None else None
