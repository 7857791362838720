"""Writes of the tenant's configuration: settings, connections, APIs, clients and client grants.

The callers (`identity.tenant_file`, `identity.tenant_admin`) have checked the values (`identity.tenant_schema`) and
translated them to columns; a column they leave out takes the table's default on a new row and keeps its value on an
existing one. Each save flushes, so a new row has its id and a constraint fails at the write that broke it. Nothing
here commits but `commit_change`, which also tells every instance's configuration cache.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from identity.crypto import sha256_hex
from identity.store.config import bump_config_version
from identity.store.models import (
    ApiRow,
    ClientConnectionRow,
    ClientGrantRow,
    ClientRow,
    ConnectionRow,
    TenantRow,
    row_id,
    utcnow,
)

__all__ = [
    "SavedClient",
    "add_client_grant",
    "api_row",
    "client_grant_row",
    "client_row",
    "commit_change",
    "connection_row",
    "connections_named",
    "new_client_secret",
    "save_api",
    "save_client",
    "save_client_grant",
    "save_connection",
    "save_settings",
    "set_client_connections",
]


async def commit_change(session: AsyncSession) -> None:
    """Commit a configuration change; every running instance reloads its cached configuration."""
    await bump_config_version(session)
    await session.commit()


async def save_settings(session: AsyncSession, values: Mapping[str, Any]) -> None:
    """Set these tenant settings (the settings row is created on the first change)."""
    row = await session.get(TenantRow, 1) or TenantRow(id=1)
    for column, value in values.items():
        setattr(row, column, value)
    row.updated_at = utcnow()
    session.add(row)
    await session.flush()


async def connection_row(session: AsyncSession, name: str) -> ConnectionRow | None:
    """The connection with this name."""
    return (await session.execute(select(ConnectionRow).where(col(ConnectionRow.name) == name))).scalar()


async def connections_named(session: AsyncSession, names: Iterable[str]) -> Sequence[ConnectionRow]:
    """The connections with these names (the unknown ones are missing from the answer)."""
    query = select(ConnectionRow).where(col(ConnectionRow.name).in_(list(names)))
    return (await session.execute(query)).scalars().all()


async def save_connection(session: AsyncSession, name: str, values: Mapping[str, Any]) -> tuple[ConnectionRow, bool]:
    """Create the connection unless one has this name (an existing one stays as it is); whether it was created."""
    row = await connection_row(session, name)
    if row is not None:
        return row, False
    row = ConnectionRow(name=name, **values)
    session.add(row)
    await session.flush()
    return row, True


async def api_row(session: AsyncSession, identifier: str) -> ApiRow | None:
    """The API with this identifier."""
    return (await session.execute(select(ApiRow).where(col(ApiRow.identifier) == identifier))).scalar()


async def save_api(session: AsyncSession, identifier: str, values: Mapping[str, Any]) -> bool:
    """Create or update the API with this identifier (a new one is named after it); whether it was created."""
    row = await api_row(session, identifier)
    created = row is None
    row = row or ApiRow(identifier=identifier, name=identifier)
    for column, value in values.items():
        setattr(row, column, value)
    session.add(row)
    await session.flush()
    return created


async def client_row(session: AsyncSession, client_id: str) -> ClientRow | None:
    """The client with this client_id."""
    return (await session.execute(select(ClientRow).where(col(ClientRow.client_id) == client_id))).scalar()


@dataclass(frozen=True)
class SavedClient:
    """A client `save_client` wrote; ``generated_secret`` is its new secret in clear, to show once, or ``None``."""

    row: ClientRow
    created: bool
    generated_secret: str | None


async def save_client(
    session: AsyncSession, client_id: str, values: Mapping[str, Any], *, secret: str | None = None
) -> SavedClient:
    """Create or update a client (a new one is named after its client_id).

    Its secret, stored as a SHA-256 hash only: none for a public client (``token_endpoint_auth_method`` ``none``),
    else ``secret`` when given, else the one it has; a confidential client with none gets a generated one.
    """
    row = await client_row(session, client_id)
    created = row is None
    row = row or ClientRow(client_id=client_id, name=client_id)
    for column, value in values.items():
        setattr(row, column, value)
    generated = None
    if row.token_endpoint_auth_method == "none":
        row.secret_hash = None
    elif secret is not None:
        row.secret_hash = sha256_hex(secret)
    elif row.secret_hash is None:
        generated = new_client_secret(row)
    session.add(row)
    await session.flush()
    return SavedClient(row, created, generated)


def new_client_secret(row: ClientRow) -> str:
    """Give the client a new random secret (the old one stops working); the secret in clear, to show once."""
    secret = secrets.token_urlsafe(48)
    row.secret_hash = sha256_hex(secret)
    return secret


async def set_client_connections(
    session: AsyncSession, client: ClientRow, connections: Iterable[ConnectionRow]
) -> None:
    """Enable exactly these connections for the client."""
    await session.execute(delete(ClientConnectionRow).where(col(ClientConnectionRow.client_pk) == client.id))
    for connection in connections:
        session.add(ClientConnectionRow(client_pk=row_id(client), connection_id=row_id(connection)))
    await session.flush()


async def client_grant_row(session: AsyncSession, client: ClientRow, audience: str) -> ClientGrantRow | None:
    """The client's grant for this audience."""
    query = select(ClientGrantRow).where(
        col(ClientGrantRow.client_pk) == client.id, col(ClientGrantRow.audience) == audience
    )
    return (await session.execute(query)).scalar()


def add_client_grant(session: AsyncSession, client: ClientRow, audience: str, scopes: Sequence[str]) -> ClientGrantRow:
    """A new grant, with an id in Auth0's shape (``cgr_`` and 16 random characters)."""
    row = ClientGrantRow(
        public_id="cgr_" + secrets.token_hex(8), client_pk=row_id(client), audience=audience, scopes=list(scopes)
    )
    session.add(row)
    return row


async def save_client_grant(session: AsyncSession, client: ClientRow, audience: str, scopes: Sequence[str]) -> bool:
    """Create or update the client's grant for this audience; whether it was created."""
    row = await client_grant_row(session, client, audience)
    if row is None:
        add_client_grant(session, client, audience, scopes)
    else:
        row.scopes = list(scopes)
        session.add(row)
    await session.flush()
    return row is None
