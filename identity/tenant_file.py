"""The tenant file: an idempotent, declarative description of a tenant (``identity tenant apply FILE.toml``).

Applying a file creates what is missing and updates what exists, matched by name (connections), identifier (APIs),
``client_id`` (clients) and email or username within a connection (users). Nothing absent from the file is deleted.
Every key is checked before anything is written, and the configuration is applied in one transaction (users
follow, one by one).
See ``examples/tenant.toml`` for a commented example.
"""

from __future__ import annotations

import secrets
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from identity import tenant_defaults as defaults
from identity.accounts.passwords import PasswordHasher
from identity.accounts.users import UserService
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
from identity.store.rules import replace_rules
from identity.store.tenant import MANAGEMENT_API_SCOPES
from identity.tenant_schema import TENANT_KEYS, TenantFileError, validate

__all__ = [
    "ISSUER_KEYWORD",
    "ApplyReport",
    "TenantFileError",
    "api_scopes",
    "apply_api",
    "apply_client",
    "apply_client_grant",
    "apply_connection",
    "apply_settings",
    "apply_tenant",
    "check_references",
    "is_management_audience",
    "load_tenant_file",
    "new_client_grant_id",
    "validate",
]


@dataclass
class ApplyReport:
    """What applying a file did. Generated client secrets appear here once and are never stored in clear."""

    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    generated_secrets: dict[str, str] = field(default_factory=dict)
    users: list[dict[str, Any]] = field(default_factory=list)


def load_tenant_file(path: Path) -> dict[str, Any]:
    """Read and validate a tenant file."""
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise TenantFileError(f"{path}: {exc}") from exc
    validate(data)
    return data


async def apply_tenant(
    session: AsyncSession, data: Mapping[str, Any], hasher: PasswordHasher, *, issuer: str | None = None
) -> ApplyReport:
    """Create or update everything the (validated) file describes.

    ``issuer`` names the Management API's audience (``<issuer>api/v2/``) for client grants; without it any audience
    ending in ``/api/v2/`` is taken for the Management API.
    """
    report = ApplyReport()
    await apply_settings(session, data.get("tenant", {}))
    connections = {}
    for conn in data.get("connections", []):
        connections[conn["name"]] = await apply_connection(session, conn, report)
    for api in data.get("apis", []):
        await apply_api(session, api, report)
    await session.flush()
    for client in data.get("clients", []):
        await apply_client(session, client, report)
    await session.flush()
    for grant in data.get("client_grants", []):
        await apply_client_grant(session, grant, report, issuer=issuer)
    await check_references(session, data)
    if "rules" in data:
        await replace_rules(session, data["rules"])
        report.updated.append(f"rules ({len(data['rules'])})")
    await bump_config_version(session)  # every running instance reloads its cached configuration
    await session.commit()
    users = UserService(session, hasher)
    for user in data.get("users", []):
        fields = {k: v for k, v in user.items() if k not in {"connection", "password"}}
        row, connection, created = await users.upsert(user["connection"], password=user["password"], **fields)
        (report.created if created else report.updated).append(f"user {row.user_id}")
        report.users.append(
            {"user_id": row.user_id, "connection": connection, "email": row.email, "username": row.username}
        )
    return report


async def apply_settings(session: AsyncSession, tenant: Mapping[str, Any]) -> None:
    """Set the tenant settings ``tenant`` names (``""`` clears a default)."""
    row = await session.get(TenantRow, 1) or TenantRow(id=1)
    for key in set(TENANT_KEYS) & set(tenant):
        setattr(row, key, tenant[key] if tenant[key] != "" else None)
    row.updated_at = utcnow()
    session.add(row)


async def apply_connection(session: AsyncSession, conn: Mapping[str, Any], report: ApplyReport) -> ConnectionRow:
    """Create the connection unless it exists (matched by name)."""
    row = (await session.execute(select(ConnectionRow).where(col(ConnectionRow.name) == conn["name"]))).scalar()
    if row is None:
        row = ConnectionRow(name=conn["name"], strategy=conn.get("strategy", defaults.CONNECTION_STRATEGY))
        session.add(row)
        report.created.append(f"connection {conn['name']}")
    else:
        report.updated.append(f"connection {conn['name']}")
    return row


async def apply_api(session: AsyncSession, api: Mapping[str, Any], report: ApplyReport) -> None:
    """Create or update an API (matched by identifier)."""
    row = (await session.execute(select(ApiRow).where(col(ApiRow.identifier) == api["identifier"]))).scalar()
    if row is None:
        row = ApiRow(identifier=api["identifier"], name=api.get("name", api["identifier"]))
        report.created.append(f"api {api['identifier']}")
    else:
        report.updated.append(f"api {api['identifier']}")
    row.name = api.get("name", row.name)
    row.scopes = list(dict.fromkeys(api.get("scopes", row.scopes)))
    row.signing_alg = api.get("signing_alg", row.signing_alg)
    row.token_lifetime = api.get("token_lifetime", row.token_lifetime)
    row.allow_offline_access = api.get("allow_offline_access", row.allow_offline_access)
    session.add(row)


async def apply_client(session: AsyncSession, client: Mapping[str, Any], report: ApplyReport) -> None:
    """Create or update a client (matched by client_id); a new confidential client without a secret gets one."""
    client_id = client["client_id"]
    row = (await session.execute(select(ClientRow).where(col(ClientRow.client_id) == client_id))).scalar()
    if row is None:
        row = ClientRow(client_id=client_id, name=client.get("name", client_id))
        report.created.append(f"client {client_id}")
    else:
        report.updated.append(f"client {client_id}")
    row.name = client.get("name", row.name)
    row.token_endpoint_auth_method = client.get("token_endpoint_auth_method", defaults.CLIENT_AUTH_METHOD)
    row.grant_types = list(dict.fromkeys(client.get("grant_types", row.grant_types)))
    row.client_metadata = dict(client.get("metadata", row.client_metadata))
    row.refresh_token = _refresh_policy(client.get("refresh_token", {}))
    row.is_token_endpoint_ip_header_trusted = client.get(
        "is_token_endpoint_ip_header_trusted", row.is_token_endpoint_ip_header_trusted
    )
    if row.token_endpoint_auth_method == "none":
        row.secret_hash = None
    elif "client_secret" in client:
        row.secret_hash = sha256_hex(client["client_secret"])
    elif row.secret_hash is None:
        secret = secrets.token_urlsafe(48)
        row.secret_hash = sha256_hex(secret)
        report.generated_secrets[client_id] = secret
    session.add(row)
    await session.flush()
    if "connections" in client:
        names = client["connections"]
        found = (await session.execute(select(ConnectionRow).where(col(ConnectionRow.name).in_(names)))).scalars().all()
        if missing := set(names) - {conn.name for conn in found}:
            raise TenantFileError(f"client {client_id}: unknown connection(s) {', '.join(sorted(missing))}")
        await session.execute(delete(ClientConnectionRow).where(col(ClientConnectionRow.client_pk) == row.id))
        for conn in found:
            session.add(ClientConnectionRow(client_pk=row_id(row), connection_id=row_id(conn)))


def is_management_audience(audience: str, issuer: str | None) -> bool:
    """Whether ``audience`` is the built-in Management API's."""
    return audience == issuer + "api/v2/" if issuer is not None else audience.endswith("/api/v2/")


async def api_scopes(session: AsyncSession, audience: str, *, issuer: str | None) -> tuple[str, ...] | None:
    """The scopes of the API ``audience`` (the Management API's included), or ``None`` when there is no such API."""
    if is_management_audience(audience, issuer):
        return MANAGEMENT_API_SCOPES
    row = (await session.execute(select(ApiRow).where(col(ApiRow.identifier) == audience))).scalar()
    return tuple(row.scopes) if row is not None else None


ISSUER_KEYWORD = "##ISSUER##"
"""Replaced by the issuer in a client grant's audience (as Auth0's Deploy CLI replaces ``##AUTH0_DOMAIN##``)."""


async def apply_client_grant(
    session: AsyncSession, grant: Mapping[str, Any], report: ApplyReport, *, issuer: str | None
) -> None:
    """Create or update a client grant (matched by client and audience), checked against the API's scopes."""
    client_id, audience = grant["client_id"], grant["audience"]
    if ISSUER_KEYWORD in audience:
        if issuer is None:
            raise TenantFileError(f"client grant {client_id}: {ISSUER_KEYWORD} needs the issuer")
        audience = audience.replace(ISSUER_KEYWORD, issuer)
    where = f"client grant {client_id} -> {audience}"
    client = (await session.execute(select(ClientRow).where(col(ClientRow.client_id) == client_id))).scalar()
    if client is None or client.id is None:
        raise TenantFileError(f"{where}: no client {client_id!r}")
    scopes = await api_scopes(session, audience, issuer=issuer)
    if scopes is None:
        raise TenantFileError(f"{where}: no API with identifier {audience!r}")
    if unknown := [scope for scope in grant["scope"] if scope not in scopes]:
        raise TenantFileError(f"{where}: the API has no scope(s) {', '.join(unknown)}")
    query = select(ClientGrantRow).where(
        col(ClientGrantRow.client_pk) == client.id, col(ClientGrantRow.audience) == audience
    )
    row = (await session.execute(query)).scalar()
    if row is None:
        row = ClientGrantRow(public_id=new_client_grant_id(), client_pk=client.id, audience=audience)
        report.created.append(where)
    else:
        report.updated.append(where)
    row.scopes = list(dict.fromkeys(grant["scope"]))
    session.add(row)


def new_client_grant_id() -> str:
    """A client grant id in Auth0's shape (``cgr_`` and 16 random characters)."""
    return "cgr_" + secrets.token_hex(8)


def _refresh_policy(policy: Mapping[str, Any]) -> dict[str, Any]:
    """The stored policy; ``non-expiring`` means no absolute lifetime (Auth0's ``expiration_type``)."""
    stored = dict(policy)
    if stored.get("expiration_type") == "non-expiring":
        stored.setdefault("infinite_token_lifetime", True)
        stored.setdefault("infinite_idle_token_lifetime", True)
    if "token_lifetime" in stored and "idle_token_lifetime" not in stored:
        stored["idle_token_lifetime"] = stored["token_lifetime"]
    return stored


async def check_references(session: AsyncSession, data: Mapping[str, Any]) -> None:
    """The default directory and audience the settings name must exist."""
    tenant = data.get("tenant", {})
    if directory := tenant.get("default_directory"):
        found = await session.execute(select(ConnectionRow.id).where(col(ConnectionRow.name) == directory))
        if found.first() is None:
            raise TenantFileError(f"[tenant] default_directory: no connection named {directory!r}")
    if audience := tenant.get("default_audience"):
        found = await session.execute(select(ApiRow.id).where(col(ApiRow.identifier) == audience))
        if found.first() is None:
            raise TenantFileError(f"[tenant] default_audience: no API with identifier {audience!r}")
