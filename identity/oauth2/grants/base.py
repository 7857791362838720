"""The grant contract: decide whether to issue, and for whom; the issuer mints."""

from __future__ import annotations

from typing import ClassVar, Protocol

from identity.oauth2.interfaces import Client, TokenResponse
from identity.oauth2.requests import TokenRequest

__all__ = ["Grant"]


class Grant(Protocol):
    """One grant type of the token endpoint."""

    GRANT_TYPE: ClassVar[str]

    async def handle(self, request: TokenRequest, client: Client) -> TokenResponse:
        """Validate the request for an authenticated client allowed to use this grant, and issue tokens.

        Raises:
            OAuthError: any protocol error, rendered as is.
        """
        ...
