"""`FactorService`: the factor parts bound to one request's session, and the grants' `MfaService`."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from identity.accounts.factors.attempts import AttemptBucket
from identity.accounts.factors.authenticators import Authenticators
from identity.accounts.factors.challenge import Choice, choose_challenge
from identity.accounts.factors.email import CodeSender, EmailCodes
from identity.accounts.factors.enrollment import OtpEnrollments
from identity.accounts.factors.gate import MfaGate
from identity.accounts.factors.otp import OtpCodes
from identity.accounts.factors.recovery import RecoveryCodes
from identity.accounts.factors.transactions import MfaTransactions
from identity.clock import Clock
from identity.crypto import SecretBox
from identity.oauth2.interfaces import FactorCheck, GrantResult, MfaTransaction, User
from identity.store.db import UnitOfWork

__all__ = ["FactorService"]


class FactorService:
    """Second factors over one request's session.

    The grants see it as `identity.oauth2.interfaces.MfaService`. The MFA API, the enrollment pages, the Management
    API and the CLI use its parts (one session, one clock and one attempt bucket between them); what combines them
    is `choose_challenge` here and `identity.accounts.factors.removal.remove_with_proof`.
    """

    def __init__(
        self,
        session: AsyncSession,
        box: SecretBox,
        clock: Clock,
        unit: UnitOfWork | None = None,
        *,
        sender: CodeSender | None = None,
        mail_errors: tuple[type[Exception], ...] = (),
    ) -> None:
        self.session = session
        self.unit = unit
        """The token request's unit of work: with it, the grants' checks write in its one transaction."""
        self.attempts = AttemptBucket(session, clock)
        self.gate = MfaGate(session)
        self.transactions = MfaTransactions(session, clock)
        self.otp = OtpCodes(session, box, clock, self.attempts)
        self.recovery = RecoveryCodes(session, clock, self.attempts)
        self.enrollment = OtpEnrollments(session, box, clock, self.recovery)
        self.authenticators = Authenticators(session, clock, box)
        self.email = EmailCodes(session, box, clock, self.attempts, self.recovery, sender, mail_errors)

    # --- MfaService (the grants) ------------------------------------------------------------------------------

    async def required(self, user: User, *, forced: bool) -> bool:
        """Policy ``always``; ``if-enrolled`` and an active factor; or ``forced`` by the API or a rule."""
        return await self.gate.required(user, forced=forced)

    async def start(self, result: GrantResult) -> str:
        """Store the deferred issuance and return its mfa_token."""
        return await self.transactions.start(result)

    async def find(self, mfa_token: str) -> MfaTransaction | None:
        """The transaction of ``mfa_token`` with its user's id."""
        return await self.transactions.find(mfa_token)

    async def user(self, transaction: MfaTransaction) -> User | None:
        """The user as stored now."""
        return await self.transactions.user(transaction)

    async def check_otp(self, transaction: MfaTransaction, otp: str) -> FactorCheck:
        """Spend a TOTP code (confirming a pending enrollment) and burn the mfa_token, in one transaction."""
        user_pk = await self.transactions.user_pk(transaction)
        if self.unit is None:
            return await self.otp.spend(user_pk, otp, burn_transaction=transaction.id)
        return await self.otp.spend_in_unit(self.unit, user_pk, otp, transaction.id)

    async def redeem_recovery_code(self, transaction: MfaTransaction, code: str) -> tuple[FactorCheck, str | None]:
        """Swap the recovery code for a new one and burn the mfa_token, together or not at all."""
        user_pk = await self.transactions.user_pk(transaction)
        if self.unit is None:
            return await self.recovery.swap(user_pk, code, burn_transaction=transaction.id)
        return await self.recovery.swap_in_unit(self.unit, user_pk, code, transaction.id)

    async def check_oob(
        self, transaction: MfaTransaction, oob_code: str | None, binding_code: str, *, session_key: str | None = None
    ) -> FactorCheck:
        """Spend an emailed code (confirming a pending email factor) and burn the mfa_token, in one transaction."""
        if self.unit is None:
            raise RuntimeError("emailed codes are checked in the token request's unit of work")
        user_pk = await self.transactions.user_pk(transaction)
        return await self.email.check_in_unit(
            self.unit, user_pk, transaction.id, binding_code, oob_code=oob_code, session_key=session_key
        )

    # --- the MFA API's choice of challenge --------------------------------------------------------------------

    async def choose_challenge(
        self, user_id: str, *, challenge_type: str | None, authenticator_id: str | None, email: bool = True
    ) -> Choice | None:
        """The challenge ``/mfa/challenge`` answers with (`identity.accounts.factors.challenge`).

        ``email`` ``False``: the user's email factors are left out (no mail server, or a client without mfa-oob).
        """
        factors = await self.authenticators.listed(user_id)
        return choose_challenge(factors, challenge_type=challenge_type, authenticator_id=authenticator_id, email=email)
