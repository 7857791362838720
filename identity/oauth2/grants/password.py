"""The resource owner password credentials grants.

- ``password``: RFC 6749 §4.3, checked against the tenant's default directory, or against ``realm`` when the request
  carries one (some Auth0 SDKs send it with this grant).
- ``http://auth0.com/oauth/grant-type/password-realm``: Auth0's extension, which requires ``realm``: the name of the
  connection (user directory) to check the password against, exactly as configured (case-sensitive).

Step-up (RFC 9470): both take ``acr_values`` and ``max_age``. ``acr_values`` naming the multi-factor policy
(`identity.oauth2.first_party.MULTI_FACTOR`) forces the second factor as an API's or a rule's demand does
(``mfa_required``, then the MFA grants issue ``acr`` and ``auth_time``); values identity cannot meet, or MFA asked by a
client with no MFA grant type, answer ``unmet_authentication_requirements``, never a weaker token. ``max_age`` is
always met: the password is checked in this very request.

Order of checks: everything that is cheap and says nothing about the user (parameters, directory, audience) comes
before the password hash is computed, so a malformed request never costs an Argon2 run.
"""

from __future__ import annotations

from typing import ClassVar

from identity.oauth2.errors import (
    AccessDenied,
    InvalidGrant,
    InvalidRequest,
    MfaRequired,
    PasswordLeakedError,
    ServerError,
    TemporarilyUnavailable,
    TooManyAttempts,
    Unauthorized,
    UnmetAuthenticationRequirements,
)
from identity.oauth2.first_party import checked_max_age, multi_factor_asked
from identity.oauth2.grants.mfa import SECOND_FACTOR_GRANTS
from identity.oauth2.interfaces import (
    Api,
    Client,
    Connection,
    GrantResult,
    LoginBlocked,
    MfaService,
    Overloaded,
    PasswordLeaked,
    RulesPipeline,
    TenantStore,
    TokenIssuer,
    TokenResponse,
    UserAuthenticator,
)
from identity.oauth2.policy import offline_access_allowed
from identity.oauth2.requests import TokenRequest
from identity.oauth2.scopes import resolve_scopes

__all__ = [
    "BLOCKED",
    "PASSWORD_STRATEGIES",
    "SUSPICIOUS",
    "WRONG_CREDENTIALS",
    "PasswordGrant",
    "PasswordRealmGrant",
    "blocked_error",
    "password_connection",
    "takes_passwords",
]

WRONG_CREDENTIALS = "Wrong email or password."
BLOCKED = (
    "Your account has been blocked after multiple consecutive login attempts. "
    "We've sent you an email with instructions on how to unblock it."
)  # Auth0's exact text (API.md §1.9); clients match on it. No email is sent here: the block lifts with time.
SUSPICIOUS = (
    "We have detected suspicious login behavior and further attempts will be blocked. "
    "Please contact the administrator."
)  # Auth0's text for suspicious-IP throttling.
PASSWORD_STRATEGIES = frozenset({"auth0"})
"""Strategies of the connections whose users' passwords are checked here (Auth0's database connections)."""


def blocked_error(blocked: LoginBlocked) -> TooManyAttempts:
    """The 429 of a login attack protection refused (the same for known and unknown identifiers)."""
    if blocked.reason == LoginBlocked.SUSPICIOUS_IP:
        return TooManyAttempts(SUSPICIOUS, retry_after=blocked.retry_after)
    return TooManyAttempts(BLOCKED, retry_after=blocked.retry_after)


def takes_passwords(connection: Connection) -> bool:
    """Whether the users of ``connection`` sign in with a password checked here."""
    return connection.strategy in PASSWORD_STRATEGIES


async def password_connection(tenant: TenantStore, name: str, client: Client | None = None) -> Connection:
    """The directory named ``name`` if passwords can be checked in it and ``client`` (when given) may use it.

    Raises:
        InvalidRequest: in Auth0's words, the connection is unknown, disabled for the client, or not a database one.
    """
    connection = await tenant.connection(name)
    if connection is None:
        raise InvalidRequest("the connection was not found")
    if client is not None and connection.name not in client.connections:
        raise InvalidRequest("the connection was disabled")
    if not takes_passwords(connection):
        raise InvalidRequest("specified strategy does not support requested operation")
    return connection


class PasswordGrant:
    """``grant_type=password`` (RFC 6749 §4.3; Auth0 default directory)."""

    GRANT_TYPE: ClassVar[str] = "password"

    PROTOCOL: ClassVar[str] = "oauth2-password"
    """``event.transaction.protocol`` for rules (Auth0: the same for both password grants)."""

    def __init__(
        self,
        tenant: TenantStore,
        users: UserAuthenticator,
        issuer: TokenIssuer,
        mfa: MfaService | None = None,
        rules: RulesPipeline | None = None,
    ) -> None:
        self.tenant = tenant
        self.users = users
        self.issuer = issuer
        self.mfa = mfa
        self.rules = rules

    async def handle(self, request: TokenRequest, client: Client) -> TokenResponse:
        """Check the user's password in the chosen directory and issue tokens."""
        username = request.require("username")
        password = request.require("password")
        step_up = self._step_up(request, client)
        connection = await self._connection(request, client)
        api, audience = await self._audience(request)
        scopes = resolve_scopes(request.scopes, api)
        if self._offline_access(request, client, api):
            scopes = (*scopes, "offline_access")

        try:
            user = await self.users.authenticate(connection, username, password, ip=request.client_ip)
        except LoginBlocked as blocked:
            raise blocked_error(blocked) from None
        except Overloaded as overloaded:
            raise TemporarilyUnavailable(retry_after=overloaded.retry_after) from None
        except PasswordLeaked:
            raise PasswordLeakedError() from None
        if user is None:
            raise InvalidGrant(WRONG_CREDENTIALS)
        if user.blocked:
            raise Unauthorized("user is blocked")
        result = GrantResult(
            grant_type=self.GRANT_TYPE,
            client=client,
            user=user,
            connection=connection,
            api=api,
            audience=audience,
            scopes=scopes,
            amr=("pwd",),
        )
        forced = step_up or (api is not None and api.requires_mfa)
        if self.rules is not None:
            # Rules run after the first factor and before anything is issued; their claims and scope changes
            # travel with the mfa_token when a second factor is needed.
            outcome = await self.rules.run(
                result,
                protocol=self.PROTOCOL,
                requested_scopes=request.scopes,
                client_ip=request.client_ip,
                user_agent=request.user_agent,
                acr_values=tuple((request.get("acr_values") or "").split()),
            )
            result, forced = outcome.result, forced or outcome.mfa_required
        if self.mfa is not None and await self.mfa.required(user, forced=forced):
            # Nothing is issued: what would have been is stored behind a short-lived, single-use mfa_token.
            raise MfaRequired(await self.mfa.start(result))
        return await self.issuer.issue(result)

    @staticmethod
    def _step_up(request: TokenRequest, client: Client) -> bool:
        """Whether ``acr_values`` asks for a second factor this client can finish (checked before the password)."""
        checked_max_age(request.get("max_age"))  # always met: the password is checked now
        if not multi_factor_asked(request.get("acr_values")):
            return False
        if not SECOND_FACTOR_GRANTS & client.grant_types:
            raise UnmetAuthenticationRequirements(
                "acr_values asks for a second factor and the client has no MFA grant type to finish it with"
            )
        return True

    @staticmethod
    def _offline_access(request: TokenRequest, client: Client, api: Api | None) -> bool:
        """A refresh token needs ``offline_access`` asked, the API allowing it and the client's refresh grant."""
        return "offline_access" in (request.scopes or ()) and offline_access_allowed(client, api)

    async def _realm(self, request: TokenRequest) -> str:
        if (realm := request.get("realm")) is not None:
            return realm
        settings = await self.tenant.settings()
        if settings.default_directory is None:
            raise ServerError("Authorization server not configured with default connection.")
        return settings.default_directory

    async def _connection(self, request: TokenRequest, client: Client) -> Connection:
        return await password_connection(self.tenant, await self._realm(request), client)

    async def _audience(self, request: TokenRequest) -> tuple[Api | None, str | None]:
        audience = request.get("audience")
        if audience is None:
            audience = (await self.tenant.settings()).default_audience
        if audience is None:
            # No API: the access token is good for /userinfo only (Auth0 issues an opaque one).
            return None, None
        api = await self.tenant.api(audience)
        if api is None:
            raise AccessDenied(f"Service not found: {audience}")
        if api.machine_only:
            raise AccessDenied(f"Only client credentials can get tokens for {audience}")
        return api, audience


class PasswordRealmGrant(PasswordGrant):
    """``grant_type=http://auth0.com/oauth/grant-type/password-realm``: the password grant with a required realm."""

    GRANT_TYPE: ClassVar[str] = "http://auth0.com/oauth/grant-type/password-realm"

    async def _realm(self, request: TokenRequest) -> str:
        return request.require("realm")
