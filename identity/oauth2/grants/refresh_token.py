"""``grant_type=refresh_token`` (RFC 6749 §6; Auth0 rotation and reuse detection, API.md §1.7).

The new access token reflects the user as stored now (a deleted or blocked user gets ``invalid_grant``); rules run
with ``protocol = oauth2-refresh-token`` before the presented token is retired, so a denial costs the client nothing,
and see ``authentication.methods[].timestamp`` as the time of the family's original authentication.
``scope`` may narrow the original grant, never widen it.

Step-up (RFC 9470): ``max_age`` (seconds) refuses a family whose original authentication is older, with
``invalid_grant``, so the app signs the user in again; the token stays usable without it. A family that began after a
second factor (``amr`` has ``mfa``) keeps its ``acr`` and its original ``auth_time`` in every refreshed token.
"""

from __future__ import annotations

from dataclasses import replace
from typing import ClassVar

from identity.clock import Clock
from identity.oauth2.errors import InvalidGrant, InvalidScope
from identity.oauth2.first_party import MULTI_FACTOR, checked_max_age
from identity.oauth2.interfaces import (
    Client,
    GrantResult,
    RefreshTokenStore,
    RulesPipeline,
    StoredRefreshToken,
    TenantStore,
    TokenIssuer,
    TokenResponse,
    UserLookup,
)
from identity.oauth2.requests import TokenRequest

__all__ = ["DELETED_USER", "TOO_OLD", "UNKNOWN_REFRESH_TOKEN", "RefreshTokenGrant"]

UNKNOWN_REFRESH_TOKEN = "Unknown or invalid refresh token."
DELETED_USER = "The refresh_token was generated for a user who doesn't exist anymore."
TOO_OLD = "The refresh token's authentication is older than max_age"


class RefreshTokenGrant:
    """``grant_type=refresh_token``."""

    GRANT_TYPE: ClassVar[str] = "refresh_token"
    PROTOCOL: ClassVar[str] = "oauth2-refresh-token"

    def __init__(
        self,
        tenant: TenantStore,
        users: UserLookup,
        refresh_tokens: RefreshTokenStore,
        issuer: TokenIssuer,
        clock: Clock,
        rules: RulesPipeline | None = None,
    ) -> None:
        self.tenant = tenant
        self.users = users
        self.refresh_tokens = refresh_tokens
        self.issuer = issuer
        self.clock = clock
        self.rules = rules

    async def handle(self, request: TokenRequest, client: Client) -> TokenResponse:
        """Exchange a refresh token for new tokens."""
        presented = request.require("refresh_token")
        max_age = checked_max_age(request.get("max_age"))
        stored = await self._live(presented, client)
        scopes = self._narrowed(stored.scopes, request.scopes)
        policy = client.refresh_token
        successor: str | None = None
        if policy.rotating and not stored.newest:
            # A retired token: the immediately previous one within leeway gets the same successor; anything
            # else is a replay of a stolen copy, and the whole family dies.
            successor = await self.refresh_tokens.successor_within_leeway(stored, policy)
            if successor is None:
                await self.refresh_tokens.revoke_family(stored.family_id, "reuse")
                raise InvalidGrant(UNKNOWN_REFRESH_TOKEN)
        if max_age is not None and not self._recent(stored, max_age):
            raise InvalidGrant(TOO_OLD)  # after reuse detection: a replayed token still kills its family

        result = await self._result(stored, client, scopes)
        if self.rules is not None:
            outcome = await self.rules.run(
                result,
                protocol=self.PROTOCOL,
                requested_scopes=request.scopes,
                client_ip=request.client_ip,
                user_agent=request.user_agent,
            )
            result = outcome.result  # MFA on refresh is not demanded here (Auth0: early access only)

        if not policy.rotating:
            await self.refresh_tokens.touch(stored, policy)
            return await self.issuer.issue(replace(result, mint_refresh_token=False))
        if successor is None:
            successor = await self.refresh_tokens.rotate(stored, policy)
        if successor is None:
            # Another request rotated this token a moment ago: within leeway it gets the same successor.
            again = await self.refresh_tokens.find(presented)
            successor = await self.refresh_tokens.successor_within_leeway(again, policy) if again else None
            if successor is None:
                await self.refresh_tokens.revoke_family(stored.family_id, "reuse")
                raise InvalidGrant(UNKNOWN_REFRESH_TOKEN)
        return await self.issuer.issue(replace(result, refresh_token=successor))

    async def _live(self, presented: str, client: Client) -> StoredRefreshToken:
        stored = await self.refresh_tokens.find(presented)
        if stored is None or stored.client_id != client.client_id or stored.revoked:
            raise InvalidGrant(UNKNOWN_REFRESH_TOKEN)
        now = self.clock.now()
        if (stored.expires_at is not None and stored.expires_at <= now) or (
            stored.idle_expires_at is not None and stored.idle_expires_at <= now
        ):
            raise InvalidGrant(UNKNOWN_REFRESH_TOKEN)
        return stored

    def _recent(self, stored: StoredRefreshToken, max_age: int) -> bool:
        """Whether the family's authentication is at most ``max_age`` seconds old (unknown: not recent)."""
        return stored.auth_time is not None and self.clock.now() - stored.auth_time <= max_age

    @staticmethod
    def _narrowed(original: tuple[str, ...], asked: tuple[str, ...] | None) -> tuple[str, ...]:
        if asked is None:
            return original
        if extra := [scope for scope in asked if scope not in original]:
            raise InvalidScope(f"Scope '{extra[0]}' was not granted to this refresh token")
        # offline_access stays: the response still carries a refresh token.
        keep = set(asked) | ({"offline_access"} & set(original))
        return tuple(scope for scope in original if scope in keep)

    async def _result(self, stored: StoredRefreshToken, client: Client, scopes: tuple[str, ...]) -> GrantResult:
        user = await self.users.by_id(stored.user_id)
        if user is None:
            raise InvalidGrant(DELETED_USER)
        if user.blocked:
            raise InvalidGrant("user is blocked")
        connection = await self.tenant.connection(stored.connection)
        api = await self.tenant.api(stored.audience) if stored.audience is not None else None
        if connection is None or (stored.audience is not None and api is None):
            raise InvalidGrant(UNKNOWN_REFRESH_TOKEN)
        return GrantResult(
            grant_type=self.GRANT_TYPE,
            client=client,
            user=user,
            connection=connection,
            api=api,
            audience=stored.audience,
            scopes=scopes,
            amr=stored.amr,
            access_claims=stored.access_claims,
            id_claims=stored.id_claims,
            # The family's authentication, not this exchange: a rule asking for a recent login can tell them apart.
            authenticated_at=stored.auth_time,
            # After a second factor the refreshed tokens say so, with the ORIGINAL time (RFC 9470).
            acr=MULTI_FACTOR if "mfa" in stored.amr else None,
            auth_time=stored.auth_time if "mfa" in stored.amr else None,
        )
