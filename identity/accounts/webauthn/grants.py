"""WebAuthn for the grants (`identity.oauth2.interfaces.WebAuthnFactor`): ceremonies plus the attempt buckets."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from identity.accounts.attack import AttemptReservation, ProtectionPolicy, reserve_address
from identity.accounts.factors import AttemptBucket
from identity.accounts.webauthn.records import Purpose
from identity.accounts.webauthn.service import WebAuthnService
from identity.oauth2.interfaces import FactorCheck, MfaTransaction, User, WebAuthnOutcome
from identity.store import users as user_queries
from identity.store.models import UserRow
from identity.store.tenant import tenant_settings

__all__ = ["WebAuthnFactors"]


class WebAuthnFactors:
    """`identity.oauth2.interfaces.WebAuthnFactor` for the grants: ceremonies plus the users' attempt bucket.

    The users' bucket counts the responses of those who already passed a first factor (an mfa_token, an MFA-API
    token), as for OTP codes; a passkey's sign-in, open to anyone, does not touch it, and draws from its address's
    suspicious-IP bucket instead, as a password login does.
    """

    def __init__(self, webauthn: WebAuthnService, attempts: AttemptBucket) -> None:
        self.webauthn = webauthn
        self.attempts = attempts

    async def _user(self, user_pk: int | None) -> User | None:
        if user_pk is None:
            return None
        row = await self.webauthn.session.get(UserRow, user_pk, populate_existing=True)
        if row is None:
            return None
        found = await user_queries.by_user_id(self.webauthn.session, row.user_id)
        await self.webauthn.session.commit()
        return user_queries.user_from_row(*found) if found is not None else None

    async def _transaction_user(self, transaction: MfaTransaction) -> int | None:
        found = await user_queries.by_user_id(self.webauthn.session, transaction.user_id)
        return found[0].id if found is not None else None

    async def confirm_enrollment(self, transaction: MfaTransaction, credential: Mapping[str, Any]) -> WebAuthnOutcome:
        """Verify the attestation of the key `/mfa/associate` asked for, store it, and burn the mfa_token."""
        ceremony = await self.webauthn.ceremony(credential, Purpose.MFA_REGISTER, transaction_pk=transaction.id)
        user_pk = await self._transaction_user(transaction)
        if ceremony is None or user_pk is None or ceremony.user_pk != user_pk:
            return WebAuthnOutcome(FactorCheck.INVALID)
        # /mfa/associate proved no factor: once the user has one (another enrollment, confirmed first), this one
        # is moot. Checked here without spending an attempt, and again under a lock where the key is stored.
        enrolled = await self.webauthn.has_active_factor(user_pk)
        await self.webauthn.session.commit()
        if enrolled:
            return WebAuthnOutcome(FactorCheck.INVALID)
        if not await self.attempts.reserve(user_pk):
            return WebAuthnOutcome(FactorCheck.RATE_LIMITED)
        registered = await self.webauthn.register(
            ceremony, credential, name="Security key", burn_transaction=transaction.id, first_factor_only=True
        )
        if registered.check is not FactorCheck.INVALID:
            await self.attempts.refund(user_pk)
        return WebAuthnOutcome(
            registered.check,
            authenticator_id=registered.authenticator_id,
            hardware=registered.hardware,
            user_verified=registered.user_verified,
        )

    async def check_assertion(self, transaction: MfaTransaction, credential: Mapping[str, Any]) -> WebAuthnOutcome:
        """Verify an assertion for the transaction's challenge with one of its user's keys; burn the mfa_token."""
        ceremony = await self.webauthn.ceremony(credential, Purpose.MFA_ASSERT, transaction_pk=transaction.id)
        user_pk = await self._transaction_user(transaction)
        if ceremony is None or user_pk is None:
            if user_pk is not None and not await self.attempts.reserve(user_pk):
                return WebAuthnOutcome(FactorCheck.RATE_LIMITED)
            return WebAuthnOutcome(FactorCheck.INVALID)
        assertion = await self.webauthn.authenticate(
            ceremony,
            credential,
            user_pk=user_pk,
            take_attempt=self.attempts.reserve,
            refund_attempt=self.attempts.refund,
            burn_transaction=transaction.id,
            exclude=transaction.first_factor,
        )
        return WebAuthnOutcome(
            assertion.check,
            authenticator_id=assertion.authenticator_id,
            hardware=assertion.hardware,
            user_verified=assertion.user_verified,
            cloned=assertion.cloned,
        )

    async def passkey(
        self, client_id: str, auth_session: str | None, credential: Mapping[str, Any], *, ip: str | None = None
    ) -> WebAuthnOutcome:
        """A passkey response for a ``/passkey/challenge`` or ``/passkey/register`` ceremony of this client.

        Each response takes a token of ``ip``'s suspicious-IP bucket before it is looked at (`LoginBlocked` when the
        bucket is empty), in the transaction that reads its ceremony. An accepted one gives it back, and for a
        ``/passkey/challenge`` ceremony the challenge's token too, so a sign-in costs nothing, as a right password.
        """
        session = self.webauthn.session
        policy = ProtectionPolicy.from_tenant(await tenant_settings(session))
        reservation = await reserve_address(session, policy, ip=ip, now=self.webauthn.clock.now())
        return await self._passkey(client_id, auth_session, credential, reservation)

    async def _passkey(
        self, client_id: str, auth_session: str | None, credential: Mapping[str, Any], reservation: AttemptReservation
    ) -> WebAuthnOutcome:
        if auth_session is not None:
            ceremony = await self.webauthn.ceremony_by_session(
                auth_session, (Purpose.PASSKEY_ASSERT, Purpose.PASSKEY_REGISTER)
            )
            if ceremony is not None:
                purpose = Purpose(ceremony.purpose)
                answered = await self.webauthn.ceremony(credential, purpose, session_binding=auth_session)
                if answered is None or answered.id != ceremony.id:
                    return WebAuthnOutcome(FactorCheck.INVALID)
        else:  # Okta's form: no auth_session; the challenge in clientDataJSON names the ceremony
            ceremony = await self.webauthn.ceremony(credential, Purpose.PASSKEY_ASSERT)
        if ceremony is None or ceremony.client_id != client_id:
            return WebAuthnOutcome(FactorCheck.INVALID, session_unknown=True)
        # Plain values: a lost race rolls the session back, which expires the row's attributes.
        connection, owner = ceremony.connection, ceremony.user_pk
        if ceremony.purpose == Purpose.PASSKEY_REGISTER.value:
            if owner is None or not await self.attempts.reserve(owner):
                return WebAuthnOutcome(FactorCheck.RATE_LIMITED)
            registered = await self.webauthn.register(ceremony, credential, name=_passkey_name(credential))
            if registered.check is not FactorCheck.INVALID:
                await self.attempts.refund(owner)
            if registered.check is FactorCheck.ACCEPTED:
                await reservation.succeeded(self.webauthn.session)  # committed with the read of the user
            return WebAuthnOutcome(
                registered.check,
                user=await self._user(owner) if registered.check is FactorCheck.ACCEPTED else None,
                authenticator_id=registered.authenticator_id,
                hardware=registered.hardware,
                user_verified=registered.user_verified,
                connection=connection,
            )
        # No attempt is drawn from the owner's bucket here: the key is named by its credential id or user handle,
        # which are not secrets, so anyone could empty the owner's bucket with forged responses and lock them out of
        # their passkey and their second factors; and a signature cannot be guessed, so a count protects nothing.
        # The address's bucket is what an attacker pays instead: the token taken for this response, kept unless it
        # signs in; then it comes back with the token its /passkey/challenge took.
        assertion = await self.webauthn.authenticate(ceremony, credential, user_pk=None)
        if assertion.check is FactorCheck.ACCEPTED:
            reservation.tokens = 2
            await reservation.succeeded(self.webauthn.session)  # committed with the read of the user
        return WebAuthnOutcome(
            assertion.check,
            user=await self._user(assertion.user_pk) if assertion.check is FactorCheck.ACCEPTED else None,
            authenticator_id=assertion.authenticator_id,
            hardware=assertion.hardware,
            user_verified=assertion.user_verified,
            connection=connection,
            cloned=assertion.cloned,
        )


def _passkey_name(credential: Mapping[str, Any]) -> str:
    attachment = credential.get("authenticatorAttachment")
    return "Passkey" if attachment == "platform" else "Security key"
