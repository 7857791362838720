"""Discovery documents and the JWKS (``shared/API.md`` §3.2 to 3.3)."""

from __future__ import annotations

from typing import Any

from litestar import MediaType, Response, get
from litestar.di import NamedDependency

from identity.audiences import userinfo_audience
from identity.oauth2.client_auth import AUTH_METHODS
from identity.oauth2.first_party import AUTHORIZATION_CODE, MULTI_FACTOR
from identity.oauth2.grants import (
    MFA_OOB,
    MFA_OTP,
    MFA_RECOVERY_CODE,
    MFA_WEBAUTHN,
    PASSWORD,
    PASSWORD_REALM,
    REFRESH_TOKEN,
    WEBAUTHN,
)
from identity.oauth2.scopes import OIDC_SCOPES
from identity.tokens.keys import SUPPORTED_ALGS
from identity.web import openapi
from identity.web.deps import Services

__all__ = ["discovery_document", "jwks", "oauth_authorization_server", "openid_configuration"]


def discovery_document(services: Services) -> dict[str, Any]:
    """The metadata both discovery routes serve (RFC 8414, OpenID Connect Discovery 1.0)."""
    issuer = services.settings.issuer
    return {
        "issuer": issuer,
        "token_endpoint": issuer + "oauth/token",
        "jwks_uri": issuer + ".well-known/jwks.json",
        "mfa_challenge_endpoint": issuer + "mfa/challenge",
        "userinfo_endpoint": userinfo_audience(issuer),  # the endpoint is its own audience
        "revocation_endpoint": issuer + "oauth/revoke",
        "primary_authenticate_endpoint": issuer + "oauth/primary-authenticate",
        # draft-ietf-oauth-first-party-apps: its published name, and the rename proposed in the WG repo (PR #141).
        "authorization_challenge_endpoint": issuer + "oauth/authorize-challenge",
        "native_authorization_endpoint": issuer + "oauth/authorize-challenge",
        "grant_types_supported": [
            PASSWORD,
            PASSWORD_REALM,
            MFA_OTP,
            *([MFA_OOB] if services.mailer is not None else []),  # emailed codes need a mail server
            MFA_RECOVERY_CODE,
            MFA_WEBAUTHN,
            WEBAUTHN,
            REFRESH_TOKEN,
            AUTHORIZATION_CODE,
        ],
        "response_types_supported": ["token", "code"],
        "code_challenge_methods_supported": ["S256"],
        "scopes_supported": sorted(OIDC_SCOPES),
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "token_endpoint_auth_methods_supported": list(AUTH_METHODS),
        "access_token_signing_alg_values_supported": list(SUPPORTED_ALGS),
        "claims_supported": [
            "acr",
            "amr",
            "aud",
            "auth_time",
            "email",
            "email_verified",
            "exp",
            "family_name",
            "given_name",
            "iat",
            "iss",
            "name",
            "nickname",
            "picture",
            "preferred_username",
            "sub",
            "updated_at",
        ],
        "request_parameter_supported": False,
        "request_uri_parameter_supported": False,
        # RFC 9470 step-up: acr_values at the token and challenge endpoints; any other value is unmet.
        "acr_values_supported": [MULTI_FACTOR],
    }


@get("/.well-known/openid-configuration", operation_class=openapi.DISCOVERY_OPERATION, tags=["discovery"])
async def openid_configuration(services: NamedDependency[Services]) -> Response[dict[str, Any]]:
    """OpenID Connect discovery."""
    return Response(discovery_document(services), headers={"Cache-Control": "public, max-age=300"})


@get("/.well-known/oauth-authorization-server", operation_class=openapi.DISCOVERY_OPERATION, tags=["discovery"])
async def oauth_authorization_server(services: NamedDependency[Services]) -> Response[dict[str, Any]]:
    """RFC 8414 authorization server metadata (same document)."""
    return Response(discovery_document(services), headers={"Cache-Control": "public, max-age=300"})


@get("/.well-known/jwks.json", operation_class=openapi.JWKS_OPERATION, tags=["discovery"])
async def jwks(services: NamedDependency[Services]) -> Response[bytes]:
    """The public keys of the algorithms in use (RS256 always; ES256 once an API signs with it)."""
    return Response(
        services.key_ring.jwks_json_for(await services.algs_in_use()),
        media_type=MediaType.JSON,
        headers={"Cache-Control": f"public, max-age={services.settings.ops.jwks_max_age}"},
    )
