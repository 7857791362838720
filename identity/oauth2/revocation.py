"""The revocation endpoint, read as RFC 7009 §2 describes it, for refresh tokens.

Access tokens are JWTs that resource servers check on their own until they expire: only refresh tokens are revocable
here, and revoking one revokes its whole family (every token rotated from the same login).
"""

from __future__ import annotations

from identity.oauth2.client_auth import authenticate_client
from identity.oauth2.interfaces import RevocableTokens, TenantStore, Transaction
from identity.oauth2.requests import TokenRequest

__all__ = ["REVOKED", "RevocationEndpoint"]

REVOKED = "revoked"
"""The reason recorded on a family revoked by its client (a reused token records ``reuse``)."""


class RevocationEndpoint:
    """Revokes a refresh token's family for the client the token was issued to."""

    def __init__(
        self, tenant: TenantStore, tokens: RevocableTokens, transaction: Transaction, *, challenge_realm: str
    ) -> None:
        self.tenant = tenant
        self.tokens = tokens
        self.transaction = transaction
        self.challenge_realm = challenge_realm

    async def handle(self, request: TokenRequest) -> None:
        """Revoke the family of the request's ``token``, or raise the `OAuthError` to render.

        The client authenticates as at the token endpoint (RFC 7009 §2.1). An unknown token, or one issued to
        another client, is not an error: the caller gets the same empty 200 (§2.2), so the endpoint tells nothing
        about tokens it does not own.
        """
        client = await authenticate_client(request, self.tenant, challenge_realm=self.challenge_realm)
        token = request.require("token")
        await self.transaction.write()
        stored = await self.tokens.find(token)
        if stored is not None and stored.client_id == client.client_id:
            await self.tokens.revoke_family(stored.family_id, REVOKED)
        await self.transaction.commit()
