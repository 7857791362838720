"""``/api/v2/connections`` (API.md §6): database connections and the clients each is enabled for."""

from __future__ import annotations

from typing import Any

from litestar import delete, get, patch, post
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, JSONBody
from msgspec import UNSET, Struct, UnsetType
from sqlalchemy.ext.asyncio import AsyncSession

from identity import tenant_defaults as defaults
from identity.management.base import From, config_admin
from identity.management.errors import ERROR_RESPONSES
from identity.management.fields import check_connection, connection_options
from identity.management.paging import DEFAULT_PER_PAGE, Page, PerPage, Take, checkpoint, one_page
from identity.tenant_admin import TenantAdmin
from identity.web.deps import Services

__all__ = ["CONNECTION_HANDLERS"]


class ConnectionOut(Struct):
    """A database connection."""

    id: str
    name: str
    strategy: str
    enabled_clients: list[str]
    realms: list[str]
    options: dict[str, Any]
    """What holds for every connection (`identity.management.fields.connection_options`)."""


class ConnectionCreate(Struct, forbid_unknown_fields=True):
    """``POST /connections``; ``options`` and ``realms`` only as they are in force (`identity.management.fields`)."""

    name: str
    strategy: str = defaults.CONNECTION_STRATEGY
    enabled_clients: list[str] = []
    options: dict[str, Any] | UnsetType = UNSET
    realms: list[str] | UnsetType = UNSET


class ConnectionPatch(Struct, forbid_unknown_fields=True):
    """``PATCH /connections/{id}``: the clients it is enabled for (``options``, ``realms`` as in force)."""

    enabled_clients: list[str] | UnsetType = UNSET
    options: dict[str, Any] | UnsetType = UNSET
    realms: list[str] | UnsetType = UNSET


async def _brute_force_enabled(admin: TenantAdmin) -> bool:
    return bool((await admin.settings())["brute_force_enabled"])


def _out(entry: dict[str, Any], brute_force_enabled: bool) -> ConnectionOut:
    return ConnectionOut(**entry, options=connection_options(brute_force_enabled=brute_force_enabled))


@get("/connections", responses=ERROR_RESPONSES, opt={"scope": "read:connections"}, summary="List connections")
async def list_connections(
    services: NamedDependency[Services],
    db: NamedDependency[AsyncSession],
    page: Page = 0,
    per_page: PerPage = DEFAULT_PER_PAGE,
    include_totals: FromQuery[bool] = False,
    from_: From = None,
    take: Take = None,
    name: FromQuery[str | None] = None,
    strategy: FromQuery[str | None] = None,
) -> list[ConnectionOut] | dict[str, Any]:
    """The connections (optionally by name or strategy), by page or after a checkpoint (``from``, ``take``)."""
    admin = config_admin(services, db)
    protected = await _brute_force_enabled(admin)
    found = [_out(entry, protected) for entry in await admin.connections()]
    found = [c for c in found if (name is None or c.name == name) and (strategy is None or c.strategy == strategy)]
    if from_ is not None or take is not None:
        return checkpoint("connections", found, from_, take, lambda connection: connection.id)
    return one_page("connections", found, page, per_page, include_totals)


@post(
    "/connections",
    responses=ERROR_RESPONSES,
    opt={"scope": "create:connections"},
    status_code=201,
    summary="Create a connection",
)
async def create_connection(
    services: NamedDependency[Services], db: NamedDependency[AsyncSession], data: JSONBody[ConnectionCreate]
) -> ConnectionOut:
    """A new database connection."""
    admin = config_admin(services, db)
    protected = await _brute_force_enabled(admin)
    check_connection(data.name, data.options, data.realms, brute_force_enabled=protected)
    entry = {"name": data.name, "strategy": data.strategy}
    return _out(await admin.create_connection(entry, data.enabled_clients), protected)


@get(
    "/connections/{connection_id:str}",
    responses=ERROR_RESPONSES,
    opt={"scope": "read:connections"},
    summary="Get a connection",
)
async def get_connection(
    services: NamedDependency[Services], db: NamedDependency[AsyncSession], connection_id: FromPath[str]
) -> ConnectionOut:
    """One connection."""
    admin = config_admin(services, db)
    return _out(await admin.connection(connection_id), await _brute_force_enabled(admin))


@patch(
    "/connections/{connection_id:str}",
    responses=ERROR_RESPONSES,
    opt={"scope": "update:connections"},
    summary="Update a connection",
)
async def update_connection(
    services: NamedDependency[Services],
    db: NamedDependency[AsyncSession],
    connection_id: FromPath[str],
    data: JSONBody[ConnectionPatch],
) -> ConnectionOut:
    """Change the clients a connection is enabled for."""
    admin = config_admin(services, db)
    protected = await _brute_force_enabled(admin)
    current = await admin.connection(connection_id)
    check_connection(current["name"], data.options, data.realms, brute_force_enabled=protected)
    enabled = None if data.enabled_clients is UNSET else data.enabled_clients
    return _out(await admin.update_connection(connection_id, enabled), protected)


class EnabledClient(Struct):
    """A client a connection is enabled for (Auth0's newer ``/connections/{id}/clients``)."""

    client_id: str


class EnabledClients(Struct):
    """The clients a connection is enabled for."""

    clients: list[EnabledClient]


class EnabledClientChange(Struct, forbid_unknown_fields=True):
    """Enable (``status: true``) or disable a client for the connection."""

    client_id: str
    status: bool


@get(
    "/connections/{connection_id:str}/clients",
    opt={"scope": "read:connections"},
    responses=ERROR_RESPONSES,
    summary="Clients a connection is enabled for",
)
async def get_connection_clients(
    services: NamedDependency[Services], db: NamedDependency[AsyncSession], connection_id: FromPath[str]
) -> EnabledClients:
    """The clients that may log users in with this connection."""
    entry = await config_admin(services, db).connection(connection_id)
    return EnabledClients(clients=[EnabledClient(client_id=client) for client in entry["enabled_clients"]])


@patch(
    "/connections/{connection_id:str}/clients",
    opt={"scope": "update:connections"},
    responses=ERROR_RESPONSES,
    status_code=204,
    summary="Enable or disable clients for a connection",
)
async def update_connection_clients(
    services: NamedDependency[Services],
    db: NamedDependency[AsyncSession],
    connection_id: FromPath[str],
    data: JSONBody[list[EnabledClientChange]],
) -> None:
    """Apply each change (``[{"client_id": "...", "status": false}]``) to the connection's enabled clients."""
    admin = config_admin(services, db)
    enabled = list((await admin.connection(connection_id))["enabled_clients"])
    for change in data:
        if change.status and change.client_id not in enabled:
            enabled.append(change.client_id)
        elif not change.status and change.client_id in enabled:
            enabled.remove(change.client_id)
    await admin.update_connection(connection_id, enabled)


@delete(
    "/connections/{connection_id:str}",
    responses=ERROR_RESPONSES,
    opt={"scope": "delete:connections"},
    status_code=204,
    summary="Delete one",
)
async def delete_connection(
    services: NamedDependency[Services], db: NamedDependency[AsyncSession], connection_id: FromPath[str]
) -> None:
    """Delete a connection that has no users."""
    await config_admin(services, db).delete_connection(connection_id)


CONNECTION_HANDLERS = [
    list_connections,
    create_connection,
    get_connection,
    update_connection,
    get_connection_clients,
    update_connection_clients,
    delete_connection,
]
