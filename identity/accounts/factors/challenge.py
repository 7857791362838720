"""Which challenge ``/mfa/challenge`` answers with, from the factors the user has and what the client asked for."""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum

from identity.accounts.factors.authenticators import Factor, FactorType

__all__ = ["DEFAULT_CHALLENGE_TYPES", "Challenge", "choose_challenge"]

DEFAULT_CHALLENGE_TYPES = "otp oob webauthn"
"""What a client that names no ``challenge_type`` accepts (Auth0's order)."""


class Challenge(StrEnum):
    """The challenge the client should answer."""

    OTP = "otp"
    """A code from the app: nothing is sent (``{"challenge_type":"otp"}``)."""
    WEBAUTHN = "webauthn"
    """A security key's assertion, for request options bound to the mfa_token."""


def choose_challenge(
    factors: Sequence[Factor], *, challenge_type: str | None, authenticator_id: str | None
) -> Challenge | None:
    """The challenge for a user with ``factors``; ``None`` when none of the asked types fits (the caller refuses).

    ``challenge_type`` is the client's space-separated list: the first type it names that the user has wins (omitted:
    OTP first). ``authenticator_id`` picks that authenticator, whatever its type's place in the list.
    """
    asked = (challenge_type or DEFAULT_CHALLENGE_TYPES).split()
    keys = [f for f in factors if f.type is FactorType.WEBAUTHN and f.active]
    if authenticator_id is not None:
        keys = [f for f in keys if f.id == authenticator_id]
    apps = [f for f in factors if f.type is FactorType.TOTP]
    otp_first = bool(apps) and "otp" in asked and "webauthn" in asked and asked.index("otp") < asked.index("webauthn")
    if keys and "webauthn" in asked and (authenticator_id is not None or not otp_first):
        return Challenge.WEBAUTHN
    usable = [f for f in apps if f.active] or apps
    if authenticator_id is not None:
        usable = [f for f in usable if f.id == authenticator_id]
    if "otp" not in asked or not usable:
        return None
    return Challenge.OTP
