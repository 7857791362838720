"""``/api/v2/tenants/settings``, ``/attack-protection/*`` and ``/rules`` (API.md §6): tenant-wide settings."""

from __future__ import annotations

from typing import Any

from litestar import get, patch
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, JSONBody
from msgspec import UNSET, Struct, UnsetType
from sqlalchemy.ext.asyncio import AsyncSession

from identity import tenant_defaults as defaults
from identity.accounts.attack import suspicious_ip_settings
from identity.management.base import config_admin, sent_members
from identity.management.errors import ERROR_RESPONSES, bad_request
from identity.management.paging import DEFAULT_PER_PAGE, Page, PerPage, one_page
from identity.store.models import RuleRow
from identity.web.deps import Services

__all__ = ["SETTINGS_HANDLERS"]


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


@get("/tenants/settings", responses=ERROR_RESPONSES, opt={"scope": "read:tenant_settings"}, summary="Tenant settings")
async def get_tenant_settings(
    services: NamedDependency[Services], db: NamedDependency[AsyncSession]
) -> TenantSettingsOut:
    """The tenant's settings."""
    return _settings_out(await config_admin(services, db).settings())


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
    return _settings_out(await config_admin(services, db).update_settings(sent_members(data)))


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
    return _brute_force(await config_admin(services, db).settings())


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
    changes = {names.get(field, "brute_force_" + field): value for field, value in sent_members(data).items()}
    changes.pop("brute_force_shields", None)
    return _brute_force(await config_admin(services, db).update_settings(changes))


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
    return _throttling(await config_admin(services, db).settings())


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
    admin = config_admin(services, db)
    stored = dict((await admin.settings())["suspicious_ip_throttling"] or {})
    stored.update(sent_members(data))
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
    return _breached(await config_admin(services, db).settings())


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
    admin = config_admin(services, db)
    stored = dict((await admin.settings())["breached_password_detection"] or {})
    stored.update(sent_members(data))
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
    services: NamedDependency[Services],
    db: NamedDependency[AsyncSession],
    enabled: FromQuery[bool | None] = None,
    page: Page = 0,
    per_page: PerPage = DEFAULT_PER_PAGE,
    include_totals: FromQuery[bool] = False,
) -> list[RuleOut] | dict[str, Any]:
    """The rule pipeline, in order, a page at a time."""
    found = [
        _rule(row) for row in await config_admin(services, db).rules() if enabled is None or row.enabled == enabled
    ]
    return one_page("rules", found, page, per_page, include_totals)


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
    return _rule(await config_admin(services, db).set_rule_enabled(rule, data.enabled))


SETTINGS_HANDLERS = [
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
