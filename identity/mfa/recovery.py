"""Recovery codes: one per user, 24 characters (120 bits) from an alphabet without look-alikes.

Shown to people in groups of four (``ABCD-EFGH-...``); accepted with or without separators, in any case. Stored only
as the SHA-256 of the normalised code: it is long and random, so a fast hash does not help an attacker.
"""

from __future__ import annotations

import hashlib
import secrets

__all__ = ["display", "generate", "hash_code", "normalize"]

_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # 32 symbols, no I/1/O/0
_LENGTH = 24


def generate() -> str:
    """A new recovery code, normalised (24 upper-case characters)."""
    return "".join(secrets.choice(_ALPHABET) for _ in range(_LENGTH))


def display(code: str) -> str:
    """The code in groups of four, for reading and writing down."""
    return "-".join(code[i : i + 4] for i in range(0, len(code), 4))


def normalize(text: str) -> str:
    """What a person typed, reduced to the stored form (separators and case dropped)."""
    return "".join(char for char in text.upper() if char.isalnum())


def hash_code(code: str) -> str:
    """The stored form of a (normalised) code."""
    return hashlib.sha256(("recovery-code:" + normalize(code)).encode()).hexdigest()
