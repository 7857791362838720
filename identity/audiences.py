"""The audiences of identity's own resource servers, each spelled in this one place.

Both are paths under the issuer, so they change with it: the MFA API (Auth0's ``https://<tenant>/mfa/``) and
``/userinfo``, whose URL is also the audience added to every access token that may call it (OIDC Core §5.3).
"""

from __future__ import annotations

__all__ = ["mfa_api_audience", "userinfo_audience"]


def mfa_api_audience(issuer: str) -> str:
    """The built-in MFA API: ``<issuer>mfa/`` (its tokens are issued only after a second factor)."""
    return issuer + "mfa/"


def userinfo_audience(issuer: str) -> str:
    """``<issuer>userinfo``: the endpoint's URL, and the audience of access tokens that may call it."""
    return issuer + "userinfo"
