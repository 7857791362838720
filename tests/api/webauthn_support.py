"""Authenticators built by hand for the in-process WebAuthn tests: P-256 keys whose attestations and assertions are
assembled with ``cryptography`` (a ``packed`` attestation with a vendor's certificate chain, or self attestation), so
that py_webauthn in the app verifies real signatures and nothing on the server side is mocked.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import os
import struct
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from fido2 import cbor

MFA_WEBAUTHN = "urn:okta:params:oauth:grant-type:mfa-webauthn"
WEBAUTHN = "urn:okta:params:oauth:grant-type:webauthn"
ORIGIN = "https://identity.test"
RP_ID = "identity.test"
INVALID = {"error": "invalid_grant", "error_description": "Invalid WebAuthn response."}


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _name(cn: str, ou: str | None = None) -> x509.Name:
    parts = [x509.NameAttribute(NameOID.COUNTRY_NAME, "SE"), x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Test")]
    if ou:
        parts.append(x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, ou))
    return x509.Name([*parts, x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _certificate(subject: x509.Name, key: Any, issuer: x509.Name, signer: Any, *, ca: bool) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .sign(signer, hashes.SHA256())
    )


class VendorCA:
    """A key vendor's attestation root and one batch certificate under it."""

    def __init__(self) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.cert = _certificate(_name("Test Root"), self.key, _name("Test Root"), self.key, ca=True)
        self.batch_key = ec.generate_private_key(ec.SECP256R1())
        subject = _name("Test Batch", "Authenticator Attestation")
        self.batch = _certificate(subject, self.batch_key, self.cert.subject, self.key, ca=False)

    def pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)


class HandKey:
    """A P-256 credential whose responses are assembled by hand (packed attestation, optional x5c)."""

    def __init__(self, vendor: VendorCA | None) -> None:
        self.vendor = vendor
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.credential_id = os.urandom(32)
        self.count = 0

    def _cose(self) -> bytes:
        numbers = self.key.public_key().public_numbers()
        return cbor.encode({1: 2, 3: -7, -1: 1, -2: numbers.x.to_bytes(32, "big"), -3: numbers.y.to_bytes(32, "big")})

    def create(self, options: dict[str, Any], *, flags: int = 0x41) -> dict[str, Any]:
        client_data = json.dumps({"type": "webauthn.create", "challenge": options["challenge"], "origin": ORIGIN})
        auth_data = (
            hashlib.sha256(options["rp"]["id"].encode()).digest()
            + bytes([flags])
            + struct.pack(">I", 0)
            + b"\x00" * 16
            + struct.pack(">H", len(self.credential_id))
            + self.credential_id
            + self._cose()
        )
        signed = auth_data + hashlib.sha256(client_data.encode()).digest()
        if self.vendor is not None:  # batch attestation: the vendor's certificate signs
            signature = self.vendor.batch_key.sign(signed, ec.ECDSA(hashes.SHA256()))
            statement = {
                "alg": -7,
                "sig": signature,
                "x5c": [self.vendor.batch.public_bytes(serialization.Encoding.DER)],
            }
        else:  # self attestation: the credential key vouches for itself
            statement = {"alg": -7, "sig": self.key.sign(signed, ec.ECDSA(hashes.SHA256()))}
        attestation = cbor.encode({"fmt": "packed", "attStmt": statement, "authData": auth_data})
        return {
            "id": b64url(self.credential_id),
            "rawId": b64url(self.credential_id),
            "type": "public-key",
            "response": {"clientDataJSON": b64url(client_data.encode()), "attestationObject": b64url(attestation)},
        }

    def get(self, options: dict[str, Any], *, user_handle: str | None = None) -> dict[str, Any]:
        self.count += 1
        client_data = json.dumps({"type": "webauthn.get", "challenge": options["challenge"], "origin": ORIGIN})
        auth_data = hashlib.sha256(options["rpId"].encode()).digest() + b"\x05" + struct.pack(">I", self.count)
        signature = self.key.sign(auth_data + hashlib.sha256(client_data.encode()).digest(), ec.ECDSA(hashes.SHA256()))
        response = {
            "clientDataJSON": b64url(client_data.encode()),
            "authenticatorData": b64url(auth_data),
            "signature": b64url(signature),
        }
        if user_handle is not None:
            response["userHandle"] = user_handle
        return {"id": b64url(self.credential_id), "rawId": b64url(self.credential_id), "type": "public-key",
                "response": response}  # fmt: skip
