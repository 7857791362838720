"""Protocol errors of the token endpoint, each knowing its wire form.

    OAuthError                      (RFC 6749 §5.2 body: error, error_description)
    ├── InvalidRequest              400 invalid_request
    ├── InvalidClient               401 invalid_client (+ WWW-Authenticate when Basic was used)
    ├── InvalidGrant                403 invalid_grant   (Auth0 answers 403, not RFC 6749's 400)
    ├── UnauthorizedClient          403 unauthorized_client
    ├── UnsupportedGrantType        400 unsupported_grant_type
    ├── InvalidScope                400 invalid_scope
    ├── AccessDenied                403 access_denied
    ├── Unauthorized                401 unauthorized    (admin-blocked user, Auth0's wording)
    ├── MfaRequired                 403 mfa_required    (+ mfa_token)
    ├── ExpiredToken                403 expired_token
    ├── PasswordLeakedError         401 password_leaked (breached password detection)
    ├── TooManyAttempts             429 too_many_attempts (+ Retry-After when the wait is known)
    ├── InvalidToken                401 invalid_token   (RFC 6750 bearer token errors, + WWW-Authenticate)
    ├── UnsupportedChallengeType    400 unsupported_challenge_type
    ├── BadGateway                  400 bad_gateway     (the mail server refused or did not answer: nothing sent)
    ├── UnmetAuthenticationRequirements 403 unmet_authentication_requirements (RFC 9470 §6: acr_values not met)
    ├── ServerError                 500 server_error    (configuration problems the client can report)
    └── TemporarilyUnavailable      503 temporarily_unavailable (+ Retry-After; load shedding, RFC 6749 §4.1.2.1)

Descriptions are fixed ASCII strings from ``shared/API.md`` §1.9; none of them says which credential was wrong.

``challenge_realm`` is the ``realm`` of a ``WWW-Authenticate`` challenge (RFC 7235 §2.2: the protection space), not
the ``realm`` parameter of Auth0's password-realm grant, which names a connection (user directory).
"""

from __future__ import annotations

from typing import ClassVar

__all__ = [
    "AccessDenied",
    "BadGateway",
    "ExpiredToken",
    "InvalidClient",
    "InvalidGrant",
    "InvalidRequest",
    "InvalidScope",
    "InvalidToken",
    "MfaRequired",
    "OAuthError",
    "PasswordLeakedError",
    "ServerError",
    "TemporarilyUnavailable",
    "TooManyAttempts",
    "Unauthorized",
    "UnauthorizedClient",
    "UnsupportedChallengeType",
    "UnsupportedGrantType",
]


class OAuthError(Exception):
    """Base of every error the token endpoint answers with."""

    error: ClassVar[str] = "server_error"
    status_code: ClassVar[int] = 400
    default_description: ClassVar[str] = ""

    def __init__(self, description: str | None = None) -> None:
        self.description = description if description is not None else self.default_description
        if any(ord(char) < 0x20 or ord(char) > 0x7E or char in '"\\' for char in self.description):
            # RFC 6749 §5.2: error_description is %x20-21 / %x23-5B / %x5D-7E.
            self.description = "".join(
                char if 0x20 <= ord(char) <= 0x7E and char not in '"\\' else "?" for char in self.description
            )
        super().__init__(self.description)

    def to_body(self) -> dict[str, str]:
        """The JSON body of the error response."""
        body = {"error": self.error}
        if self.description:
            body["error_description"] = self.description
        return body

    def headers(self) -> dict[str, str]:
        """Extra response headers (beyond the no-store headers every token response carries)."""
        return {}


class InvalidRequest(OAuthError):
    """The request is missing a parameter, repeats one, or is otherwise malformed."""

    error = "invalid_request"


class InvalidClient(OAuthError):
    """Client authentication failed (unknown client, wrong secret, wrong method)."""

    error = "invalid_client"
    status_code = 401
    default_description = "Client authentication failed"

    def __init__(self, description: str | None = None, *, challenge_realm: str | None = None) -> None:
        super().__init__(description)
        self.challenge_realm = challenge_realm

    def headers(self) -> dict[str, str]:
        """RFC 6749 §5.2: a 401 after Basic authentication names the scheme the client must use."""
        if self.challenge_realm is None:
            return {}
        return {"WWW-Authenticate": f'Basic realm="{self.challenge_realm}", charset="UTF-8"'}


class InvalidGrant(OAuthError):
    """The credentials or the grant presented are invalid."""

    error = "invalid_grant"
    status_code = 403


class UnauthorizedClient(OAuthError):
    """The client may not use this grant type."""

    error = "unauthorized_client"
    status_code = 403


class UnsupportedGrantType(OAuthError):
    """The server does not know the grant type."""

    error = "unsupported_grant_type"
    default_description = "Grant type not supported"


class InvalidScope(OAuthError):
    """The scope parameter is malformed."""

    error = "invalid_scope"


class AccessDenied(OAuthError):
    """Policy refused the request (unknown audience, a rule's denial)."""

    error = "access_denied"
    status_code = 403


class Unauthorized(OAuthError):
    """Auth0's answer for an admin-blocked user (after a correct password only)."""

    error = "unauthorized"
    status_code = 401


class PasswordLeakedError(OAuthError):
    """Breached password detection: the right password, but one disclosed in a breach (API.md §4.6)."""

    error = "password_leaked"
    status_code = 401
    default_description = (
        "This login attempt has been blocked because the password you're using was previously disclosed through a "
        "data breach (not in this application). Please check your email for more information."
    )


class MfaRequired(OAuthError):
    """The first factor passed; a second one is needed to finish, via the ``mfa_token``."""

    error = "mfa_required"
    status_code = 403
    default_description = "Multifactor authentication required"

    def __init__(self, mfa_token: str) -> None:
        super().__init__()
        self.mfa_token = mfa_token

    def to_body(self) -> dict[str, str]:
        """The standard body plus the ``mfa_token``."""
        return {**super().to_body(), "mfa_token": self.mfa_token}


class ExpiredToken(OAuthError):
    """An intermediate token (mfa_token) has expired."""

    error = "expired_token"
    status_code = 403


class TooManyAttempts(OAuthError):
    """A brute-force limit was reached."""

    error = "too_many_attempts"
    status_code = 429

    def __init__(self, description: str | None = None, *, retry_after: int | None = None) -> None:
        super().__init__(description)
        self.retry_after = retry_after

    def headers(self) -> dict[str, str]:
        """``Retry-After`` (RFC 9110 §10.2.3) when the wait is known."""
        return {"Retry-After": str(self.retry_after)} if self.retry_after is not None else {}


class TemporarilyUnavailable(OAuthError):
    """The server is overloaded (password hashing saturated): nothing was checked; retry later."""

    error = "temporarily_unavailable"
    status_code = 503
    default_description = "The service is busy. Please retry after some time."

    def __init__(self, description: str | None = None, *, retry_after: int = 1) -> None:
        super().__init__(description)
        self.retry_after = retry_after

    def headers(self) -> dict[str, str]:
        """``Retry-After`` in seconds."""
        return {"Retry-After": str(self.retry_after)}


class InvalidToken(OAuthError):
    """A bearer token is missing, malformed, expired or lacks the scope (RFC 6750 §3.1)."""

    error = "invalid_token"
    status_code = 401

    def __init__(
        self, description: str | None = None, *, challenge_realm: str = "identity", scope: str | None = None
    ) -> None:
        super().__init__(description)
        self.challenge_realm = challenge_realm
        self.scope = scope

    def headers(self) -> dict[str, str]:
        """RFC 6750 §3: the challenge names the error (and the scope needed)."""
        challenge = f'Bearer realm="{self.challenge_realm}", error="invalid_token"'
        if self.description:
            challenge += f', error_description="{self.description}"'
        if self.scope:
            challenge += f', scope="{self.scope}"'
        return {"WWW-Authenticate": challenge}


class UnsupportedChallengeType(OAuthError):
    """No authenticator of the user matches the challenge types asked (HANSON §2.2.3)."""

    error = "unsupported_challenge_type"


class BadGateway(OAuthError):
    """A code could not be handed to the mail server (HANSON §2.2.3's ``bad_gateway``): nothing was sent.

    400, as every OAuth error the client can act on (retry later): the service itself is up, and a 5xx would tell
    monitoring that it is not. The description names neither the address nor the server.
    """

    error = "bad_gateway"
    default_description = "The code could not be sent. Please try again later."


class UnmetAuthenticationRequirements(OAuthError):
    """What ``acr_values`` (or policy) asks cannot be met (RFC 9470 §6, OIDC): never a weaker token instead.

    403 at the token endpoint, beside Auth0's other refusals of a grant (``mfa_required``, ``invalid_grant``); the
    challenge endpoint answers it with 400 (`identity.oauth2.first_party.challenge_status`).
    """

    error = "unmet_authentication_requirements"
    status_code = 403


class ServerError(OAuthError):
    """The server is misconfigured in a way the client can report (e.g. no default directory)."""

    error = "server_error"
    status_code = 500
