"""``/api/v2/resource-servers`` (API.md §6): the APIs tokens are issued for (the Management API: shown, fixed)."""

from __future__ import annotations

from typing import Any

from litestar import delete, get, patch, post
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, JSONBody
from msgspec import UNSET, Struct, UnsetType
from sqlalchemy.ext.asyncio import AsyncSession

from identity import tenant_defaults as defaults
from identity.management.base import config_admin
from identity.management.errors import ERROR_RESPONSES, ManagementError, bad_request
from identity.management.fields import check_resource_server, resource_server_fields
from identity.management.paging import DEFAULT_PER_PAGE, Page, PerPage, one_page
from identity.store.models import ApiRow
from identity.store.tenant import management_api
from identity.web.deps import Services

__all__ = ["RESOURCE_SERVER_HANDLERS"]


class Scope(Struct):
    """A scope of a resource server."""

    value: str
    description: str = ""


class ResourceServerOut(Struct):
    """A resource server (API); the last four members say what holds for every API here (not stored)."""

    id: str
    identifier: str
    name: str
    scopes: list[Scope]
    signing_alg: str
    token_lifetime: int
    allow_offline_access: bool
    token_lifetime_for_web: int
    token_dialect: str
    enforce_policies: bool
    skip_consent_for_verifiable_first_party_clients: bool
    is_system: bool = False


class ResourceServerCreate(Struct, forbid_unknown_fields=True):
    """``POST /resource-servers``; the members after ``allow_offline_access`` only as they are in force."""

    identifier: str
    name: str | None = None
    scopes: list[Scope] = []
    signing_alg: str = defaults.API_SIGNING_ALG
    token_lifetime: int = defaults.API_TOKEN_LIFETIME
    allow_offline_access: bool = defaults.API_ALLOW_OFFLINE_ACCESS
    token_lifetime_for_web: int | UnsetType = UNSET
    token_dialect: str | UnsetType = UNSET
    enforce_policies: bool | UnsetType = UNSET
    skip_consent_for_verifiable_first_party_clients: bool | UnsetType = UNSET
    signing_secret: str | UnsetType = UNSET


class ResourceServerPatch(Struct, forbid_unknown_fields=True):
    """``PATCH /resource-servers/{id}`` (the identifier cannot change)."""

    name: str | UnsetType = UNSET
    scopes: list[Scope] | UnsetType = UNSET
    signing_alg: str | UnsetType = UNSET
    token_lifetime: int | UnsetType = UNSET
    allow_offline_access: bool | UnsetType = UNSET
    token_lifetime_for_web: int | UnsetType = UNSET
    token_dialect: str | UnsetType = UNSET
    enforce_policies: bool | UnsetType = UNSET
    skip_consent_for_verifiable_first_party_clients: bool | UnsetType = UNSET
    signing_secret: str | UnsetType = UNSET


_SYSTEM_ID = "management-api"
_DESCRIPTIVE = (
    "token_lifetime_for_web",
    "token_dialect",
    "enforce_policies",
    "skip_consent_for_verifiable_first_party_clients",
    "signing_secret",
)


def _resource_server(row: ApiRow) -> ResourceServerOut:
    return ResourceServerOut(
        id=str(row.id),
        identifier=row.identifier,
        name=row.name,
        scopes=[Scope(value=scope) for scope in row.scopes],
        signing_alg=row.signing_alg,
        token_lifetime=row.token_lifetime,
        allow_offline_access=row.allow_offline_access,
        **resource_server_fields(row.token_lifetime),
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
        **resource_server_fields(api.token_lifetime),
    )


def _api_entry(data: ResourceServerCreate | ResourceServerPatch) -> dict[str, Any]:
    entry = {
        field: getattr(data, field)
        for field in type(data).__struct_fields__
        if getattr(data, field) is not UNSET and field not in _DESCRIPTIVE
    }
    if "scopes" in entry:
        entry["scopes"] = [scope.value for scope in entry["scopes"]]
    if entry.get("name", UNSET) is None:
        del entry["name"]
    return entry


def _check_descriptive(data: ResourceServerCreate | ResourceServerPatch, token_lifetime: int) -> bool:
    """Refuse members not in force (`identity.management.fields`); whether any was sent."""
    sent = {field: getattr(data, field) for field in _DESCRIPTIVE if getattr(data, field) is not UNSET}
    check_resource_server(sent, token_lifetime)
    return bool(sent)


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
    page: Page = 0,
    per_page: PerPage = DEFAULT_PER_PAGE,
    include_totals: FromQuery[bool] = False,
) -> list[ResourceServerOut] | dict[str, Any]:
    """The APIs, the Management API first, a page at a time."""
    found = [_system_api(services), *(_resource_server(row) for row in await config_admin(services, db).apis())]
    return one_page("resource_servers", found, page, per_page, include_totals)


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
    _check_descriptive(data, data.token_lifetime)
    return _resource_server(await config_admin(services, db).create_api(_api_entry(data)))


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
    return _resource_server(await config_admin(services, db).api(api_id))


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
    admin = config_admin(services, db)
    current = await admin.api(api_id)
    lifetime = current.token_lifetime if data.token_lifetime is UNSET else data.token_lifetime
    described = _check_descriptive(data, lifetime)
    changes = _api_entry(data)
    if not changes and not described:
        raise bad_request("Payload validation error: 'the body changes nothing'.")
    return _resource_server(await admin.update_api(api_id, changes) if changes else current)


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
    await config_admin(services, db).delete_api(api_id)


RESOURCE_SERVER_HANDLERS = [
    list_resource_servers,
    create_resource_server,
    get_resource_server,
    update_resource_server,
    delete_resource_server,
]
