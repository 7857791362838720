"""The Authorization Challenge Endpoint (draft-ietf-oauth-first-party-apps-03 §4.1, §5), identity's profile of it.

The draft leaves the steps to the authorization server (§1.3, §5.3). identity's, by the parameter names of the
draft's examples:

1. **Initial request** (no ``auth_session``): ``client_id`` (authenticated exactly as at ``/oauth/token``),
   ``response_type=code``, ``code_challenge`` with ``code_challenge_method=S256`` (`identity.oauth2.pkce`),
   ``scope``, ``audience`` (or ``resource``), ``realm``, ``acr_values``, ``max_age`` and the first factor:
   ``username`` (or ``login_hint``) and ``password``. Without them: ``insufficient_authorization`` with
   ``"password_required": true``. The password step *is* the password grant's (attack protection, the hash queue,
   one answer for unknown user and wrong password, rules with protocol ``oauth2-first-party``, the MFA decision),
   and ``acr_values`` naming the multi-factor policy forces the second factor too.
2. **Answer**: no second factor needed, 200 ``{"authorization_code", "auth_session"}``; needed, an ``auth_session``
   and ``insufficient_authorization`` listing the user's ``methods`` with what each needs (``"otp_required": true``,
   ``"webauthn": {"publicKey": …}``, and ``"email_code_required": true`` once a code was emailed).
3. **Intermediate request**: ``auth_session`` and one second factor (``otp``, ``email_code``, ``recovery_code``, or
   a WebAuthn assertion); a code. Without one, the same answer again (with fresh WebAuthn options); with
   ``challenge_type`` naming a listed method, the same answer after starting that method (``email``: a code is
   sent). An email is sent only when asked for, or unasked when it is the user's only factor and this request made
   the second factor due (step 1 or 4): see `identity.oauth2.challenge_methods`.
4. **Step-up**, any time the session lives: ``auth_session`` with ``response_type=code``, a new ``code_challenge``,
   ``scope``/``audience`` and ``acr_values``: the second factor again, then a new code. A session never yields a
   code without a factor checked in that same request chain, and never spares the second factor.

Each step is single use: the factor services burn the session's pending step with the factor, in one transaction.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

from identity.clock import Clock
from identity.oauth2 import pkce
from identity.oauth2.challenge_methods import ChallengeMethod, RecoveryCodeMethod
from identity.oauth2.client_auth import authenticate_client
from identity.oauth2.errors import (
    AccessDenied,
    InvalidGrant,
    InvalidRequest,
    MfaRequired,
    ServerError,
    TooManyAttempts,
    Unauthorized,
    UnauthorizedClient,
    UnsupportedChallengeType,
)
from identity.oauth2.first_party import (
    AUTHORIZATION_CODE,
    MULTI_FACTOR,
    PROTOCOL,
    AuthSession,
    AuthSessionStore,
    InsufficientAuthorization,
    InvalidSession,
    SecondFactors,
    UnmetAuthenticationRequirements,
    UnsupportedResponseType,
    WriteTransaction,
    checked_max_age,
    multi_factor_asked,
)
from identity.oauth2.grants.mfa import TOO_MANY_ATTEMPTS
from identity.oauth2.grants.password import PasswordGrant
from identity.oauth2.interfaces import (
    Api,
    Client,
    FactorCheck,
    GrantResult,
    MfaService,
    MfaTransaction,
    RulesPipeline,
    TenantStore,
    TokenObserver,
    TokenResponse,
    User,
    UserAuthenticator,
    UserLookup,
)
from identity.oauth2.requests import TokenRequest
from identity.oauth2.scopes import resolve_scopes

__all__ = [
    "ASK_OR_ANSWER",
    "ASK_WITH_SESSION",
    "MFA_REQUIRED",
    "NOT_PENDING",
    "NO_SECOND_FACTOR",
    "NO_SUCH_METHOD",
    "PASSWORD_REQUIRED",
    "AuthorizationChallengeEndpoint",
    "AuthorizationCodeResponse",
]

PASSWORD_REQUIRED = "Username and password required"
MFA_REQUIRED = "Multifactor authentication required"
NOT_PENDING = "No authorization request is pending on this auth_session: send one with response_type=code"
NO_SECOND_FACTOR = "A second factor is required and the user has none: enroll one first (/enroll or the MFA API)"
ASK_WITH_SESSION = "challenge_type is sent with the auth_session of an answer that lists the method"
ASK_OR_ANSWER = "send challenge_type or a second factor, not both"
NO_SUCH_METHOD = "User does not have any authenticator of the requested challenge type"


@dataclass(frozen=True)
class AuthorizationCodeResponse:
    """The 200 answer (draft §5.2.1), with the ``auth_session`` to keep for a later step-up."""

    authorization_code: str = field(repr=False)
    auth_session: str = field(repr=False)
    factor: str | None = None
    """The second factor checked for this code (for the audit log), ``None`` after the password alone."""
    extra: Mapping[str, Any] = field(default_factory=dict, repr=False)

    def to_body(self) -> dict[str, Any]:
        """The JSON body."""
        return {"authorization_code": self.authorization_code, "auth_session": self.auth_session, **self.extra}


@dataclass(frozen=True)
class _Authorization:
    """The authorization-request parameters of a request that starts one."""

    code_challenge: str
    multi_factor: bool


class _Captured:
    """The password step's issuer and MFA gate, which keep what the password grant would issue or defer.

    The gate's decision is the real one (`MfaService.required`), forced by ``acr_values`` too.
    """

    def __init__(self, mfa: MfaService, *, force: bool) -> None:
        self.mfa = mfa
        self.force = force
        self.result: GrantResult | None = None

    async def issue(self, result: GrantResult) -> TokenResponse:
        """Keep ``result``: no second factor is needed."""
        self.result = result
        return TokenResponse(access_token="", expires_in=0, scope="")

    async def required(self, user: User, *, forced: bool) -> bool:
        """The tenant's decision, forced by the API, a rule or ``acr_values``."""
        return await self.mfa.required(user, forced=forced or self.force)

    async def start(self, result: GrantResult) -> str:
        """Keep ``result``: a second factor is needed (no mfa_token is made)."""
        self.result = result
        return ""

    # The rest of MfaService: never called by the password step.
    async def find(self, mfa_token: str) -> MfaTransaction | None:
        return None

    async def check_otp(self, transaction: MfaTransaction, otp: str) -> FactorCheck:
        return FactorCheck.INVALID

    async def redeem_recovery_code(self, transaction: MfaTransaction, code: str) -> tuple[FactorCheck, str | None]:
        return FactorCheck.INVALID, None

    async def check_oob(
        self, transaction: MfaTransaction, oob_code: str | None, binding_code: str, *, session_key: str | None = None
    ) -> FactorCheck:
        return FactorCheck.INVALID

    async def user(self, transaction: MfaTransaction) -> User | None:
        return None


class _PasswordStep(PasswordGrant):
    """The password grant as the first factor of the challenge endpoint (its rules see ``oauth2-first-party``)."""

    GRANT_TYPE: ClassVar[str] = AUTHORIZATION_CODE
    PROTOCOL: ClassVar[str] = PROTOCOL

    async def requested(self, request: TokenRequest, client: Client) -> tuple[Api | None, str | None, tuple[str, ...]]:
        """The API, audience and scopes ``request`` asks for, as the password grant resolves them."""
        api, audience = await self._audience(request)
        scopes = resolve_scopes(request.scopes, api)
        if self._offline_access(request, client, api):
            scopes = (*scopes, "offline_access")
        return api, audience, scopes

    @staticmethod
    def _step_up(request: TokenRequest, client: Client) -> bool:
        """The endpoint checks ``acr_values`` itself (`_authorization`) and asks the factors itself (`_Captured`)."""
        return False


class AuthorizationChallengeEndpoint:
    """``POST /oauth/authorize-challenge``: answers a code, or what the user must provide next."""

    def __init__(
        self,
        tenant: TenantStore,
        users: UserAuthenticator,
        lookup: UserLookup,
        mfa: MfaService,
        sessions: AuthSessionStore,
        factors: SecondFactors,
        methods: Sequence[ChallengeMethod],
        clock: Clock,
        *,
        challenge_realm: str,
        rules: RulesPipeline | None = None,
        transaction: WriteTransaction | None = None,
        observer: TokenObserver | None = None,
    ) -> None:
        self.tenant = tenant
        self.users = users
        self.lookup = lookup
        self.mfa = mfa
        self.sessions = sessions
        self.factors = factors
        self.methods = tuple(methods)
        self.clock = clock
        self.challenge_realm = challenge_realm
        self.rules = rules
        self.transaction = transaction
        self.observer = observer

    async def handle(self, request: TokenRequest) -> AuthorizationCodeResponse:
        """Answer one request with a code, or raise the `OAuthError` to render (`challenge_status`)."""
        presented = request.get("auth_session")
        session = await self._session(presented) if presented is not None else None
        client, request = await self._client(request, session)
        if presented is None or session is None:
            return await self._login(request, client)
        if request.get("response_type") is not None:
            session, user, menu = await self._reauthorize(request, client, session)
            return await self._second_factor(request, session, presented, user, menu, due=True)
        if not session.pending:
            raise InvalidRequest(NOT_PENDING)
        return await self._second_factor(request, session, presented, await self._user(session))

    async def _session(self, presented: str) -> AuthSession:
        session = await self.sessions.find(presented)
        if session is None or session.expires_at <= self.clock.now():
            raise InvalidSession()
        return session

    async def _client(self, request: TokenRequest, session: AuthSession | None) -> tuple[Client, TokenRequest]:
        """The authenticated client; an ``auth_session`` alone names its (public) client (draft §5.1)."""
        if session is not None and request.basic is None and request.get("client_id") is None:
            request = replace(request, params={**request.params, "client_id": session.client_id})
        client = await authenticate_client(request, self.tenant, challenge_realm=self.challenge_realm)
        request = request.for_client(client)
        if self.observer is not None:
            self.observer.client_authenticated(client, request)
        if AUTHORIZATION_CODE not in client.grant_types:
            raise UnauthorizedClient(f"Grant type '{AUTHORIZATION_CODE}' not allowed for the client.")
        if session is not None and session.client_id != client.client_id:
            raise InvalidSession()  # another client's session is no session of this one
        return client, request

    async def _login(self, request: TokenRequest, client: Client) -> AuthorizationCodeResponse:
        """An initial request: the password, then a code or the second factor."""
        authorization = _authorization(request)
        request = _named(request)
        if request.get("challenge_type") is not None:
            raise InvalidRequest(ASK_WITH_SESSION)
        if request.get("username") is None or request.get("password") is None:
            members = {"methods": ["password"], "password_required": True}
            raise InsufficientAuthorization(PASSWORD_REQUIRED, auth_session=None, members=members)
        captured = _Captured(self.mfa, force=authorization.multi_factor)
        step = _PasswordStep(self.tenant, self.users, captured, captured, self.rules)
        second = False
        try:
            await step.handle(request, client)
        except MfaRequired:
            second = True
        except Unauthorized as refused:  # a blocked user: RFC 6749 §4.1.2.1 has access_denied for it
            raise AccessDenied(refused.description) from None
        if captured.result is None:
            raise ServerError("the password step decided nothing")
        result, challenge, now = captured.result, authorization.code_challenge, self.clock.now()
        if not second:
            token, session = await self.sessions.start(result, code_challenge=challenge, pending=False, auth_time=now)
            return await self._code(session, token, amr=result.amr, acr=None)
        menu = await self._menu(result.user.user_id)
        token, session = await self.sessions.start(result, code_challenge=challenge, pending=True, auth_time=now)
        return await self._second_factor(request, session, token, result.user, menu, due=True)

    async def _reauthorize(
        self, request: TokenRequest, client: Client, session: AuthSession
    ) -> tuple[AuthSession, User, tuple[str, ...]]:
        """A new authorization request on a session (step-up): its audience, scopes and rules, a new pending step."""
        authorization = _authorization(request)
        user = await self._user(session)
        connection = await self.tenant.connection(session.connection)
        if connection is None or connection.name not in client.connections:
            raise InvalidRequest("the connection was disabled")
        request = _named(request)
        api, audience, scopes = await _PasswordStep(self.tenant, self.users, _NO_ISSUER).requested(request, client)
        result = GrantResult(
            grant_type=AUTHORIZATION_CODE,
            client=client,
            user=user,
            connection=connection,
            api=api,
            audience=audience,
            scopes=scopes,
            amr=session.amr,
        )
        if self.rules is not None:
            outcome = await self.rules.run(
                result,
                protocol=PROTOCOL,
                requested_scopes=request.scopes,
                client_ip=request.client_ip,
                user_agent=request.user_agent,
                acr_values=tuple((request.get("acr_values") or "").split()),  # as the password step shows them
            )
            result = outcome.result  # the second factor is asked whatever the rules say
        menu = await self._menu(user.user_id)
        return await self.sessions.restart(session, result, code_challenge=authorization.code_challenge), user, menu

    async def _user(self, session: AuthSession) -> User:
        user = await self.lookup.by_id(session.user_id)
        if user is None:
            raise InvalidSession()
        if user.blocked:
            raise AccessDenied("user is blocked")
        return user

    async def _menu(self, user_id: str) -> tuple[str, ...]:
        """The second factors the user can answer with here; none is `UnmetAuthenticationRequirements`."""
        offered = {method.name for method in self.methods}
        menu = tuple(name for name in await self.factors.methods(user_id) if name in offered)
        if not menu:
            raise UnmetAuthenticationRequirements(NO_SECOND_FACTOR)
        return menu

    async def _second_factor(
        self,
        request: TokenRequest,
        session: AuthSession,
        token: str,
        user: User,
        menu: tuple[str, ...] | None = None,
        *,
        due: bool = False,
    ) -> AuthorizationCodeResponse:
        """Check the second factor the request carries and answer a code, or ask for one.

        ``due``: this request made the second factor due (a login, a step-up), so a method that is the user's only
        one is started without being asked for.
        """
        carried = [method for method in self.methods if method.carried_by(request)]
        if len(carried) > 1:
            raise InvalidRequest("send one second factor at a time")
        asked = request.get("challenge_type")
        if not carried:
            menu = menu or await self._menu(user.user_id)
            raise await self._prompt(session, token, menu, _chosen(menu, asked, due=due))
        if asked is not None:
            raise InvalidRequest(ASK_OR_ANSWER)
        method = carried[0]
        if self.transaction is not None:
            await self.transaction.write()
        verified = await method.verify(session, token, request)
        if verified.check is FactorCheck.RATE_LIMITED:
            raise TooManyAttempts(TOO_MANY_ATTEMPTS)
        if verified.check is FactorCheck.TOKEN_USED:
            raise InvalidRequest(NOT_PENDING)  # another request spent this step a moment ago
        if verified.check is not FactorCheck.ACCEPTED:
            raise InvalidGrant(verified.refusal or method.invalid)
        amr = tuple(dict.fromkeys((*session.amr, *verified.amr)))
        return await self._code(session, token, amr=amr, acr=MULTI_FACTOR, factor=method.name, extra=verified.extra)

    async def _prompt(
        self, session: AuthSession, token: str, menu: tuple[str, ...], chosen: str | None
    ) -> InsufficientAuthorization:
        members: dict[str, Any] = {"methods": list(menu)}
        for method in self.methods:
            if method.name in menu:
                members.update(await method.prompt(session, token, chosen=method.name == chosen))
        return InsufficientAuthorization(MFA_REQUIRED, auth_session=token, members=members)

    async def _code(
        self,
        session: AuthSession,
        token: str,
        *,
        amr: tuple[str, ...],
        acr: str | None,
        factor: str | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> AuthorizationCodeResponse:
        code = await self.sessions.issue_code(session, amr=amr, acr=acr, auth_time=self.clock.now())
        return AuthorizationCodeResponse(code, token, factor, dict(extra or {}))


class _NoIssuer:
    """The issuer of a password step that only resolves audiences and scopes."""

    async def issue(self, result: GrantResult) -> TokenResponse:
        raise ServerError("nothing is issued at the challenge endpoint")


_NO_ISSUER = _NoIssuer()


def _authorization(request: TokenRequest) -> _Authorization:
    """The parameters of a request that starts an authorization (RFC 6749 §4.1.1, RFC 7636, OIDC)."""
    response_type = request.get("response_type")
    if response_type is None:
        raise InvalidRequest("missing response_type parameter")
    if response_type != "code":
        raise UnsupportedResponseType()
    challenge = pkce.checked_challenge(request.get("code_challenge"), request.get("code_challenge_method"))
    # Always met: every code follows a factor checked moments before (auth_time is that check).
    checked_max_age(request.get("max_age"))
    return _Authorization(challenge, multi_factor_asked(request.get("acr_values")))


def _chosen(menu: tuple[str, ...], asked: str | None, *, due: bool) -> str | None:
    """The method the app asked for (``challenge_type``), or the user's only one on a request that made it due.

    The recovery code, a fallback, does not count: a user with an email factor and a recovery code has one factor.

    Raises:
        UnsupportedChallengeType: the app asked for a method the user does not have.
    """
    if asked is not None:
        if asked not in menu:
            raise UnsupportedChallengeType(NO_SUCH_METHOD)
        return asked
    factors = [name for name in menu if name != RecoveryCodeMethod.name]
    return factors[0] if due and len(factors) == 1 else None


def _named(request: TokenRequest) -> TokenRequest:
    """``login_hint`` as the ``username``; RFC 8707 ``resource`` as the ``audience`` (one API per request)."""
    params = dict(request.params)
    if "username" not in params and "login_hint" in params:
        params["username"] = params["login_hint"]
    if (resource := params.get("resource")) is not None and params.setdefault("audience", resource) != resource:
        raise InvalidRequest("audience and resource must name the same API")
    return replace(request, params=params)
