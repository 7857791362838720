"""WebAuthn security keys and passkeys: ceremonies (options, challenges) and verification, with py_webauthn.

Used by the MFA API (enrollment and the second factor), the passkey API (first factor) and the enrollment pages.

Security choices:
- Every ceremony has a challenge of 32 random bytes, stored as SHA-256 with what it is bound to (an mfa_token, an
  ``auth_session``, an enrollment-page session), a purpose and an expiry. A response is looked up by the challenge
  its ``clientDataJSON`` carries; a challenge issued for something else is refused. The challenge is burned by a
  conditional UPDATE in the same database transaction as the sign count and the mfa_token, so of concurrent
  requests with one response exactly one wins.
- py_webauthn checks the origin (``IDENTITY_WEBAUTHN_ORIGINS``), the RP id hash, the challenge, user presence, user
  verification (when the tenant requires it) and the signature. The sign count is checked here, after the
  signature: a counter that does not move forward marks the credential as possibly cloned; the response is refused
  and the event logged.
- Failed responses draw from the user's attempt bucket, as OTP codes do (reserved before checking).
- The public key is stored as the authenticator sent it (COSE; it is not a secret). The user handle is 32 random
  bytes per user, never the user id or the email.
- A key counts as hardware-bound (``amr`` ``hwk``) only when its attestation chained to a trusted root and it is
  not backup-eligible (a synced passkey is not bound to hardware); attestation ``none`` proves nothing (``swk``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import Enum, StrEnum
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
from webauthn.helpers import bytes_to_base64url, options_to_json_dict, parse_attestation_object
from webauthn.helpers.exceptions import InvalidAuthenticationResponse, InvalidRegistrationResponse
from webauthn.helpers.structs import (
    AttestationConveyancePreference,
    AttestationFormat,
    AuthenticatorSelectionCriteria,
    AuthenticatorTransport,
    CredentialDeviceType,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from identity.accounts.errors import AccountError
from identity.accounts.factors import AttemptBucket
from identity.clock import Clock
from identity.crypto import sha256_hex
from identity.oauth2.interfaces import FactorCheck, MfaTransaction, User, WebAuthnOutcome
from identity.settings import Settings
from identity.store import mfa as mfa_queries
from identity.store import users as user_queries
from identity.store.models import (
    AuthenticatorRow,
    MfaTransactionRow,
    RecoveryCodeRow,
    UserRow,
    WebAuthnChallengeRow,
    WebAuthnCredentialRow,
    WebAuthnUserRow,
)
from identity.store.tenant import tenant_row

__all__ = [
    "ATTESTATION_PREFERENCES",
    "CEREMONY_SECONDS",
    "USER_VERIFICATION",
    "Assertion",
    "Pending",
    "Purpose",
    "Registered",
    "WebAuthnFactors",
    "WebAuthnService",
    "b64url_decode",
]

logger = logging.getLogger("identity.webauthn")

CEREMONY_SECONDS = 300
"""How long a challenge may be answered (also the ``timeout`` hint given to the browser)."""
USER_VERIFICATION = ("required", "preferred", "discouraged")
ATTESTATION_PREFERENCES = ("none", "indirect", "direct")
_MAX_NAME = 64
_MAX_CREDENTIALS_PER_USER = 20
_ROOTED_FORMATS = (AttestationFormat.PACKED, AttestationFormat.FIDO_U2F, AttestationFormat.TPM)
"""Formats whose chain py_webauthn validates only against the roots it is given (the operator's)."""
_SHIPPED_ROOT_FORMATS = (AttestationFormat.APPLE, AttestationFormat.ANDROID_KEY)
"""Formats whose chain py_webauthn always validates against the vendor roots it ships."""


class Purpose(StrEnum):
    """Which ceremony a challenge belongs to."""

    MFA_REGISTER = "mfa-register"
    MFA_ASSERT = "mfa-assert"
    PASSKEY_REGISTER = "passkey-register"
    PASSKEY_ASSERT = "passkey-assert"
    PAGE_REGISTER = "page-register"
    PAGE_ASSERT = "page-assert"


def b64url_decode(value: str) -> bytes:
    """Decode base64url with or without padding; `ValueError` for anything else."""
    if not isinstance(value, str) or len(value) > 16 * 1024:
        raise ValueError("not base64url")
    try:
        return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError):
        raise ValueError("not base64url") from None


@dataclass(frozen=True)
class Assertion:
    """A verified assertion: whose key, which one, and what it proved."""

    check: FactorCheck
    user_pk: int | None = None
    user_id: str | None = None
    authenticator_id: str | None = None
    hardware: bool = False
    user_verified: bool = False
    challenge: Pending | None = None
    cloned: bool = False
    """Refused: a right signature with a sign count that did not move forward (the key may be cloned)."""


@dataclass(frozen=True)
class Registered:
    """A key registered by a verified attestation (``check`` ACCEPTED), or why not."""

    check: FactorCheck
    authenticator_id: str | None = None
    hardware: bool = False
    user_verified: bool = False
    reason: str | None = None


@dataclass(frozen=True)
class Pending:
    """A live ceremony, as plain values (a rolled-back session expires ORM rows; these stay readable)."""

    id: int
    purpose: str
    user_pk: int | None
    transaction_pk: int | None
    client_id: str | None
    connection: str | None
    user_verification: str

    @classmethod
    def of(cls, row: WebAuthnChallengeRow) -> Pending:
        """The values of a stored ceremony."""
        if row.id is None:
            raise ValueError("a ceremony that was never stored")
        return cls(row.id, row.purpose, row.user_pk, row.transaction_pk, row.client_id, row.connection,
                   row.user_verification)  # fmt: skip


@dataclass(frozen=True)
class _Key:
    """A stored key, as plain values."""

    id: int
    authenticator_pk: int
    user_pk: int
    credential_id: bytes
    public_key: bytes
    sign_count: int
    hardware: bool

    @classmethod
    def of(cls, row: WebAuthnCredentialRow) -> _Key:
        if row.id is None:
            raise ValueError("a key that was never stored")
        return cls(row.id, row.authenticator_pk, row.user_pk, bytes(row.credential_id), bytes(row.public_key),
                   row.sign_count, row.hardware)  # fmt: skip


class WebAuthnService:
    """WebAuthn over the database, for one request's session."""

    def __init__(self, session: AsyncSession, settings: Settings, clock: Clock) -> None:
        self.session = session
        self.settings = settings
        self.clock = clock

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self.clock.now(), UTC)

    # --- users, keys ---------------------------------------------------------------------------------------------

    async def user_handle(self, user_pk: int) -> bytes:
        """The user's random handle, created on first use (race-safe: the loser reads the winner's)."""
        for _ in range(3):
            row = await self.session.get(WebAuthnUserRow, user_pk, populate_existing=True)
            if row is not None:
                return row.user_handle
            self.session.add(WebAuthnUserRow(user_pk=user_pk, user_handle=secrets.token_bytes(32)))
            try:
                await self.session.commit()
            except IntegrityError:
                await self.session.rollback()
        raise AccountError("could not create a user handle")

    async def user_by_handle(self, handle: bytes) -> int | None:
        """The user whose handle this is."""
        query = select(WebAuthnUserRow.user_pk).where(col(WebAuthnUserRow.user_handle) == handle)
        return (await self.session.execute(query)).scalar()

    async def credentials(self, user_pk: int) -> Sequence[WebAuthnCredentialRow]:
        """The user's keys, oldest first."""
        query = (
            select(WebAuthnCredentialRow)
            .where(col(WebAuthnCredentialRow.user_pk) == user_pk)
            .order_by(col(WebAuthnCredentialRow.id))
            .execution_options(populate_existing=True)
        )
        return (await self.session.execute(query)).scalars().all()

    # --- options -------------------------------------------------------------------------------------------------

    async def _policy(self) -> tuple[str, str, str]:
        tenant = await tenant_row(self.session)
        return tenant.friendly_name, tenant.webauthn_user_verification, tenant.webauthn_attestation

    async def _challenge(
        self,
        purpose: Purpose,
        *,
        user_verification: str,
        user_pk: int | None = None,
        transaction: MfaTransactionRow | None = None,
        session_binding: str | None = None,
        client_id: str | None = None,
        connection: str | None = None,
    ) -> bytes:
        challenge = secrets.token_bytes(32)
        now = self._now()
        expires = now + timedelta(seconds=CEREMONY_SECONDS)
        if transaction is not None:
            expires = min(expires, transaction.expires_at)
        self.session.add(
            WebAuthnChallengeRow(
                challenge_hash=hashlib.sha256(challenge).hexdigest(),
                purpose=purpose.value,
                user_pk=user_pk,
                transaction_pk=transaction.id if transaction is not None else None,
                session_hash=sha256_hex(session_binding) if session_binding is not None else None,
                client_id=client_id,
                connection=connection,
                user_verification=user_verification,
                created_at=now,
                expires_at=expires,
            )
        )
        return challenge

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
        handle = await self.user_handle(user_pk)
        rp_name, uv, attestation = await self._policy()
        existing = await self.credentials(user_pk)
        if len(existing) >= _MAX_CREDENTIALS_PER_USER:
            raise AccountError("too many security keys")
        transaction = await self.session.get(MfaTransactionRow, transaction_pk) if transaction_pk else None
        challenge = await self._challenge(
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
            exclude_credentials=[_descriptor(row) for row in existing],
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
    ) -> dict[str, Any]:
        """Request options for ``navigator.credentials.get()``: the user's keys, or none (discoverable passkeys)."""
        _, uv, _ = await self._policy()
        allowed = [_descriptor(row) for row in await self.credentials(user_pk)] if user_pk is not None else []
        transaction = await self.session.get(MfaTransactionRow, transaction_pk) if transaction_pk else None
        challenge = await self._challenge(
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

    # --- ceremonies ----------------------------------------------------------------------------------------------

    async def ceremony(
        self,
        credential: Mapping[str, Any],
        purpose: Purpose,
        *,
        transaction_pk: int | None = None,
        session_binding: str | None = None,
    ) -> Pending | None:
        """The live challenge a response answers, if it was issued for this purpose and binding; else ``None``."""
        try:
            client_data = json.loads(b64url_decode(_response(credential).get("clientDataJSON", "")))
            challenge = b64url_decode(client_data["challenge"])
        except (ValueError, KeyError, TypeError, RecursionError):
            return None
        query = (
            select(WebAuthnChallengeRow)
            .where(col(WebAuthnChallengeRow.challenge_hash) == hashlib.sha256(challenge).hexdigest())
            .execution_options(populate_existing=True)
        )
        row = (await self.session.execute(query)).scalar()
        await self.session.commit()
        if row is None or row.purpose != purpose.value or row.consumed_at is not None:
            return None
        if row.expires_at <= self._now():
            return None
        if transaction_pk is not None and row.transaction_pk != transaction_pk:
            logger.warning("webauthn challenge of another mfa_token refused purpose=%s", purpose.value)
            return None
        if session_binding is not None and row.session_hash != sha256_hex(session_binding):
            logger.warning("webauthn challenge of another session refused purpose=%s", purpose.value)
            return None
        return Pending.of(row)

    async def ceremony_by_session(self, auth_session: str, purposes: Sequence[Purpose]) -> Pending | None:
        """The live ceremony of an ``auth_session`` (passkey API)."""
        query = (
            select(WebAuthnChallengeRow)
            .where(col(WebAuthnChallengeRow.session_hash) == sha256_hex(auth_session))
            .execution_options(populate_existing=True)
        )
        row = (await self.session.execute(query)).scalar()
        await self.session.commit()
        if row is None or row.purpose not in {p.value for p in purposes} or row.consumed_at is not None:
            return None
        return Pending.of(row) if row.expires_at > self._now() else None

    async def register(
        self,
        ceremony: Pending,
        credential: Mapping[str, Any],
        *,
        name: str,
        burn_transaction: int | None = None,
    ) -> Registered:
        """Verify an attestation for ``ceremony`` and store the key as an active factor, burning the challenge."""
        user_pk = ceremony.user_pk
        if user_pk is None:
            return Registered(FactorCheck.INVALID, reason="no user")
        try:
            verified = verify_registration_response(
                credential=_with_credential_id(credential),
                expected_challenge=_challenge_of(credential),
                expected_rp_id=self.settings.rp_id,
                expected_origin=list(self.settings.origins),
                require_user_verification=ceremony.user_verification == "required",
                pem_root_certs_bytes_by_fmt=self._roots(),
            )
        except (InvalidRegistrationResponse, ValueError, KeyError, TypeError) as exc:
            logger.info("webauthn registration refused purpose=%s reason=%s", ceremony.purpose, exc)
            return Registered(FactorCheck.INVALID, reason=str(exc))
        except Exception as exc:  # py_webauthn raises assorted errors on hostile input; none may become a 500
            logger.info("webauthn registration refused purpose=%s reason=%r", ceremony.purpose, exc)
            return Registered(FactorCheck.INVALID, reason="malformed")
        hardware = self._hardware(verified.fmt, verified.attestation_object, verified.credential_device_type)
        public_id = f"webauthn|dev_{secrets.token_urlsafe(12)}"
        now = self._now()
        if not await _burn_challenge(self.session, ceremony.id, now):
            await self.session.rollback()
            return Registered(FactorCheck.TOKEN_USED, reason="challenge used")
        if burn_transaction is not None and not await mfa_queries.burn_transaction(self.session, burn_transaction, now):
            await self.session.rollback()
            return Registered(FactorCheck.TOKEN_USED, reason="mfa_token used")
        authenticator = AuthenticatorRow(
            public_id=public_id, user_pk=user_pk, kind="webauthn", secret="", active=True, created_at=now,
            confirmed_at=now,
        )  # fmt: skip
        self.session.add(authenticator)
        await self.session.flush()
        if authenticator.id is None:
            raise RuntimeError("the authenticator row got no id on flush")
        transports = list(_response(credential).get("transports") or [])
        self.session.add(
            WebAuthnCredentialRow(
                authenticator_pk=authenticator.id,
                user_pk=user_pk,
                credential_id=verified.credential_id,
                public_key=verified.credential_public_key,
                sign_count=verified.sign_count,
                name=(name.strip() or "Security key")[:_MAX_NAME],
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
        response = _response(credential)
        candidates = [_Key.of(row) for row in await self._candidates(credential, response, user_pk)]
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
                    expected_challenge=_challenge_of(credential),
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
        row: _Key,
        new_count: int,
        user_verified: bool,
        refund_attempt: Any,
        burn_transaction: int | None,
    ) -> Assertion:
        now = self._now()
        if not await _burn_challenge(self.session, ceremony.id, now):
            await self.session.rollback()
            return Assertion(FactorCheck.INVALID)  # a replay: the challenge was answered already
        counted = await self.session.execute(
            update(WebAuthnCredentialRow)
            .where(col(WebAuthnCredentialRow.id) == row.id, col(WebAuthnCredentialRow.sign_count) == row.sign_count)
            .values(sign_count=new_count, last_used_at=now)
        )
        if _rowcount(counted) != 1:
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

    async def _candidates(
        self, credential: Mapping[str, Any], response: Mapping[str, Any], user_pk: int | None
    ) -> list[WebAuthnCredentialRow]:
        """The keys the response may come from: by credential id, else by user handle, else the user's keys."""
        handle_pk = None
        if isinstance(handle := response.get("userHandle"), str) and handle:
            try:
                handle_pk = await self.user_by_handle(b64url_decode(handle))
            except ValueError:
                return []
            if handle_pk is None or (user_pk is not None and handle_pk != user_pk):
                return []
        raw = credential.get("rawId") or credential.get("id")
        if isinstance(raw, str) and raw:
            try:
                credential_id = b64url_decode(raw)
            except ValueError:
                return []
            query = select(WebAuthnCredentialRow).where(col(WebAuthnCredentialRow.credential_id) == credential_id)
            row = (await self.session.execute(query.execution_options(populate_existing=True))).scalar()
            await self.session.commit()
            if row is None or (user_pk is not None and row.user_pk != user_pk):
                return []
            if handle_pk is not None and row.user_pk != handle_pk:
                return []
            return [row]
        owner = handle_pk if handle_pk is not None else user_pk
        if owner is None:
            return []  # a passkey response names its key or its user; Okta's form without userHandle cannot
        rows = list(await self.credentials(owner))
        await self.session.commit()
        return rows

    # --- attestation -----------------------------------------------------------------------------------------------

    def _roots(self) -> dict[AttestationFormat, list[bytes]] | None:
        roots = list(self.settings.webauthn_attestation_roots)
        return {fmt: roots for fmt in (*_ROOTED_FORMATS, AttestationFormat.ANDROID_KEY)} if roots else None

    def _hardware(self, fmt: Any, attestation_object: bytes, device_type: CredentialDeviceType) -> bool:
        """Whether the verified attestation proves a hardware-bound key (see the module docstring)."""
        if device_type is CredentialDeviceType.MULTI_DEVICE:
            return False
        try:
            statement = parse_attestation_object(attestation_object).att_stmt
        except Exception:  # already verified by py_webauthn: unreachable in practice
            return False
        if not statement.x5c:
            return False  # none, or self attestation: the key vouches for itself
        if fmt in _SHIPPED_ROOT_FORMATS:
            return True
        return fmt in _ROOTED_FORMATS and bool(self.settings.webauthn_attestation_roots)


def _response(credential: Mapping[str, Any]) -> Mapping[str, Any]:
    response = credential.get("response")
    return response if isinstance(response, Mapping) else {}


def _with_credential_id(credential: Mapping[str, Any]) -> dict[str, Any]:
    """The credential, with ``id``/``rawId`` from its attestation when only the response was sent (Okta's form)."""
    complete = dict(credential)
    if not complete.get("id") or not complete.get("rawId"):
        parsed = parse_attestation_object(b64url_decode(_response(credential)["attestationObject"]))
        attested = parsed.auth_data.attested_credential_data
        if attested is None:
            raise ValueError("attestation without credential data")
        complete["id"] = complete["rawId"] = bytes_to_base64url(attested.credential_id)
    complete.setdefault("type", "public-key")
    return complete


def _challenge_of(credential: Mapping[str, Any]) -> bytes:
    client_data = json.loads(b64url_decode(_response(credential)["clientDataJSON"]))
    return b64url_decode(client_data["challenge"])


def _descriptor(row: WebAuthnCredentialRow) -> PublicKeyCredentialDescriptor:
    transports = []
    for name in row.transports:
        try:
            transports.append(AuthenticatorTransport(name))
        except ValueError:
            continue
    return PublicKeyCredentialDescriptor(id=row.credential_id, transports=transports or None)


async def _burn_challenge(session: AsyncSession, challenge_pk: int, now: datetime) -> bool:
    result = await session.execute(
        update(WebAuthnChallengeRow)
        .where(col(WebAuthnChallengeRow.id) == challenge_pk, col(WebAuthnChallengeRow.consumed_at).is_(None))
        .values(consumed_at=now)
    )
    return _rowcount(result) == 1


class WebAuthnFactors:
    """`identity.oauth2.interfaces.WebAuthnFactor` for the grants: ceremonies plus the users' attempt bucket."""

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
        if not await self.attempts.reserve(user_pk):
            return WebAuthnOutcome(FactorCheck.RATE_LIMITED)
        registered = await self.webauthn.register(
            ceremony, credential, name="Security key", burn_transaction=transaction.id
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

    async def passkey(self, client_id: str, auth_session: str | None, credential: Mapping[str, Any]) -> WebAuthnOutcome:
        """A passkey response for a ``/passkey/challenge`` or ``/passkey/register`` ceremony of this client."""
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
            return WebAuthnOutcome(
                registered.check,
                user=await self._user(owner) if registered.check is FactorCheck.ACCEPTED else None,
                authenticator_id=registered.authenticator_id,
                hardware=registered.hardware,
                user_verified=registered.user_verified,
                connection=connection,
            )
        assertion = await self.webauthn.authenticate(
            ceremony,
            credential,
            user_pk=None,
            take_attempt=self.attempts.reserve,
            refund_attempt=self.attempts.refund,
        )
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


def _rowcount(result: Any) -> int:
    return int(getattr(result, "rowcount", 0) or 0)
