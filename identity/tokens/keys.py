"""Token signing keys: generated on first start, stored sealed in the database, loaded once into key objects.

One active key per algorithm (RS256, ES256), and one next key, published before it signs anything so that every
verifier's cached JWKS already has it when a rotation promotes it (`identity.tokens.rotation`). The ``active_slot``
and ``next_slot`` unique columns make first-start generation safe when several instances start together on one
database: the first insert wins, the others load the winner's key. The JWKS publishes the next and active keys and
every previous key until its ``retire_at`` (when every token it signed has expired); retired and revoked keys are
not published, and tokens they signed no longer verify.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, or_, select

from identity.crypto import SecretBox
from identity.store.models import SigningKeyRow, utcnow

__all__ = [
    "PUBLISHED",
    "SUPPORTED_ALGS",
    "KeyRing",
    "SigningKey",
    "ensure_signing_keys",
    "generate_key",
    "key_table_state",
    "load_key_ring",
]

SUPPORTED_ALGS = ("RS256", "ES256")
_PURPOSE = "signing-key:"
PUBLISHED = ("next", "active", "previous")

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


@dataclass(frozen=True)
class SigningKey:
    """A loaded signing key."""

    kid: str
    alg: str
    private_key: PrivateKey
    public_jwk: dict[str, Any]
    active: bool


class KeyRing:
    """The keys this instance signs with, and the JWKS it publishes."""

    def __init__(self, keys: list[SigningKey], *, expires_at: datetime | None = None) -> None:
        self.keys = tuple(keys)
        self.expires_at = expires_at
        """When a published previous key retires: the ring must be reloaded by then."""
        self._active = {key.alg: key for key in keys if key.active}
        self._by_kid = {key.kid: key for key in keys}
        self._jwks = {"keys": [key.public_jwk for key in keys]}
        self.jwks_json = json.dumps(self._jwks, separators=(",", ":")).encode()
        self._by_algs: dict[frozenset[str], bytes] = {}

    def sign(self, claims: dict[str, Any], alg: str, *, typ: str = "JWT") -> str:
        """A JWS of ``claims`` with the active key for ``alg``."""
        key = self._active.get(alg)
        if key is None:
            raise ValueError(f"no active signing key for {alg}")
        return jwt.encode(claims, key.private_key, algorithm=alg, headers={"kid": key.kid, "typ": typ})

    def verification_key(self, kid: str) -> tuple[str, Any] | None:
        """The algorithm and public key of a published key, or ``None``."""
        key = self._by_kid.get(kid)
        return (key.alg, key.private_key.public_key()) if key is not None else None

    def jwks_json_for(self, algs: frozenset[str]) -> bytes:
        """The serialised JWKS with only the keys of ``algs`` (memoised: the set of algs rarely changes).

        Publishing an EC key nobody signs with would only break verifiers that read every key as RSA (Auth0's own
        SDKs do: API.md §3.3 notes Auth0 publishes no EC keys).
        """
        if (cached := self._by_algs.get(algs)) is None:
            document = {"keys": [jwk for jwk in self._jwks["keys"] if jwk["alg"] in algs]}
            cached = self._by_algs[algs] = json.dumps(document, separators=(",", ":")).encode()
        return cached

    def jwks(self) -> dict[str, Any]:
        """The JSON Web Key Set (public parts only)."""
        return self._jwks


def _thumbprint(jwk: dict[str, Any]) -> str:
    """RFC 7638 JWK thumbprint (SHA-256, base64url), used as the key id."""
    members = ("e", "kty", "n") if jwk["kty"] == "RSA" else ("crv", "kty", "x", "y")
    canonical = json.dumps({name: jwk[name] for name in members}, separators=(",", ":"), sort_keys=True)
    return base64.urlsafe_b64encode(hashlib.sha256(canonical.encode()).digest()).decode().rstrip("=")


def _public_jwk(private_key: PrivateKey, alg: str) -> dict[str, Any]:
    if isinstance(private_key, rsa.RSAPrivateKey):
        jwk: dict[str, Any] = RSAAlgorithm.to_jwk(private_key.public_key(), as_dict=True)
    else:
        jwk = ECAlgorithm.to_jwk(private_key.public_key(), as_dict=True)
    jwk.pop("key_ops", None)  # `use` says it; RFC 7517 §4.3 advises against both
    jwk.update(alg=alg, use="sig")
    jwk["kid"] = _thumbprint(jwk)
    return jwk


def generate_key(alg: str, box: SecretBox, *, status: str = "active") -> SigningKeyRow:
    """A new key for ``alg``, sealed, as an unsaved row: the ``active`` one, or the ``next`` one."""
    private_key: PrivateKey
    if alg == "RS256":
        private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    elif alg == "ES256":
        private_key = ec.generate_private_key(ec.SECP256R1())
    else:
        raise ValueError(f"unsupported signing algorithm {alg}")
    jwk = _public_jwk(private_key, alg)
    pem = private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    kid = jwk["kid"]
    return SigningKeyRow(
        kid=kid,
        alg=alg,
        private_key=box.seal(pem, purpose=_PURPOSE + kid),
        public_jwk=jwk,
        status=status,
        active_slot=alg if status == "active" else None,
        next_slot=alg if status == "next" else None,
        activated_at=utcnow() if status == "active" else None,
    )


async def ensure_signing_keys(session: AsyncSession, box: SecretBox) -> None:
    """Make sure every supported algorithm has an active and a next key (first start), race-free across instances."""
    for alg in SUPPORTED_ALGS:
        for status, slot in (("active", SigningKeyRow.active_slot), ("next", SigningKeyRow.next_slot)):
            existing = await session.execute(select(SigningKeyRow.kid).where(col(slot) == alg))
            if existing.first() is not None:
                continue
            try:
                async with session.begin_nested():
                    session.add(generate_key(alg, box, status=status))
            except IntegrityError:
                pass  # another instance generated it first; we load theirs
    await session.commit()


async def key_table_state(session: AsyncSession) -> tuple[tuple[Any, ...], ...]:
    """What decides the key ring (kid, status, slots, retirement): compared to notice a change made elsewhere."""
    rows = await session.execute(
        select(
            SigningKeyRow.kid,
            SigningKeyRow.status,
            SigningKeyRow.active_slot,
            SigningKeyRow.retire_at,
        ).order_by(col(SigningKeyRow.kid))
    )
    return tuple(tuple(row) for row in rows)


async def load_key_ring(session: AsyncSession, box: SecretBox, *, now: datetime | None = None) -> KeyRing:
    """Load and unseal every published key: next, active, and previous ones not yet past ``retire_at``."""
    now = now or utcnow()
    rows = (
        await session.execute(
            select(SigningKeyRow)
            .where(col(SigningKeyRow.status).in_(PUBLISHED))
            .where(
                or_(
                    col(SigningKeyRow.status) != "previous",
                    col(SigningKeyRow.retire_at).is_(None),
                    col(SigningKeyRow.retire_at) > now,
                )
            )
            .order_by(col(SigningKeyRow.created_at))
        )
    ).scalars()
    keys = []
    expires_at: datetime | None = None
    for row in rows:
        if row.status == "previous" and row.retire_at is not None:
            expires_at = row.retire_at if expires_at is None else min(expires_at, row.retire_at)
        pem = box.open(row.private_key, purpose=_PURPOSE + row.kid)
        private_key = serialization.load_pem_private_key(pem, password=None)
        if not isinstance(private_key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
            raise ValueError(f"signing key {row.kid} has an unsupported type")
        keys.append(
            SigningKey(
                kid=row.kid,
                alg=row.alg,
                private_key=private_key,
                public_jwk=dict(row.public_jwk),
                active=row.active_slot == row.alg,
            )
        )
    await session.commit()
    return KeyRing(keys, expires_at=expires_at)
