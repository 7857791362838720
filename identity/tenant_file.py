"""The tenant file: an idempotent, declarative description of a tenant (``identity tenant apply FILE.toml``).

Applying a file creates what is missing and updates what exists, matched by name (connections), identifier (APIs),
``client_id`` (clients) and email or username within a connection (users). Nothing absent from the file is deleted.
Every key is checked before anything is written (`identity.tenant_schema`), and the configuration is applied in one
transaction (users follow, one by one); the rows are written by `identity.store.tenant_writes`.
See ``examples/tenant.toml`` for a commented example.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from identity import tenant_defaults as defaults
from identity.accounts.users import UserService
from identity.store import tenant_writes as writes
from identity.store.rules import replace_rules
from identity.store.tenant import api_scopes
from identity.tenant_schema import TENANT_KEYS, TenantFileError, validate

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from identity.accounts.passwords import PasswordHasher
    from identity.store.models import ConnectionRow

__all__ = [
    "ISSUER_KEYWORD",
    "ApplyReport",
    "TenantFileError",
    "apply_api",
    "apply_client",
    "apply_client_grant",
    "apply_connection",
    "apply_settings",
    "apply_tenant",
    "check_references",
    "load_tenant_file",
    "validate",
]

ISSUER_KEYWORD = "##ISSUER##"
"""Replaced by the issuer in a client grant's audience (as Auth0's Deploy CLI replaces ``##AUTH0_DOMAIN##``)."""


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
    for conn in data.get("connections", []):
        await apply_connection(session, conn, report)
    for api in data.get("apis", []):
        await apply_api(session, api, report)
    for client in data.get("clients", []):
        await apply_client(session, client, report)
    for grant in data.get("client_grants", []):
        await apply_client_grant(session, grant, report, issuer=issuer)
    await check_references(session, data)
    if "rules" in data:
        await replace_rules(session, data["rules"])
        report.updated.append(f"rules ({len(data['rules'])})")
    await writes.commit_change(session)
    users = UserService(session, hasher)
    for user in data.get("users", []):
        fields = {k: v for k, v in user.items() if k not in {"connection", "password"}}
        row, connection, created = await users.upsert(user["connection"], password=user["password"], **fields)
        _report(report, created, f"user {row.user_id}")
        report.users.append(
            {"user_id": row.user_id, "connection": connection, "email": row.email, "username": row.username}
        )
    return report


def _report(report: ApplyReport, created: bool, what: str) -> None:
    (report.created if created else report.updated).append(what)


def _columns(table: Mapping[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    """The keys given, as columns of the same name."""
    return {key: table[key] for key in keys if key in table}


async def apply_settings(session: AsyncSession, tenant: Mapping[str, Any]) -> None:
    """Set the tenant settings ``tenant`` names (``""`` clears a default)."""
    changes = _columns(tenant, TENANT_KEYS)
    await writes.save_settings(session, {key: None if value == "" else value for key, value in changes.items()})


async def apply_connection(session: AsyncSession, conn: Mapping[str, Any], report: ApplyReport) -> ConnectionRow:
    """Create the connection unless it exists (matched by name)."""
    row, created = await writes.save_connection(session, conn["name"], _columns(conn, ("strategy",)))
    _report(report, created, f"connection {conn['name']}")
    return row


async def apply_api(session: AsyncSession, api: Mapping[str, Any], report: ApplyReport) -> None:
    """Create or update an API (matched by identifier)."""
    columns = _columns(api, ("name", "signing_alg", "token_lifetime", "allow_offline_access"))
    if "scopes" in api:
        columns["scopes"] = list(dict.fromkeys(api["scopes"]))
    created = await writes.save_api(session, api["identifier"], columns)
    _report(report, created, f"api {api['identifier']}")


async def apply_client(session: AsyncSession, client: Mapping[str, Any], report: ApplyReport) -> None:
    """Create or update a client (matched by client_id); a new confidential client without a secret gets one.

    ``token_endpoint_auth_method`` and ``refresh_token`` are the file's or the defaults, also for an existing client.
    """
    client_id = client["client_id"]
    columns = _columns(client, ("name", "is_token_endpoint_ip_header_trusted"))
    columns["token_endpoint_auth_method"] = client.get("token_endpoint_auth_method", defaults.CLIENT_AUTH_METHOD)
    columns["refresh_token"] = _refresh_policy(client.get("refresh_token", {}))
    if "grant_types" in client:
        columns["grant_types"] = list(dict.fromkeys(client["grant_types"]))
    if "metadata" in client:
        columns["client_metadata"] = dict(client["metadata"])
    saved = await writes.save_client(session, client_id, columns, secret=client.get("client_secret"))
    _report(report, saved.created, f"client {client_id}")
    if saved.generated_secret is not None:
        report.generated_secrets[client_id] = saved.generated_secret
    if "connections" in client:
        found = await writes.connections_named(session, client["connections"])
        if missing := set(client["connections"]) - {conn.name for conn in found}:
            raise TenantFileError(f"client {client_id}: unknown connection(s) {', '.join(sorted(missing))}")
        await writes.set_client_connections(session, saved.row, found)


def _refresh_policy(policy: Mapping[str, Any]) -> dict[str, Any]:
    """The stored policy; ``non-expiring`` means no absolute lifetime (Auth0's ``expiration_type``)."""
    stored = dict(policy)
    if stored.get("expiration_type") == "non-expiring":
        stored.setdefault("infinite_token_lifetime", True)
        stored.setdefault("infinite_idle_token_lifetime", True)
    if "token_lifetime" in stored and "idle_token_lifetime" not in stored:
        stored["idle_token_lifetime"] = stored["token_lifetime"]
    return stored


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
    client = await writes.client_row(session, client_id)
    if client is None:
        raise TenantFileError(f"{where}: no client {client_id!r}")
    scopes = await api_scopes(session, audience, issuer=issuer)
    if scopes is None:
        raise TenantFileError(f"{where}: no API with identifier {audience!r}")
    if unknown := [scope for scope in grant["scope"] if scope not in scopes]:
        raise TenantFileError(f"{where}: the API has no scope(s) {', '.join(unknown)}")
    created = await writes.save_client_grant(session, client, audience, list(dict.fromkeys(grant["scope"])))
    _report(report, created, where)


async def check_references(session: AsyncSession, data: Mapping[str, Any]) -> None:
    """The default directory and audience the settings name must exist."""
    tenant = data.get("tenant", {})
    if (directory := tenant.get("default_directory")) and await writes.connection_row(session, directory) is None:
        raise TenantFileError(f"[tenant] default_directory: no connection named {directory!r}")
    if (audience := tenant.get("default_audience")) and await writes.api_row(session, audience) is None:
        raise TenantFileError(f"[tenant] default_audience: no API with identifier {audience!r}")
