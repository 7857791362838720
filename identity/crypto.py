"""Encryption at rest for secrets the service must read back (signing keys, TOTP secrets).

AES-256-GCM from ``cryptography``. A sealed value reads ``v1.<kid>.<base64url(nonce || ciphertext)>``: the key id
lets an operator add a new key (first in the list, so it encrypts) while the old ones still decrypt. The purpose
string is bound as associated data, so a ciphertext moved to another column or row does not decrypt.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from identity.settings import EncryptionKeys

__all__ = ["SecretBox", "SecretBoxError", "constant_time_equals", "sha256_hex"]

_VERSION = "v1"
_NONCE_BYTES = 12


class SecretBoxError(Exception):
    """A sealed value could not be opened: unknown key id, wrong purpose, or tampered ciphertext."""


class SecretBox:
    """Seal and open small secrets with the deployment's encryption keys."""

    def __init__(self, keys: EncryptionKeys) -> None:
        self._active_kid = keys.keys[0][0]
        self._ciphers = {kid: AESGCM(key) for kid, key in keys.keys}

    @property
    def active_key_id(self) -> str:
        """The id of the key that seals (the first of ``IDENTITY_ENCRYPTION_KEYS``)."""
        return self._active_kid

    def seal(self, plaintext: bytes, *, purpose: str) -> str:
        """Encrypt ``plaintext`` for ``purpose`` under the active key."""
        nonce = secrets.token_bytes(_NONCE_BYTES)
        sealed = self._ciphers[self._active_kid].encrypt(nonce, plaintext, purpose.encode())
        body = base64.urlsafe_b64encode(nonce + sealed).decode().rstrip("=")
        return f"{_VERSION}.{self._active_kid}.{body}"

    def open(self, token: str, *, purpose: str) -> bytes:
        """Decrypt a value made by `seal` with the same ``purpose``."""
        version, _, rest = token.partition(".")
        kid, _, body = rest.partition(".")
        cipher = self._ciphers.get(kid)
        if version != _VERSION or cipher is None:
            raise SecretBoxError(f"no encryption key with id {kid!r}")
        try:
            raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
            return cipher.decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], purpose.encode())
        except (InvalidTag, ValueError) as exc:
            raise SecretBoxError("sealed value does not open with its key") from exc


def sha256_hex(value: str) -> str:
    """The SHA-256 of a long random secret (client secrets, refresh tokens), as stored for lookup."""
    return hashlib.sha256(value.encode()).hexdigest()


def constant_time_equals(a: str, b: str) -> bool:
    """Compare two strings without leaking where they differ."""
    return hmac.compare_digest(a.encode(), b.encode())
