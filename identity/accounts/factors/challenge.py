"""Which challenge ``/mfa/challenge`` answers with, from the factors the user has and what the client asked for."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from identity.accounts.factors.authenticators import Factor, FactorType

__all__ = ["Challenge", "Choice", "choose_challenge"]


class Challenge(StrEnum):
    """The challenge the client should answer."""

    OTP = "otp"
    """A code from the app: nothing is sent (``{"challenge_type":"otp"}``)."""
    WEBAUTHN = "webauthn"
    """A security key's assertion, for request options bound to the mfa_token."""
    OOB = "oob"
    """A code sent by email (``binding_method: prompt``), answered with the mfa-oob grant."""


@dataclass(frozen=True)
class Choice:
    """The challenge, and the factor it is for."""

    challenge: Challenge
    factor: Factor


_KIND = {FactorType.TOTP: Challenge.OTP, FactorType.WEBAUTHN: Challenge.WEBAUTHN, FactorType.EMAIL: Challenge.OOB}


def choose_challenge(
    factors: Sequence[Factor], *, challenge_type: str | None, authenticator_id: str | None, email: bool = True
) -> Choice | None:
    """The challenge for a user with ``factors``; ``None`` when none of the asked types fits (the caller refuses).

    - ``authenticator_id`` picks that authenticator, if its type is among those asked (or none is asked).
    - ``challenge_type`` is the client's space-separated list: the first type it names that the user has wins (the
      oldest factor of that type).
    - Neither: the factor the user enrolled first, except that an email is sent only when the user has nothing
      else (a code app or a key never costs an email nobody asked for).

    Active factors only; an app not yet confirmed stands in while the user has no active factor at all (its code
    confirms it). ``email`` ``False`` leaves email factors out (no mail server, or a client without the mfa-oob grant).
    """
    apps = [f for f in factors if f.type is FactorType.TOTP]
    candidates = [f for f in factors if f.active and f.type in _KIND and (email or f.type is not FactorType.EMAIL)]
    if not any(f.active for f in factors if f.type in _KIND):  # before the first factor is confirmed only
        candidates += apps
    asked = challenge_type.split() if challenge_type else None
    if authenticator_id is not None:
        named = [f for f in candidates if f.id == authenticator_id]
        if not named or (asked is not None and _KIND[named[0].type] not in asked):
            return None
        return Choice(_KIND[named[0].type], named[0])
    if asked is None:
        pool = [f for f in candidates if f.type is not FactorType.EMAIL] or candidates
        if not pool:
            return None
        first = min(pool, key=lambda f: f.enrolled_at)
        return Choice(_KIND[first.type], first)
    for kind in asked:
        matching = [f for f in candidates if _KIND[f.type] == kind]
        if matching:
            return Choice(Challenge(kind), min(matching, key=lambda f: f.enrolled_at))
    return None
