"""The OAuth 2.0 protocol engine: framework-free, storage-free (it sees only the Protocols of `interfaces`)."""

from identity.oauth2.endpoint import TokenEndpoint
from identity.oauth2.errors import OAuthError
from identity.oauth2.requests import TokenRequest
from identity.oauth2.revocation import RevocationEndpoint

__all__ = ["OAuthError", "RevocationEndpoint", "TokenEndpoint", "TokenRequest"]
