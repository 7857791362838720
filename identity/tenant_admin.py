"""Reading and changing the tenant's configuration one object at a time (Management API, ``identity tenant export``).

Every change goes through the tenant file's checks (`identity.tenant_schema`) and appliers (`identity.tenant_file`):
an object the API creates is validated by the same rules as one written in a tenant file, and the export is in the
file's shape, so ``identity tenant apply`` of an export recreates the tenant (secrets and users aside). Nothing is
written unless every check passed; each change is one transaction.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from identity.audiences import mfa_api_audience
from identity.store import tenant_writes as writes
from identity.store.models import (
    ApiRow,
    ClientConnectionRow,
    ClientGrantRow,
    ClientRow,
    ConnectionRow,
    RuleRow,
    UserRow,
    row_id,
)
from identity.store.rules import all_rules
from identity.store.tenant import api_scopes, is_management_audience, tenant_row
from identity.tenant_file import (
    ISSUER_KEYWORD,
    ApplyReport,
    apply_api,
    apply_client,
    apply_connection,
    apply_settings,
    check_references,
)
from identity.tenant_schema import (
    TENANT_KEYS,
    ApiTable,
    ClientGrantTable,
    ClientTable,
    ConnectionTable,
    TenantFileError,
    TenantTable,
    check,
)

__all__ = [
    "SETTINGS_KEYS",
    "ConfigConflict",
    "ConfigNotFound",
    "Created",
    "TenantAdmin",
    "api_entry",
    "client_entry",
]

SETTINGS_KEYS = ("friendly_name", "default_directory", "default_audience", "mfa_policy", "mfa_token_lifetime")


class ConfigNotFound(LookupError):
    """No such object; the message names it."""


class ConfigConflict(ValueError):
    """The change contradicts the rest of the configuration; the message says how."""


@dataclass(frozen=True)
class Created:
    """A created or re-keyed client with its secret, shown once."""

    entry: dict[str, Any]
    client_secret: str | None


class TenantAdmin:
    """The tenant's configuration for one session."""

    def __init__(self, session: AsyncSession, *, issuer: str) -> None:
        self.session = session
        self.issuer = issuer

    async def _commit(self) -> None:
        """Commit a configuration change and tell every instance's cache (`identity.store.config`)."""
        await writes.commit_change(self.session)

    # --- settings -------------------------------------------------------------------------------------------

    async def settings(self) -> dict[str, Any]:
        """The tenant settings, by the tenant file's names."""
        row = await tenant_row(self.session)
        await self.session.commit()
        return {key: getattr(row, key) for key in TENANT_KEYS}

    async def update_settings(self, changes: Mapping[str, Any]) -> dict[str, Any]:
        """Change some settings (``None`` or ``""`` clears default_directory/default_audience)."""
        merged = {**(await self.settings()), **changes}
        check("tenant settings", {key: value for key, value in merged.items() if value is not None}, TenantTable)
        await apply_settings(self.session, {key: "" if value is None else value for key, value in changes.items()})
        await check_references(self.session, {"tenant": {key: value for key, value in changes.items() if value}})
        await self._commit()
        return await self.settings()

    # --- connections ----------------------------------------------------------------------------------------

    async def connections(self) -> list[dict[str, Any]]:
        """Every connection with the clients it is enabled for."""
        rows = (await self.session.execute(select(ConnectionRow).order_by(col(ConnectionRow.id)))).scalars().all()
        enabled = await self._enabled_clients()
        await self.session.commit()
        return [self._connection_entry(row, enabled.get(row.id or 0, [])) for row in rows]

    async def connection(self, connection_id: str) -> dict[str, Any]:
        """One connection by its id (``con_<n>``)."""
        row = await self._connection_row(connection_id)
        enabled = await self._enabled_clients()
        await self.session.commit()
        return self._connection_entry(row, enabled.get(row.id or 0, []))

    async def create_connection(self, entry: Mapping[str, Any], enabled_clients: Sequence[str]) -> dict[str, Any]:
        """A new connection (its name must be free)."""
        check("connection", entry, ConnectionTable)
        found = await self.session.execute(select(ConnectionRow.id).where(col(ConnectionRow.name) == entry["name"]))
        if found.first() is not None:
            raise ConfigConflict(f"A connection with the same name already exists: {entry['name']}")
        row = await apply_connection(self.session, entry, ApplyReport())
        await self._set_enabled_clients(row, enabled_clients)
        await self._commit()
        return await self.connection(_connection_id(row))

    async def update_connection(self, connection_id: str, enabled_clients: Sequence[str] | None) -> dict[str, Any]:
        """Change which clients a connection is enabled for (name and strategy cannot change)."""
        row = await self._connection_row(connection_id)
        if enabled_clients is not None:
            await self._set_enabled_clients(row, enabled_clients)
        await self._commit()
        return await self.connection(connection_id)

    async def delete_connection(self, connection_id: str) -> None:
        """Delete an empty connection that is not the default directory."""
        row = await self._connection_row(connection_id)
        users = await self.session.execute(select(func.count()).where(col(UserRow.connection_id) == row.id))
        if users.scalar_one():
            raise ConfigConflict("The connection still has users: delete them first")
        if (await tenant_row(self.session)).default_directory == row.name:
            raise ConfigConflict("The connection is the tenant's default_directory")
        await self.session.delete(row)
        await self._commit()

    async def _connection_row(self, connection_id: str) -> ConnectionRow:
        number = connection_id.removeprefix("con_")
        row = await self.session.get(ConnectionRow, int(number)) if number.isdigit() else None
        if row is None:
            raise ConfigNotFound("The connection does not exist")
        return row

    async def _enabled_clients(self) -> dict[int, list[str]]:
        query = (
            select(ClientConnectionRow.connection_id, ClientRow.client_id)
            .join(ClientRow, col(ClientRow.id) == ClientConnectionRow.client_pk)
            .order_by(col(ClientRow.client_id))
        )
        enabled: dict[int, list[str]] = {}
        for connection_pk, client_id in (await self.session.execute(query)).all():
            enabled.setdefault(connection_pk, []).append(client_id)
        return enabled

    async def _set_enabled_clients(self, row: ConnectionRow, client_ids: Sequence[str]) -> None:
        wanted = list(dict.fromkeys(client_ids))
        clients = (await self.session.execute(select(ClientRow).where(col(ClientRow.client_id).in_(wanted)))).scalars()
        found = {client.client_id: client for client in clients}
        if missing := [client_id for client_id in wanted if client_id not in found]:
            raise TenantFileError(f"enabled_clients: unknown client(s) {', '.join(missing)}")
        await self.session.execute(delete(ClientConnectionRow).where(col(ClientConnectionRow.connection_id) == row.id))
        for client in found.values():
            self.session.add(ClientConnectionRow(client_pk=row_id(client), connection_id=row_id(row)))

    @staticmethod
    def _connection_entry(row: ConnectionRow, enabled_clients: list[str]) -> dict[str, Any]:
        return {
            "id": _connection_id(row),
            "name": row.name,
            "strategy": row.strategy,
            "enabled_clients": enabled_clients,
            "realms": [row.name],
        }

    # --- APIs (resource servers) ----------------------------------------------------------------------------

    async def apis(self) -> list[ApiRow]:
        """Every API, oldest first."""
        rows = (await self.session.execute(select(ApiRow).order_by(col(ApiRow.id)))).scalars().all()
        await self.session.commit()
        return list(rows)

    async def api(self, api_id: str) -> ApiRow:
        """One API, by its id or its identifier."""
        query = select(ApiRow).where(col(ApiRow.identifier) == api_id)
        row = (await self.session.execute(query)).scalar()
        if row is None and api_id.isdigit():
            row = await self.session.get(ApiRow, int(api_id))
        if row is None and "/" in api_id:
            # An identifier taken from a URL path arrives with "//" merged and without its trailing "/".
            wanted = _path_form(api_id)
            rows = (await self.session.execute(select(ApiRow))).scalars()
            row = next((candidate for candidate in rows if _path_form(candidate.identifier) == wanted), None)
        await self.session.commit()
        if row is None:
            raise ConfigNotFound("The resource server does not exist")
        return row

    async def create_api(self, entry: Mapping[str, Any]) -> ApiRow:
        """A new API; its identifier must be free and not a built-in API's."""
        check("resource server", entry, ApiTable)
        identifier = entry["identifier"]
        if is_management_audience(identifier, self.issuer) or identifier == mfa_api_audience(self.issuer):
            raise ConfigConflict("The identifier is a system API's")
        found = await self.session.execute(select(ApiRow.id).where(col(ApiRow.identifier) == identifier))
        if found.first() is not None:
            raise ConfigConflict(f"A resource server with the same identifier already exists: {identifier}")
        await apply_api(self.session, entry, ApplyReport())
        await self._commit()
        return await self.api(identifier)

    async def update_api(self, api_id: str, changes: Mapping[str, Any]) -> ApiRow:
        """Change an API (the identifier is immutable)."""
        row = await self.api(api_id)
        entry = {**api_entry(row), **changes}
        if entry["identifier"] != row.identifier:
            raise TenantFileError("identifier: the identifier of a resource server cannot change")
        check("resource server", entry, ApiTable)
        await apply_api(self.session, entry, ApplyReport())
        await self._commit()
        return await self.api(row.identifier)

    async def delete_api(self, api_id: str) -> None:
        """Delete an API and the client grants for it."""
        row = await self.api(api_id)
        if (await tenant_row(self.session)).default_audience == row.identifier:
            raise ConfigConflict("The resource server is the tenant's default_audience")
        await self.session.execute(delete(ClientGrantRow).where(col(ClientGrantRow.audience) == row.identifier))
        await self.session.delete(row)
        await self._commit()

    # --- clients --------------------------------------------------------------------------------------------

    async def clients(self) -> list[dict[str, Any]]:
        """Every client, oldest first (no secrets)."""
        rows = (await self.session.execute(select(ClientRow).order_by(col(ClientRow.id)))).scalars().all()
        names = await self._client_connections()
        await self.session.commit()
        return [client_entry(row, names.get(row.id or 0, [])) for row in rows]

    async def client(self, client_id: str) -> dict[str, Any]:
        """One client (no secret)."""
        row = await self._client_row(client_id)
        names = await self._client_connections()
        await self.session.commit()
        return client_entry(row, names.get(row.id or 0, []))

    async def create_client(self, entry: Mapping[str, Any]) -> Created:
        """A new client with a generated id; a confidential one gets a generated secret, returned once."""
        entry = {"client_id": secrets.token_hex(16), **entry}
        check("client", entry, ClientTable)
        report = ApplyReport()
        await apply_client(self.session, entry, report)
        await self._commit()
        created = await self.client(entry["client_id"])
        return Created(created, report.generated_secrets.get(entry["client_id"]))

    async def update_client(self, client_id: str, changes: Mapping[str, Any]) -> dict[str, Any]:
        """Change a client (its id and secret stay)."""
        row = await self._client_row(client_id)
        current = client_entry(row, [])
        current.pop("connections")
        entry = {**current, **changes}
        if entry["token_endpoint_auth_method"] != "none" and row.secret_hash is None:
            raise ConfigConflict("A public client cannot become confidential: create a new client")
        check("client", entry, ClientTable)
        await apply_client(self.session, entry, ApplyReport())
        await self._commit()
        return await self.client(client_id)

    async def rotate_secret(self, client_id: str) -> Created:
        """A new secret for a confidential client: the old one stops working at once."""
        row = await self._client_row(client_id)
        if row.token_endpoint_auth_method == "none":
            raise ConfigConflict("A public client has no secret")
        secret = writes.new_client_secret(row)
        self.session.add(row)
        await self._commit()
        return Created(await self.client(client_id), secret)

    async def delete_client(self, client_id: str) -> None:
        """Delete a client (its grants and connection links cascade)."""
        row = await self._client_row(client_id)
        await self.session.delete(row)
        await self._commit()

    async def _client_row(self, client_id: str) -> ClientRow:
        row = (await self.session.execute(select(ClientRow).where(col(ClientRow.client_id) == client_id))).scalar()
        if row is None:
            raise ConfigNotFound("The client does not exist")
        return row

    async def _client_connections(self) -> dict[int, list[str]]:
        query = (
            select(ClientConnectionRow.client_pk, ConnectionRow.name)
            .join(ConnectionRow, col(ConnectionRow.id) == ClientConnectionRow.connection_id)
            .order_by(col(ConnectionRow.name))
        )
        names: dict[int, list[str]] = {}
        for client_pk, name in (await self.session.execute(query)).all():
            names.setdefault(client_pk, []).append(name)
        return names

    # --- client grants --------------------------------------------------------------------------------------

    async def client_grants(self, *, audience: str | None = None, client_id: str | None = None) -> list[dict[str, Any]]:
        """Client grants, optionally of one audience or client."""
        query = (
            select(ClientGrantRow, ClientRow.client_id)
            .join(ClientRow, col(ClientRow.id) == ClientGrantRow.client_pk)
            .order_by(col(ClientGrantRow.id))
        )
        if audience is not None:
            query = query.where(col(ClientGrantRow.audience) == audience)
        if client_id is not None:
            query = query.where(col(ClientRow.client_id) == client_id)
        rows = (await self.session.execute(query)).all()
        await self.session.commit()
        return [_grant_entry(row, owner) for row, owner in rows]

    async def create_client_grant(self, entry: Mapping[str, Any]) -> dict[str, Any]:
        """A new grant; one per client and audience, scopes the API has."""
        check("client grant", entry, ClientGrantTable)
        client = await self._client_row(entry["client_id"])
        await self._check_grant_scopes(entry["audience"], entry["scope"])
        if await writes.client_grant_row(self.session, client, entry["audience"]) is not None:
            raise ConfigConflict("A client grant for that client and audience already exists")
        row = writes.add_client_grant(self.session, client, entry["audience"], list(dict.fromkeys(entry["scope"])))
        await self._commit()
        return _grant_entry(row, client.client_id)

    async def update_client_grant(self, grant_id: str, scope: Sequence[str]) -> dict[str, Any]:
        """Replace a grant's scopes."""
        row, owner = await self._grant_row(grant_id)
        check("client grant", {"client_id": owner, "audience": row.audience, "scope": list(scope)}, ClientGrantTable)
        await self._check_grant_scopes(row.audience, scope)
        row.scopes = list(dict.fromkeys(scope))
        self.session.add(row)
        await self._commit()
        return _grant_entry(row, owner)

    async def delete_client_grant(self, grant_id: str) -> None:
        """Delete a grant: the client's tokens for that API stop being issued (and, for the Management API, work)."""
        row, _ = await self._grant_row(grant_id)
        await self.session.delete(row)
        await self._commit()

    async def _grant_row(self, grant_id: str) -> tuple[ClientGrantRow, str]:
        query = (
            select(ClientGrantRow, ClientRow.client_id)
            .join(ClientRow, col(ClientRow.id) == ClientGrantRow.client_pk)
            .where(col(ClientGrantRow.public_id) == grant_id)
        )
        found = (await self.session.execute(query)).first()
        if found is None:
            raise ConfigNotFound("The client grant does not exist")
        return found[0], found[1]

    async def _check_grant_scopes(self, audience: str, scope: Sequence[str]) -> None:
        scopes = await api_scopes(self.session, audience, issuer=self.issuer)
        if scopes is None:
            raise TenantFileError(f"audience: no resource server with identifier {audience}")
        if unknown := [item for item in scope if item not in scopes]:
            raise TenantFileError(f"scope: the resource server has no scope(s) {', '.join(unknown)}")

    # --- rules ----------------------------------------------------------------------------------------------

    async def rules(self) -> list[RuleRow]:
        """The rule pipeline, in order."""
        rows = list(await all_rules(self.session))
        await self.session.commit()
        return rows

    async def set_rule_enabled(self, rule: str, enabled: bool) -> RuleRow:
        """Enable or disable a rule, named by its name or id."""
        query = select(RuleRow).where(col(RuleRow.name) == rule)
        row = (await self.session.execute(query)).scalar()
        if row is None and rule.isdigit():
            row = await self.session.get(RuleRow, int(rule))
        if row is None:
            raise ConfigNotFound("The rule does not exist")
        row.enabled = enabled
        self.session.add(row)
        await self._commit()
        return row

    # --- export ---------------------------------------------------------------------------------------------

    async def export(self) -> dict[str, Any]:
        """The whole configuration in the tenant file's shape, without secrets or users."""
        tenant = await tenant_row(self.session)
        data: dict[str, Any] = {
            "tenant": {key: getattr(tenant, key) for key in TENANT_KEYS if getattr(tenant, key) is not None}
        }
        data["connections"] = [{"name": c["name"], "strategy": c["strategy"]} for c in await self.connections()]
        data["apis"] = [api_entry(row) for row in await self.apis()]
        data["clients"] = await self.clients()
        grants = await self.client_grants()
        data["client_grants"] = [
            {"client_id": g["client_id"], "audience": self._portable(g["audience"]), "scope": g["scope"]}
            for g in grants
        ]
        data["rules"] = [
            {
                "name": row.name,
                "handler": row.handler,
                "enabled": row.enabled,
                "timeout_seconds": row.timeout_seconds,
                "config": row.config,
            }
            for row in await self.rules()
        ]
        return {key: value for key, value in data.items() if value}

    def _portable(self, audience: str) -> str:
        """The Management API's audience written with the issuer keyword, so the file moves between deployments."""
        return ISSUER_KEYWORD + "api/v2/" if is_management_audience(audience, self.issuer) else audience


def _path_form(identifier: str) -> str:
    return re.sub("/+", "/", identifier).rstrip("/")


def _connection_id(row: ConnectionRow) -> str:
    return f"con_{row.id}"


def api_entry(row: ApiRow) -> dict[str, Any]:
    """An API in the tenant file's shape."""
    return {
        "identifier": row.identifier,
        "name": row.name,
        "scopes": list(row.scopes),
        "signing_alg": row.signing_alg,
        "token_lifetime": row.token_lifetime,
        "allow_offline_access": row.allow_offline_access,
    }


def client_entry(row: ClientRow, connections: list[str]) -> dict[str, Any]:
    """A client in the tenant file's shape (never its secret)."""
    entry: dict[str, Any] = {
        "client_id": row.client_id,
        "name": row.name,
        "token_endpoint_auth_method": row.token_endpoint_auth_method,
        "grant_types": list(row.grant_types),
        "connections": connections,
        "metadata": dict(row.client_metadata),
        "is_token_endpoint_ip_header_trusted": row.is_token_endpoint_ip_header_trusted,
    }
    if row.refresh_token:
        entry["refresh_token"] = dict(row.refresh_token)
    return entry


def _grant_entry(row: ClientGrantRow, client_id: str) -> dict[str, Any]:
    return {"id": row.public_id, "client_id": client_id, "audience": row.audience, "scope": list(row.scopes)}
