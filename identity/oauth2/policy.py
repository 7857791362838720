"""What may end up in an issued token, whoever asked for it: the last word after grants and rules.

Rules are operator code, and a rule can change ``api.access_token.scopes`` or the claim dictionaries directly instead
of going through ``add_scope`` and ``set_custom_claim``. Whatever the rules returned is therefore re-checked here,
and the token issuer checks again before it signs (issue 12):

- scopes: only the API's own scopes and the standard OpenID Connect ones; ``offline_access`` only when the API allows
  offline access and the client has the ``refresh_token`` grant;
- custom claims: only URL-namespaced names that no registered or issuer-owned claim uses, with JSON values.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from typing import Any

from identity.oauth2.interfaces import Api, Client
from identity.oauth2.scopes import STANDARD_CLAIM_SCOPES

__all__ = [
    "REGISTERED_CLAIMS",
    "claim_problem",
    "offline_access_allowed",
    "permitted_claims",
    "permitted_scopes",
]

logger = logging.getLogger("identity.oauth2.policy")

# Claims nobody but the issuer sets: JWT registered claims and those the issuer owns (RFC 7519 §4.1, OIDC Core §2,
# §5.1, RFC 8176, RFC 9068, Auth0's gty/azp/permissions/org_id).
REGISTERED_CLAIMS = frozenset(
    {
        "iss", "sub", "aud", "exp", "nbf", "iat", "jti", "azp", "scope", "scp", "gty", "amr", "acr", "auth_time",
        "nonce", "at_hash", "c_hash", "s_hash", "sid", "client_id", "cnf", "permissions", "org_id", "org_name",
        "roles", "groups", "entitlements", "may_act", "act", "typ", "kid", "alg", "jku", "jwk", "x5u", "x5c",
    }
)  # fmt: skip


def offline_access_allowed(client: Client, api: Api | None) -> bool:
    """A refresh token needs an API that allows offline access and a client with the ``refresh_token`` grant."""
    return api is not None and api.allow_offline_access and "refresh_token" in client.grant_types


def permitted_scopes(scopes: Iterable[Any], client: Client, api: Api | None) -> tuple[str, ...]:
    """``scopes`` (in order, once each) restricted to what the API and the client allow."""
    allowed = {*STANDARD_CLAIM_SCOPES, *(api.scopes if api is not None else ())}
    if offline_access_allowed(client, api):
        allowed.add("offline_access")
    kept: dict[str, None] = {}
    for scope in scopes:
        if isinstance(scope, str) and scope in allowed:
            kept[scope] = None
    return tuple(kept)


def claim_problem(key: Any, value: Any) -> str | None:
    """Why ``key: value`` may not be a custom claim, or ``None`` when it may."""
    if not isinstance(key, str) or not key.startswith(("https://", "http://")):
        return f"custom claim {key!r} must be namespaced with a URL (e.g. 'https://example.com/{key}')"
    if key in REGISTERED_CLAIMS:
        return f"custom claim {key!r} would overwrite a registered claim"
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError, RecursionError):
        return f"custom claim {key!r} has a value that is not JSON"
    return None


def permitted_claims(claims: Any, *, source: str = "rules") -> dict[str, Any]:
    """The custom claims of ``claims`` that may be issued; the others are dropped (and logged, not their values)."""
    if not isinstance(claims, Mapping):
        if claims:
            logger.warning("%s returned claims that are not a mapping: dropped", source)
        return {}
    kept: dict[str, Any] = {}
    for key, value in claims.items():
        problem = claim_problem(key, value)
        if problem is None:
            kept[key] = value
        else:
            logger.warning("%s: %s: dropped", source, problem)
    return kept
