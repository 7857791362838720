"""Second factors: the MFA gate, mfa_token transactions, OTP codes, recovery codes, enrollment, the attempt bucket.

    gate.py            whether a login needs a second factor (the tenant's policy)
    transactions.py    the login paused behind an mfa_token: start, find (a lookup; the factor burns it)
    otp.py             TOTP codes: a time step accepted once; a pending enrollment confirmed by its first code
    recovery.py        the recovery code: swapped for a new one on use
    enrollment.py      a pending authenticator app, its sealed secret and QR code; how long it stays pending
    authenticators.py  the user's factors as records: list, remove, reset
    attempts.py        the per-user bucket of failed attempts, reserved before a factor is checked
    challenge.py       which challenge /mfa/challenge answers with
    email.py           emailed codes: the email factor, codes sent (rate limited) and checked once
    removal.py         the fresh proof a removal needs
    service.py         FactorService: the parts over one session, and the grants' MfaService

Security choices:
- TOTP secrets are sealed (AES-GCM, `identity.crypto`) and bound to the authenticator's id; nothing activates before a
  valid code confirms it.
- A code's time step is accepted at most once per authenticator (conditional UPDATE on ``last_step``).
- ``mfa_token`` is 256 random bits, stored as SHA-256, single use (conditional UPDATE on ``consumed_at``).
- Failed factors draw from a per-user bucket of 10 that refills one every 6 minutes (Auth0's limits); a new mfa_token
  does not refill it. The bucket is checked *before* verifying so an empty bucket costs the attacker a guess.
"""

from identity.accounts.errors import AlreadyEnrolled, NotEnrolled
from identity.accounts.factors._common import TOTP_PURPOSE
from identity.accounts.factors.attempts import ATTEMPT_CAPACITY, ATTEMPT_REFILL_SECONDS, AttemptBucket
from identity.accounts.factors.authenticators import Authenticators, Factor, FactorType
from identity.accounts.factors.challenge import Challenge, Choice, choose_challenge
from identity.accounts.factors.enrollment import PENDING_ENROLLMENT_SECONDS, Enrollment, OtpEnrollments
from identity.accounts.factors.gate import MFA_POLICIES, MfaGate
from identity.accounts.factors.otp import OtpCodes
from identity.accounts.factors.recovery import RecoveryCodes
from identity.accounts.factors.removal import Proof, Removal, RemovalOutcome, remove_with_proof
from identity.accounts.factors.service import FactorService
from identity.accounts.factors.transactions import MfaTransactions

__all__ = [
    "ATTEMPT_CAPACITY",
    "ATTEMPT_REFILL_SECONDS",
    "MFA_POLICIES",
    "PENDING_ENROLLMENT_SECONDS",
    "TOTP_PURPOSE",
    "AlreadyEnrolled",
    "AttemptBucket",
    "Authenticators",
    "Challenge",
    "Choice",
    "Enrollment",
    "Factor",
    "FactorService",
    "FactorType",
    "MfaGate",
    "MfaTransactions",
    "NotEnrolled",
    "OtpCodes",
    "OtpEnrollments",
    "Proof",
    "RecoveryCodes",
    "Removal",
    "RemovalOutcome",
    "choose_challenge",
    "remove_with_proof",
]
