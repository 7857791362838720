"""Members of Auth0's request bodies that identity has no setting for: accepted only with the value in force.

Auth0's SDKs and deploy tools send members identity does not make configurable (a connection's ``options``, a
client's ``app_type`` or ``jwt_configuration``, a resource server's ``token_dialect``...). Each is accepted when it
asks for what identity does anyway, and answered with that value; any other value is refused with a 400 that says
why it is not supported (``operation_not_supported``), never taken silently. In particular a member that would
weaken security (a third-party client, an HS256 signing secret, brute-force protection off for one connection)
is refused, as is one that would promise protection identity does not give.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from msgspec import UNSET

from identity.management.errors import ManagementError, bad_request

__all__ = [
    "check_client",
    "check_connection",
    "check_resource_server",
    "check_user",
    "client_fields",
    "connection_options",
    "in_force",
    "resource_server_fields",
]

_NO_SIGNUP = "identity has no self-service signup: users are created by the API, the CLI or the tenant file"
_OPTIONAL_USERNAME = "a username is optional in every identity connection (a user needs an email or a username)"
_TENANT_BRUTE_FORCE = "brute-force protection is tenant-wide here: PATCH /attack-protection/brute-force-protection"
_PASSWORD_POLICY = (
    "every connection uses identity's one password policy (NIST SP 800-63B: at least password_min_length "
    "characters, common and breached passwords refused), changed with PATCH /tenants/settings"
)


def _refused(field: str, value: Any, why: str) -> ManagementError:
    shown = json.dumps(value) if not isinstance(value, str) else value
    return bad_request(
        f"Payload validation error: '{field} {shown} is not supported: {why}' on property {field}.",
        "operation_not_supported",
    )


def in_force(field: str, sent: Any, actual: Any, why: str) -> None:
    """Accept ``sent`` (or its absence) only if it is ``actual``, what identity does; else a 400 saying ``why``."""
    if sent is UNSET:
        return
    if isinstance(actual, bool) and not isinstance(sent, bool):
        raise bad_request(
            f"Payload validation error: 'Expected `bool`, got `{type(sent).__name__}`' on property {field}."
        )
    if sent != actual or isinstance(sent, bool) != isinstance(actual, bool):  # 1 is not true here
        raise _refused(field, sent, why)


# --- connections ------------------------------------------------------------------------------------------------


def connection_options(*, brute_force_enabled: bool) -> dict[str, Any]:
    """The options in force for every connection."""
    return {"brute_force_protection": brute_force_enabled, "disable_signup": True, "requires_username": False}


def check_connection(name: str, options: Any, realms: Any, *, brute_force_enabled: bool) -> None:
    """Refuse connection ``options`` and ``realms`` that ask for something identity does not do."""
    in_force("realms", realms, [name], "a connection's only realm is its name")
    if options is UNSET:
        return
    if not isinstance(options, Mapping):
        raise bad_request("Payload validation error: 'Expected `object`' on property options.")
    actual = connection_options(brute_force_enabled=brute_force_enabled)
    why = {"brute_force_protection": _TENANT_BRUTE_FORCE, "disable_signup": _NO_SIGNUP}
    why["requires_username"] = _OPTIONAL_USERNAME
    for key, value in options.items():
        if key == "passwordPolicy":
            raise _refused("options.passwordPolicy", value, _PASSWORD_POLICY)
        if key not in actual:
            raise _refused(f"options.{key}", value, "identity's database connections have no such option")
        in_force(f"options.{key}", value, actual[key], why[key])


# --- clients ----------------------------------------------------------------------------------------------------

_MACHINE_GRANTS = frozenset({"client_credentials"})


def client_fields(entry: Mapping[str, Any], *, id_token_lifetime: int) -> dict[str, Any]:
    """What a client is, by Auth0's descriptive members (derived from its configuration, never stored)."""
    public = entry["token_endpoint_auth_method"] == "none"
    machine = set(entry["grant_types"]) <= _MACHINE_GRANTS
    return {
        "app_type": "native" if public else ("non_interactive" if machine else "regular_web"),
        "is_first_party": True,
        "oidc_conformant": True,
        "callbacks": [],
        "jwt_configuration": {"alg": "RS256", "lifetime_in_seconds": id_token_lifetime},
    }


def check_client(sent: Mapping[str, Any], auth_method: str, *, id_token_lifetime: int) -> None:
    """Refuse descriptive client members that contradict the client or ask for what identity does not do.

    ``sent`` holds the members the body set (``UNSET`` ones left out); ``auth_method`` is the client's
    ``token_endpoint_auth_method`` after the change.
    """
    in_force(
        "is_first_party",
        sent.get("is_first_party", UNSET),
        True,
        "every client is first-party (Auth0 never lets a third-party client use the password or MFA grants)",
    )
    in_force("oidc_conformant", sent.get("oidc_conformant", UNSET), True, "identity speaks OIDC only")
    in_force(
        "callbacks",
        sent.get("callbacks", UNSET),
        [],
        "identity has no redirect-based flow (no /authorize), so no callback URL would ever be used",
    )
    app_type = sent.get("app_type", UNSET)
    kinds = ("native",) if auth_method == "none" else ("regular_web", "non_interactive")
    if app_type is not UNSET and app_type not in kinds:
        why = (
            "a public client (token_endpoint_auth_method none) is a native app: identity has no browser flow and no "
            "CORS, so no single-page app"
            if auth_method == "none"
            else "a client with a secret is regular_web or non_interactive"
        )
        raise _refused("app_type", app_type, why)
    _check_jwt_configuration(sent.get("jwt_configuration", UNSET), id_token_lifetime)


def _check_jwt_configuration(configuration: Any, id_token_lifetime: int) -> None:
    if configuration is UNSET:
        return
    if not isinstance(configuration, Mapping):
        raise bad_request("Payload validation error: 'Expected `object`' on property jwt_configuration.")
    for key, value in configuration.items():
        where = f"jwt_configuration.{key}"
        if key == "alg":
            why = "ID tokens are signed RS256 with identity's keys (HS256 would need the client secret in clear)"
            in_force(where, value, "RS256", why)
        elif key == "lifetime_in_seconds":
            why = f"the ID token lifetime is the server's ({id_token_lifetime} s), the same for every client"
            in_force(where, value, id_token_lifetime, why)
        else:
            raise _refused(where, value, "identity has no such ID token setting")


# --- resource servers -------------------------------------------------------------------------------------------


def resource_server_fields(token_lifetime: int) -> dict[str, Any]:
    """What a resource server is, by Auth0's members identity has no setting for."""
    return {
        "token_lifetime_for_web": token_lifetime,
        "token_dialect": "access_token",
        "enforce_policies": False,
        "skip_consent_for_verifiable_first_party_clients": True,
    }


def check_resource_server(sent: Mapping[str, Any], token_lifetime: int) -> None:
    """Refuse resource-server members that ask for what identity does not do (``token_lifetime``: after the change)."""
    if sent.get("signing_secret", UNSET) is not UNSET:
        raise _refused(
            "signing_secret",
            "(a secret)",
            "identity signs every token with its own asymmetric keys (RS256 or ES256): no HS256, no shared secret",
        )
    actual = resource_server_fields(token_lifetime)
    why = {
        "token_lifetime_for_web": "identity has no browser-based flow: every token of the API lives token_lifetime "
        "seconds (send the same value or leave it out)",
        "token_dialect": "identity issues Auth0's access_token dialect only (no RFC 9068 profile, no permissions "
        "claim)",
        "enforce_policies": "RBAC is not supported: the scopes a client gets come from its client grant",
        "skip_consent_for_verifiable_first_party_clients": "identity has no consent screen: first-party clients "
        "never see one",
    }
    for key, value in actual.items():
        in_force(key, sent.get(key, UNSET), value, why[key])


# --- users ------------------------------------------------------------------------------------------------------


def check_user(sent: Mapping[str, Any]) -> None:
    """Refuse a phone number: Auth0 takes one only for users of SMS connections, and identity has none."""
    why = "only users of SMS connections have one, and identity's connections are databases (strategy auth0)"
    in_force("phone_number", sent.get("phone_number", UNSET), None, why)
    in_force("phone_verified", sent.get("phone_verified", UNSET), False, why)
