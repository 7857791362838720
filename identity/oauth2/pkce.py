"""Proof Key for Code Exchange (RFC 7636), S256 only, for the codes of the first-party apps endpoint.

That endpoint returns the authorization code in the body of a back-channel response: the code never crosses a
redirect, so the interception PKCE was made for (another app claiming the redirect URI) cannot happen. PKCE is still
required of every client, confidential ones included, because a code can leak elsewhere (a log, a proxy, a retry
kept on disk, a compromised layer of the app) and the verifier never leaves the app instance that started the flow;
RFC 9700 §2.1.1 asks for PKCE from public clients and recommends it for confidential ones, and the draft's own
``redirect_to_web`` answer assumes the client sent a challenge. Only ``S256``: ``plain`` would put the verifier
itself on the wire twice.
"""

from __future__ import annotations

import base64
import hashlib
import re

from identity.crypto import constant_time_equals
from identity.oauth2.errors import InvalidRequest

__all__ = ["S256", "checked_challenge", "verify"]

S256 = "S256"
_CHALLENGE = re.compile(r"[A-Za-z0-9_-]{43}")
"""BASE64URL(SHA-256(verifier)) without padding: always 43 characters (RFC 7636 §4.2)."""
_VERIFIER = re.compile(r"[A-Za-z0-9._~-]{43,128}")
"""RFC 7636 §4.1: 43 to 128 unreserved characters."""


def checked_challenge(challenge: str | None, method: str | None) -> str:
    """The request's ``code_challenge``, or ``invalid_request`` unless it is a well-formed S256 challenge.

    A missing ``code_challenge_method`` means ``plain`` (RFC 7636 §4.3), which is refused like any other method.
    """
    if challenge is None:
        raise InvalidRequest("missing code_challenge parameter (PKCE with S256 is required)")
    if method != S256:
        raise InvalidRequest("code_challenge_method must be S256")
    if not _CHALLENGE.fullmatch(challenge):
        raise InvalidRequest("code_challenge must be the base64url SHA-256 of the code_verifier (43 characters)")
    return challenge


def verify(verifier: str, challenge: str) -> bool:
    """Whether ``verifier`` hashes to ``challenge`` (RFC 7636 §4.6), compared in constant time."""
    if not _VERIFIER.fullmatch(verifier):
        return False
    computed = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode("ascii")).digest()).rstrip(b"=").decode()
    return constant_time_equals(computed, challenge)
