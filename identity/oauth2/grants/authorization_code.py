"""``grant_type=authorization_code`` for the codes of the first-party apps endpoint.

RFC 6749 §4.1.3, RFC 7636 §4.5, draft-ietf-oauth-first-party-apps-03 §6.

Parameters: ``code``, ``code_verifier`` and the client's authentication; no ``redirect_uri``, since none took part
(one sent anyway is ignored). The tokens are those the password grant would have issued for the same login (same
audience and scope rules, rules' claims, refresh-token policy) with the ``amr``, ``acr`` and ``auth_time`` of what
was checked at the challenge endpoint.

Order of checks: nothing is written before the code is known to be this client's, live and matched by the verifier,
so a stranger holding only the code can neither spend it nor use it. A code comes back after it was redeemed, with
its verifier: someone holds both secrets, and the refresh-token family issued for it is revoked (RFC 6749 §4.1.2).
"""

from __future__ import annotations

from dataclasses import replace
from typing import ClassVar

from identity.clock import Clock
from identity.oauth2 import pkce
from identity.oauth2.errors import InvalidGrant, Unauthorized
from identity.oauth2.first_party import AUTHORIZATION_CODE, AuthorizationCodeStore, IssuedCode, WriteTransaction
from identity.oauth2.interfaces import (
    Client,
    GrantResult,
    RefreshTokenStore,
    TenantStore,
    TokenIssuer,
    TokenResponse,
    UserLookup,
)
from identity.oauth2.policy import permitted_scopes
from identity.oauth2.requests import TokenRequest

__all__ = ["INVALID_CODE", "INVALID_VERIFIER", "AuthorizationCodeGrant"]

INVALID_CODE = "Invalid authorization code"
INVALID_VERIFIER = "Failed to verify code verifier"


class AuthorizationCodeGrant:
    """``grant_type=authorization_code``."""

    GRANT_TYPE: ClassVar[str] = AUTHORIZATION_CODE

    def __init__(
        self,
        tenant: TenantStore,
        codes: AuthorizationCodeStore,
        users: UserLookup,
        refresh_tokens: RefreshTokenStore,
        issuer: TokenIssuer,
        clock: Clock,
        transaction: WriteTransaction | None = None,
    ) -> None:
        self.tenant = tenant
        self.codes = codes
        self.users = users
        self.refresh_tokens = refresh_tokens
        self.issuer = issuer
        self.clock = clock
        self.transaction = transaction

    async def handle(self, request: TokenRequest, client: Client) -> TokenResponse:
        """Redeem the code once, with its PKCE verifier, and issue."""
        presented = request.require("code")
        verifier = request.require("code_verifier")
        code = await self.codes.find_code(presented)
        if code is None or code.client_id != client.client_id:
            raise InvalidGrant(INVALID_CODE)
        verified = pkce.verify(verifier, code.code_challenge)
        if code.consumed:
            if verified and code.family_id is not None:
                await self._write()
                await self.refresh_tokens.revoke_family(code.family_id, "code_reuse")
            raise InvalidGrant(INVALID_CODE)
        if code.expires_at <= self.clock.now():
            raise InvalidGrant(INVALID_CODE)
        if not verified:
            raise InvalidGrant(INVALID_VERIFIER)
        result = await self._result(code, client)
        await self._write()
        if not await self.codes.redeem(code):
            raise InvalidGrant(INVALID_CODE)  # a concurrent request redeemed it first
        if "offline_access" in permitted_scopes(result.scopes, client, result.api):
            # The family is minted here rather than by the issuer, so the code can name it (for reuse).
            refresh_token = await self.refresh_tokens.issue(result)
            stored = await self.refresh_tokens.find(refresh_token)
            if stored is not None:
                await self.codes.remember_family(code, stored.family_id)
            result = replace(result, refresh_token=refresh_token)
        return await self.issuer.issue(result)

    async def _write(self) -> None:
        if self.transaction is not None:
            await self.transaction.write()

    async def _result(self, code: IssuedCode, client: Client) -> GrantResult:
        """What the code stands for, with the user as stored now (a deleted user's code is no code)."""
        user = await self.users.by_id(code.user_id)
        if user is None:
            raise InvalidGrant(INVALID_CODE)
        if user.blocked:
            raise Unauthorized("user is blocked")
        connection = await self.tenant.connection(code.connection)
        api = await self.tenant.api(code.audience) if code.audience is not None else None
        if connection is None or (code.audience is not None and api is None):
            raise InvalidGrant(INVALID_CODE)
        return GrantResult(
            grant_type=AUTHORIZATION_CODE,
            client=client,
            user=user,
            connection=connection,
            api=api,
            audience=code.audience,
            scopes=code.scopes,
            amr=code.amr,
            access_claims=code.access_claims,
            id_claims=code.id_claims,
            app_metadata=code.app_metadata,
            acr=code.acr,
            auth_time=code.auth_time,
        )
