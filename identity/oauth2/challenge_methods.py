"""The second factors the challenge endpoint accepts, one class each, by the parameter names of the draft's examples.

A method names itself (as listed in an ``insufficient_authorization`` answer's ``methods``), says whether a request
carries its credential, adds its members to the answer that asks for it (``"otp_required": true``, WebAuthn
options), and checks the credential against the session's pending step, which an accepted credential spends.

This is the extension point for factors still to come: an emailed code is a class with ``name = "email"`` whose
`ChallengeMethod.prompt` sends the code (and says so: ``"email_code_required": true``) and whose
`ChallengeMethod.verify` checks the ``email_code`` parameter through the MFA service, burning the step as the others
do; the factor service lists it among the user's methods, and ``web/challenge.py`` adds it to the endpoint's tuple.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from identity.oauth2.errors import InvalidRequest, ServerError
from identity.oauth2.first_party import AuthSession, SecondFactors
from identity.oauth2.grants.mfa import INVALID_OTP, INVALID_RECOVERY_CODE
from identity.oauth2.grants.webauthn import INVALID_WEBAUTHN, credential_from_request, key_amr
from identity.oauth2.interfaces import FactorCheck, MfaService, WebAuthnFactor
from identity.oauth2.requests import TokenRequest

__all__ = ["ChallengeMethod", "OtpMethod", "RecoveryCodeMethod", "Verified", "WebAuthnMethod"]


@dataclass(frozen=True)
class Verified:
    """The outcome of checking a second factor."""

    check: FactorCheck
    amr: tuple[str, ...] = ()
    """The methods it adds to the first factor's (RFC 8176)."""
    extra: Mapping[str, Any] = field(default_factory=dict)
    """Members for the code response (the recovery code that replaces a used one)."""


class ChallengeMethod(Protocol):
    """One way to pass the second factor at the challenge endpoint."""

    name: str
    invalid: str
    """The ``error_description`` of a refused credential."""

    def carried_by(self, request: TokenRequest) -> bool:
        """Whether ``request`` carries this method's credential."""
        ...

    async def prompt(self, session: AuthSession) -> Mapping[str, Any]:
        """Members of the answer that asks for this factor (it may start a ceremony bound to the session)."""
        ...

    async def verify(self, session: AuthSession, request: TokenRequest) -> Verified:
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

    async def prompt(self, session: AuthSession) -> Mapping[str, Any]:
        """``"otp_required": true``."""
        return {"otp_required": True}

    async def verify(self, session: AuthSession, request: TokenRequest) -> Verified:
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

    async def prompt(self, session: AuthSession) -> Mapping[str, Any]:
        """Nothing beyond being listed: the user reads it from where they kept it."""
        return {}

    async def verify(self, session: AuthSession, request: TokenRequest) -> Verified:
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

    async def prompt(self, session: AuthSession) -> Mapping[str, Any]:
        """``"webauthn": {"publicKey": …}``: what ``navigator.credentials.get()`` takes (base64url members)."""
        return {"webauthn": {"publicKey": dict(await self.factors.webauthn_options(session))}}

    async def verify(self, session: AuthSession, request: TokenRequest) -> Verified:
        """The assertion against a challenge of this session, burning the challenge and the step."""
        credential = credential_from_request(request)
        if "attestationObject" in credential["response"]:
            raise InvalidRequest("a new key is enrolled through /mfa/associate, not here")
        outcome = await self.webauthn.check_assertion(session.transaction(), credential)
        if outcome.check is not FactorCheck.ACCEPTED:
            return Verified(outcome.check)
        return Verified(outcome.check, ("mfa", key_amr(outcome)))
