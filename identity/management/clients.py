"""``/api/v2/clients`` and ``/client-grants`` (API.md §6): applications, their secrets and their grants."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from litestar import delete, get, patch, post
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, JSONBody
from msgspec import UNSET, Struct, UnsetType
from sqlalchemy.ext.asyncio import AsyncSession

from identity import tenant_defaults as defaults
from identity.management.base import From, config_admin
from identity.management.errors import ERROR_RESPONSES, bad_request
from identity.management.fields import check_client, client_fields
from identity.management.paging import DEFAULT_PER_PAGE, Page, PerPage, Take, checkpoint, one_page
from identity.oauth2.interfaces import RefreshTokenPolicy
from identity.tenant_admin import Created
from identity.web.deps import Services

__all__ = ["CLIENT_HANDLERS"]


class ClientOut(Struct, omit_defaults=True):
    """An application. ``client_secret`` appears only when it was just generated (create, rotate-secret).

    ``app_type``, ``is_first_party``, ``oidc_conformant``, ``callbacks`` and ``jwt_configuration`` say what the
    client is here (`identity.management.fields.client_fields`); they are derived, not stored.
    """

    client_id: str
    name: str
    token_endpoint_auth_method: str
    grant_types: list[str]
    client_metadata: dict[str, str]
    refresh_token: dict[str, Any]
    is_token_endpoint_ip_header_trusted: bool
    app_type: str
    is_first_party: bool
    oidc_conformant: bool
    callbacks: list[str]
    jwt_configuration: dict[str, Any]
    client_secret: str | None = None


class ClientCreate(Struct, forbid_unknown_fields=True):
    """``POST /clients``; a confidential client gets a generated secret, returned once.

    The descriptive members (``app_type`` ... ``jwt_configuration``) are accepted only as they are in force.
    """

    name: str
    token_endpoint_auth_method: str = defaults.CLIENT_AUTH_METHOD
    grant_types: list[str] = []
    client_metadata: dict[str, str] = {}
    refresh_token: dict[str, Any] = {}
    is_token_endpoint_ip_header_trusted: bool = defaults.CLIENT_IP_HEADER_TRUSTED
    app_type: str | UnsetType = UNSET
    is_first_party: bool | UnsetType = UNSET
    oidc_conformant: bool | UnsetType = UNSET
    callbacks: list[str] | UnsetType = UNSET
    jwt_configuration: dict[str, Any] | UnsetType = UNSET


class ClientPatch(Struct, forbid_unknown_fields=True):
    """``PATCH /clients/{id}`` (the descriptive members only as they are in force)."""

    name: str | UnsetType = UNSET
    token_endpoint_auth_method: str | UnsetType = UNSET
    grant_types: list[str] | UnsetType = UNSET
    client_metadata: dict[str, str] | UnsetType = UNSET
    refresh_token: dict[str, Any] | UnsetType = UNSET
    is_token_endpoint_ip_header_trusted: bool | UnsetType = UNSET
    app_type: str | UnsetType = UNSET
    is_first_party: bool | UnsetType = UNSET
    oidc_conformant: bool | UnsetType = UNSET
    callbacks: list[str] | UnsetType = UNSET
    jwt_configuration: dict[str, Any] | UnsetType = UNSET


_DESCRIPTIVE = ("app_type", "is_first_party", "oidc_conformant", "callbacks", "jwt_configuration")


def _client_out(services: Services, entry: dict[str, Any], secret: str | None = None) -> ClientOut:
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
        **client_fields(entry, id_token_lifetime=services.settings.id_token_lifetime),
    )


def _client_entry(data: ClientCreate | ClientPatch) -> dict[str, Any]:
    names = {"client_metadata": "metadata"}
    return {
        names.get(field, field): getattr(data, field)
        for field in type(data).__struct_fields__
        if getattr(data, field) is not UNSET and field not in _DESCRIPTIVE
    }


def _check_descriptive(services: Services, data: ClientCreate | ClientPatch, auth_method: str) -> bool:
    """Refuse descriptive members not in force; whether any was sent."""
    sent = {field: getattr(data, field) for field in _DESCRIPTIVE if getattr(data, field) is not UNSET}
    check_client(sent, auth_method, id_token_lifetime=services.settings.id_token_lifetime)
    return bool(sent)


def _created(services: Services, created: Created) -> ClientOut:
    return _client_out(services, created.entry, created.client_secret)


@get("/clients", responses=ERROR_RESPONSES, opt={"scope": "read:clients"}, summary="List clients")
async def list_clients(
    services: NamedDependency[Services],
    db: NamedDependency[AsyncSession],
    page: Page = 0,
    per_page: PerPage = DEFAULT_PER_PAGE,
    include_totals: FromQuery[bool] = False,
) -> list[ClientOut] | dict[str, Any]:
    """The clients, oldest first, a page at a time (no secrets)."""
    found = [_client_out(services, entry) for entry in await config_admin(services, db).clients()]
    return one_page("clients", found, page, per_page, include_totals)


@post(
    "/clients", responses=ERROR_RESPONSES, opt={"scope": "create:clients"}, status_code=201, summary="Create a client"
)
async def create_client(
    services: NamedDependency[Services], db: NamedDependency[AsyncSession], data: JSONBody[ClientCreate]
) -> ClientOut:
    """A new client; the response is the only place its secret ever appears."""
    _check_descriptive(services, data, data.token_endpoint_auth_method)
    return _created(services, await config_admin(services, db).create_client(_client_entry(data)))


@get("/clients/{client_id:str}", responses=ERROR_RESPONSES, opt={"scope": "read:clients"}, summary="Get a client")
async def get_client(
    services: NamedDependency[Services], db: NamedDependency[AsyncSession], client_id: FromPath[str]
) -> ClientOut:
    """One client (no secret)."""
    return _client_out(services, await config_admin(services, db).client(client_id))


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
    admin = config_admin(services, db)
    current = await admin.client(client_id)
    auth_method = current["token_endpoint_auth_method"]
    if data.token_endpoint_auth_method is not UNSET:
        auth_method = data.token_endpoint_auth_method
    described = _check_descriptive(services, data, auth_method)
    changes = _client_entry(data)
    if not changes and not described:
        raise bad_request("Payload validation error: 'the body changes nothing'.")
    return _client_out(services, await admin.update_client(client_id, changes) if changes else current)


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
    return _created(services, await config_admin(services, db).rotate_secret(client_id))


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
    await config_admin(services, db).delete_client(client_id)


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
    page: Page = 0,
    per_page: PerPage = DEFAULT_PER_PAGE,
    include_totals: FromQuery[bool] = False,
    from_: From = None,
    take: Take = None,
) -> list[ClientGrantOut] | dict[str, Any]:
    """Client grants, optionally of one audience or client, by page or after a checkpoint (``from``, ``take``)."""
    found = [
        ClientGrantOut(**entry)
        for entry in await config_admin(services, db).client_grants(audience=audience, client_id=client_id)
    ]
    if from_ is not None or take is not None:
        return checkpoint("client_grants", found, from_, take, lambda grant: grant.id)
    return one_page("client_grants", found, page, per_page, include_totals)


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
    return ClientGrantOut(**await config_admin(services, db).create_client_grant(entry))


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
    return ClientGrantOut(**await config_admin(services, db).update_client_grant(grant_id, data.scope))


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
    await config_admin(services, db).delete_client_grant(grant_id)


CLIENT_HANDLERS = [
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
]
