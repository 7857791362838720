"""TOTP (RFC 6238) as authenticator apps implement it: SHA-1, 6 digits, 30-second steps.

Verification accepts the current step and one on either side (clock drift of up to ~30 s) and returns the matching
time step, so the caller can refuse a step it has already accepted (replay). Comparison is constant-time (pyotp's
``strings_equal``).
"""

from __future__ import annotations

from urllib.parse import quote, urlencode

import pyotp
from pyotp.utils import strings_equal

__all__ = ["DIGITS", "PERIOD", "VALID_WINDOW", "new_secret", "provisioning_uri", "verify", "well_formed"]

DIGITS = 6
PERIOD = 30
VALID_WINDOW = 1
_SECRET_CHARS = 32  # base32 characters: 160 bits, RFC 4226's recommended key length


def new_secret() -> str:
    """A fresh 160-bit secret, base32 without padding."""
    return pyotp.random_base32(length=_SECRET_CHARS)


def provisioning_uri(secret: str, *, issuer: str, account: str) -> str:
    """The ``otpauth://`` URI a QR code carries (Key Uri Format), with every parameter explicit."""
    # The issuer and the account are escaped separately: a ':' inside either must not read as the separator.
    label = quote(issuer, safe="@") + ":" + quote(account, safe="@")
    query = urlencode(
        {"secret": secret, "issuer": issuer, "algorithm": "SHA1", "digits": DIGITS, "period": PERIOD},
        quote_via=quote,
    )
    return f"otpauth://totp/{label}?{query}"


def well_formed(code: str) -> bool:
    """Whether ``code`` has the shape of a code: `DIGITS` digits (spaces, as apps group them, do not count)."""
    digits = code.strip().replace(" ", "")
    return len(digits) == DIGITS and digits.isdigit()


def verify(secret: str, code: str, *, at: float) -> int | None:
    """The time step ``code`` is valid for at time ``at`` (±1 step), or ``None``."""
    if not well_formed(code):
        return None
    code = code.strip().replace(" ", "")
    totp = pyotp.TOTP(secret, digits=DIGITS, interval=PERIOD)
    step = totp.timecode(at)
    for candidate in range(step - VALID_WINDOW, step + VALID_WINDOW + 1):
        if strings_equal(code, totp.generate_otp(candidate)):
            return candidate
    return None
