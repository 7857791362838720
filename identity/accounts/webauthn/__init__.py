"""WebAuthn security keys and passkeys: ceremonies (options, challenges) and verification, with py_webauthn.

Used by the MFA API (enrollment and the second factor), the passkey API (first factor) and the enrollment pages.

    records.py     which ceremony (Purpose), and what a checked response came to (Assertion, Registered, Pending)
    ceremonies.py  challenges: issued, found again by the response that answers them, burned once
    keys.py        the users' keys and random user handles, as stored
    policy.py      user verification, attestation conveyance and roots, what counts as a hardware-bound key
    wire.py        responses as browsers and SDKs send them (base64url, clientDataJSON, credential ids)
    service.py     WebAuthnService: registration and authentication, for the handlers and the grants
    grants.py      WebAuthnFactors: the grants' WebAuthnFactor (the service plus the attempt bucket)

Security choices:
- Every ceremony has a challenge of 32 random bytes, stored as SHA-256 with what it is bound to (an mfa_token, an
  ``auth_session``, an enrollment-page session), a purpose and an expiry. A response is looked up by the challenge
  its ``clientDataJSON`` carries; a challenge issued for something else is refused. The challenge is burned by a
  conditional UPDATE in the same database transaction as the sign count and the mfa_token, so of concurrent
  requests with one response exactly one wins.
- py_webauthn checks the origin (``IDENTITY_WEBAUTHN_ORIGINS``), the RP id hash, the challenge, user presence, user
  verification (when the tenant requires it) and the signature. The sign count is checked here, after the
  signature: a counter that does not move forward marks the credential as possibly cloned; the response is refused
  and the event logged.
- Failed second-factor responses (after a password: an mfa_token) draw from the user's attempt bucket, as OTP
  codes do (reserved before checking). A passkey sign-in's do not: anyone may start one and name a key by its
  credential id or user handle (not secrets), so counting would let anyone lock the owner out, and a signature
  cannot be guessed, so there is nothing for a count to slow down.
- The public key is stored as the authenticator sent it (COSE; it is not a secret). The user handle is 32 random
  bytes per user, never the user id or the email.
- A key counts as hardware-bound (``amr`` ``hwk``) only when its attestation chained to a trusted root and it is
  not backup-eligible (a synced passkey is not bound to hardware); attestation ``none`` proves nothing (``swk``).
"""

from identity.accounts.webauthn.ceremonies import CEREMONY_SECONDS
from identity.accounts.webauthn.grants import WebAuthnFactors
from identity.accounts.webauthn.policy import ATTESTATION_PREFERENCES, USER_VERIFICATION
from identity.accounts.webauthn.records import Assertion, Pending, Purpose, Registered
from identity.accounts.webauthn.service import WebAuthnService
from identity.accounts.webauthn.wire import b64url_decode

__all__ = [
    "ATTESTATION_PREFERENCES",
    "CEREMONY_SECONDS",
    "USER_VERIFICATION",
    "Assertion",
    "Pending",
    "Purpose",
    "Registered",
    "WebAuthnFactors",
    "WebAuthnService",
    "b64url_decode",
]
