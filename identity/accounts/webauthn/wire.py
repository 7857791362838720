"""WebAuthn responses as browsers (and Okta's and Auth0's SDKs) send them: base64url, ``clientDataJSON``, ids."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from typing import Any

from webauthn.helpers import bytes_to_base64url, parse_attestation_object
from webauthn.helpers.structs import AuthenticatorTransport, PublicKeyCredentialDescriptor

from identity.store.models import WebAuthnCredentialRow

__all__ = ["b64url_decode", "challenge_of", "descriptor", "response_of", "with_credential_id"]


def b64url_decode(value: str) -> bytes:
    """Decode base64url with or without padding; `ValueError` for anything else."""
    if not isinstance(value, str) or len(value) > 16 * 1024:
        raise ValueError("not base64url")
    try:
        return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError):
        raise ValueError("not base64url") from None


def response_of(credential: Mapping[str, Any]) -> Mapping[str, Any]:
    """The ``response`` member of a credential (empty when it is missing or not an object)."""
    response = credential.get("response")
    return response if isinstance(response, Mapping) else {}


def with_credential_id(credential: Mapping[str, Any]) -> dict[str, Any]:
    """The credential, with ``id``/``rawId`` from its attestation when only the response was sent (Okta's form)."""
    complete = dict(credential)
    if not complete.get("id") or not complete.get("rawId"):
        parsed = parse_attestation_object(b64url_decode(response_of(credential)["attestationObject"]))
        attested = parsed.auth_data.attested_credential_data
        if attested is None:
            raise ValueError("attestation without credential data")
        complete["id"] = complete["rawId"] = bytes_to_base64url(attested.credential_id)
    complete.setdefault("type", "public-key")
    return complete


def challenge_of(credential: Mapping[str, Any]) -> bytes:
    """The challenge the response answers (from its ``clientDataJSON``)."""
    client_data = json.loads(b64url_decode(response_of(credential)["clientDataJSON"]))
    return b64url_decode(client_data["challenge"])


def descriptor(row: WebAuthnCredentialRow) -> PublicKeyCredentialDescriptor:
    """A stored key as ``allowCredentials``/``excludeCredentials`` name it."""
    transports = []
    for name in row.transports:
        try:
            transports.append(AuthenticatorTransport(name))
        except ValueError:
            continue
    return PublicKeyCredentialDescriptor(id=row.credential_id, transports=transports or None)
