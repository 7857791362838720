"""``/api/v2/guardian/factors`` and ``/guardian/policies`` (API.md §6): the tenant's MFA factors and policy.

Factors. identity always offers TOTP (``otp``), WebAuthn security keys and passkeys (``webauthn-roaming``,
``webauthn-platform``) and the recovery code; ``email`` exactly when a mail server is configured
(``IDENTITY_SMTP_URL``); and has no SMS, push or Duo factor. The token endpoint, the MFA API and the enrollment pages
consult no per-factor switch, so ``PUT /guardian/factors/{name}`` accepts exactly the state in force (and answers it,
as Auth0 does) and refuses the other with a 400 that says why: it never answers "disabled" for a factor that still
works.

Policies. Auth0's ``["all-applications"]`` (MFA on every login) is ``mfa_policy = "always"``. Auth0's ``[]`` (no
policy forces MFA) describes both ``if-enrolled`` and ``never``: ``[]`` turns ``always`` into ``if-enrolled``, the
default, and leaves the others as they are. It never turns enrolled users' factors off (``never``): a tool that
writes Auth0's default ``[]`` must not disable MFA; ``PATCH /tenants/settings {"mfa_policy": "never"}`` does that,
explicitly. ``confidence-score`` (adaptive MFA) is not supported.
"""

from __future__ import annotations

from litestar import get, put
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody
from msgspec import Struct
from sqlalchemy.ext.asyncio import AsyncSession

from identity.management.base import config_admin
from identity.management.errors import ERROR_RESPONSES, bad_request, not_supported
from identity.web.deps import Services

__all__ = ["FACTORS", "GUARDIAN_HANDLERS"]

FACTORS = {
    "otp": True,
    "webauthn-roaming": True,
    "webauthn-platform": True,
    "recovery-code": True,
    "sms": False,
    "push-notification": False,
    "email": False,
    "duo": False,
}
"""Auth0's factor names and whether identity offers each (no per-factor switch; ``email``: see `_offered`)."""

_WHY = {
    True: "identity always offers this factor (the token endpoint, the MFA API and the enrollment pages have no "
    "per-factor switch); to ask for no second factor at all, PATCH /tenants/settings mfa_policy 'never'",
    False: "identity has no such factor (it sends no SMS or push notification and has no Duo integration)",
}
_NO_MAIL = "emailed codes need a mail server: set IDENTITY_SMTP_URL and IDENTITY_SMTP_FROM"


def _offered(services: Services) -> dict[str, bool]:
    return {**FACTORS, "email": services.mailer is not None}


_ALL_APPLICATIONS = "all-applications"


class Factor(Struct):
    """A factor and whether it is enabled (Auth0's ``GET /guardian/factors`` item)."""

    name: str
    enabled: bool
    trial_expired: bool = False


class FactorState(Struct, forbid_unknown_fields=True):
    """``PUT /guardian/factors/{name}`` body and answer."""

    enabled: bool


@get(
    "/guardian/factors",
    opt={"scope": "read:guardian_factors"},
    responses=ERROR_RESPONSES,
    summary="The MFA factors and whether each is enabled",
)
async def list_factors(services: NamedDependency[Services]) -> list[Factor]:
    """Every factor Auth0 names that identity knows, enabled or not."""
    return [Factor(name=name, enabled=enabled) for name, enabled in _offered(services).items()]


@put(
    "/guardian/factors/{name:str}",
    opt={"scope": "update:guardian_factors"},
    responses=ERROR_RESPONSES,
    status_code=200,
    summary="Enable or disable an MFA factor (only its state in force is accepted)",
)
async def set_factor(
    name: FromPath[str], data: JSONBody[FactorState], services: NamedDependency[Services]
) -> FactorState:
    """Accept the factor's state in force; refuse to change it, saying why (there is no per-factor switch)."""
    factors = _offered(services)
    if name not in factors:
        raise bad_request(
            f"Path validation error: 'name must be one of {', '.join(factors)}' on property name.", "invalid_uri"
        )
    offered = factors[name]
    if data.enabled != offered:
        why = _NO_MAIL if name == "email" and not offered else _WHY[offered]
        raise not_supported("enabled", f"{'disabling' if offered else 'enabling'} {name}: {why}")
    return FactorState(enabled=offered)


def _policies(mfa_policy: str) -> list[str]:
    return [_ALL_APPLICATIONS] if mfa_policy == "always" else []


@get(
    "/guardian/policies",
    opt={"scope": "read:mfa_policies"},
    responses=ERROR_RESPONSES,
    summary="The MFA policy (Auth0's list form of mfa_policy)",
)
async def get_policies(services: NamedDependency[Services], db: NamedDependency[AsyncSession]) -> list[str]:
    """``["all-applications"]`` when every login needs MFA, else ``[]``."""
    return _policies((await config_admin(services, db).settings())["mfa_policy"])


@put(
    "/guardian/policies",
    opt={"scope": "update:mfa_policies"},
    responses=ERROR_RESPONSES,
    status_code=200,
    summary='Set the MFA policy: [] or ["all-applications"]',
)
async def set_policies(
    services: NamedDependency[Services], db: NamedDependency[AsyncSession], data: JSONBody[list[str]]
) -> list[str]:
    """``["all-applications"]`` sets ``mfa_policy = "always"``; ``[]`` turns ``always`` into ``if-enrolled``."""
    if unknown := [policy for policy in data if policy not in (_ALL_APPLICATIONS, "confidence-score")]:
        raise bad_request(
            f"Payload validation error: 'unknown policy {unknown[0]!r}: use [] or [\"all-applications\"]'."
        )
    if "confidence-score" in data:
        raise not_supported("confidence-score", "identity has no adaptive (risk-based) MFA")
    admin = config_admin(services, db)
    current = (await admin.settings())["mfa_policy"]
    wanted = "always" if data else ("if-enrolled" if current == "always" else current)
    if wanted != current:
        current = (await admin.update_settings({"mfa_policy": wanted}))["mfa_policy"]
    return _policies(current)


GUARDIAN_HANDLERS = [list_factors, set_factor, get_policies, set_policies]
