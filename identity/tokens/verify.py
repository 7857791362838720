"""Verification of the access tokens this service issued (for its own APIs: the MFA API, later /userinfo)."""

from __future__ import annotations

from typing import Any

import jwt

from identity.tokens.keys import KeyRing

__all__ = ["InvalidAccessToken", "verify_access_token"]


class InvalidAccessToken(Exception):
    """The bearer token is not a valid access token for this audience; the message is safe to return."""


def verify_access_token(
    keys: KeyRing, token: str, *, issuer: str, audience: str, now: float, required_scope: str | None = None
) -> dict[str, Any]:
    """The claims of ``token`` if it is ours, unexpired, for ``audience`` and (optionally) has ``required_scope``."""
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise InvalidAccessToken("malformed token") from None
    found = keys.verification_key(str(header.get("kid", "")))
    if found is None or header.get("alg") != found[0]:
        raise InvalidAccessToken("unknown signing key")
    alg, public_key = found
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            public_key,
            algorithms=[alg],
            audience=audience,
            issuer=issuer,
            options={"require": ["exp", "iat", "sub", "aud", "iss"], "verify_iat": False},
            leeway=0,
        )
    except jwt.ExpiredSignatureError:
        raise InvalidAccessToken("token expired") from None
    except jwt.PyJWTError:
        raise InvalidAccessToken("invalid token") from None
    # PyJWT checks exp against the wall clock; the injected clock is checked too, for tests and consistency.
    if claims["exp"] <= now:
        raise InvalidAccessToken("token expired")
    if required_scope is not None and required_scope not in str(claims.get("scope", "")).split():
        raise InvalidAccessToken(f"insufficient scope: {required_scope} required")
    return claims
