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

from identity.accounts.attack import BRUTE_FORCE_MODES, PER_IDENTIFIER_AND_IP
from identity.accounts.factors import MFA_POLICIES
from identity.accounts.password_policy import MIN_LENGTH_WITH_MFA
from identity.accounts.passwords import PasswordHasher
from identity.accounts.users import UserService
from identity.accounts.webauthn import ATTESTATION_PREFERENCES, USER_VERIFICATION
from identity.crypto import sha256_hex
from identity.network import parse_networks
from identity.oauth2.client_auth import AUTH_METHODS
from identity.rules.pipeline import RuleLoadError, load_handler
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
from identity.tokens.keys import SUPPORTED_ALGS

__all__ = [
    "ISSUER_KEYWORD",
    "TENANT_KEYS",
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
]

_MAX_TOKEN_LIFETIME = 2_592_000
_SECTIONS = {"tenant", "connections", "apis", "clients", "client_grants", "users", "rules"}
_CLIENT_GRANT_KEYS = {"client_id", "audience", "scope"}
_RULE_KEYS = {"name", "handler", "enabled", "timeout_seconds", "config"}
_TENANT_KEYS = {
    "friendly_name",
    "default_directory",
    "default_audience",
    "mfa_policy",
    "mfa_token_lifetime",
    "brute_force_max_attempts",
    "brute_force_block_seconds",
    "webauthn_user_verification",
    "webauthn_attestation",
    "brute_force_enabled",
    "brute_force_mode",
    "brute_force_allowlist",
    "suspicious_ip_throttling",
    "password_min_length",
    "breached_password_detection",
}
TENANT_KEYS = tuple(sorted(_TENANT_KEYS))
"""Every ``[tenant]`` key (the tenant export writes them all)."""
_SUSPICIOUS_IP_KEYS = {"enabled", "shields", "allowlist", "stage"}
_STAGE_KEYS = {"max_attempts", "rate"}
_BREACHED_PASSWORD_KEYS = {"enabled", "shields", "method"}
_CONNECTION_KEYS = {"name", "strategy"}
_API_KEYS = {"identifier", "name", "scopes", "signing_alg", "token_lifetime", "allow_offline_access"}
_CLIENT_KEYS = {
    "client_id",
    "name",
    "client_secret",
    "token_endpoint_auth_method",
    "grant_types",
    "connections",
    "metadata",
    "refresh_token",
    "is_token_endpoint_ip_header_trusted",
}
_REFRESH_TOKEN_KEYS = {
    "rotation_type",
    "expiration_type",
    "token_lifetime",
    "idle_token_lifetime",
    "infinite_token_lifetime",
    "infinite_idle_token_lifetime",
    "leeway",
}
_MAX_REFRESH_LIFETIME = 31_557_600
_USER_KEYS = {
    "connection",
    "email",
    "username",
    "password",
    "email_verified",
    "blocked",
    "name",
    "app_metadata",
    "user_metadata",
}


class TenantFileError(ValueError):
    """The file is not a valid tenant description; the message names the place."""


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


def _keys(where: str, table: Mapping[str, Any], allowed: set[str], required: set[str] = frozenset()) -> None:  # type: ignore[assignment]
    if not isinstance(table, Mapping):
        raise TenantFileError(f"{where}: expected a table")
    if unknown := set(table) - allowed:
        raise TenantFileError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
    if missing := required - set(table):
        raise TenantFileError(f"{where}: missing key(s) {', '.join(sorted(missing))}")


def _type(where: str, value: Any, kind: type | tuple[type, ...]) -> None:
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise TenantFileError(f"{where}: wrong type {type(value).__name__}")


def _string_list(where: str, value: Any) -> None:
    if not isinstance(value, list) or not all(isinstance(item, str) and item for item in value):
        raise TenantFileError(f"{where}: expected a list of strings")


def _validate_refresh_token(where: str, policy: Mapping[str, Any]) -> None:
    _keys(where, policy, _REFRESH_TOKEN_KEYS)
    if policy.get("rotation_type", "rotating") not in ("rotating", "non-rotating"):
        raise TenantFileError(f"{where}: rotation_type must be 'rotating' or 'non-rotating'")
    if policy.get("expiration_type", "expiring") not in ("expiring", "non-expiring"):
        raise TenantFileError(f"{where}: expiration_type must be 'expiring' or 'non-expiring'")
    for key in ("token_lifetime", "idle_token_lifetime", "leeway"):
        if key in policy:
            _type(f"{where} {key}", policy[key], int)
    for key in ("infinite_token_lifetime", "infinite_idle_token_lifetime"):
        if key in policy:
            _type(f"{where} {key}", policy[key], bool)
    lifetime = policy.get("token_lifetime", 2_592_000)
    if not 1 <= lifetime <= _MAX_REFRESH_LIFETIME:
        raise TenantFileError(f"{where}: token_lifetime must be between 1 and {_MAX_REFRESH_LIFETIME} seconds")
    if not 1 <= policy.get("idle_token_lifetime", lifetime) <= lifetime:
        raise TenantFileError(f"{where}: idle_token_lifetime must be between 1 and token_lifetime")
    if not 0 <= policy.get("leeway", 0) <= 60:
        raise TenantFileError(f"{where}: leeway must be between 0 and 60 seconds")


def _validate_attack_protection(tenant: Mapping[str, Any]) -> None:
    """The brute-force and suspicious-IP settings, named after Auth0's attack-protection objects (API.md §4)."""
    _type("[tenant] brute_force_enabled", tenant.get("brute_force_enabled", True), bool)
    if tenant.get("brute_force_mode", PER_IDENTIFIER_AND_IP) not in BRUTE_FORCE_MODES:
        raise TenantFileError(f"[tenant] brute_force_mode must be one of {', '.join(BRUTE_FORCE_MODES)}")
    _networks("[tenant] brute_force_allowlist", tenant.get("brute_force_allowlist", []))
    minimum = tenant.get("password_min_length")
    if minimum is not None:
        _type("[tenant] password_min_length", minimum, int)
        if not MIN_LENGTH_WITH_MFA <= minimum <= 128:
            raise TenantFileError(f"[tenant] password_min_length must be between {MIN_LENGTH_WITH_MFA} and 128")
    where = "[tenant.suspicious_ip_throttling]"
    throttling = tenant.get("suspicious_ip_throttling", {})
    _type(where, throttling, dict)
    _keys(where, throttling, _SUSPICIOUS_IP_KEYS)
    _type(f"{where} enabled", throttling.get("enabled", True), bool)
    _string_list(f"{where} shields", throttling.get("shields", []))
    _networks(f"{where} allowlist", throttling.get("allowlist", []))
    stage = throttling.get("stage", {})
    _type(f"{where} stage", stage, dict)
    for name, limits in stage.items():
        if name not in {"pre-login", "pre-user-registration"}:
            raise TenantFileError(f"{where} stage: unknown stage {name!r}")
        _type(f"{where} stage.{name}", limits, dict)
        _keys(f"{where} stage.{name}", limits, _STAGE_KEYS)
        attempts, rate = limits.get("max_attempts", 100), limits.get("rate", 864_000)
        _type(f"{where} stage.{name}.max_attempts", attempts, int)
        _type(f"{where} stage.{name}.rate", rate, int)
        if not 1 <= attempts <= 10_000 or not 1 <= rate <= 86_400_000:
            raise TenantFileError(f"{where} stage.{name}: max_attempts 1-10000, rate 1-86400000 (milliseconds)")
    where = "[tenant.breached_password_detection]"
    breached = tenant.get("breached_password_detection", {})
    _type(where, breached, dict)
    _keys(where, breached, _BREACHED_PASSWORD_KEYS)
    _type(f"{where} enabled", breached.get("enabled", False), bool)
    _string_list(f"{where} shields", breached.get("shields", []))
    if breached.get("method", "standard") != "standard":
        raise TenantFileError(f'{where} method must be "standard" (identity checks its own breached-password lists)')


def _networks(where: str, value: Any) -> None:
    _string_list(where, value)
    try:
        parse_networks(value, what=f"{where} entry")
    except ValueError as exc:
        raise TenantFileError(str(exc)) from None


def validate(data: Mapping[str, Any]) -> None:
    """Check every key and value of a parsed tenant file."""
    if unknown := set(data) - _SECTIONS:
        raise TenantFileError(f"unknown section(s) {', '.join(sorted(unknown))}")
    validate_settings("[tenant]", data.get("tenant", {}))
    for i, conn in enumerate(data.get("connections", [])):
        validate_connection(f"[[connections]] #{i + 1}", conn)
    for i, api in enumerate(data.get("apis", [])):
        validate_api(f"[[apis]] #{i + 1}", api)
    for i, client in enumerate(data.get("clients", [])):
        validate_client(f"[[clients]] #{i + 1}", client)
    seen_grants: set[tuple[str, str]] = set()
    for i, grant in enumerate(data.get("client_grants", [])):
        where = f"[[client_grants]] #{i + 1}"
        validate_client_grant(where, grant)
        if (grant["client_id"], grant["audience"]) in seen_grants:
            raise TenantFileError(f"{where}: a second grant for the same client and audience")
        seen_grants.add((grant["client_id"], grant["audience"]))
    names: set[str] = set()
    for i, rule in enumerate(data.get("rules", [])):
        where = f"[[rules]] #{i + 1}"
        validate_rule(where, rule)
        if rule["name"] in names:
            raise TenantFileError(f"{where}: duplicate rule name {rule['name']!r}")
        names.add(rule["name"])
    for i, user in enumerate(data.get("users", [])):
        where = f"[[users]] #{i + 1}"
        _keys(where, user, _USER_KEYS, {"connection", "password"})
        if not user.get("email") and not user.get("username"):
            raise TenantFileError(f"{where}: a user needs an email or a username")


def validate_settings(where: str, tenant: Mapping[str, Any]) -> None:
    """Check tenant settings (the ``[tenant]`` table, or a ``PATCH /tenants/settings`` body)."""
    _keys(where, tenant, _TENANT_KEYS)
    if tenant.get("mfa_policy", "if-enrolled") not in MFA_POLICIES:
        raise TenantFileError(f"{where} mfa_policy must be one of {', '.join(MFA_POLICIES)}")
    mfa_lifetime = tenant.get("mfa_token_lifetime", 600)
    _type(f"{where} mfa_token_lifetime", mfa_lifetime, int)
    if not 60 <= mfa_lifetime <= 3600:
        raise TenantFileError(f"{where} mfa_token_lifetime must be between 60 and 3600 seconds")
    attempts = tenant.get("brute_force_max_attempts", 10)
    _type(f"{where} brute_force_max_attempts", attempts, int)
    if not 1 <= attempts <= 100:
        raise TenantFileError(f"{where} brute_force_max_attempts must be between 1 and 100 (Auth0's range)")
    block = tenant.get("brute_force_block_seconds", 900)
    _type(f"{where} brute_force_block_seconds", block, int)
    if not 1 <= block <= 2_592_000:
        raise TenantFileError(f"{where} brute_force_block_seconds must be between 1 and 2592000 (30 days)")
    if tenant.get("webauthn_user_verification", "preferred") not in USER_VERIFICATION:
        raise TenantFileError(f"{where} webauthn_user_verification must be one of {', '.join(USER_VERIFICATION)}")
    if tenant.get("webauthn_attestation", "none") not in ATTESTATION_PREFERENCES:
        raise TenantFileError(f"{where} webauthn_attestation must be one of {', '.join(ATTESTATION_PREFERENCES)}")
    _validate_attack_protection(tenant)


def validate_connection(where: str, conn: Mapping[str, Any]) -> None:
    """Check one connection."""
    _keys(where, conn, _CONNECTION_KEYS, {"name"})
    _type(f"{where} name", conn["name"], str)
    if conn.get("strategy", "auth0") != "auth0":
        raise TenantFileError(f"{where}: only the 'auth0' (database) strategy is supported")


def validate_api(where: str, api: Mapping[str, Any]) -> None:
    """Check one API (resource server)."""
    _keys(where, api, _API_KEYS, {"identifier"})
    _type(f"{where} identifier", api["identifier"], str)
    _string_list(f"{where} scopes", api.get("scopes", []))
    if api.get("signing_alg", "RS256") not in SUPPORTED_ALGS:
        raise TenantFileError(f"{where}: signing_alg must be one of {', '.join(SUPPORTED_ALGS)}")
    lifetime = api.get("token_lifetime", 86_400)
    _type(f"{where} token_lifetime", lifetime, int)
    if not 60 <= lifetime <= _MAX_TOKEN_LIFETIME:
        raise TenantFileError(f"{where}: token_lifetime must be between 60 and {_MAX_TOKEN_LIFETIME} seconds")
    _type(f"{where} allow_offline_access", api.get("allow_offline_access", False), bool)


def validate_client(where: str, client: Mapping[str, Any]) -> None:
    """Check one client."""
    _keys(where, client, _CLIENT_KEYS, {"client_id"})
    _type(f"{where} client_id", client["client_id"], str)
    method = client.get("token_endpoint_auth_method", "client_secret_post")
    if method not in AUTH_METHODS:
        raise TenantFileError(f"{where}: token_endpoint_auth_method must be one of {', '.join(AUTH_METHODS)}")
    if method == "none" and "client_secret" in client:
        raise TenantFileError(f"{where}: a public client (token_endpoint_auth_method = 'none') has no secret")
    if "client_secret" in client:
        _type(f"{where} client_secret", client["client_secret"], str)
        if len(client["client_secret"]) < 32:
            raise TenantFileError(f"{where}: client_secret must have at least 32 characters")
    _string_list(f"{where} grant_types", client.get("grant_types", []))
    _string_list(f"{where} connections", client.get("connections", []))
    _type(f"{where} metadata", client.get("metadata", {}), dict)
    _validate_refresh_token(f"{where} refresh_token", client.get("refresh_token", {}))
    if "client_credentials" in client.get("grant_types", []) and method == "none":
        raise TenantFileError(f"{where}: a public client cannot use the client_credentials grant")
    trusted_header = client.get("is_token_endpoint_ip_header_trusted", False)
    _type(f"{where} is_token_endpoint_ip_header_trusted", trusted_header, bool)
    if trusted_header and method == "none":
        raise TenantFileError(
            f"{where}: is_token_endpoint_ip_header_trusted needs an authenticated client (not 'none')"
        )


def validate_client_grant(where: str, grant: Mapping[str, Any]) -> None:
    """Check one client grant."""
    _keys(where, grant, _CLIENT_GRANT_KEYS, {"client_id", "audience", "scope"})
    _type(f"{where} client_id", grant["client_id"], str)
    _type(f"{where} audience", grant["audience"], str)
    if not isinstance(grant["scope"], list) or not all(isinstance(item, str) and item for item in grant["scope"]):
        raise TenantFileError(f"{where} scope: expected a list of strings")


def validate_rule(where: str, rule: Mapping[str, Any]) -> None:
    """Check one rule (its handler must import)."""
    _keys(where, rule, _RULE_KEYS, {"name", "handler"})
    _type(f"{where} name", rule["name"], str)
    _type(f"{where} enabled", rule.get("enabled", True), bool)
    _type(f"{where} timeout_seconds", rule.get("timeout_seconds", 5.0), (int, float))
    if not 0 < rule.get("timeout_seconds", 5.0) <= 30:
        raise TenantFileError(f"{where}: timeout_seconds must be between 0 and 30")
    _type(f"{where} config", rule.get("config", {}), dict)
    try:
        load_handler(rule["handler"])
    except RuleLoadError as exc:
        raise TenantFileError(f"{where}: {exc}") from exc


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
    for key in _TENANT_KEYS & set(tenant):
        setattr(row, key, tenant[key] if tenant[key] != "" else None)
    row.updated_at = utcnow()
    session.add(row)


async def apply_connection(session: AsyncSession, conn: Mapping[str, Any], report: ApplyReport) -> ConnectionRow:
    """Create the connection unless it exists (matched by name)."""
    row = (await session.execute(select(ConnectionRow).where(col(ConnectionRow.name) == conn["name"]))).scalar()
    if row is None:
        row = ConnectionRow(name=conn["name"], strategy=conn.get("strategy", "auth0"))
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
    row.token_endpoint_auth_method = client.get("token_endpoint_auth_method", "client_secret_post")
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
    stored = {key: policy[key] for key in _REFRESH_TOKEN_KEYS & set(policy)}
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
