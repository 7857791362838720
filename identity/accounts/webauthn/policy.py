"""The tenant's and the operator's WebAuthn policy: user verification, attestation, what counts as hardware."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession
from webauthn.helpers import parse_attestation_object
from webauthn.helpers.structs import AttestationFormat, CredentialDeviceType

from identity.settings import Settings
from identity.store.tenant import tenant_row

__all__ = [
    "ATTESTATION_PREFERENCES",
    "MAX_CREDENTIALS_PER_USER",
    "MAX_NAME",
    "USER_VERIFICATION",
    "attestation_roots",
    "proves_hardware",
    "tenant_policy",
]

USER_VERIFICATION = ("required", "preferred", "discouraged")
ATTESTATION_PREFERENCES = ("none", "indirect", "direct")
MAX_NAME = 64
"""The longest name of a key."""
MAX_CREDENTIALS_PER_USER = 20
_ROOTED_FORMATS = (AttestationFormat.PACKED, AttestationFormat.FIDO_U2F, AttestationFormat.TPM)
"""Formats whose chain py_webauthn validates only against the roots it is given (the operator's)."""
_SHIPPED_ROOT_FORMATS = (AttestationFormat.APPLE, AttestationFormat.ANDROID_KEY)
"""Formats whose chain py_webauthn always validates against the vendor roots it ships."""


async def tenant_policy(session: AsyncSession) -> tuple[str, str, str]:
    """The relying party's name, the user verification asked and the attestation conveyance, as the tenant set them."""
    tenant = await tenant_row(session)
    return tenant.friendly_name, tenant.webauthn_user_verification, tenant.webauthn_attestation


def attestation_roots(settings: Settings) -> dict[AttestationFormat, list[bytes]] | None:
    """The operator's attestation roots, by the formats py_webauthn checks against them (``None``: none given)."""
    roots = list(settings.webauthn_attestation_roots)
    return {fmt: roots for fmt in (*_ROOTED_FORMATS, AttestationFormat.ANDROID_KEY)} if roots else None


def proves_hardware(settings: Settings, fmt: Any, attestation_object: bytes, device_type: CredentialDeviceType) -> bool:
    """Whether a verified attestation proves a hardware-bound key (``amr`` ``hwk``).

    Only when it chained to a trusted root and the key is not backup-eligible (a synced passkey is not bound to
    hardware); attestation ``none`` or self attestation proves nothing.
    """
    if device_type is CredentialDeviceType.MULTI_DEVICE:
        return False
    try:
        statement = parse_attestation_object(attestation_object).att_stmt
    except Exception:  # already verified by py_webauthn: unreachable in practice
        return False
    if not statement.x5c:
        return False  # none, or self attestation: the key vouches for itself
    if fmt in _SHIPPED_ROOT_FORMATS:
        return True
    return fmt in _ROOTED_FORMATS and bool(settings.webauthn_attestation_roots)
