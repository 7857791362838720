"""OAuth 2.0 for First-Party Applications (draft-ietf-oauth-first-party-apps-03): the shared records and Protocols.

What the Authorization Challenge Endpoint (`identity.oauth2.challenge`) and the ``authorization_code`` grant
(`identity.oauth2.grants.authorization_code`) share: records, the storage Protocols, the new error codes and the
policy constants.

    draft                               identity
    ---------------------------------   ------------------------------------------------------------------
    Authorization Challenge Endpoint    POST /oauth/authorize-challenge
    auth_session                        an `AuthSession`: a row of the mfa_token store, kind auth_session
    authorization code                  an `IssuedCode`: a row of the same store, kind authorization_code
    token request (RFC 6749 §4.1.3)     grant_type=authorization_code with code_verifier, no redirect_uri

Errors of the challenge endpoint answer 400 (draft §5.2.2) except where the draft or RFC 6749 says otherwise:

    OAuthError
    ├── InsufficientAuthorization        401 insufficient_authorization (+ auth_session, what is needed next)
    ├── InvalidSession                   400 invalid_session
    ├── TooManyCodesSent                 429 too_many_attempts (+ Retry-After, auth_session): no email sent
    ├── CodeNotSent                      400 bad_gateway (+ auth_session): the mail server failed, nothing spent
    ├── UnsupportedResponseType          400 unsupported_response_type (RFC 6749 §4.1.2.1)
    └── UnmetAuthenticationRequirements  400 unmet_authentication_requirements (RFC 9470 §6, OIDC; in errors.py,
                                         403 at the token endpoint)
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Protocol

from identity.oauth2.errors import (
    BadGateway,
    InvalidRequest,
    OAuthError,
    TooManyAttempts,
    UnmetAuthenticationRequirements,
)
from identity.oauth2.interfaces import GrantResult, MfaTransaction

__all__ = [
    "AUTHORIZATION_CODE",
    "CODE_LIFETIME",
    "MULTI_FACTOR",
    "PROTOCOL",
    "SESSION_LIFETIME",
    "AuthSession",
    "AuthSessionStore",
    "AuthorizationCodeStore",
    "CodeDelivery",
    "CodeNotSent",
    "Delivery",
    "InsufficientAuthorization",
    "InvalidSession",
    "IssuedCode",
    "SecondFactors",
    "TooManyCodesSent",
    "UnmetAuthenticationRequirements",
    "UnsupportedResponseType",
    "WriteTransaction",
    "challenge_status",
    "checked_max_age",
    "multi_factor_asked",
]

AUTHORIZATION_CODE = "authorization_code"
"""The grant type that redeems the codes, and what a client's ``grant_types`` must list to use the endpoint."""
PROTOCOL = "oauth2-first-party"
"""``event.transaction.protocol`` for rules run by the challenge endpoint."""
MULTI_FACTOR = "http://schemas.openid.net/pape/policies/2007/06/multi-factor"
"""The one ``acr_values`` value identity knows: a second factor is required (Auth0's step-up value, RFC 9470)."""
_MAX_AGE = re.compile(r"[0-9]{1,10}")
CODE_LIFETIME = 60
"""Seconds a code may be redeemed in. It is handed to the app that redeems it in the same breath (no browser, no
redirect in between), so a minute covers a slow mobile network and a retry; RFC 6749 §4.1.2 allows up to ten."""
SESSION_LIFETIME = 86_400
"""Seconds an ``auth_session`` lives after its login completed, counted from the login: as long as the access tokens
it yields at the default lifetime. Until the first code, it lives only the tenant's ``mfa_token_lifetime``."""

_STATUS = {
    "invalid_client": 401,
    "insufficient_authorization": 401,
    "too_many_attempts": 429,
    "temporarily_unavailable": 503,
    "server_error": 500,
}


def challenge_status(error: OAuthError) -> int:
    """The status of ``error`` at the challenge endpoint: 400 unless specified otherwise (draft §5.2.2).

    ``invalid_client`` keeps RFC 6749's 401; ``insufficient_authorization`` is 401 as in the draft's example profile
    (its ``otp_required`` answer); rate limits, load shedding and configuration errors keep the token endpoint's
    statuses. The token endpoint's Auth0 statuses (403 ``invalid_grant``, ``access_denied``...) become 400 here.
    """
    return _STATUS.get(error.error, 400)


def multi_factor_asked(acr_values: str | None) -> bool:
    """Whether ``acr_values`` (space-separated, OIDC Core §3.1.2.1) asks for `MULTI_FACTOR`.

    Raises:
        UnmetAuthenticationRequirements: only values identity cannot meet were asked (RFC 9470 §6).
    """
    if acr_values is None:
        return False
    if MULTI_FACTOR in acr_values.split():
        return True
    raise UnmetAuthenticationRequirements(f"acr_values: the supported value is {MULTI_FACTOR}")


def checked_max_age(max_age: str | None) -> int | None:
    """``max_age`` (OIDC Core §3.1.2.1, RFC 9470) as seconds, ``None`` when absent.

    Raises:
        InvalidRequest: not a whole number of seconds.
    """
    if max_age is None:
        return None
    if not _MAX_AGE.fullmatch(max_age):
        raise InvalidRequest("max_age must be a number of seconds")
    return int(max_age)


class InsufficientAuthorization(OAuthError):
    """More is needed from the user: the body says what (AS-defined members) and carries the ``auth_session``."""

    error = "insufficient_authorization"
    status_code = 401

    def __init__(self, description: str, *, auth_session: str | None, members: Mapping[str, Any]) -> None:
        super().__init__(description)
        self.auth_session = auth_session
        self.members = dict(members)

    def to_body(self) -> dict[str, Any]:
        """The error body, the ``auth_session`` and the members that say what to collect next."""
        body: dict[str, Any] = {**super().to_body()}
        if self.auth_session is not None:
            body["auth_session"] = self.auth_session
        body.update(self.members)
        return body


class InvalidSession(OAuthError):
    """The ``auth_session`` is unknown, expired, revoked, or not this client's."""

    error = "invalid_session"
    default_description = "The auth_session is invalid, expired or revoked."


class TooManyCodesSent(TooManyAttempts):
    """The user's emails are spent for now (nothing was sent); the ``auth_session`` goes on with another factor."""

    def __init__(self, description: str, *, auth_session: str, retry_after: int | None) -> None:
        super().__init__(description, retry_after=retry_after)
        self.auth_session = auth_session

    def to_body(self) -> dict[str, str]:
        """The error body and the ``auth_session`` (draft §5.2.2 allows it with any error)."""
        return {**super().to_body(), "auth_session": self.auth_session}


class CodeNotSent(BadGateway):
    """The mail server did not take the code (nothing was sent or spent); the ``auth_session`` stays usable."""

    def __init__(self, *, auth_session: str) -> None:
        super().__init__()
        self.auth_session = auth_session

    def to_body(self) -> dict[str, str]:
        """The error body and the ``auth_session``: the app asks again later, or uses another factor."""
        return {**super().to_body(), "auth_session": self.auth_session}


class UnsupportedResponseType(OAuthError):
    """``response_type`` is not ``code``."""

    error = "unsupported_response_type"
    default_description = "response_type must be code"


@dataclass(frozen=True)
class AuthSession:
    """An ``auth_session``: the user a login identified, and the authorization request pending on it, if any."""

    id: int
    client_id: str
    user_id: str
    connection: str
    audience: str | None
    scopes: tuple[str, ...]
    amr: tuple[str, ...]
    """The factors the login proved before the second (``pwd``)."""
    code_challenge: str | None
    pending: bool
    """An authorization request waits for a second factor; checking one spends this step (once)."""
    created_at: float
    expires_at: float
    access_claims: Mapping[str, Any] = field(default_factory=dict)
    id_claims: Mapping[str, Any] = field(default_factory=dict)
    app_metadata: Mapping[str, Any] = field(default_factory=dict)

    def transaction(self) -> MfaTransaction:
        """The session as the factor services see an mfa_token: a factor they accept burns the pending step."""
        return MfaTransaction(
            id=self.id,
            client_id=self.client_id,
            user_id=self.user_id,
            connection=self.connection,
            grant_type=AUTHORIZATION_CODE,
            audience=self.audience,
            scopes=self.scopes,
            expires_at=self.expires_at,
            consumed=not self.pending,
            access_claims=self.access_claims,
            id_claims=self.id_claims,
            app_metadata=self.app_metadata,
            amr=self.amr,
        )


@dataclass(frozen=True)
class IssuedCode:
    """An authorization code, as stored: what its redemption issues, and to whom."""

    id: int
    client_id: str
    user_id: str
    connection: str
    audience: str | None
    scopes: tuple[str, ...]
    amr: tuple[str, ...]
    acr: str | None
    auth_time: float | None
    code_challenge: str
    expires_at: float
    consumed: bool
    family_id: str | None = None
    access_claims: Mapping[str, Any] = field(default_factory=dict)
    id_claims: Mapping[str, Any] = field(default_factory=dict)
    app_metadata: Mapping[str, Any] = field(default_factory=dict)


class AuthSessionStore(Protocol):
    """``auth_session`` values (256 random bits, stored only as SHA-256) and the codes they yield."""

    async def start(
        self, result: GrantResult, *, code_challenge: str, pending: bool, auth_time: float
    ) -> tuple[str, AuthSession]:
        """A new session for ``result``'s user and client (what a code will issue); its value and record.

        ``pending``: a second factor is awaited (the session then lives the tenant's ``mfa_token_lifetime``).
        """
        ...

    async def find(self, auth_session: str) -> AuthSession | None:
        """The session of ``auth_session``, or ``None`` (unknown, or not a session)."""
        ...

    async def restart(self, session: AuthSession, result: GrantResult, *, code_challenge: str) -> AuthSession:
        """A new authorization request on ``session``: what it will issue, and a second factor awaited again."""
        ...

    async def issue_code(self, session: AuthSession, *, amr: tuple[str, ...], acr: str | None, auth_time: float) -> str:
        """A code for the session's authorization (`CODE_LIFETIME`); the session then lives `SESSION_LIFETIME`."""
        ...


class AuthorizationCodeStore(Protocol):
    """The codes, for the token endpoint."""

    async def find_code(self, code: str) -> IssuedCode | None:
        """The code behind ``code``, consumed or not, or ``None``."""
        ...

    async def redeem(self, code: IssuedCode) -> bool:
        """Mark the code consumed unless it already was; ``True`` for the one caller that does (conditional UPDATE)."""
        ...

    async def remember_family(self, code: IssuedCode, family_id: str) -> None:
        """Record the refresh-token family issued for the code, to revoke it if the code comes back."""
        ...


class Delivery(Enum):
    """What became of an emailed code."""

    SENT = "sent"
    LIMITED = "limited"
    """The user's bucket of emails is empty: nothing was sent."""
    FAILED = "failed"
    """The mail server did not take the message: nothing was sent, nothing spent."""
    NOT_ENROLLED = "not_enrolled"
    """The user has no active email factor (removed a moment ago): nothing was sent."""


@dataclass(frozen=True)
class CodeDelivery:
    """The outcome of sending a code: where to (masked), or how long until another may be sent."""

    outcome: Delivery
    to: str | None = None
    """The address, masked (``j***@example.com``), when the code was sent."""
    retry_after: int | None = None
    """Seconds until the user's bucket gives another email (`Delivery.LIMITED`)."""


class SecondFactors(Protocol):
    """What the challenge endpoint needs to know about a user's second factors beyond `MfaService`."""

    async def methods(self, user_id: str) -> tuple[str, ...]:
        """The user's confirmed second factors, by method name (``otp``, ``webauthn``, ``email``, ``recovery-code``).

        The factor enrolled first comes first; ``email`` follows the others (an app or a key costs no email), and
        the recovery code, the fallback, is last. ``email`` only when the server can send mail.
        """
        ...

    async def webauthn_options(self, session: AuthSession) -> Mapping[str, Any]:
        """Request options for the user's keys, their challenge bound to the session (five minutes, single use)."""
        ...

    async def send_email_code(self, session: AuthSession, auth_session: str) -> CodeDelivery:
        """Email a code to the user's first email factor, bound to the session's row and keyed by ``auth_session``.

        The code lives five minutes, replaces any code sent before for the session, and is checked with
        `MfaService.check_oob` (``session_key=auth_session``). No database transaction is held while the mail
        server talks: what the request wrote so far is committed first.
        """
        ...


class WriteTransaction(Protocol):
    """The request's unit of work, as the endpoint and the grant use it (`identity.store.db.UnitOfWork`)."""

    async def write(self) -> None:
        """From here on the request writes (one write transaction: single-use checks happen inside it)."""
        ...
