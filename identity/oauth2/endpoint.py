"""The token endpoint, read as RFC 6749 §3.2 and §5 describe it."""

from __future__ import annotations

from collections.abc import Mapping

from identity.oauth2.client_auth import authenticate_client
from identity.oauth2.errors import UnauthorizedClient, UnsupportedGrantType
from identity.oauth2.grants.base import Grant
from identity.oauth2.interfaces import TenantStore, TokenObserver, TokenResponse
from identity.oauth2.requests import TokenRequest

__all__ = ["TokenEndpoint"]


class TokenEndpoint:
    """Dispatches a token request to its grant after authenticating the client."""

    def __init__(
        self,
        grants: Mapping[str, Grant],
        tenant: TenantStore,
        *,
        challenge_realm: str,
        observer: TokenObserver | None = None,
    ) -> None:
        self.grants = grants
        self.tenant = tenant
        self.challenge_realm = challenge_realm
        self.observer = observer

    async def handle(self, request: TokenRequest) -> TokenResponse:
        """Answer one token request, or raise the `OAuthError` to render."""
        grant_type = request.grant_type
        grant = self.grants.get(grant_type)
        if grant is None:
            raise UnsupportedGrantType()
        client = await authenticate_client(request, self.tenant, challenge_realm=self.challenge_realm)
        request = request.for_client(client)
        if self.observer is not None:
            self.observer.client_authenticated(client, request)
        if grant_type not in client.grant_types:
            raise UnauthorizedClient(f"Grant type '{grant_type}' not allowed for the client.")
        return await grant.handle(request, client)
