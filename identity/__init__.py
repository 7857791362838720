"""identity: an authorization server for highly trusted clients, speaking Auth0's wire format."""

__version__ = "0.1.0"
