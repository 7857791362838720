"""The user's second factors as the first-party apps endpoint asks about them (`identity.oauth2.first_party`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from identity.accounts.errors import NotEnrolled, UnknownUser
from identity.accounts.factors import FactorService, FactorType
from identity.accounts.factors.email import SEND_REFILL_SECONDS, MailUnavailable, SendLimited
from identity.accounts.webauthn import Purpose, WebAuthnService
from identity.oauth2.first_party import AuthSession, CodeDelivery, Delivery
from identity.store import users as user_queries
from identity.store.tenant import tenant_settings

__all__ = ["ChallengeFactors"]

_WIRE_NAMES = {FactorType.TOTP: "otp", FactorType.WEBAUTHN: "webauthn", FactorType.EMAIL: "email"}
"""The endpoint's method names of the factor types (the MFA API's ``authenticator_type``, ``email`` for ``oob``)."""
_RECOVERY_CODE = "recovery-code"


class ChallengeFactors:
    """`identity.oauth2.first_party.SecondFactors` over the factor and WebAuthn services."""

    def __init__(self, factors: FactorService, webauthn: WebAuthnService) -> None:
        self.factors = factors
        self.webauthn = webauthn

    async def methods(self, user_id: str) -> tuple[str, ...]:
        """Confirmed factors only (a pending enrollment is no factor yet), as `SecondFactors.methods` orders them.

        Email only when a mail server is configured: without one, no code could reach the user.
        """
        listed = await self.factors.authenticators.listed(user_id)
        active = sorted((f for f in listed if f.active and f.type in _WIRE_NAMES), key=lambda f: f.enrolled_at)
        if not self.factors.email.enabled:
            active = [f for f in active if f.type is not FactorType.EMAIL]
        names = [_WIRE_NAMES[f.type] for f in active if f.type is not FactorType.EMAIL]
        names += [_WIRE_NAMES[f.type] for f in active if f.type is FactorType.EMAIL]
        if any(f.type is FactorType.RECOVERY_CODE and f.active for f in listed):
            names.append(_RECOVERY_CODE)
        return tuple(dict.fromkeys(names))

    async def webauthn_options(self, session: AuthSession) -> Mapping[str, Any]:
        """Request options for the user's keys, bound to the session's row (as an mfa_token's are to its row)."""
        found = await user_queries.by_user_id(self.webauthn.session, session.user_id)
        if found is None or found[0].id is None:
            raise UnknownUser("unknown user")
        return await self.webauthn.authentication_options(
            Purpose.MFA_ASSERT, user_pk=found[0].id, transaction_pk=session.id, client_id=session.client_id
        )

    async def send_email_code(self, session: AuthSession, auth_session: str) -> CodeDelivery:
        """A code to the user's first-enrolled email factor (`EmailCodes.challenge`, which commits before sending).

        Needs the request's unit of work (`FactorService.unit`): the send is taken from the user's bucket and the
        code stored in one write transaction, committed before the mail server is called.
        """
        unit = self.factors.unit
        if unit is None:
            raise RuntimeError("emailed codes are sent in the request's unit of work")
        listed = await self.factors.authenticators.listed(session.user_id)
        emails = sorted((f for f in listed if f.active and f.type is FactorType.EMAIL), key=lambda f: f.enrolled_at)
        if not emails:
            return CodeDelivery(Delivery.NOT_ENROLLED)
        user_pk = await self.factors.transactions.user_pk(session.transaction())
        label = (await tenant_settings(self.factors.session)).friendly_name
        await unit.commit()  # the session (or its restart) stands, whatever the send decides (a refusal rolls back)
        try:
            await self.factors.email.challenge(
                unit, user_pk, session.id, emails[0].id, issuer_name=label, session_key=auth_session
            )
        except SendLimited:
            return CodeDelivery(Delivery.LIMITED, retry_after=int(SEND_REFILL_SECONDS))
        except MailUnavailable:
            return CodeDelivery(Delivery.FAILED)
        except NotEnrolled:  # removed since it was listed
            return CodeDelivery(Delivery.NOT_ENROLLED)
        return CodeDelivery(Delivery.SENT, to=emails[0].name)
