"""Turns a grant's decision into signed JWTs (``shared/API.md`` §3.4 to 3.5)."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, Protocol

from identity.audiences import userinfo_audience
from identity.clock import Clock
from identity.oauth2.interfaces import (
    Api,
    AppMetadataStore,
    Client,
    GrantResult,
    RefreshTokenStore,
    TokenResponse,
    User,
    UserinfoClaimsStore,
)
from identity.oauth2.policy import permitted_claims, permitted_scopes
from identity.tokens.keys import KeyRing

__all__ = ["GTY", "JwtIssuer", "profile_claims"]

# The `gty` claim Auth0 puts in access tokens, by grant type.
GTY = {
    "password": "password",
    "http://auth0.com/oauth/grant-type/password-realm": "password",
    "refresh_token": "refresh_token",
    "client_credentials": "client-credentials",
}
_DEFAULT_LIFETIME = 86_400
_ID_TOKEN_ALG = "RS256"


class Transaction(Protocol):
    """The request's unit of work (`identity.store.db.UnitOfWork`), as the issuer uses it."""

    async def write(self) -> None:
        """From here on the request writes."""
        ...

    async def commit(self) -> None:
        """Make everything written durable."""
        ...


def profile_claims(user: User, scopes: tuple[str, ...] | set[str]) -> dict[str, Any]:
    """The standard OIDC claims that ``scopes`` allow for ``user``."""
    claims: dict[str, Any] = {}
    if "profile" in scopes:
        for name in ("name", "given_name", "family_name", "nickname", "picture"):
            if (value := getattr(user, name)) is not None:
                claims[name] = value
        if user.username is not None:
            claims["preferred_username"] = user.username
        if user.updated_at is not None:
            claims["updated_at"] = datetime.fromtimestamp(user.updated_at, UTC).isoformat().replace("+00:00", "Z")
    if "email" in scopes and user.email is not None:
        claims["email"] = user.email
        claims["email_verified"] = user.email_verified
    return claims


def _custom(custom: Any, standard: dict[str, Any]) -> dict[str, Any]:
    """Custom claims: namespaced, never a registered claim, never one the issuer set (the last guard after rules)."""
    return {key: value for key, value in permitted_claims(custom, source="issuer").items() if key not in standard}


def _authentication(result: GrantResult) -> dict[str, Any]:
    """``acr`` and ``auth_time`` (RFC 9470, OIDC Core §2) where the grant knows them."""
    claims: dict[str, Any] = {}
    if result.acr is not None:
        claims["acr"] = result.acr
    if result.auth_time is not None:
        claims["auth_time"] = int(result.auth_time)
    return claims


class JwtIssuer:
    """`identity.oauth2.interfaces.TokenIssuer` that signs with the service's key ring."""

    def __init__(
        self,
        keys: KeyRing,
        *,
        issuer: str,
        clock: Clock,
        id_token_lifetime: int,
        refresh_tokens: RefreshTokenStore | None = None,
        userinfo_claims: UserinfoClaimsStore | None = None,
        app_metadata: AppMetadataStore | None = None,
        transaction: Transaction | None = None,
    ) -> None:
        self.keys = keys
        self.issuer = issuer
        self.clock = clock
        self.id_token_lifetime = id_token_lifetime
        self.refresh_tokens = refresh_tokens
        self.userinfo_claims = userinfo_claims
        self.app_metadata = app_metadata
        self.transaction = transaction

    @property
    def userinfo_audience(self) -> str:
        """The audience added to access tokens that may call ``/userinfo``."""
        return userinfo_audience(self.issuer)

    async def issue(self, result: GrantResult) -> TokenResponse:
        """Sign the access token, and the ID token when ``openid`` was granted.

        Scopes are re-checked against the API and the client whatever the grant and the rules decided, and a refresh
        token is minted only when the offline-access policy allows one (`identity.oauth2.policy`).
        What the response promises is written first and committed (with everything the grant wrote before, in one
        transaction) before anything is signed: no token leaves before it is durable, and the signatures, the
        costliest step, run after the commit, outside SQLite's write lock.
        """
        now = int(self.clock.now())
        scopes = permitted_scopes(result.scopes, result.client, result.api)
        result = replace(result, scopes=scopes)
        openid = "openid" in scopes
        if result.api is not None:
            lifetime, alg = result.api.token_lifetime, result.api.signing_alg
            # Auth0 (API.md §3.4): the userinfo audience joins an RS256 API's audience when openid is granted.
            with_userinfo = openid and alg == "RS256"
            aud: str | list[str] = (
                [result.api.identifier, self.userinfo_audience] if with_userinfo else result.api.identifier
            )
        else:
            lifetime, alg, aud = _DEFAULT_LIFETIME, _ID_TOKEN_ALG, self.userinfo_audience
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": result.user.user_id,
            "aud": aud,
            "iat": now,
            "exp": now + lifetime,
            "scope": " ".join(scopes),
            "azp": result.client.client_id,
            "jti": secrets.token_urlsafe(16),
        }
        if gty := GTY.get(result.grant_type, "password"):
            claims["gty"] = gty
        if result.amr != ("pwd",):
            claims["amr"] = list(result.amr)  # RFC 8176; Auth0 leaves it out of MFA-API tokens (API.md §1.3)
        claims.update(_authentication(result))
        claims.update(_custom(result.access_claims, claims))
        remember = openid and bool(result.id_claims) and self.userinfo_claims is not None
        refresh_token = result.refresh_token
        mint = (
            refresh_token is None
            and result.mint_refresh_token
            and "offline_access" in scopes
            and self.refresh_tokens is not None
        )
        save_metadata = bool(result.app_metadata) and self.app_metadata is not None
        if (remember or mint or save_metadata) and self.transaction is not None:
            await self.transaction.write()
        if remember and self.userinfo_claims is not None:
            await self.userinfo_claims.remember(claims["jti"], result.user.user_id, result.id_claims, claims["exp"])
        if mint and self.refresh_tokens is not None:
            refresh_token = await self.refresh_tokens.issue(result)
        if save_metadata and self.app_metadata is not None:
            await self.app_metadata.merge(result.user.user_id, result.app_metadata)
        if self.transaction is not None:
            await self.transaction.commit()
        access_token = self.keys.sign(claims, alg)
        id_token = self._id_token(result, now) if openid else None
        return TokenResponse(
            access_token=access_token,
            expires_in=lifetime,
            scope=" ".join(scopes),
            id_token=id_token,
            refresh_token=refresh_token,
        )

    async def issue_client_token(
        self, client: Client, api: Api, scopes: tuple[str, ...], claims: Mapping[str, Any]
    ) -> TokenResponse:
        """An access token for ``client`` itself (client_credentials): ``sub`` is ``<client_id>@clients``."""
        now = int(self.clock.now())
        standard: dict[str, Any] = {
            "iss": self.issuer,
            "sub": f"{client.client_id}@clients",
            "aud": api.identifier,
            "iat": now,
            "exp": now + api.token_lifetime,
            "scope": " ".join(scopes),
            "azp": client.client_id,
            "gty": GTY["client_credentials"],
            "jti": secrets.token_urlsafe(16),
        }
        # Hooks are operator code: only namespaced custom claims with JSON values pass (as for rules).
        standard.update(_custom(permitted_claims(claims, source="credentials-exchange hook"), standard))
        return TokenResponse(
            access_token=self.keys.sign(standard, api.signing_alg),
            expires_in=api.token_lifetime,
            scope=" ".join(scopes),
        )

    def _id_token(self, result: GrantResult, now: int) -> str:
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": result.user.user_id,
            "aud": result.client.client_id,
            "iat": now,
            "exp": now + self.id_token_lifetime,
            **profile_claims(result.user, set(result.scopes)),
        }
        claims.update(_custom(result.id_claims, claims))
        if result.amr != ("pwd",):
            claims["amr"] = list(result.amr)
        claims.update(_authentication(result))
        return self.keys.sign(claims, _ID_TOKEN_ALG)
