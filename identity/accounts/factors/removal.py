"""Removing a factor on the user's own word: only with a fresh proof of a second factor.

The proof is, in this order of preference: the recovery code (swapped for a new one, as always), a code from the app
(a time step not accepted before), a code sent by email (checked by the caller, which holds the transaction it is
bound to), or a security key's assertion (checked by the caller, which holds the ceremony).
A recovery code's replacement is shown only if the user still has a factor: with the last one, the recovery code goes
too.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING

from identity.accounts.factors.authenticators import FactorType
from identity.mfa import totp
from identity.oauth2.interfaces import FactorCheck

if TYPE_CHECKING:
    from identity.accounts.factors.service import FactorService

__all__ = ["Proof", "Removal", "RemovalOutcome", "remove_with_proof"]


class Proof(Enum):
    """What the user offered as the second factor for a removal."""

    RECOVERY_CODE = "recovery-code"
    OTP = "otp"
    SECURITY_KEY = "security-key"
    EMAIL_CODE = "email-code"


class RemovalOutcome(Enum):
    """How a removal went."""

    REMOVED = "removed"
    NOT_FOUND = "not-found"
    """No such factor of that type (before the proof was checked, or gone by the time it was)."""
    NO_PROOF = "no-proof"
    """Nothing usable was offered (no recovery code, and no well-formed code where one was needed)."""
    REFUSED = "refused"
    """The proof was checked and refused (`Removal.check` says how)."""


@dataclass(frozen=True)
class Removal:
    """What removing a factor came to, for the caller to render."""

    outcome: RemovalOutcome
    proof: Proof | None = None
    check: FactorCheck | None = None
    """The proof's check (``REFUSED``: invalid or rate limited)."""
    new_recovery_code: str | None = None
    """The code that replaced the recovery code offered as proof, to show once (``None`` after the last factor)."""


async def remove_with_proof(
    factors: FactorService,
    user_id: str,
    authenticator_id: str,
    *,
    kind: FactorType,
    recovery_code: str = "",
    otp: str = "",
    security_key: Callable[[], Awaitable[FactorCheck]] | None = None,
    emailed_code: Callable[[], Awaitable[FactorCheck]] | None = None,
) -> Removal:
    """Remove the user's factor ``authenticator_id`` of type ``kind`` once a fresh second factor is proved.

    ``security_key`` checks a key's assertion, ``emailed_code`` a code sent by email (spending it); without either,
    a removal needs the recovery code or an app's code.
    """
    authenticators = factors.authenticators
    if authenticator_id not in {f.id for f in await authenticators.listed(user_id) if f.type is kind}:
        return Removal(RemovalOutcome.NOT_FOUND)  # only factors: the recovery code goes with the last one
    new_code = None
    if recovery_code:
        proof = Proof.RECOVERY_CODE
        check, new_code = await factors.recovery.swap_user_code(user_id, recovery_code)
    elif emailed_code is not None and not otp:
        proof, check = Proof.EMAIL_CODE, await emailed_code()
    elif otp or security_key is None:
        if not totp.well_formed(otp):
            return Removal(RemovalOutcome.NO_PROOF, Proof.OTP if otp else None)
        proof, check = Proof.OTP, await factors.otp.spend_user_code(user_id, otp)
    else:
        proof, check = Proof.SECURITY_KEY, await security_key()
    if check is not FactorCheck.ACCEPTED:
        return Removal(RemovalOutcome.REFUSED, proof, check)
    if not await authenticators.remove(user_id, authenticator_id):
        return Removal(RemovalOutcome.NOT_FOUND, proof, check)
    if new_code is not None and not await authenticators.has_active(user_id):
        new_code = None
    return Removal(RemovalOutcome.REMOVED, proof, check, new_code)
