"""Second factors: the MFA gate, enrollment, verification, recovery codes, and the transactions behind mfa_tokens.

`FactorService` implements `identity.oauth2.interfaces.MfaService` for the grants, and offers enrollment and
management to the MFA API, the enrollment page and the CLI.

Security choices:
- TOTP secrets are sealed (AES-GCM, `identity.crypto`) and bound to the authenticator's id; nothing activates before a
  valid code confirms it.
- A code's time step is accepted at most once per authenticator (conditional UPDATE on ``last_step``).
- ``mfa_token`` is 256 random bits, stored as SHA-256, single use (conditional UPDATE on ``consumed_at``).
- Failed codes draw from a per-user bucket of 10 that refills one every 6 minutes (Auth0's limits); a new mfa_token
  does not refill it. The bucket is checked *before* verifying so an empty bucket costs the attacker a guess.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from identity.accounts.errors import AccountError, UnknownUser
from identity.accounts.sessions import end_user_sessions
from identity.clock import Clock
from identity.crypto import SecretBox, SecretBoxError, sha256_hex
from identity.mfa import recovery, totp
from identity.oauth2.interfaces import FactorCheck, GrantResult, MfaTransaction, User
from identity.store import mfa as queries
from identity.store import users as user_queries
from identity.store.db import UnitOfWork
from identity.store.models import AuthenticatorRow, MfaTransactionRow, UserRow
from identity.store.tenant import tenant_settings

__all__ = [
    "ATTEMPT_CAPACITY",
    "ATTEMPT_REFILL_SECONDS",
    "MFA_POLICIES",
    "PENDING_ENROLLMENT_SECONDS",
    "AlreadyEnrolled",
    "Enrollment",
    "FactorService",
    "NotEnrolled",
]

ATTEMPT_CAPACITY = 10.0
ATTEMPT_REFILL_SECONDS = 360.0
PENDING_ENROLLMENT_SECONDS = 600.0
MFA_POLICIES = ("never", "if-enrolled", "always")
_TOTP_PURPOSE = "totp-secret:"


class AlreadyEnrolled(AccountError):
    """The user has an active factor: enrolling another needs a completed MFA first."""


class NotEnrolled(AccountError):
    """The user has no active factor."""


@dataclass(frozen=True)
class Enrollment:
    """A pending TOTP enrollment, as shown to the user once."""

    authenticator_id: str
    secret: str
    barcode_uri: str
    recovery_code: str | None
    """Only on the first enrollment (when the user has no active recovery code)."""


def _public_id(kind: str) -> str:
    return f"{kind}|dev_{secrets.token_urlsafe(12)}"


class FactorService:
    """Second factors over the database."""

    def __init__(self, session: AsyncSession, box: SecretBox, clock: Clock, unit: UnitOfWork | None = None) -> None:
        self.session = session
        self.box = box
        self.clock = clock
        self.unit = unit
        """The token request's unit of work: with it, the grants' checks write in its one transaction."""
        self._user_pks: dict[str, int] = {}

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self.clock.now(), UTC)

    # --- the gate and the transactions (MfaService) ---------------------------------------------------------

    async def required(self, user: User, *, forced: bool) -> bool:
        """Policy ``always``; ``if-enrolled`` and an active factor; or ``forced`` by the API or a rule."""
        policy = (await tenant_settings(self.session)).mfa_policy
        if forced or policy == "always":
            return True
        if policy == "never":
            return False
        row = await self._user_row(user.user_id)
        return row is not None and any(a.active for a in await queries.authenticators(self.session, row.id or 0))

    async def start(self, result: GrantResult) -> str:
        """Store the deferred issuance and return its mfa_token."""
        row = await self._user_row(result.user.user_id)
        if row is None or row.id is None:
            raise AccountError("user vanished during login")
        tenant = await tenant_settings(self.session)
        token = secrets.token_urlsafe(32)
        now = self._now()
        self.session.add(
            MfaTransactionRow(
                token_hash=sha256_hex(token),
                client_id=result.client.client_id,
                user_pk=row.id,
                connection=result.connection.name,
                grant_type=result.grant_type,
                audience=result.audience,
                scopes=list(result.scopes),
                access_claims=dict(result.access_claims),
                id_claims=dict(result.id_claims),
                app_metadata=dict(result.app_metadata),
                amr=[] if result.amr == ("pwd",) else list(result.amr),
                first_factor=result.first_factor,
                created_at=now,
                expires_at=now + timedelta(seconds=tenant.mfa_token_lifetime),
            )
        )
        await self.session.commit()
        return token

    async def find(self, mfa_token: str) -> MfaTransaction | None:
        """The transaction of ``mfa_token`` with its user's id."""
        row = await queries.transaction_by_hash(self.session, sha256_hex(mfa_token))
        if row is None or row.id is None:
            return None
        user = await self.session.get(UserRow, row.user_pk)
        if user is None:
            return None
        self._user_pks[user.user_id] = row.user_pk
        return MfaTransaction(
            id=row.id,
            client_id=row.client_id,
            user_id=user.user_id,
            connection=row.connection,
            grant_type=row.grant_type,
            audience=row.audience,
            scopes=tuple(row.scopes),
            expires_at=row.expires_at.timestamp(),
            consumed=row.consumed_at is not None,
            access_claims=dict(row.access_claims),
            id_claims=dict(row.id_claims),
            app_metadata=dict(row.app_metadata or {}),
            amr=tuple(row.amr) or ("pwd",),
            first_factor=row.first_factor,
        )

    async def user(self, transaction: MfaTransaction) -> User | None:
        """The user as stored now."""
        found = await user_queries.by_user_id(self.session, transaction.user_id)
        return user_queries.user_from_row(*found) if found is not None else None

    async def check_otp(self, transaction: MfaTransaction, otp: str) -> FactorCheck:
        """Check a TOTP code and, in the same transaction, burn the mfa_token."""
        user_pk = self._user_pks.get(transaction.user_id) or await self._user_pk(transaction.user_id)
        if self.unit is None:
            return await self.verify_otp(user_pk, otp, burn=transaction.id)
        return await self._check_otp_in_unit(self.unit, user_pk, otp, transaction.id)

    async def _check_otp_in_unit(self, unit: UnitOfWork, user_pk: int, otp: str, burn: int) -> FactorCheck:
        """`verify_otp` as one part of the request's single transaction (the token endpoint's mfa-otp grant).

        The user's attempt bucket is held (locked on PostgreSQL) for the whole transaction, so concurrent codes of
        one user are checked one after the other and each failure costs one attempt; a right code costs nothing.
        When the mfa_token was burned by another request, the whole unit is rolled back: no step is spent.
        """
        now = self.clock.now()
        left = await queries.hold_attempts(
            self.session, user_pk, now=now, capacity=ATTEMPT_CAPACITY, refill_seconds=ATTEMPT_REFILL_SECONDS
        )
        if left < 1:
            return FactorCheck.RATE_LIMITED
        check = await self._match_otp(user_pk, otp, burn, now)
        if check is FactorCheck.INVALID:
            await queries.set_attempts(self.session, user_pk, left - 1, now=now)
        elif check is FactorCheck.TOKEN_USED:
            await unit.rollback()
        return check

    async def _match_otp(self, user_pk: int, otp: str, burn: int, now: float) -> FactorCheck:
        candidates = [a for a in await queries.authenticators(self.session, user_pk) if a.kind == "totp"]
        if any(a.active for a in candidates):
            candidates = [a for a in candidates if a.active]
        else:
            candidates = [a for a in candidates if now - a.created_at.timestamp() < PENDING_ENROLLMENT_SECONDS]
        for authenticator in candidates:
            step = totp.verify(self._secret(authenticator), otp, at=now)
            if step is None or authenticator.id is None:
                continue
            if not await queries.accept_step(self.session, authenticator.id, step):
                return FactorCheck.INVALID  # this step was accepted before: a replay
            if not await queries.burn_transaction(self.session, burn, self._now()):
                return FactorCheck.TOKEN_USED
            if not authenticator.active:
                await queries.activate(self.session, authenticator.id, user_pk)
            return FactorCheck.ACCEPTED
        return FactorCheck.INVALID

    async def redeem_recovery_code(self, transaction: MfaTransaction, code: str) -> tuple[FactorCheck, str | None]:
        """Swap the recovery code for a new one and burn the mfa_token, together or not at all."""
        return await self._redeem_recovery_code(await self._user_pk(transaction.user_id), code, burn=transaction.id)

    # --- verification shared by the grants and the enrollment page ------------------------------------------

    async def verify_otp(self, user_pk: int, otp: str, *, burn: int | None = None) -> FactorCheck:
        """Accept ``otp`` once for the user's active authenticator, or confirm the pending one.

        With ``burn``, that MFA transaction is consumed in the same database transaction: a code is never spent on
        an mfa_token that another request has already used (`FactorCheck.TOKEN_USED`), and vice versa.
        """
        if not await self._take_attempt(user_pk):
            return FactorCheck.RATE_LIMITED
        check = await self._check_otp(user_pk, otp, burn)
        if check is not FactorCheck.INVALID:
            await self._refund_attempt(user_pk)  # only failed codes cost an attempt
        return check

    async def _check_otp(self, user_pk: int, otp: str, burn: int | None) -> FactorCheck:
        candidates = [a for a in await queries.authenticators(self.session, user_pk) if a.kind == "totp"]
        await self.session.commit()
        now = self.clock.now()
        if any(a.active for a in candidates):
            candidates = [a for a in candidates if a.active]
        else:
            # An enrollment left unconfirmed expires: its secret was shown once, long ago.
            candidates = [a for a in candidates if now - a.created_at.timestamp() < PENDING_ENROLLMENT_SECONDS]
        for authenticator in candidates:
            step = totp.verify(self._secret(authenticator), otp, at=now)
            if step is None or authenticator.id is None:
                continue
            # Replay guard: only a step later than the last accepted one wins, and only once.
            if await queries.accept_step(self.session, authenticator.id, step):
                if burn is not None and not await queries.burn_transaction(self.session, burn, self._now()):
                    await self.session.rollback()
                    return FactorCheck.TOKEN_USED
                if not authenticator.active:
                    await queries.activate(self.session, authenticator.id, user_pk)
                await self.session.commit()
                return FactorCheck.ACCEPTED
            await self.session.commit()
            break
        return FactorCheck.INVALID

    async def verify_user_otp(self, user_id: str, otp: str) -> FactorCheck:
        """`verify_otp` for a user known by ``user_id`` (the enrollment pages)."""
        return await self.verify_otp(await self._user_pk(user_id), otp)

    async def redeem_user_recovery_code(self, user_id: str, code: str) -> tuple[FactorCheck, str | None]:
        """Swap the user's active recovery code for a new one if ``code`` is it (the enrollment pages)."""
        return await self._redeem_recovery_code(await self._user_pk(user_id), code)

    async def _redeem_recovery_code(
        self, user_pk: int, code: str, *, burn: int | None = None
    ) -> tuple[FactorCheck, str | None]:
        if not await self._take_attempt(user_pk):
            return FactorCheck.RATE_LIMITED, None
        new_code = recovery.generate()
        won = await queries.rotate_recovery_code(
            self.session, user_pk, recovery.hash_code(code), recovery.hash_code(new_code)
        )
        if won and burn is not None and not await queries.burn_transaction(self.session, burn, self._now()):
            # The mfa_token went to another request: keep the old code, since the new one would never be shown.
            await self.session.rollback()
            await self._refund_attempt(user_pk)
            return FactorCheck.TOKEN_USED, None
        await self.session.commit()
        if not won:
            return FactorCheck.INVALID, None
        await self._refund_attempt(user_pk)
        return FactorCheck.ACCEPTED, new_code

    # --- enrollment and management -------------------------------------------------------------------------

    async def pending_otp(self, user_id: str, *, issuer: str, max_age: float) -> Enrollment | None:
        """The user's unconfirmed TOTP enrollment if it began less than ``max_age`` seconds ago, to show it again.

        Older ones count as expired: the caller starts a new one with `associate_otp`, which deletes them.
        """
        row = await self._user_row(user_id)
        if row is None or row.id is None:
            raise UnknownUser("unknown user")
        pending = [a for a in await queries.authenticators(self.session, row.id) if a.kind == "totp" and not a.active]
        await self.session.commit()
        fresh = [a for a in pending if a.created_at.timestamp() > self.clock.now() - max_age]
        if not fresh:
            return None
        secret = self._secret(fresh[-1])
        account = row.email or row.username or row.user_id
        return Enrollment(
            authenticator_id=fresh[-1].public_id,
            secret=secret,
            barcode_uri=totp.provisioning_uri(secret, issuer=issuer, account=account),
            recovery_code=None,
        )

    async def associate_otp(self, user_id: str, *, issuer: str, allow_additional: bool = False) -> Enrollment:
        """Start a TOTP enrollment: a pending authenticator (replacing any pending one) and its secret."""
        row = await self._user_row(user_id)
        if row is None or row.id is None:
            raise UnknownUser("unknown user")
        existing = await queries.authenticators(self.session, row.id)
        if any(a.active for a in existing) and not allow_additional:
            raise AlreadyEnrolled("User is already enrolled")
        await queries.delete_pending(self.session, row.id)
        secret = totp.new_secret()
        public_id = _public_id("totp")
        self.session.add(
            AuthenticatorRow(
                public_id=public_id,
                user_pk=row.id,
                kind="totp",
                secret=self.box.seal(secret.encode(), purpose=_TOTP_PURPOSE + public_id),
                active=False,
                created_at=self._now(),
            )
        )
        code = None
        current = await queries.recovery_code(self.session, row.id)
        if current is None or not current.active:
            code = recovery.generate()
            await queries.put_recovery_code(
                self.session, row.id, _public_id("recovery-code"), recovery.hash_code(code), active=False
            )
        await self.session.commit()
        account = row.email or row.username or row.user_id
        return Enrollment(
            authenticator_id=public_id,
            secret=secret,
            barcode_uri=totp.provisioning_uri(secret, issuer=issuer, account=account),
            recovery_code=code,
        )

    async def pending_recovery_code(self, user_id: str) -> str | None:
        """A recovery code for a user enrolling a first factor, inactive until the factor is confirmed.

        ``None`` when the user already has an active one (it is shown only on the first enrollment).
        """
        user_pk = await self._user_pk(user_id)
        current = await queries.recovery_code(self.session, user_pk)
        if current is not None and current.active:
            await self.session.commit()
            return None
        code = recovery.generate()
        await queries.put_recovery_code(
            self.session, user_pk, _public_id("recovery-code"), recovery.hash_code(code), active=False
        )
        await self.session.commit()
        return code

    async def list_authenticators(self, user_id: str) -> list[dict[str, Any]]:
        """The MFA API's view of the user's factors (API.md §2.3)."""
        user_pk = await self._user_pk(user_id)
        listed: list[dict[str, Any]] = []
        code = await queries.recovery_code(self.session, user_pk)
        keys = await queries.webauthn_names(self.session, user_pk)
        for authenticator in await queries.authenticators(self.session, user_pk):
            entry = {
                "id": authenticator.public_id,
                "authenticator_type": "webauthn" if authenticator.kind == "webauthn" else "otp",
                "active": authenticator.active,
                "created_at": authenticator.created_at.isoformat().replace("+00:00", "Z"),
            }
            if authenticator.kind == "webauthn":
                entry["name"] = keys.get(authenticator.id or 0, "Security key")
            listed.append(entry)
        if code is not None and code.active:
            listed.insert(0, {"id": code.public_id, "authenticator_type": "recovery-code", "active": True})
        await self.session.commit()
        return listed

    async def authentication_methods(self, user_id: str) -> list[dict[str, Any]]:
        """Every factor with its state and creation time (the Management API's authentication methods)."""
        user_pk = await self._user_pk(user_id)
        methods: list[dict[str, Any]] = []
        code = await queries.recovery_code(self.session, user_pk)
        if code is not None and code.active:
            methods.append(
                {"id": code.public_id, "type": "recovery-code", "confirmed": True, "created_at": code.created_at}
            )
        keys = await queries.webauthn_keys(self.session, user_pk)
        for authenticator in await queries.authenticators(self.session, user_pk):
            kind = "totp"
            if authenticator.kind == "webauthn":  # Auth0's names: a synced passkey, or a (roaming) security key
                key = keys.get(authenticator.id or 0)
                kind = "passkey" if key is not None and key.backup_eligible else "webauthn-roaming"
            methods.append(
                {
                    "id": authenticator.public_id,
                    "type": kind,
                    "confirmed": authenticator.active,
                    "created_at": authenticator.created_at,
                    "enrolled_at": authenticator.confirmed_at,
                }
            )
        await self.session.commit()
        return methods

    async def has_active_factor(self, user_id: str) -> bool:
        """Whether the user has a confirmed authenticator."""
        user_pk = await self._user_pk(user_id)
        active = any(a.active for a in await queries.authenticators(self.session, user_pk))
        await self.session.commit()
        return active

    async def remove(self, user_id: str, authenticator_id: str) -> bool:
        """Delete one factor; with the last active authenticator the recovery code goes too."""
        user_pk = await self._user_pk(user_id)
        code = await queries.recovery_code(self.session, user_pk)
        if code is not None and code.public_id == authenticator_id:
            await self.session.delete(code)
            await self.session.commit()
            return True
        removed = await queries.delete_authenticator(self.session, user_pk, authenticator_id)
        if removed and not any(a.active for a in await queries.authenticators(self.session, user_pk)):
            await queries.delete_all_factors(self.session, user_pk)
        await self.session.commit()
        return removed

    async def owner(self, authenticator_id: str) -> str | None:
        """The ``user_id`` whose authenticator this is (Guardian's enrollment endpoints name only the enrollment)."""
        query = (
            select(UserRow.user_id)
            .join(AuthenticatorRow, col(AuthenticatorRow.user_pk) == UserRow.id)
            .where(col(AuthenticatorRow.public_id) == authenticator_id)
        )
        found = (await self.session.execute(query)).scalar()
        await self.session.commit()
        return found

    async def reset(self, user_id: str) -> int:
        """Remove every factor of the user (lost device, admin reset)."""
        user_pk = await self._user_pk(user_id)
        removed = await queries.delete_all_factors(self.session, user_pk)
        # Whoever holds the lost device may hold sessions too, in apps and on the enrollment pages: end them all.
        await end_user_sessions(self.session, user_pk, user_id, "mfa_reset", self._now())
        await self.session.commit()
        return removed

    async def regenerate_recovery_code(self, user_id: str) -> str:
        """A new recovery code for a user with an active factor (the old one stops working)."""
        user_pk = await self._user_pk(user_id)
        if not any(a.active for a in await queries.authenticators(self.session, user_pk)):
            raise NotEnrolled("the user has no enrolled factor")
        code = recovery.generate()
        await queries.put_recovery_code(
            self.session, user_pk, _public_id("recovery-code"), recovery.hash_code(code), active=True
        )
        await self.session.commit()
        return code

    # --- helpers ---------------------------------------------------------------------------------------------

    def _secret(self, authenticator: AuthenticatorRow) -> str:
        try:
            return self.box.open(authenticator.secret, purpose=_TOTP_PURPOSE + authenticator.public_id).decode()
        except SecretBoxError as exc:
            raise AccountError("an authenticator secret does not open with the configured keys") from exc

    async def _user_row(self, user_id: str) -> UserRow | None:
        found = await user_queries.by_user_id(self.session, user_id)
        return found[0] if found is not None else None

    async def _user_pk(self, user_id: str) -> int:
        row = await self._user_row(user_id)
        if row is None or row.id is None:
            raise UnknownUser("unknown user")
        return row.id

    async def reserve_attempt(self, user_pk: int) -> bool:
        """Take one attempt from the user's bucket before checking a factor (WebAuthn responses too)."""
        return await self._take_attempt(user_pk)

    async def refund_attempt(self, user_pk: int) -> None:
        """Give the attempt back: the factor was right."""
        await self._refund_attempt(user_pk)

    async def _take_attempt(self, user_pk: int) -> bool:
        """Reserve one attempt from the user's bucket before checking a code (refunded when the code is right).

        Reserving first, rather than checking and spending after, bounds concurrent guesses too.
        """
        return await queries.adjust_attempts(
            self.session, user_pk, -1, now=self.clock.now(), capacity=ATTEMPT_CAPACITY,
            refill_seconds=ATTEMPT_REFILL_SECONDS,
        )  # fmt: skip

    async def _refund_attempt(self, user_pk: int) -> None:
        await queries.adjust_attempts(
            self.session, user_pk, +1, now=self.clock.now(), capacity=ATTEMPT_CAPACITY,
            refill_seconds=ATTEMPT_REFILL_SECONDS,
        )  # fmt: skip
