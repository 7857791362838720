"""`WebAuthnService`: registration and authentication ceremonies with py_webauthn, over one request's session.

py_webauthn checks the origin (``IDENTITY_WEBAUTHN_ORIGINS``), the RP id hash, the challenge, user presence, user
verification (when the tenant requires it) and the signature. The sign count is checked here, after the signature: a
counter that does not move forward marks the credential as possibly cloned; the response is refused and the event
logged. Failed second-factor responses draw from the user's attempt bucket, as OTP codes do (reserved before
checking); a passkey sign-in does not (`identity.accounts.webauthn.grants`).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from enum import Enum
from typing import Any

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select
from webauthn import (
    generate_authentication_options,
    generate_registration_options,
    verify_authentication_response,
    verify_registration_response,
)
from webauthn.helpers import bytes_to_base64url, options_to_json_dict
from webauthn.helpers.exceptions import InvalidAuthenticationResponse, InvalidRegistrationResponse
from webauthn.helpers.structs import (
    AttestationConveyancePreference,
    AuthenticatorSelectionCriteria,
    CredentialDeviceType,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from identity.accounts.errors import AccountError
from identity.accounts.webauthn.ceremonies import CEREMONY_SECONDS, Ceremonies, rowcount
from identity.accounts.webauthn.keys import KeyStore
from identity.accounts.webauthn.policy import (
    MAX_CREDENTIALS_PER_USER,
    MAX_NAME,
    attestation_roots,
    proves_hardware,
    tenant_policy,
)
from identity.accounts.webauthn.records import Assertion, Pending, Purpose, Registered, StoredKey
from identity.accounts.webauthn.wire import challenge_of, descriptor, response_of, with_credential_id
from identity.clock import Clock
from identity.oauth2.interfaces import FactorCheck
from identity.settings import Settings
from identity.store import mfa as mfa_queries
from identity.store.models import (
    AuthenticatorRow,
    MfaTransactionRow,
    RecoveryCodeRow,
    UserRow,
    WebAuthnCredentialRow,
)

__all__ = ["WebAuthnService"]

logger = logging.getLogger("identity.webauthn")


class WebAuthnService:
    """WebAuthn over the database, for one request's session."""

    def __init__(self, session: AsyncSession, settings: Settings, clock: Clock) -> None:
        self.session = session
        self.settings = settings
        self.clock = clock
        self.ceremonies = Ceremonies(session, clock)
        self.keys = KeyStore(session)

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self.clock.now(), UTC)

    # --- what the handlers and the grants read -----------------------------------------------------------------

    async def credentials(self, user_pk: int, authenticator_id: str | None = None) -> Sequence[WebAuthnCredentialRow]:
        """The user's keys, oldest first; with ``authenticator_id``, only that authenticator's key (or none)."""
        return await self.keys.credentials(user_pk, authenticator_id)

    async def ceremony(
        self,
        credential: Mapping[str, Any],
        purpose: Purpose,
        *,
        transaction_pk: int | None = None,
        session_binding: str | None = None,
    ) -> Pending | None:
        """The live challenge a response answers, if it was issued for this purpose and binding; else ``None``."""
        return await self.ceremonies.answered(
            credential, purpose, transaction_pk=transaction_pk, session_binding=session_binding
        )

    async def ceremony_by_session(self, auth_session: str, purposes: Sequence[Purpose]) -> Pending | None:
        """The live ceremony of an ``auth_session`` (passkey API)."""
        return await self.ceremonies.of_session(auth_session, purposes)

    # --- options -------------------------------------------------------------------------------------------------

    async def registration_options(
        self,
        user_pk: int,
        purpose: Purpose,
        *,
        transaction_pk: int | None = None,
        session_binding: str | None = None,
        client_id: str | None = None,
        connection: str | None = None,
    ) -> dict[str, Any]:
        """Creation options for ``navigator.credentials.create()``, with a challenge bound as asked."""
        user = await self.session.get(UserRow, user_pk)
        if user is None:
            raise AccountError("unknown user")
        handle = await self.keys.user_handle(user_pk)
        rp_name, uv, attestation = await tenant_policy(self.session)
        existing = await self.keys.credentials(user_pk)
        if len(existing) >= MAX_CREDENTIALS_PER_USER:
            raise AccountError("too many security keys")
        transaction = await self.session.get(MfaTransactionRow, transaction_pk) if transaction_pk else None
        challenge = await self.ceremonies.issue(
            purpose,
            user_verification=uv,
            user_pk=user_pk,
            transaction=transaction,
            session_binding=session_binding,
            client_id=client_id,
            connection=connection,
        )
        account = user.email or user.username or user.user_id
        options = generate_registration_options(
            rp_id=self.settings.rp_id,
            rp_name=rp_name,
            user_id=handle,
            user_name=account,
            user_display_name=user.name or account,
            challenge=challenge,
            timeout=CEREMONY_SECONDS * 1000,
            attestation=AttestationConveyancePreference(attestation),
            authenticator_selection=AuthenticatorSelectionCriteria(
                resident_key=ResidentKeyRequirement.PREFERRED,
                user_verification=UserVerificationRequirement(uv),
            ),
            exclude_credentials=[descriptor(row) for row in existing],
        )
        await self.session.commit()
        return options_to_json_dict(options)

    async def authentication_options(
        self,
        purpose: Purpose,
        *,
        user_pk: int | None = None,
        transaction_pk: int | None = None,
        session_binding: str | None = None,
        client_id: str | None = None,
        connection: str | None = None,
        authenticator_id: str | None = None,
    ) -> dict[str, Any]:
        """Request options for ``navigator.credentials.get()``: the user's keys, or none (discoverable passkeys).

        ``authenticator_id`` narrows ``allowCredentials`` to that one key of the user's. A user's options never go
        out with an empty list: to a browser that means "any passkey of this site", so `AccountError` instead.
        """
        _, uv, _ = await tenant_policy(self.session)
        allowed = []
        if user_pk is not None:
            allowed = [descriptor(row) for row in await self.keys.credentials(user_pk, authenticator_id)]
            if not allowed:
                await self.session.rollback()
                raise AccountError("no security key to challenge")
        transaction = await self.session.get(MfaTransactionRow, transaction_pk) if transaction_pk else None
        challenge = await self.ceremonies.issue(
            purpose,
            user_verification=uv,
            user_pk=user_pk,
            transaction=transaction,
            session_binding=session_binding,
            client_id=client_id,
            connection=connection,
        )
        options = generate_authentication_options(
            rp_id=self.settings.rp_id,
            challenge=challenge,
            timeout=CEREMONY_SECONDS * 1000,
            allow_credentials=allowed,
            user_verification=UserVerificationRequirement(uv),
        )
        await self.session.commit()
        return options_to_json_dict(options)

    # --- ceremonies ---------------------------------------------------------------------------------------------

    async def register(
        self,
        ceremony: Pending,
        credential: Mapping[str, Any],
        *,
        name: str,
        burn_transaction: int | None = None,
        first_factor_only: bool = False,
    ) -> Registered:
        """Verify an attestation for ``ceremony`` and store the key as an active factor, burning the challenge.

        ``first_factor_only`` (an enrollment through ``/mfa/associate``, which proved no factor): refused, with
        nothing stored, when the user has an active authenticator by the time it is confirmed.
        """
        user_pk = ceremony.user_pk
        if user_pk is None:
            return Registered(FactorCheck.INVALID, reason="no user")
        try:
            verified = verify_registration_response(
                credential=with_credential_id(credential),
                expected_challenge=challenge_of(credential),
                expected_rp_id=self.settings.rp_id,
                expected_origin=list(self.settings.origins),
                require_user_verification=ceremony.user_verification == "required",
                pem_root_certs_bytes_by_fmt=attestation_roots(self.settings),
            )
        except (InvalidRegistrationResponse, ValueError, KeyError, TypeError) as exc:
            logger.info("webauthn registration refused purpose=%s reason=%s", ceremony.purpose, exc)
            return Registered(FactorCheck.INVALID, reason=str(exc))
        except Exception as exc:  # py_webauthn raises assorted errors on hostile input; none may become a 500
            logger.info("webauthn registration refused purpose=%s reason=%r", ceremony.purpose, exc)
            return Registered(FactorCheck.INVALID, reason="malformed")
        hardware = proves_hardware(
            self.settings, verified.fmt, verified.attestation_object, verified.credential_device_type
        )
        public_id = f"webauthn|dev_{secrets.token_urlsafe(12)}"
        now = self._now()
        if not await self.ceremonies.burn(ceremony, now):
            await self.session.rollback()
            return Registered(FactorCheck.TOKEN_USED, reason="challenge used")
        if burn_transaction is not None and not await mfa_queries.burn_transaction(self.session, burn_transaction, now):
            await self.session.rollback()
            return Registered(FactorCheck.TOKEN_USED, reason="mfa_token used")
        if first_factor_only and await self.has_active_factor(user_pk, hold=True):
            await self.session.rollback()
            logger.info("webauthn registration refused: the user enrolled another factor meanwhile")
            return Registered(FactorCheck.INVALID, reason="already enrolled")
        authenticator = AuthenticatorRow(
            public_id=public_id, user_pk=user_pk, kind="webauthn", secret="", active=True, created_at=now,
            confirmed_at=now,
        )  # fmt: skip
        self.session.add(authenticator)
        await self.session.flush()
        if authenticator.id is None:
            raise RuntimeError("the authenticator row got no id on flush")
        transports = list(response_of(credential).get("transports") or [])
        self.session.add(
            WebAuthnCredentialRow(
                authenticator_pk=authenticator.id,
                user_pk=user_pk,
                credential_id=verified.credential_id,
                public_key=verified.credential_public_key,
                sign_count=verified.sign_count,
                name=(name.strip() or "Security key")[:MAX_NAME],
                transports=[t for t in transports if isinstance(t, str)][:8],
                aaguid=verified.aaguid,
                attestation_format=str(verified.fmt.value if isinstance(verified.fmt, Enum) else verified.fmt),
                hardware=hardware,
                backup_eligible=verified.credential_device_type is CredentialDeviceType.MULTI_DEVICE,
                created_at=now,
            )
        )
        await mfa_queries.delete_pending(self.session, user_pk)  # an app enrollment left unconfirmed is moot
        # The first factor of a user turns the pending recovery code on (as a confirmed OTP app does).
        await self.session.execute(
            update(RecoveryCodeRow).where(col(RecoveryCodeRow.user_pk) == user_pk).values(active=True)
        )
        try:
            await self.session.commit()
        except IntegrityError:
            await self.session.rollback()
            logger.info("webauthn registration refused: credential already registered")
            return Registered(FactorCheck.INVALID, reason="This security key is already registered.")
        logger.info("webauthn key registered authenticator=%s hardware=%s", public_id, hardware)
        return Registered(FactorCheck.ACCEPTED, public_id, hardware, verified.user_verified)

    async def has_active_factor(self, user_pk: int, *, hold: bool = False) -> bool:
        """Whether the user has an active authenticator (an app or a key).

        ``hold``: the user's row stays locked until the transaction ends (PostgreSQL; SQLite has one writer, and the
        caller has written already), so two confirmations of different enrollments of one user run one after the
        other and the second sees the first's key.
        """
        if hold:
            await self.session.execute(select(UserRow.id).where(col(UserRow.id) == user_pk).with_for_update())
        query = select(AuthenticatorRow.id).where(
            col(AuthenticatorRow.user_pk) == user_pk, col(AuthenticatorRow.active).is_(True)
        )
        return (await self.session.execute(query.limit(1))).first() is not None

    async def authenticate(
        self,
        ceremony: Pending,
        credential: Mapping[str, Any],
        *,
        user_pk: int | None,
        take_attempt: Any = None,
        refund_attempt: Any = None,
        burn_transaction: int | None = None,
        exclude: str | None = None,
    ) -> Assertion:
        """Verify an assertion answering ``ceremony``; burn the challenge (and the mfa_token) when it verifies.

        ``user_pk`` restricts the keys to one user (second factor); ``None`` finds the user by the key (passkeys).
        ``take_attempt``/``refund_attempt`` are the factor service's bucket (async callables taking the user pk).
        ``exclude`` is an authenticator id that may not answer (the passkey that was the first factor).
        """
        response = response_of(credential)
        candidates = [StoredKey.of(row) for row in await self.keys.candidates(credential, response, user_pk)]
        if exclude is not None:
            query = select(AuthenticatorRow.id).where(col(AuthenticatorRow.public_id) == exclude)
            excluded = (await self.session.execute(query)).scalar()
            await self.session.commit()
            candidates = [row for row in candidates if row.authenticator_pk != excluded]
        if not candidates:
            logger.info("webauthn assertion refused: no matching key purpose=%s", ceremony.purpose)
            return Assertion(FactorCheck.INVALID)
        owner = candidates[0].user_pk
        if take_attempt is not None and not await take_attempt(owner):
            return Assertion(FactorCheck.RATE_LIMITED)
        require_uv = ceremony.user_verification == "required"
        for row in candidates:
            raw_id = bytes_to_base64url(row.credential_id)
            attempt = {
                "id": raw_id,
                "rawId": raw_id,
                "type": credential.get("type") or "public-key",
                "response": {k: v for k, v in response.items() if k != "userHandle" or v},
                "clientExtensionResults": {},
            }
            try:
                verified = verify_authentication_response(
                    credential=attempt,
                    expected_challenge=challenge_of(credential),
                    expected_rp_id=self.settings.rp_id,
                    expected_origin=list(self.settings.origins),
                    credential_public_key=row.public_key,
                    credential_current_sign_count=0,  # checked below, after the signature
                    require_user_verification=require_uv,
                )
            except (InvalidAuthenticationResponse, ValueError, KeyError, TypeError) as exc:
                logger.info("webauthn assertion refused purpose=%s reason=%s", ceremony.purpose, exc)
                continue
            except Exception as exc:  # hostile input must never become a 500
                logger.info("webauthn assertion refused purpose=%s reason=%r", ceremony.purpose, exc)
                continue
            if (verified.new_sign_count > 0 or row.sign_count > 0) and verified.new_sign_count <= row.sign_count:
                logger.warning(
                    "webauthn sign count did not increase (%d after %d): credential possibly cloned, refused "
                    "authenticator_pk=%s user_pk=%s",
                    verified.new_sign_count, row.sign_count, row.authenticator_pk, row.user_pk,
                )  # fmt: skip
                return Assertion(FactorCheck.INVALID, user_pk=row.user_pk, cloned=True)
            return await self._accept(ceremony, row, verified.new_sign_count, verified.user_verified,
                                      refund_attempt, burn_transaction)  # fmt: skip
        return Assertion(FactorCheck.INVALID)

    async def _accept(
        self,
        ceremony: Pending,
        row: StoredKey,
        new_count: int,
        user_verified: bool,
        refund_attempt: Any,
        burn_transaction: int | None,
    ) -> Assertion:
        now = self._now()
        if not await self.ceremonies.burn(ceremony, now):
            await self.session.rollback()
            return Assertion(FactorCheck.INVALID)  # a replay: the challenge was answered already
        counted = await self.session.execute(
            update(WebAuthnCredentialRow)
            .where(col(WebAuthnCredentialRow.id) == row.id, col(WebAuthnCredentialRow.sign_count) == row.sign_count)
            .values(sign_count=new_count, last_used_at=now)
        )
        if rowcount(counted) != 1:
            await self.session.rollback()
            return Assertion(FactorCheck.INVALID)  # the key was used concurrently with the same or a lower count
        if burn_transaction is not None and not await mfa_queries.burn_transaction(self.session, burn_transaction, now):
            await self.session.rollback()
            return Assertion(FactorCheck.TOKEN_USED)
        authenticator = await self.session.get(AuthenticatorRow, row.authenticator_pk)
        user = await self.session.get(UserRow, row.user_pk)
        await self.session.commit()
        if refund_attempt is not None:
            await refund_attempt(row.user_pk)
        return Assertion(
            FactorCheck.ACCEPTED,
            user_pk=row.user_pk,
            user_id=user.user_id if user is not None else None,
            authenticator_id=authenticator.public_id if authenticator is not None else None,
            hardware=row.hardware,
            user_verified=user_verified,
            challenge=ceremony,
        )
