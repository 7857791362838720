"""Token minting and signing keys."""

from identity.tokens.issuer import JwtIssuer
from identity.tokens.keys import KeyRing

__all__ = ["JwtIssuer", "KeyRing"]
