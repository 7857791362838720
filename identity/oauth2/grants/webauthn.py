"""The WebAuthn grants: a security key or passkey as the second factor, and a passkey as the first.

- ``urn:okta:params:oauth:grant-type:mfa-webauthn`` (Okta Direct Authentication, ``shared/API.md`` §7.1): after
  ``mfa_required``, ``mfa_token`` and the assertion as Okta's form fields (``clientDataJSON``, ``authenticatorData``,
  ``signature``, ``userHandle``, base64url; no credential id, so the key is found by ``userHandle`` or each of the
  user's keys is tried) or as Auth0's ``authn_response`` object. With ``attestationObject`` instead of an assertion
  it confirms a key enrolled through ``/mfa/associate`` (as mfa-otp confirms an OTP enrollment).
- ``urn:okta:params:oauth:grant-type:webauthn`` (Auth0's native passkey API): ``auth_session`` from
  ``/passkey/challenge`` (or ``/passkey/register``) and ``authn_response``; the user is the key's owner. Rules run as
  for the password exchange (``event.transaction.protocol`` ``oauth2-webauthn``) and ``mfa_required`` is still
  answered where policy asks for a second factor and the passkey did not verify the user.

``amr`` (RFC 8176): ``hwk`` where the key's attestation proves hardware, ``swk`` otherwise; a passkey that verified
the user (PIN, biometrics) counts as two factors (``mfa``). Wherever ``amr`` has ``mfa``, ``acr`` is the multi-factor
policy and ``auth_time`` the check (RFC 9470), as after the MFA grants.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any, ClassVar

from identity.clock import Clock, SystemClock
from identity.oauth2.errors import InvalidGrant, InvalidRequest, MfaRequired, TooManyAttempts, Unauthorized
from identity.oauth2.first_party import MULTI_FACTOR
from identity.oauth2.grants.mfa import MALFORMED_MFA_TOKEN, TOO_MANY_ATTEMPTS, _MfaGrant
from identity.oauth2.grants.password import PasswordGrant, blocked_error
from identity.oauth2.interfaces import (
    Client,
    FactorCheck,
    GrantResult,
    LoginBlocked,
    MfaService,
    RulesPipeline,
    TenantStore,
    TokenIssuer,
    TokenResponse,
    UserAuthenticator,
    WebAuthnFactor,
    WebAuthnOutcome,
)
from identity.oauth2.requests import TokenRequest
from identity.oauth2.scopes import resolve_scopes

__all__ = [
    "INVALID_AUTH_SESSION",
    "INVALID_WEBAUTHN",
    "MFA_WEBAUTHN",
    "WEBAUTHN",
    "MfaWebAuthnGrant",
    "WebAuthnGrant",
    "credential_from_request",
    "key_amr",
]

MFA_WEBAUTHN = "urn:okta:params:oauth:grant-type:mfa-webauthn"
WEBAUTHN = "urn:okta:params:oauth:grant-type:webauthn"
INVALID_WEBAUTHN = "Invalid WebAuthn response."
"""One text for every refused response (wrong origin, RP id, challenge, signature, counter, missing UV): the
precise reason goes to the log."""
INVALID_AUTH_SESSION = "Invalid or expired auth_session."
_RESPONSE_FIELDS = ("clientDataJSON", "authenticatorData", "signature", "userHandle", "attestationObject")


def key_amr(outcome: WebAuthnOutcome) -> str:
    """``hwk`` for a key whose attestation proves hardware, else ``swk`` (RFC 8176)."""
    return "hwk" if outcome.hardware else "swk"


def credential_from_request(request: TokenRequest) -> dict[str, Any]:
    """The WebAuthn response of a token request, as a ``PublicKeyCredential`` JSON object.

    Auth0's ``authn_response`` (an object, or its JSON text in a form) or Okta's flat form fields.
    """
    if (raw := request.get("authn_response")) is not None:
        try:
            credential = json.loads(raw)
        except (ValueError, RecursionError):
            raise InvalidRequest("authn_response must be a JSON object") from None
        if not isinstance(credential, dict) or not isinstance(credential.get("response"), dict):
            raise InvalidRequest("authn_response must be a PublicKeyCredential object with a response")
        response = credential["response"]
        if not all(isinstance(response.get(name, ""), str | None) for name in _RESPONSE_FIELDS):
            raise InvalidRequest("authn_response members must be base64url strings")
        if not isinstance(response.get("clientDataJSON"), str):
            raise InvalidRequest("missing authn_response.response.clientDataJSON")
        return credential
    response = {name: value for name in _RESPONSE_FIELDS if (value := request.get(name)) is not None}
    if "clientDataJSON" not in response:
        raise InvalidRequest("missing clientDataJSON parameter")
    if "attestationObject" not in response:
        for name in ("authenticatorData", "signature"):
            if name not in response:
                raise InvalidRequest(f"missing {name} parameter")
    return {"type": "public-key", "response": response}


def _refuse(check: FactorCheck) -> None:
    if check is FactorCheck.RATE_LIMITED:
        raise TooManyAttempts(TOO_MANY_ATTEMPTS)
    if check is not FactorCheck.ACCEPTED:
        raise InvalidGrant(INVALID_WEBAUTHN)


class MfaWebAuthnGrant(_MfaGrant):
    """``grant_type=urn:okta:params:oauth:grant-type:mfa-webauthn``."""

    GRANT_TYPE: ClassVar[str] = MFA_WEBAUTHN
    AMR: ClassVar[tuple[str, ...]] = ("pwd", "mfa", "swk")

    def __init__(
        self, tenant: TenantStore, mfa: MfaService, issuer: TokenIssuer, clock: Clock, webauthn: WebAuthnFactor
    ) -> None:
        super().__init__(tenant, mfa, issuer, clock)
        self.webauthn = webauthn

    async def handle(self, request: TokenRequest, client: Client) -> TokenResponse:
        """Verify the assertion (or the attestation of a pending enrollment), then issue."""
        transaction = await self._transaction(request, client)
        credential = credential_from_request(request)
        deferred = await self._deferred(transaction, client)
        if "attestationObject" in credential["response"]:
            outcome = await self.webauthn.confirm_enrollment(transaction, credential)
        else:
            outcome = await self.webauthn.check_assertion(transaction, credential)
        if outcome.check is FactorCheck.TOKEN_USED:
            raise InvalidGrant(MALFORMED_MFA_TOKEN)
        _refuse(outcome.check)
        if transaction.first_factor is not None and outcome.authenticator_id == transaction.first_factor:
            # The passkey that signed in without verifying the user is one factor: it is not also the second.
            raise InvalidGrant(INVALID_WEBAUTHN)
        amr = (*deferred.amr[:-1], key_amr(outcome))  # _deferred ends with this grant's placeholder method
        return await self.issuer.issue(replace(deferred, amr=amr))


class WebAuthnGrant(PasswordGrant):
    """``grant_type=urn:okta:params:oauth:grant-type:webauthn``: a passkey as the first factor."""

    GRANT_TYPE: ClassVar[str] = WEBAUTHN
    PROTOCOL: ClassVar[str] = "oauth2-webauthn"

    def __init__(
        self,
        tenant: TenantStore,
        users: UserAuthenticator,
        issuer: TokenIssuer,
        webauthn: WebAuthnFactor,
        mfa: MfaService | None = None,
        rules: RulesPipeline | None = None,
        clock: Clock | None = None,
    ) -> None:
        super().__init__(tenant, users, issuer, mfa, rules)
        self.webauthn = webauthn
        self.clock = clock or SystemClock()

    async def handle(self, request: TokenRequest, client: Client) -> TokenResponse:
        """Verify the passkey response for its ``auth_session``; the key's owner signs in."""
        auth_session = request.get("auth_session")
        credential = credential_from_request(request)
        api, audience = await self._audience(request)
        scopes = resolve_scopes(request.scopes, api)
        if self._offline_access(request, client, api):
            scopes = (*scopes, "offline_access")
        try:
            outcome = await self.webauthn.passkey(client.client_id, auth_session, credential, ip=request.client_ip)
        except LoginBlocked as blocked:
            raise blocked_error(blocked) from None
        if outcome.session_unknown:
            raise InvalidGrant(INVALID_AUTH_SESSION)
        _refuse(outcome.check)
        user = outcome.user
        if user is None:
            raise InvalidGrant(INVALID_WEBAUTHN)
        realm = request.get("realm") or outcome.connection
        if realm is not None and realm != user.connection:
            raise InvalidGrant(INVALID_WEBAUTHN)  # the key belongs to a user of another directory
        connection = await self.tenant.connection(user.connection)
        if connection is None or connection.name not in client.connections:
            raise InvalidRequest("the connection was disabled")
        if user.blocked:
            raise Unauthorized("user is blocked")
        amr = (key_amr(outcome), "mfa") if outcome.user_verified else (key_amr(outcome),)
        result = GrantResult(
            grant_type=self.GRANT_TYPE,
            client=client,
            user=user,
            connection=connection,
            api=api,
            audience=audience,
            scopes=scopes,
            amr=amr,
            first_factor=outcome.authenticator_id,
            acr=MULTI_FACTOR if outcome.user_verified else None,
            auth_time=self.clock.now() if outcome.user_verified else None,
        )
        forced = api is not None and api.requires_mfa
        if self.rules is not None:
            rule_outcome = await self.rules.run(
                result,
                protocol=self.PROTOCOL,
                requested_scopes=request.scopes,
                client_ip=request.client_ip,
                user_agent=request.user_agent,
            )
            result, forced = rule_outcome.result, forced or rule_outcome.mfa_required
        # A passkey that verified the user (PIN, biometrics) is already two factors; one that only proved
        # presence is one, and the MFA policy applies as after a password.
        if not outcome.user_verified and self.mfa is not None and await self.mfa.required(user, forced=forced):
            raise MfaRequired(await self.mfa.start(result))
        return await self.issuer.issue(result)
