"""Tenant configuration endpoints (API.md §6).

Connections, clients, client grants, resource servers, tenant and attack-protection settings, rules. Each calls
`identity.tenant_admin.TenantAdmin`, which applies the tenant file's checks, so the API and ``identity tenant apply``
accept exactly the same configurations.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any

from litestar import delete, get, patch, post
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter
from msgspec import UNSET, Struct, UnsetType
from sqlalchemy.ext.asyncio import AsyncSession

from identity import tenant_defaults as defaults
from identity.accounts.attack import suspicious_ip_settings
from identity.management.errors import ERROR_RESPONSES, ManagementError, bad_request
from identity.oauth2.interfaces import RefreshTokenPolicy
from identity.store.models import ApiRow, RuleRow
from identity.store.tenant import management_api
from identity.tenant_admin import Created, TenantAdmin
from identity.web.deps import Services

__all__ = ["CONFIG_HANDLERS"]

PerPage = Annotated[int | None, QueryParameter(ge=1, le=100)]
Page = Annotated[int | None, QueryParameter(ge=0, le=10_000)]


def _admin(services: Services, db: AsyncSession) -> TenantAdmin:
    return TenantAdmin(db, issuer=services.settings.issuer)


def _page(items: list[Any], page: int | None, per_page: int | None) -> list[Any]:
    if page is None and per_page is None:
        return items
    size = per_page or 50
    start = (page or 0) * size
    return items[start : start + size]


def _totals(key: str, items: list[Any], page: int | None, per_page: int | None) -> dict[str, Any]:
    size = per_page or 50
    shown = _page(items, page if page is not None else 0, size)
    return {"start": (page or 0) * size, "limit": size, "length": len(shown), "total": len(items), key: shown}


# --- connections ------------------------------------------------------------------------------------------------


class ConnectionOut(Struct):
    """A database connection."""

    id: str
    name: str
    strategy: str
    enabled_clients: list[str]
    realms: list[str]


class ConnectionCreate(Struct, forbid_unknown_fields=True):
    """``POST /connections``."""

    name: str
    strategy: str = defaults.CONNECTION_STRATEGY
    enabled_clients: list[str] = []


class ConnectionPatch(Struct, forbid_unknown_fields=True):
    """``PATCH /connections/{id}``: the clients it is enabled for."""

    enabled_clients: list[str] | UnsetType = UNSET


@get("/connections", responses=ERROR_RESPONSES, opt={"scope": "read:connections"}, summary="List connections")
async def list_connections(
    services: NamedDependency[Services],
    db: NamedDependency[AsyncSession],
    page: Page = None,
    per_page: PerPage = None,
    include_totals: FromQuery[bool] = False,
    name: FromQuery[str | None] = None,
    strategy: FromQuery[str | None] = None,
) -> list[ConnectionOut] | dict[str, Any]:
    """Every connection (optionally by name or strategy)."""
    found = [ConnectionOut(**entry) for entry in await _admin(services, db).connections()]
    found = [c for c in found if (name is None or c.name == name) and (strategy is None or c.strategy == strategy)]
    return _totals("connections", found, page, per_page) if include_totals else _page(found, page, per_page)


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
    entry = {"name": data.name, "strategy": data.strategy}
    return ConnectionOut(**await _admin(services, db).create_connection(entry, data.enabled_clients))


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
    return ConnectionOut(**await _admin(services, db).connection(connection_id))


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
    enabled = None if data.enabled_clients is UNSET else data.enabled_clients
    return ConnectionOut(**await _admin(services, db).update_connection(connection_id, enabled))


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
    entry = await _admin(services, db).connection(connection_id)
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
    admin = _admin(services, db)
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
    await _admin(services, db).delete_connection(connection_id)


# --- clients ----------------------------------------------------------------------------------------------------


class ClientOut(Struct, omit_defaults=True):
    """An application. ``client_secret`` appears only when it was just generated (create, rotate-secret)."""

    client_id: str
    name: str
    token_endpoint_auth_method: str
    grant_types: list[str]
    client_metadata: dict[str, str]
    refresh_token: dict[str, Any]
    is_token_endpoint_ip_header_trusted: bool = defaults.CLIENT_IP_HEADER_TRUSTED
    is_first_party: bool = True
    oidc_conformant: bool = True
    client_secret: str | None = None


class ClientCreate(Struct, forbid_unknown_fields=True):
    """``POST /clients``; a confidential client gets a generated secret, returned once."""

    name: str
    token_endpoint_auth_method: str = defaults.CLIENT_AUTH_METHOD
    grant_types: list[str] = []
    client_metadata: dict[str, str] = {}
    refresh_token: dict[str, Any] = {}
    is_token_endpoint_ip_header_trusted: bool = defaults.CLIENT_IP_HEADER_TRUSTED


class ClientPatch(Struct, forbid_unknown_fields=True):
    """``PATCH /clients/{id}``."""

    name: str | UnsetType = UNSET
    token_endpoint_auth_method: str | UnsetType = UNSET
    grant_types: list[str] | UnsetType = UNSET
    client_metadata: dict[str, str] | UnsetType = UNSET
    refresh_token: dict[str, Any] | UnsetType = UNSET
    is_token_endpoint_ip_header_trusted: bool | UnsetType = UNSET


def _client_out(entry: dict[str, Any], secret: str | None = None) -> ClientOut:
    return ClientOut(
        client_id=entry["client_id"],
        name=entry["name"],
        token_endpoint_auth_method=entry["token_endpoint_auth_method"],
        grant_types=entry["grant_types"],
        client_metadata=entry["metadata"],
        # The effective policy, defaults filled in (as Auth0 shows it).
        refresh_token=asdict(RefreshTokenPolicy(**entry.get("refresh_token", {}))),
        is_token_endpoint_ip_header_trusted=bool(entry["is_token_endpoint_ip_header_trusted"]),
        client_secret=secret,
    )


def _client_entry(data: ClientCreate | ClientPatch) -> dict[str, Any]:
    names = {"client_metadata": "metadata"}
    return {
        names.get(field, field): getattr(data, field)
        for field in type(data).__struct_fields__
        if getattr(data, field) is not UNSET
    }


def _created(created: Created) -> ClientOut:
    return _client_out(created.entry, created.client_secret)


@get("/clients", responses=ERROR_RESPONSES, opt={"scope": "read:clients"}, summary="List clients")
async def list_clients(
    services: NamedDependency[Services],
    db: NamedDependency[AsyncSession],
    page: Page = None,
    per_page: PerPage = None,
    include_totals: FromQuery[bool] = False,
) -> list[ClientOut] | dict[str, Any]:
    """Every client (no secrets)."""
    found = [_client_out(entry) for entry in await _admin(services, db).clients()]
    return _totals("clients", found, page, per_page) if include_totals else _page(found, page, per_page)


@post(
    "/clients", responses=ERROR_RESPONSES, opt={"scope": "create:clients"}, status_code=201, summary="Create a client"
)
async def create_client(
    services: NamedDependency[Services], db: NamedDependency[AsyncSession], data: JSONBody[ClientCreate]
) -> ClientOut:
    """A new client; the response is the only place its secret ever appears."""
    return _created(await _admin(services, db).create_client(_client_entry(data)))


@get("/clients/{client_id:str}", responses=ERROR_RESPONSES, opt={"scope": "read:clients"}, summary="Get a client")
async def get_client(
    services: NamedDependency[Services], db: NamedDependency[AsyncSession], client_id: FromPath[str]
) -> ClientOut:
    """One client (no secret)."""
    return _client_out(await _admin(services, db).client(client_id))


@patch(
    "/clients/{client_id:str}", responses=ERROR_RESPONSES, opt={"scope": "update:clients"}, summary="Update a client"
)
async def update_client(
    services: NamedDependency[Services],
    db: NamedDependency[AsyncSession],
    client_id: FromPath[str],
    data: JSONBody[ClientPatch],
) -> ClientOut:
    """Change name, grant types (removing one disables it at once), metadata or refresh-token policy."""
    changes = _client_entry(data)
    if not changes:
        raise bad_request("Payload validation error: 'the body changes nothing'.")
    return _client_out(await _admin(services, db).update_client(client_id, changes))


@post(
    "/clients/{client_id:str}/rotate-secret",
    responses=ERROR_RESPONSES,
    opt={"scope": "update:clients"},
    status_code=200,
    summary="Rotate a client's secret",
)
async def rotate_client_secret(
    services: NamedDependency[Services], db: NamedDependency[AsyncSession], client_id: FromPath[str]
) -> ClientOut:
    """A new secret, returned once; the old one stops working on every instance at once."""
    return _created(await _admin(services, db).rotate_secret(client_id))


@delete(
    "/clients/{client_id:str}",
    responses=ERROR_RESPONSES,
    opt={"scope": "delete:clients"},
    status_code=204,
    summary="Delete a client",
)
async def delete_client(
    services: NamedDependency[Services], db: NamedDependency[AsyncSession], client_id: FromPath[str]
) -> None:
    """Delete a client and its grants."""
    await _admin(services, db).delete_client(client_id)


# --- client grants ----------------------------------------------------------------------------------------------


class ClientGrantOut(Struct):
    """A client grant."""

    id: str
    client_id: str
    audience: str
    scope: list[str]


class ClientGrantCreate(Struct, forbid_unknown_fields=True):
    """``POST /client-grants``."""

    client_id: str
    audience: str
    scope: list[str]


class ClientGrantPatch(Struct, forbid_unknown_fields=True):
    """``PATCH /client-grants/{id}``."""

    scope: list[str]


@get("/client-grants", responses=ERROR_RESPONSES, opt={"scope": "read:client_grants"}, summary="List client grants")
async def list_client_grants(
    services: NamedDependency[Services],
    db: NamedDependency[AsyncSession],
    audience: FromQuery[str | None] = None,
    client_id: FromQuery[str | None] = None,
    page: Page = None,
    per_page: PerPage = None,
    include_totals: FromQuery[bool] = False,
) -> list[ClientGrantOut] | dict[str, Any]:
    """Client grants, optionally of one audience or client."""
    found = [
        ClientGrantOut(**entry)
        for entry in await _admin(services, db).client_grants(audience=audience, client_id=client_id)
    ]
    return _totals("client_grants", found, page, per_page) if include_totals else _page(found, page, per_page)


@post(
    "/client-grants",
    responses=ERROR_RESPONSES,
    opt={"scope": "create:client_grants"},
    status_code=201,
    summary="Create a client grant",
)
async def create_client_grant(
    services: NamedDependency[Services], db: NamedDependency[AsyncSession], data: JSONBody[ClientGrantCreate]
) -> ClientGrantOut:
    """Let a client get tokens for an API, with these scopes."""
    entry = {"client_id": data.client_id, "audience": data.audience, "scope": data.scope}
    return ClientGrantOut(**await _admin(services, db).create_client_grant(entry))


@patch(
    "/client-grants/{grant_id:str}",
    responses=ERROR_RESPONSES,
    opt={"scope": "update:client_grants"},
    summary="Update a client grant",
)
async def update_client_grant(
    services: NamedDependency[Services],
    db: NamedDependency[AsyncSession],
    grant_id: FromPath[str],
    data: JSONBody[ClientGrantPatch],
) -> ClientGrantOut:
    """Replace the grant's scopes."""
    return ClientGrantOut(**await _admin(services, db).update_client_grant(grant_id, data.scope))


@delete(
    "/client-grants/{grant_id:str}",
    responses=ERROR_RESPONSES,
    opt={"scope": "delete:client_grants"},
    status_code=204,
    summary="Delete one",
)
async def delete_client_grant(
    services: NamedDependency[Services], db: NamedDependency[AsyncSession], grant_id: FromPath[str]
) -> None:
    """Remove a grant."""
    await _admin(services, db).delete_client_grant(grant_id)


# --- resource servers -------------------------------------------------------------------------------------------


class Scope(Struct):
    """A scope of a resource server."""

    value: str
    description: str = ""


class ResourceServerOut(Struct):
    """A resource server (API)."""

    id: str
    identifier: str
    name: str
    scopes: list[Scope]
    signing_alg: str
    token_lifetime: int
    allow_offline_access: bool
    is_system: bool = False


class ResourceServerCreate(Struct, forbid_unknown_fields=True):
    """``POST /resource-servers``."""

    identifier: str
    name: str | None = None
    scopes: list[Scope] = []
    signing_alg: str = defaults.API_SIGNING_ALG
    token_lifetime: int = defaults.API_TOKEN_LIFETIME
    allow_offline_access: bool = defaults.API_ALLOW_OFFLINE_ACCESS


class ResourceServerPatch(Struct, forbid_unknown_fields=True):
    """``PATCH /resource-servers/{id}`` (the identifier cannot change)."""

    name: str | UnsetType = UNSET
    scopes: list[Scope] | UnsetType = UNSET
    signing_alg: str | UnsetType = UNSET
    token_lifetime: int | UnsetType = UNSET
    allow_offline_access: bool | UnsetType = UNSET


_SYSTEM_ID = "management-api"


def _resource_server(row: ApiRow) -> ResourceServerOut:
    return ResourceServerOut(
        id=str(row.id),
        identifier=row.identifier,
        name=row.name,
        scopes=[Scope(value=scope) for scope in row.scopes],
        signing_alg=row.signing_alg,
        token_lifetime=row.token_lifetime,
        allow_offline_access=row.allow_offline_access,
    )


def _system_api(services: Services) -> ResourceServerOut:
    api = management_api(services.settings.issuer)
    return ResourceServerOut(
        id=_SYSTEM_ID,
        identifier=api.identifier,
        name=api.name,
        scopes=[Scope(value=scope) for scope in api.scopes],
        signing_alg=api.signing_alg,
        token_lifetime=api.token_lifetime,
        allow_offline_access=api.allow_offline_access,
        is_system=True,
    )


def _api_entry(data: ResourceServerCreate | ResourceServerPatch) -> dict[str, Any]:
    entry = {field: getattr(data, field) for field in type(data).__struct_fields__ if getattr(data, field) is not UNSET}
    if "scopes" in entry:
        entry["scopes"] = [scope.value for scope in entry["scopes"]]
    if entry.get("name", UNSET) is None:
        del entry["name"]
    return entry


def _api_id(api_id: str) -> str:
    """The id or identifier from the path.

    An identifier is a URL: Auth0's SDKs send it URL-encoded, and it arrives decoded, with repeated slashes merged and
    the trailing one gone; `identity.tenant_admin.TenantAdmin.api` matches it in that form too.
    """
    return api_id.removeprefix("/")


def _not_system(services: Services, api_id: str) -> None:
    if api_id in (_SYSTEM_ID, services.settings.issuer + "api/v2/"):
        raise ManagementError(403, "The system API cannot be changed", "operation_not_supported")


@get(
    "/resource-servers",
    responses=ERROR_RESPONSES,
    opt={"scope": "read:resource_servers"},
    summary="List resource servers",
)
async def list_resource_servers(
    services: NamedDependency[Services],
    db: NamedDependency[AsyncSession],
    page: Page = None,
    per_page: PerPage = None,
    include_totals: FromQuery[bool] = False,
) -> list[ResourceServerOut] | dict[str, Any]:
    """Every API, the Management API first."""
    found = [_system_api(services), *(_resource_server(row) for row in await _admin(services, db).apis())]
    return _totals("resource_servers", found, page, per_page) if include_totals else _page(found, page, per_page)


@post(
    "/resource-servers",
    responses=ERROR_RESPONSES,
    opt={"scope": "create:resource_servers"},
    status_code=201,
    summary="Create an API",
)
async def create_resource_server(
    services: NamedDependency[Services], db: NamedDependency[AsyncSession], data: JSONBody[ResourceServerCreate]
) -> ResourceServerOut:
    """A new API (audience)."""
    return _resource_server(await _admin(services, db).create_api(_api_entry(data)))


@get(
    "/resource-servers/{api_id:path}",
    responses=ERROR_RESPONSES,
    opt={"scope": "read:resource_servers"},
    summary="Get an API",
)
async def get_resource_server(
    services: NamedDependency[Services], db: NamedDependency[AsyncSession], api_id: FromPath[str]
) -> ResourceServerOut:
    """One API, by id or identifier."""
    api_id = _api_id(api_id)
    if api_id in (_SYSTEM_ID, services.settings.issuer + "api/v2/"):
        return _system_api(services)
    return _resource_server(await _admin(services, db).api(api_id))


@patch(
    "/resource-servers/{api_id:path}",
    responses=ERROR_RESPONSES,
    opt={"scope": "update:resource_servers"},
    summary="Update an API",
)
async def update_resource_server(
    services: NamedDependency[Services],
    db: NamedDependency[AsyncSession],
    api_id: FromPath[str],
    data: JSONBody[ResourceServerPatch],
) -> ResourceServerOut:
    """Change an API's name, scopes, algorithm, lifetime or offline access."""
    api_id = _api_id(api_id)
    _not_system(services, api_id)
    changes = _api_entry(data)
    if not changes:
        raise bad_request("Payload validation error: 'the body changes nothing'.")
    return _resource_server(await _admin(services, db).update_api(api_id, changes))


@delete(
    "/resource-servers/{api_id:path}",
    responses=ERROR_RESPONSES,
    opt={"scope": "delete:resource_servers"},
    status_code=204,
    summary="Delete one",
)
async def delete_resource_server(
    services: NamedDependency[Services], db: NamedDependency[AsyncSession], api_id: FromPath[str]
) -> None:
    """Delete an API and the client grants for it."""
    api_id = _api_id(api_id)
    _not_system(services, api_id)
    await _admin(services, db).delete_api(api_id)


# --- tenant settings, attack protection -------------------------------------------------------------------------


class TenantSettingsOut(Struct):
    """Tenant settings (Auth0's names; ``mfa_policy`` and ``mfa_token_lifetime`` are identity's)."""

    friendly_name: str
    default_directory: str | None
    default_audience: str | None
    mfa_policy: str
    mfa_token_lifetime: int


class TenantSettingsPatch(Struct, forbid_unknown_fields=True):
    """``PATCH /tenants/settings``; ``null`` clears default_directory or default_audience."""

    friendly_name: str | UnsetType = UNSET
    default_directory: str | UnsetType | None = UNSET
    default_audience: str | UnsetType | None = UNSET
    mfa_policy: str | UnsetType = UNSET
    mfa_token_lifetime: int | UnsetType = UNSET


def _settings_out(settings: dict[str, Any]) -> TenantSettingsOut:
    return TenantSettingsOut(**{field: settings[field] for field in TenantSettingsOut.__struct_fields__})


def _changes(data: JSONBody[Struct]) -> dict[str, Any]:
    return {field: getattr(data, field) for field in type(data).__struct_fields__ if getattr(data, field) is not UNSET}


@get("/tenants/settings", responses=ERROR_RESPONSES, opt={"scope": "read:tenant_settings"}, summary="Tenant settings")
async def get_tenant_settings(
    services: NamedDependency[Services], db: NamedDependency[AsyncSession]
) -> TenantSettingsOut:
    """The tenant's settings."""
    return _settings_out(await _admin(services, db).settings())


@patch(
    "/tenants/settings",
    responses=ERROR_RESPONSES,
    opt={"scope": "update:tenant_settings"},
    summary="Update tenant settings",
)
async def update_tenant_settings(
    services: NamedDependency[Services], db: NamedDependency[AsyncSession], data: JSONBody[TenantSettingsPatch]
) -> TenantSettingsOut:
    """Change tenant settings (checked as the tenant file's ``[tenant]`` table)."""
    return _settings_out(await _admin(services, db).update_settings(_changes(data)))


class BruteForceProtection(Struct):
    """Brute-force protection (API.md §4.1), by Auth0's names."""

    enabled: bool
    shields: list[str]
    mode: str
    allowlist: list[str]
    max_attempts: int


class BruteForcePatch(Struct, forbid_unknown_fields=True):
    """``PATCH /attack-protection/brute-force-protection``."""

    enabled: bool | UnsetType = UNSET
    shields: list[str] | UnsetType = UNSET
    """Only ``["block"]``: identity sends no email."""
    mode: str | UnsetType = UNSET
    """``count_per_identifier_and_ip`` or ``count_per_identifier`` (account lockout)."""
    allowlist: list[str] | UnsetType = UNSET
    max_attempts: int | UnsetType = UNSET


def _brute_force(settings: dict[str, Any]) -> BruteForceProtection:
    return BruteForceProtection(
        enabled=settings["brute_force_enabled"],
        shields=["block"],
        mode=settings["brute_force_mode"],
        allowlist=list(settings["brute_force_allowlist"]),
        max_attempts=settings["brute_force_max_attempts"],
    )


@get(
    "/attack-protection/brute-force-protection",
    opt={"scope": "read:attack_protection"},
    responses=ERROR_RESPONSES,
    summary="Brute-force protection settings",
)
async def get_brute_force_protection(
    services: NamedDependency[Services], db: NamedDependency[AsyncSession]
) -> BruteForceProtection:
    """The brute-force protection settings."""
    return _brute_force(await _admin(services, db).settings())


@patch(
    "/attack-protection/brute-force-protection",
    opt={"scope": "update:attack_protection"},
    responses=ERROR_RESPONSES,
    summary="Change brute-force protection",
)
async def update_brute_force_protection(
    services: NamedDependency[Services], db: NamedDependency[AsyncSession], data: JSONBody[BruteForcePatch]
) -> BruteForceProtection:
    """Turn it on or off, choose the mode, the allow-list and the number of failures that block."""
    if data.shields is not UNSET and data.shields != ["block"]:
        raise bad_request("Payload validation error: 'shields must be [\"block\"] here' on property shields.")
    names = {"enabled": "brute_force_enabled", "mode": "brute_force_mode", "allowlist": "brute_force_allowlist"}
    changes = {names.get(field, "brute_force_" + field): value for field, value in _changes(data).items()}
    changes.pop("brute_force_shields", None)
    return _brute_force(await _admin(services, db).update_settings(changes))


class SuspiciousIpThrottling(Struct):
    """Suspicious-IP throttling (API.md §4.2), Auth0's object with its defaults filled in."""

    enabled: bool
    shields: list[str]
    allowlist: list[str]
    stage: dict[str, Any]


class SuspiciousIpPatch(Struct, forbid_unknown_fields=True):
    """``PATCH /attack-protection/suspicious-ip-throttling`` (``stage`` as Auth0's: ``pre-login`` limits)."""

    enabled: bool | UnsetType = UNSET
    shields: list[str] | UnsetType = UNSET
    allowlist: list[str] | UnsetType = UNSET
    stage: dict[str, Any] | UnsetType = UNSET


def _throttling(settings: dict[str, Any]) -> SuspiciousIpThrottling:
    effective = suspicious_ip_settings(settings["suspicious_ip_throttling"] or {})
    return SuspiciousIpThrottling(**{field: effective[field] for field in SuspiciousIpThrottling.__struct_fields__})


@get(
    "/attack-protection/suspicious-ip-throttling",
    opt={"scope": "read:attack_protection"},
    responses=ERROR_RESPONSES,
    summary="Suspicious-IP throttling settings",
)
async def get_suspicious_ip_throttling(
    services: NamedDependency[Services], db: NamedDependency[AsyncSession]
) -> SuspiciousIpThrottling:
    """The suspicious-IP throttling settings."""
    return _throttling(await _admin(services, db).settings())


@patch(
    "/attack-protection/suspicious-ip-throttling",
    opt={"scope": "update:attack_protection"},
    responses=ERROR_RESPONSES,
    summary="Change suspicious-IP throttling",
)
async def update_suspicious_ip_throttling(
    services: NamedDependency[Services], db: NamedDependency[AsyncSession], data: JSONBody[SuspiciousIpPatch]
) -> SuspiciousIpThrottling:
    """Change the members sent (checked as the tenant file's ``[tenant.suspicious_ip_throttling]``)."""
    admin = _admin(services, db)
    stored = dict((await admin.settings())["suspicious_ip_throttling"] or {})
    stored.update(_changes(data))
    return _throttling(await admin.update_settings({"suspicious_ip_throttling": stored}))


class BreachedPasswordDetection(Struct):
    """Breached password detection (API.md §4.6), Auth0's object; off unless ``enabled``."""

    enabled: bool
    shields: list[str]
    method: str


class BreachedPasswordPatch(Struct, forbid_unknown_fields=True):
    """``PATCH /attack-protection/breached-password-detection``."""

    enabled: bool | UnsetType = UNSET
    shields: list[str] | UnsetType = UNSET
    method: str | UnsetType = UNSET


def _breached(settings: dict[str, Any]) -> BreachedPasswordDetection:
    stored = settings["breached_password_detection"] or {}
    return BreachedPasswordDetection(
        enabled=bool(stored.get("enabled", defaults.BREACHED_PASSWORD_ENABLED)),
        shields=list(stored.get("shields", defaults.BREACHED_PASSWORD_SHIELDS)),
        method=str(stored.get("method", defaults.BREACHED_PASSWORD_METHOD)),
    )


@get(
    "/attack-protection/breached-password-detection",
    opt={"scope": "read:attack_protection"},
    responses=ERROR_RESPONSES,
    summary="Breached password detection settings",
)
async def get_breached_password_detection(
    services: NamedDependency[Services], db: NamedDependency[AsyncSession]
) -> BreachedPasswordDetection:
    """The breached password detection settings."""
    return _breached(await _admin(services, db).settings())


@patch(
    "/attack-protection/breached-password-detection",
    opt={"scope": "update:attack_protection"},
    responses=ERROR_RESPONSES,
    summary="Change breached password detection",
)
async def update_breached_password_detection(
    services: NamedDependency[Services], db: NamedDependency[AsyncSession], data: JSONBody[BreachedPasswordPatch]
) -> BreachedPasswordDetection:
    """Turn it on or off (checked as the tenant file's ``[tenant.breached_password_detection]``)."""
    admin = _admin(services, db)
    stored = dict((await admin.settings())["breached_password_detection"] or {})
    stored.update(_changes(data))
    return _breached(await admin.update_settings({"breached_password_detection": stored}))


# --- rules ------------------------------------------------------------------------------------------------------


class RuleOut(Struct):
    """A rule of the login pipeline (identity's rules are Python hooks, not Auth0's JavaScript)."""

    id: str
    name: str
    enabled: bool
    order: int
    handler: str
    stage: str = "login_success"


class RulePatch(Struct, forbid_unknown_fields=True):
    """``PATCH /rules/{id}``: enable or disable."""

    enabled: bool


def _rule(row: RuleRow) -> RuleOut:
    return RuleOut(id=str(row.id), name=row.name, enabled=row.enabled, order=row.position, handler=row.handler)


@get("/rules", responses=ERROR_RESPONSES, opt={"scope": "read:rules"}, summary="List rules")
async def list_rules(
    services: NamedDependency[Services], db: NamedDependency[AsyncSession], enabled: FromQuery[bool | None] = None
) -> list[RuleOut]:
    """The rule pipeline, in order."""
    return [_rule(row) for row in await _admin(services, db).rules() if enabled is None or row.enabled == enabled]


@patch(
    "/rules/{rule:str}",
    responses=ERROR_RESPONSES,
    opt={"scope": "update:rules"},
    summary="Enable or disable a rule (by id or name)",
)
async def update_rule(
    services: NamedDependency[Services],
    db: NamedDependency[AsyncSession],
    rule: FromPath[str],
    data: JSONBody[RulePatch],
) -> RuleOut:
    """Enable or disable a rule; every instance runs the new pipeline from its next login."""
    return _rule(await _admin(services, db).set_rule_enabled(rule, data.enabled))


CONFIG_HANDLERS = [
    list_connections,
    create_connection,
    get_connection,
    update_connection,
    delete_connection,
    get_connection_clients,
    update_connection_clients,
    list_clients,
    create_client,
    get_client,
    update_client,
    rotate_client_secret,
    delete_client,
    list_client_grants,
    create_client_grant,
    update_client_grant,
    delete_client_grant,
    list_resource_servers,
    create_resource_server,
    get_resource_server,
    update_resource_server,
    delete_resource_server,
    get_tenant_settings,
    update_tenant_settings,
    get_brute_force_protection,
    update_brute_force_protection,
    get_suspicious_ip_throttling,
    update_suspicious_ip_throttling,
    get_breached_password_detection,
    update_breached_password_detection,
    list_rules,
    update_rule,
]
