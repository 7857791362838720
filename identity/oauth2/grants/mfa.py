"""The MFA grants that finish a login paused at ``mfa_required`` (``shared/API.md`` §1.3-§1.6).

- ``http://auth0.com/oauth/grant-type/mfa-otp``: ``mfa_token`` and ``otp`` (a TOTP code). Also confirms an
  authenticator enrolled through ``/mfa/associate``.
- ``http://auth0.com/oauth/grant-type/mfa-oob``: ``mfa_token``, ``oob_code`` (from ``/mfa/challenge`` or
  ``/mfa/associate``) and ``binding_code`` (the 6-digit code emailed). Also confirms an email enrollment.
- ``http://auth0.com/oauth/grant-type/mfa-recovery-code``: ``mfa_token`` and ``recovery_code``; the response carries
  the new ``recovery_code`` that replaces the burned one.

Both look the ``mfa_token`` up the same way (`live_mfa_transaction`), burn it together with the factor, and issue
what the password step would have issued (same audience, same scopes), with an ``amr`` naming the factors (RFC 8176;
a documented divergence from Auth0, which leaves it out), ``acr`` the multi-factor policy and ``auth_time`` this
request (RFC 9470: what step-up with ``acr_values`` asked for).
"""

from __future__ import annotations

from dataclasses import replace
from typing import ClassVar

from identity.clock import Clock
from identity.oauth2.errors import (
    ExpiredToken,
    InvalidGrant,
    InvalidRequest,
    ServerError,
    TooManyAttempts,
    Unauthorized,
)
from identity.oauth2.first_party import MULTI_FACTOR
from identity.oauth2.interfaces import (
    Client,
    FactorCheck,
    GrantResult,
    MfaService,
    MfaTransaction,
    TenantStore,
    TokenIssuer,
    TokenResponse,
)
from identity.oauth2.requests import TokenRequest

__all__ = [
    "INVALID_BINDING_CODE",
    "INVALID_OOB_CODE",
    "INVALID_OTP",
    "INVALID_RECOVERY_CODE",
    "MALFORMED_MFA_TOKEN",
    "SECOND_FACTOR_GRANTS",
    "TOO_MANY_ATTEMPTS",
    "TOO_MANY_SENT",
    "MfaOobGrant",
    "MfaOtpGrant",
    "MfaRecoveryCodeGrant",
    "live_mfa_transaction",
]

MALFORMED_MFA_TOKEN = "Malformed mfa_token"
EXPIRED_MFA_TOKEN = "mfa_token is expired"
OTHER_CLIENT = "mfa_token not issued to this client"
INVALID_OTP = "Invalid otp_code."
INVALID_RECOVERY_CODE = "Invalid recovery_code."
INVALID_BINDING_CODE = "Invalid binding_code."
INVALID_OOB_CODE = "Invalid oob_code."
OTHER_OOB_CODE = "The oob_code doesn't match the mfa_token"
EXPIRED_OOB_CODE = "oob_code is expired"
TOO_MANY_ATTEMPTS = "Too many failed attempts. Please try again later."
TOO_MANY_SENT = "Too many codes were sent. Please try again later."
SECOND_FACTOR_GRANTS = frozenset(
    {
        "http://auth0.com/oauth/grant-type/mfa-otp",
        "http://auth0.com/oauth/grant-type/mfa-oob",
        "http://auth0.com/oauth/grant-type/mfa-recovery-code",
        "urn:okta:params:oauth:grant-type:mfa-webauthn",
    }
)
"""The grant types that answer ``mfa_required``: a client with none of them cannot finish a second factor (nor
enroll one), so step-up (``acr_values``) is unmet for it rather than a dead-end mfa_token."""


async def live_mfa_transaction(
    mfa: MfaService, mfa_token: str | None, *, client_id: str | None, clock: Clock
) -> MfaTransaction:
    """The live transaction behind ``mfa_token``, or the catalogue's error for it. A lookup only: nothing is burned.

    The token is consumed later, with the factor that answers it (`MfaService.check_otp` and the like).
    ``client_id`` ``None`` skips the client check (the MFA API's Bearer endpoints carry no client).
    """
    if mfa_token is None:
        raise InvalidRequest("missing mfa_token parameter")
    transaction = await mfa.find(mfa_token)
    if transaction is None or transaction.consumed:
        raise InvalidGrant(MALFORMED_MFA_TOKEN)
    if client_id is not None and transaction.client_id != client_id:
        raise InvalidRequest(OTHER_CLIENT)
    if transaction.expires_at <= clock.now():
        raise ExpiredToken(EXPIRED_MFA_TOKEN)
    return transaction


class _MfaGrant:
    GRANT_TYPE: ClassVar[str]
    AMR: ClassVar[tuple[str, ...]]

    def __init__(self, tenant: TenantStore, mfa: MfaService, issuer: TokenIssuer, clock: Clock) -> None:
        self.tenant = tenant
        self.mfa = mfa
        self.issuer = issuer
        self.clock = clock

    async def _transaction(self, request: TokenRequest, client: Client) -> MfaTransaction:
        return await live_mfa_transaction(
            self.mfa, request.get("mfa_token"), client_id=client.client_id, clock=self.clock
        )

    async def _deferred(self, transaction: MfaTransaction, client: Client) -> GrantResult:
        """What the password step deferred, checked before any factor or token is spent on it."""
        user = await self.mfa.user(transaction)
        connection = await self.tenant.connection(transaction.connection)
        if user is None or connection is None:
            raise InvalidGrant(MALFORMED_MFA_TOKEN)
        if user.blocked:
            raise Unauthorized("user is blocked")
        api = await self.tenant.api(transaction.audience) if transaction.audience is not None else None
        if transaction.audience is not None and api is None:
            raise InvalidGrant(MALFORMED_MFA_TOKEN)
        return GrantResult(
            grant_type=transaction.grant_type,
            client=client,
            user=user,
            connection=connection,
            api=api,
            audience=transaction.audience,
            scopes=transaction.scopes,
            amr=(*transaction.amr, *self.AMR[1:]),  # AMR[0] stands for the first factor (``pwd``)
            access_claims=transaction.access_claims,
            id_claims=transaction.id_claims,
            app_metadata=transaction.app_metadata,
            acr=MULTI_FACTOR,
            auth_time=self.clock.now(),  # the second factor is checked in this request
        )

    @staticmethod
    def _refuse(check: FactorCheck, invalid: str) -> None:
        if check is FactorCheck.RATE_LIMITED:
            raise TooManyAttempts(TOO_MANY_ATTEMPTS)
        if check is FactorCheck.TOKEN_USED:
            raise InvalidGrant(MALFORMED_MFA_TOKEN)
        if check is FactorCheck.UNKNOWN_CODE:
            raise InvalidGrant(INVALID_OOB_CODE)
        if check is FactorCheck.OTHER_TRANSACTION:
            raise InvalidRequest(OTHER_OOB_CODE)
        if check is FactorCheck.EXPIRED:
            raise ExpiredToken(EXPIRED_OOB_CODE)
        if check is not FactorCheck.ACCEPTED:
            raise InvalidGrant(invalid)


class MfaOtpGrant(_MfaGrant):
    """``grant_type=http://auth0.com/oauth/grant-type/mfa-otp``."""

    GRANT_TYPE: ClassVar[str] = "http://auth0.com/oauth/grant-type/mfa-otp"
    AMR: ClassVar[tuple[str, ...]] = ("pwd", "mfa", "otp")

    async def handle(self, request: TokenRequest, client: Client) -> TokenResponse:
        """Check the TOTP code against the user's authenticator, then issue."""
        transaction = await self._transaction(request, client)
        otp = request.require("otp")
        deferred = await self._deferred(transaction, client)
        # The code is accepted and the mfa_token burned in one database transaction (at most once each).
        self._refuse(await self.mfa.check_otp(transaction, otp), INVALID_OTP)
        return await self.issuer.issue(deferred)


class MfaOobGrant(_MfaGrant):
    """``grant_type=http://auth0.com/oauth/grant-type/mfa-oob``: a code sent by email (``binding_method: prompt``).

    Email is the only out-of-band channel, and its codes are always prompted: ``binding_code`` is required (FIDDUR's
    wording when missing). The code's checks, in order: the ``oob_code`` names an unused code (``Invalid
    oob_code.``) sent for this mfa_token (``invalid_request``), younger than five minutes (``expired_token``); the
    user's attempt bucket is not empty (429); the 6-digit code matches (``Invalid binding_code.``, one attempt).
    """

    GRANT_TYPE: ClassVar[str] = "http://auth0.com/oauth/grant-type/mfa-oob"
    AMR: ClassVar[tuple[str, ...]] = ("pwd", "mfa", "otp")

    async def handle(self, request: TokenRequest, client: Client) -> TokenResponse:
        """Check the emailed code against its oob_code, then issue."""
        transaction = await self._transaction(request, client)
        oob_code = request.require("oob_code")
        binding_code = request.get("binding_code")
        if binding_code is None:
            raise InvalidRequest("binding_code is required")
        deferred = await self._deferred(transaction, client)
        self._refuse(await self.mfa.check_oob(transaction, oob_code, binding_code), INVALID_BINDING_CODE)
        return await self.issuer.issue(deferred)


class MfaRecoveryCodeGrant(_MfaGrant):
    """``grant_type=http://auth0.com/oauth/grant-type/mfa-recovery-code``."""

    GRANT_TYPE: ClassVar[str] = "http://auth0.com/oauth/grant-type/mfa-recovery-code"
    AMR: ClassVar[tuple[str, ...]] = ("pwd", "mfa")

    async def handle(self, request: TokenRequest, client: Client) -> TokenResponse:
        """Burn the recovery code, issue, and hand back the code that replaces it."""
        transaction = await self._transaction(request, client)
        code = request.require("recovery_code")
        deferred = await self._deferred(transaction, client)
        check, new_code = await self.mfa.redeem_recovery_code(transaction, code)
        self._refuse(check, INVALID_RECOVERY_CODE)
        if new_code is None:
            # ACCEPTED always carries the replacement; without it the user would be left with no recovery code.
            # A real check, not an assert: `python -O` would strip that and issue anyway.
            raise ServerError("the recovery code could not be replaced")
        response = await self.issuer.issue(deferred)
        return replace(response, extra={**response.extra, "recovery_code": new_code})
