"""The second factors the challenge endpoint accepts, one class each, by the parameter names of the draft's examples.

A method names itself (as listed in an ``insufficient_authorization`` answer's ``methods``), says whether a request
carries its credential, adds its members to the answer that asks for it (``"otp_required": true``, WebAuthn
options), and checks the credential against the session's pending step, which an accepted credential spends.

The draft leaves the intermediate requests to the server (§5.3); identity names its parameters after the draft's
example (``otp``) and Auth0's (``recovery_code``, ``authn_response``). An emailed code, `EmailMethod`:

- ``email`` is listed when the user has an active email factor and the server a mail server. A code is sent only
  when asked for, ``auth_session`` with ``challenge_type=email`` (Auth0's ``/mfa/challenge`` parameter, with the
  name the answer lists), or without asking when email is the user's only factor (a recovery code aside) on the
  request that makes the second factor due: the login, or a step-up. Never on a request that carries a factor.
- The answer that follows a send says so: ``"email_code_required": true`` and ``"email_code_sent_to":
  "j***@example.com"``. ``email`` listed without them: nothing was sent (ask for it).
- The code comes back as ``email_code``. It is bound to the ``auth_session`` (no ``oob_code`` is handed out: the
  session is the secret the code is hashed with) and only the last code sent for the session counts: an earlier
  one is a wrong code. A wrong code is ``Invalid email_code.`` and costs an attempt from the bucket OTP and
  recovery codes share; when no unused code waits (none sent, or the last one used) and when it expired (five
  minutes), the ``invalid_grant`` says so instead.
- Sending is limited per user (429 ``too_many_attempts`` with ``Retry-After``); a mail server that fails is
  ``bad_gateway`` (400, naming neither the address nor the server). Both carry the ``auth_session``, so that an app
  whose login just sent the code can still go on (ask again later, or use another factor).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from identity.oauth2.errors import InvalidRequest, ServerError
from identity.oauth2.first_party import AuthSession, CodeNotSent, Delivery, SecondFactors, TooManyCodesSent
from identity.oauth2.grants.mfa import INVALID_OTP, INVALID_RECOVERY_CODE, TOO_MANY_SENT
from identity.oauth2.grants.webauthn import INVALID_WEBAUTHN, credential_from_request, key_amr
from identity.oauth2.interfaces import FactorCheck, MfaService, WebAuthnFactor
from identity.oauth2.requests import TokenRequest

__all__ = [
    "EXPIRED_EMAIL_CODE",
    "INVALID_EMAIL_CODE",
    "NO_EMAIL_CODE",
    "ChallengeMethod",
    "EmailMethod",
    "OtpMethod",
    "RecoveryCodeMethod",
    "Verified",
    "WebAuthnMethod",
]

INVALID_EMAIL_CODE = "Invalid email_code."
"""As the OTP's ``Invalid otp_code.``, naming the parameter the app sent (the mfa-oob grant's ``binding_code`` is
not one here)."""
NO_EMAIL_CODE = "No email code is waiting on this auth_session: ask for one with challenge_type=email"
"""None was sent for the session, or the last one sent was used (a step-up needs a new one)."""
EXPIRED_EMAIL_CODE = "The email code has expired: ask for a new one with challenge_type=email"


@dataclass(frozen=True)
class Verified:
    """The outcome of checking a second factor."""

    check: FactorCheck
    amr: tuple[str, ...] = ()
    """The methods it adds to the first factor's (RFC 8176)."""
    extra: Mapping[str, Any] = field(default_factory=dict)
    """Members for the code response (the recovery code that replaces a used one)."""
    refusal: str | None = None
    """The ``error_description`` of a refusal more precise than the method's `ChallengeMethod.invalid`."""


class ChallengeMethod(Protocol):
    """One way to pass the second factor at the challenge endpoint."""

    name: str
    invalid: str
    """The ``error_description`` of a refused credential."""

    def carried_by(self, request: TokenRequest) -> bool:
        """Whether ``request`` carries this method's credential."""
        ...

    async def prompt(self, session: AuthSession, token: str, *, chosen: bool) -> Mapping[str, Any]:
        """Members of the answer that asks for this factor (it may start a ceremony bound to the session).

        ``token``: the ``auth_session`` value. ``chosen``: the app asked for this method, or it is the user's only
        one; a method that sends something (an email) sends only then.
        """
        ...

    async def verify(self, session: AuthSession, token: str, request: TokenRequest) -> Verified:
        """Check the credential; an accepted one spends the session's pending step, at most once."""
        ...


class OtpMethod:
    """``otp``: a TOTP code, as in the draft's example profile (``otp_required``)."""

    name = "otp"
    invalid = INVALID_OTP

    def __init__(self, mfa: MfaService) -> None:
        self.mfa = mfa

    def carried_by(self, request: TokenRequest) -> bool:
        """The ``otp`` parameter."""
        return request.get("otp") is not None

    async def prompt(self, session: AuthSession, token: str, *, chosen: bool) -> Mapping[str, Any]:
        """``"otp_required": true``."""
        return {"otp_required": True}

    async def verify(self, session: AuthSession, token: str, request: TokenRequest) -> Verified:
        """The code, once per time step, burning the step with it (`MfaService.check_otp`)."""
        return Verified(await self.mfa.check_otp(session.transaction(), request.require("otp")), ("mfa", "otp"))


class RecoveryCodeMethod:
    """``recovery_code`` (Auth0's parameter): swapped for a new one, returned with the code."""

    name = "recovery-code"
    invalid = INVALID_RECOVERY_CODE

    def __init__(self, mfa: MfaService) -> None:
        self.mfa = mfa

    def carried_by(self, request: TokenRequest) -> bool:
        """The ``recovery_code`` parameter."""
        return request.get("recovery_code") is not None

    async def prompt(self, session: AuthSession, token: str, *, chosen: bool) -> Mapping[str, Any]:
        """Nothing beyond being listed: the user reads it from where they kept it."""
        return {}

    async def verify(self, session: AuthSession, token: str, request: TokenRequest) -> Verified:
        """The code, swapped for a new one in the same transaction that burns the step."""
        check, new_code = await self.mfa.redeem_recovery_code(session.transaction(), request.require("recovery_code"))
        if check is not FactorCheck.ACCEPTED:
            return Verified(check)
        if new_code is None:  # the user would be left without a recovery code
            raise ServerError("the recovery code could not be replaced")
        return Verified(check, ("mfa",), {"recovery_code": new_code})


class WebAuthnMethod:
    """``webauthn``: an assertion by one of the user's keys, as Okta's form fields or Auth0's ``authn_response``."""

    name = "webauthn"
    invalid = INVALID_WEBAUTHN

    def __init__(self, webauthn: WebAuthnFactor, factors: SecondFactors) -> None:
        self.webauthn = webauthn
        self.factors = factors

    def carried_by(self, request: TokenRequest) -> bool:
        """``authn_response``, or the form's ``clientDataJSON``."""
        return request.get("authn_response") is not None or request.get("clientDataJSON") is not None

    async def prompt(self, session: AuthSession, token: str, *, chosen: bool) -> Mapping[str, Any]:
        """``"webauthn": {"publicKey": …}``: what ``navigator.credentials.get()`` takes (base64url members)."""
        return {"webauthn": {"publicKey": dict(await self.factors.webauthn_options(session))}}

    async def verify(self, session: AuthSession, token: str, request: TokenRequest) -> Verified:
        """The assertion against a challenge of this session, burning the challenge and the step."""
        credential = credential_from_request(request)
        if "attestationObject" in credential["response"]:
            raise InvalidRequest("a new key is enrolled through /mfa/associate, not here")
        outcome = await self.webauthn.check_assertion(session.transaction(), credential)
        if outcome.check is not FactorCheck.ACCEPTED:
            return Verified(outcome.check)
        return Verified(outcome.check, ("mfa", key_amr(outcome)))


class EmailMethod:
    """``email``: a six-digit code sent to the user's email factor, typed back as ``email_code`` (see the module)."""

    name = "email"
    invalid = INVALID_EMAIL_CODE

    def __init__(self, mfa: MfaService, factors: SecondFactors) -> None:
        self.mfa = mfa
        self.factors = factors

    def carried_by(self, request: TokenRequest) -> bool:
        """The ``email_code`` parameter."""
        return request.get("email_code") is not None

    async def prompt(self, session: AuthSession, token: str, *, chosen: bool) -> Mapping[str, Any]:
        """Chosen: send a code, and say so (``email_code_required``, the masked address); else nothing is sent.

        Raises:
            TooManyCodesSent: the user's emails are spent for now.
            CodeNotSent: the mail server did not take the message.
        """
        if not chosen:
            return {}
        sent = await self.factors.send_email_code(session, token)
        if sent.outcome is Delivery.LIMITED:
            raise TooManyCodesSent(TOO_MANY_SENT, auth_session=token, retry_after=sent.retry_after)
        if sent.outcome is Delivery.FAILED:
            raise CodeNotSent(auth_session=token)
        if sent.outcome is not Delivery.SENT:  # the factor was removed a moment ago: asking again says so
            return {}
        return {"email_code_required": True, "email_code_sent_to": sent.to}

    async def verify(self, session: AuthSession, token: str, request: TokenRequest) -> Verified:
        """The last code sent for the session, keyed by its ``auth_session``, burning the step with it."""
        check = await self.mfa.check_oob(session.transaction(), None, request.require("email_code"), session_key=token)
        if check is FactorCheck.ACCEPTED:
            return Verified(check, ("mfa", "otp"))  # RFC 8176 ``otp``, as the mfa-oob grant says for the same code
        if check is FactorCheck.EXPIRED:
            return Verified(check, refusal=EXPIRED_EMAIL_CODE)
        if check in (FactorCheck.UNKNOWN_CODE, FactorCheck.OTHER_TRANSACTION):
            return Verified(check, refusal=NO_EMAIL_CODE)
        return Verified(check)
