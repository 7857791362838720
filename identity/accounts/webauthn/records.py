"""The values WebAuthn ceremonies pass around: which ceremony, and what a checked response came to."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from identity.oauth2.interfaces import FactorCheck
from identity.store.models import WebAuthnChallengeRow, WebAuthnCredentialRow

__all__ = ["Assertion", "Pending", "Purpose", "Registered", "StoredKey"]


class Purpose(StrEnum):
    """Which ceremony a challenge belongs to."""

    MFA_REGISTER = "mfa-register"
    MFA_ASSERT = "mfa-assert"
    PASSKEY_REGISTER = "passkey-register"
    PASSKEY_ASSERT = "passkey-assert"
    PAGE_REGISTER = "page-register"
    PAGE_ASSERT = "page-assert"


@dataclass(frozen=True)
class Assertion:
    """A verified assertion: whose key, which one, and what it proved."""

    check: FactorCheck
    user_pk: int | None = None
    user_id: str | None = None
    authenticator_id: str | None = None
    hardware: bool = False
    user_verified: bool = False
    challenge: Pending | None = None
    cloned: bool = False
    """Refused: a right signature with a sign count that did not move forward (the key may be cloned)."""


@dataclass(frozen=True)
class Registered:
    """A key registered by a verified attestation (``check`` ACCEPTED), or why not."""

    check: FactorCheck
    authenticator_id: str | None = None
    hardware: bool = False
    user_verified: bool = False
    reason: str | None = None


@dataclass(frozen=True)
class Pending:
    """A live ceremony, as plain values (a rolled-back session expires ORM rows; these stay readable)."""

    id: int
    purpose: str
    user_pk: int | None
    transaction_pk: int | None
    client_id: str | None
    connection: str | None
    user_verification: str

    @classmethod
    def of(cls, row: WebAuthnChallengeRow) -> Pending:
        """The values of a stored ceremony."""
        if row.id is None:
            raise ValueError("a ceremony that was never stored")
        return cls(row.id, row.purpose, row.user_pk, row.transaction_pk, row.client_id, row.connection,
                   row.user_verification)  # fmt: skip


@dataclass(frozen=True)
class StoredKey:
    """A stored key, as plain values."""

    id: int
    authenticator_pk: int
    user_pk: int
    credential_id: bytes
    public_key: bytes
    sign_count: int
    hardware: bool

    @classmethod
    def of(cls, row: WebAuthnCredentialRow) -> StoredKey:
        """The values of a stored key."""
        if row.id is None:
            raise ValueError("a key that was never stored")
        return cls(row.id, row.authenticator_pk, row.user_pk, bytes(row.credential_id), bytes(row.public_key),
                   row.sign_count, row.hardware)  # fmt: skip
