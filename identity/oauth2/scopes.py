"""Scope semantics of the password grants (Auth0, ``shared/API.md`` §1.1).

A password is treated as "full access": with no API scope asked, the token carries every scope of the audience
API; asked scopes restrict the grant to the subset the API knows (unknown ones are dropped); asking for ``openid``
and nothing else grants all standard OIDC scopes.
"""

from __future__ import annotations

from collections.abc import Sequence

from identity.oauth2.interfaces import Api

__all__ = ["OIDC_SCOPES", "STANDARD_CLAIM_SCOPES", "resolve_scopes"]

STANDARD_CLAIM_SCOPES = ("openid", "profile", "email", "address", "phone")
OIDC_SCOPES = frozenset((*STANDARD_CLAIM_SCOPES, "offline_access"))


def resolve_scopes(requested: Sequence[str] | None, api: Api | None) -> tuple[str, ...]:
    """The scopes granted for ``requested`` (``None`` when ``scope`` was omitted) on ``api``.

    ``offline_access`` is not granted here: it depends on refresh-token policy, which the caller applies.
    """
    api_scopes = api.scopes if api is not None else ()
    asked = tuple(requested or ())
    oidc = tuple(scope for scope in asked if scope in OIDC_SCOPES and scope != "offline_access")
    if asked == ("openid",):
        # Auth0: a request for `openid` alone gets every standard claim scope (and, having no API scope, all
        # of the API's scopes). Any other scope makes the request explicit.
        oidc = STANDARD_CLAIM_SCOPES
    asked_api = [scope for scope in asked if scope not in OIDC_SCOPES]
    if not asked_api:
        granted_api = api_scopes
    else:
        known = set(api_scopes)
        granted_api = tuple(scope for scope in asked_api if scope in known)
    return (*oidc, *granted_api)
