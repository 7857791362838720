"""``grant_type=client_credentials`` (RFC 6749 §4.4; Auth0 machine-to-machine, ``shared/API.md`` §1.8).

A confidential client gets an access token for an API on its own behalf, and only through a **client grant** that
names the client, the API (audience) and the scopes it may have. There is no user: the subject is
``<client_id>@clients``, no ID token and no refresh token are issued, and rules do not run. Auth0 runs
"credentials-exchange" Actions instead; here a `CredentialsExchangeHook` can deny the exchange or add claims.

Order of checks: audience, then client grant, then scopes; each failure is the access_denied text Auth0 answers.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from identity.oauth2.errors import AccessDenied, InvalidRequest, UnauthorizedClient
from identity.oauth2.interfaces import Api, Client, ClientGrantStore, ClientTokenIssuer, TenantStore, TokenResponse
from identity.oauth2.requests import TokenRequest

__all__ = ["ClientCredentialsGrant", "CredentialsExchange", "CredentialsExchangeHook", "not_authorized"]


@dataclass(frozen=True)
class CredentialsExchange:
    """What a credentials-exchange hook sees: which client asks for which API and scopes."""

    client: Client
    api: Api
    scopes: tuple[str, ...]
    client_ip: str | None


CredentialsExchangeHook = Callable[[CredentialsExchange], Awaitable[Mapping[str, Any] | None]]
"""Runs before the token is signed; raises `AccessDenied` to refuse, or returns custom claims to add."""


def not_authorized(client_id: str, audience: str) -> AccessDenied:
    """Auth0's answer when the client has no grant for the API (API.md §1.8).

    Auth0 puts double quotes around the names; RFC 6749 §5.2 forbids them in ``error_description``, so the names are
    quoted with single quotes here (a documented divergence).
    """
    return AccessDenied(
        f"Client '{client_id}' is not authorized to access resource server '{audience}'. "
        "You need to create a 'client-grant' associated to this API."
    )


class ClientCredentialsGrant:
    """``grant_type=client_credentials`` through client grants."""

    GRANT_TYPE: ClassVar[str] = "client_credentials"

    def __init__(
        self,
        tenant: TenantStore,
        grants: ClientGrantStore,
        issuer: ClientTokenIssuer,
        hooks: Sequence[CredentialsExchangeHook] = (),
    ) -> None:
        self.tenant = tenant
        self.grants = grants
        self.issuer = issuer
        self.hooks = tuple(hooks)

    async def handle(self, request: TokenRequest, client: Client) -> TokenResponse:
        """Issue a token for the requested audience within the client grant's scopes."""
        if client.token_endpoint_auth_method == "none" or client.secret_hash is None:
            # Public clients cannot keep a secret, so they cannot act on their own behalf (API.md §1.8).
            raise UnauthorizedClient(f"Grant type '{self.GRANT_TYPE}' not allowed for the client.")
        audience = request.get("audience")
        if audience is None:
            # The tenant's default audience does not apply to client credentials (API.md §1.8).
            raise InvalidRequest("missing audience parameter")
        api = await self.tenant.api(audience)
        if api is None or api.requires_mfa:
            raise AccessDenied(f"Service not found: {audience}")
        grant = await self.grants.client_grant(client.client_id, audience)
        if grant is None:
            raise not_authorized(client.client_id, audience)
        # The grant's scopes may name scopes the API no longer has: only the API's current scopes are granted.
        allowed = tuple(scope for scope in grant.scopes if scope in set(api.scopes))
        requested = request.scopes
        if requested is None:
            scopes = allowed
        else:
            if missing := [scope for scope in requested if scope not in allowed]:
                raise AccessDenied(f"Client has not been granted scopes: {' '.join(missing)}")
            scopes = tuple(requested)
        claims: dict[str, Any] = {}
        exchange = CredentialsExchange(client=client, api=api, scopes=scopes, client_ip=request.client_ip)
        for hook in self.hooks:
            claims.update(await hook(exchange) or {})
        return await self.issuer.issue_client_token(client, api, scopes, claims)
