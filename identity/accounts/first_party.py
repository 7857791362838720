"""The user's second factors as the first-party apps endpoint asks about them (`identity.oauth2.first_party`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from identity.accounts.errors import UnknownUser
from identity.accounts.factors import FactorService, FactorType
from identity.accounts.webauthn import Purpose, WebAuthnService
from identity.oauth2.first_party import AuthSession
from identity.store import users as user_queries

__all__ = ["ChallengeFactors"]

_METHODS = ("otp", "webauthn", "recovery-code")
"""The MFA API's ``authenticator_type`` values the endpoint offers, in the order it lists them (the recovery code,
the fallback, last; an emailed code will join)."""
_WIRE_NAMES = {FactorType.TOTP: "otp", FactorType.WEBAUTHN: "webauthn", FactorType.RECOVERY_CODE: "recovery-code"}


class ChallengeFactors:
    """`identity.oauth2.first_party.SecondFactors` over the factor and WebAuthn services."""

    def __init__(self, factors: FactorService, webauthn: WebAuthnService) -> None:
        self.factors = factors
        self.webauthn = webauthn

    async def methods(self, user_id: str) -> tuple[str, ...]:
        """Confirmed factors only: a pending enrollment is no factor yet."""
        listed = await self.factors.authenticators.listed(user_id)
        active = {_WIRE_NAMES[factor.type] for factor in listed if factor.active}
        return tuple(name for name in _METHODS if name in active)

    async def webauthn_options(self, session: AuthSession) -> Mapping[str, Any]:
        """Request options for the user's keys, bound to the session's row (as an mfa_token's are to its row)."""
        found = await user_queries.by_user_id(self.webauthn.session, session.user_id)
        if found is None or found[0].id is None:
            raise UnknownUser("unknown user")
        return await self.webauthn.authentication_options(
            Purpose.MFA_ASSERT, user_pk=found[0].id, transaction_pk=session.id, client_id=session.client_id
        )
