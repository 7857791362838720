"""The OpenAPI document at ``/schema`` (Litestar's OpenAPI plugin), written for clients and fuzzers.

The handlers read their bodies themselves (form or JSON, repeated members refused: RFC 6749 §3.2), so Litestar cannot
infer request bodies from their signatures. Each public handler names an `Operation` subclass made by `documented`,
which fills in the request body, every response with its body (errors in their ``{"error", "error_description"}``
form, ``shared/API.md`` §1.9) and the security requirement. Schemas are inlined: Litestar rebuilds
``components.schemas`` from its own registry, so only ``securitySchemes`` live in the components.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin
from litestar.openapi.spec import (
    Components,
    OpenAPIFormat,
    OpenAPIMediaType,
    OpenAPIResponse,
    OpenAPIType,
    Operation,
    RequestBody,
    Schema,
    SecurityScheme,
)

from identity.oauth2.grants import (
    CLIENT_CREDENTIALS,
    MFA_OOB,
    MFA_OTP,
    MFA_RECOVERY_CODE,
    PASSWORD,
    PASSWORD_REALM,
    REFRESH_TOKEN,
)

__all__ = ["SCHEMA_PATH", "documented", "json_schema", "openapi_config"]

SCHEMA_PATH = "/schema"
FORM = "application/x-www-form-urlencoded"
JSON = "application/json"

_ALIASES = {field.metadata.get("alias", field.name): field.name for field in fields(Schema)}
_NESTED_ONE = {"items", "additionalProperties", "not"}
_NESTED_MANY = {"oneOf", "anyOf", "allOf"}


def json_schema(document: dict[str, Any]) -> Schema:
    """A Litestar `Schema` from a JSON Schema written as a plain dict (easier to read than nested constructors)."""
    kwargs: dict[str, Any] = {}
    for key, value in document.items():
        if key == "properties":
            value = {name: json_schema(item) for name, item in value.items()}
        elif key in _NESTED_ONE and isinstance(value, dict):
            value = json_schema(value)
        elif key in _NESTED_MANY:
            value = [json_schema(item) for item in value]
        elif key == "type":
            value = [OpenAPIType(item) for item in value] if isinstance(value, list) else OpenAPIType(value)
        elif key == "format":
            value = OpenAPIFormat(value)
        kwargs[_ALIASES[key]] = value
    return Schema(**kwargs)


def _string(description: str, **extra: Any) -> dict[str, Any]:
    return {"type": "string", "description": description, **extra}


def _object(properties: dict[str, Any], required: list[str] | None = None, **extra: Any) -> dict[str, Any]:
    document: dict[str, Any] = {"type": "object", "properties": properties, **extra}
    if required:
        document["required"] = required
    return document


OAUTH_ERROR = _object(
    {
        "error": _string("The error code (RFC 6749 §5.2, Auth0's catalogue: shared/API.md §1.9)."),
        "error_description": _string("A human-readable explanation; never says which credential was wrong."),
    },
    ["error", "error_description"],
)
MFA_REQUIRED = _object(
    {
        "error": {"type": "string", "enum": ["mfa_required"]},
        "error_description": _string("Multifactor authentication required"),
        "mfa_token": _string("Opaque, single use, 10 minutes: send it to /mfa/* and the MFA grants."),
    },
    ["error", "error_description", "mfa_token"],
)

TOKEN_REQUEST = _object(
    {
        "grant_type": {
            "type": "string",
            "enum": [
                PASSWORD,
                PASSWORD_REALM,
                MFA_OTP,
                MFA_OOB,
                MFA_RECOVERY_CODE,
                REFRESH_TOKEN,
                CLIENT_CREDENTIALS,
                "authorization_code",
            ],
            "description": "The grant. More grant types may be enabled for a client; unknown ones get "
            "unsupported_grant_type.",
        },
        "client_id": _string("The application's id (client_secret_post, none)."),
        "client_secret": _string("The application's secret (client_secret_post); or HTTP Basic."),
        "username": _string("password, password-realm: the user's email or username."),
        "password": _string("password, password-realm: the user's password.", writeOnly=True),
        "realm": _string("password-realm: the directory (connection) name."),
        "audience": _string(
            "The API the access token is for (default: the tenant's default audience; required for client_credentials)."
        ),
        "scope": _string("Space-separated scopes; openid returns an ID token, offline_access a refresh token."),
        "acr_values": _string(
            "password, password-realm (RFC 9470 step-up): http://schemas.openid.net/pape/policies/2007/06/multi-factor "
            "forces mfa_required; any other value is unmet_authentication_requirements."
        ),
        "max_age": _string(
            "password, password-realm: seconds (always met). refresh_token: a family authenticated longer ago is "
            "invalid_grant."
        ),
        "mfa_token": _string("mfa-otp, mfa-oob, mfa-recovery-code: the token of the mfa_required answer."),
        "otp": _string("mfa-otp: the six-digit code of the authenticator app.", pattern="^[0-9]{6}$"),
        "oob_code": _string("mfa-oob: the oob_code of /mfa/challenge or /mfa/associate."),
        "binding_code": _string("mfa-oob: the six-digit code sent by email."),
        "recovery_code": _string("mfa-recovery-code: the user's recovery code."),
        "refresh_token": _string("refresh_token: the refresh token to exchange (it rotates)."),
        "code": _string("authorization_code: the code of /oauth/authorize-challenge."),
        "code_verifier": _string("authorization_code: the PKCE verifier of the code_challenge sent there."),
    },
    ["grant_type"],
    description="A form (RFC 6749) or a JSON object (Auth0) with the same members; a member sent twice is an "
    "invalid_request.",
)
TOKEN_RESPONSE = _object(
    {
        "access_token": _string("A JWT for the audience (RS256 or ES256, kid in the header; verify with the JWKS)."),
        "token_type": {"type": "string", "enum": ["Bearer"]},
        "expires_in": {"type": "integer", "description": "Seconds until the access token expires."},
        "scope": _string("The granted scopes."),
        "id_token": _string("When openid was granted: an RS256 ID token for the client."),
        "refresh_token": _string("When offline_access was granted; the old one stops working (rotation)."),
        "recovery_code": _string("After mfa-recovery-code: the user's new recovery code, shown once."),
    },
    ["access_token", "token_type", "expires_in"],
)
AUTHORIZE_CHALLENGE_REQUEST = _object(
    {
        "client_id": _string("The application's id; may be left out with an auth_session (its client is known)."),
        "client_secret": _string("The application's secret, for a confidential client (or HTTP Basic)."),
        "response_type": {"type": "string", "enum": ["code"], "description": "Starts an authorization request."},
        "code_challenge": _string("PKCE: BASE64URL(SHA-256(code_verifier)), required with response_type."),
        "code_challenge_method": {"type": "string", "enum": ["S256"]},
        "scope": _string("Space-separated scopes, as for the password grant."),
        "audience": _string("The API the tokens are for (default: the tenant's default audience)."),
        "resource": _string("RFC 8707: the same as audience."),
        "realm": _string("The directory (connection) of the user; default: the tenant's default directory."),
        "acr_values": _string("http://schemas.openid.net/pape/policies/2007/06/multi-factor asks for a second factor."),
        "max_age": _string("Seconds (always met: every code follows a factor checked moments before)."),
        "username": _string("The user's email or username (or login_hint)."),
        "login_hint": _string("The same as username."),
        "password": _string("The user's password.", writeOnly=True),
        "auth_session": _string("From an earlier answer: continues that login, or starts a step-up on it."),
        "challenge_type": _string(
            "With an auth_session: a method of the answer's methods to start; email sends a code (the answer says "
            "email_code_required). A method the user lacks is unsupported_challenge_type."
        ),
        "otp": _string("The six-digit code of the authenticator app.", pattern="^[0-9]{6}$"),
        "email_code": _string("The six-digit code sent by email (the last one sent for this auth_session)."),
        "recovery_code": _string("The user's recovery code (a new one comes back with the code)."),
        "authn_response": _object({}, additionalProperties=True, description="A WebAuthn assertion (JSON)."),
        "clientDataJSON": _string("WebAuthn assertion, Okta's form fields (base64url), with the next three."),
        "authenticatorData": {"type": "string"},
        "signature": {"type": "string"},
        "userHandle": {"type": "string"},
    },
    description="draft-ietf-oauth-first-party-apps-03 §5.1: a form, or a JSON object with the same members.",
)
AUTHORIZATION_CODE_RESPONSE = _object(
    {
        "authorization_code": _string("Single use, 60 seconds: redeem it with grant_type=authorization_code."),
        "auth_session": _string("Keep it: a later request with it and response_type=code steps up."),
        "recovery_code": _string("After a recovery code: the user's new one, shown once."),
    },
    ["authorization_code", "auth_session"],
)
INSUFFICIENT_AUTHORIZATION = _object(
    {
        "error": {"type": "string", "enum": ["insufficient_authorization"]},
        "error_description": {"type": "string"},
        "auth_session": _string("Send it back with what is asked (absent when the password is asked)."),
        "methods": {
            "type": "array",
            "items": {"type": "string"},
            "description": "password; or the second factors: otp, webauthn, email, recovery-code.",
        },
        "password_required": {"type": "boolean"},
        "otp_required": {"type": "boolean"},
        "email_code_required": {"type": "boolean", "description": "A code was just emailed: send it as email_code."},
        "email_code_sent_to": _string("Where the code went, masked (j***@example.com)."),
        "webauthn": _object({"publicKey": _object({}, additionalProperties=True)}),
    },
    ["error", "error_description", "methods"],
    additionalProperties=True,
)
REVOKE_REQUEST = _object(
    {
        "token": _string("The refresh token to revoke (its whole family is revoked)."),
        "token_type_hint": _string("Ignored (only refresh tokens can be revoked)."),
        "client_id": _string("The application's id."),
        "client_secret": _string("The application's secret, for a confidential client (or HTTP Basic)."),
    },
    ["token"],
)
USERINFO = _object(
    {
        "sub": _string("The user id."),
        "name": {"type": "string"},
        "given_name": {"type": "string"},
        "family_name": {"type": "string"},
        "nickname": {"type": "string"},
        "picture": {"type": "string"},
        "updated_at": {"type": "string"},
        "email": {"type": "string"},
        "email_verified": {"type": "boolean"},
        "preferred_username": {"type": "string"},
    },
    ["sub"],
    additionalProperties=True,
    description="Claims allowed by the token's scopes, read from the user as stored now, plus the namespaced claims "
    "rules added to the ID token.",
)
AUTHENTICATOR = _object(
    {
        "id": _string("e.g. totp|dev_... or recovery-code|dev_..."),
        "authenticator_type": {"type": "string", "enum": ["otp", "oob", "webauthn", "recovery-code"]},
        "oob_channel": {"type": "string", "enum": ["email"]},
        "active": {"type": "boolean"},
        "name": {"type": "string"},
        "created_at": {"type": "string"},
    },
    ["id", "authenticator_type", "active"],
    additionalProperties=True,
)
ASSOCIATE_REQUEST = _object(
    {
        "authenticator_types": {
            "type": "array",
            "items": {"type": "string", "enum": ["otp", "oob", "webauthn"]},
            "minItems": 1,
            "maxItems": 1,
        },
        "oob_channels": {"type": "array", "items": {"type": "string", "enum": ["email"]}, "maxItems": 1},
        "email": _string("oob: the address codes are sent to (default: the user's email)."),
        "client_id": _string("Must be the client the mfa_token was issued to."),
    },
    ["authenticator_types"],
)
ASSOCIATE_RESPONSE = _object(
    {
        "authenticator_type": {"type": "string", "enum": ["otp", "oob", "webauthn"]},
        "secret": _string("otp: the TOTP secret (base32)."),
        "oob_channel": {"type": "string", "enum": ["email"]},
        "oob_code": _string("oob: names the code just sent; send it back with the code (mfa-oob)."),
        "binding_method": {"type": "string", "enum": ["prompt"]},
        "barcode_uri": _string("otp: otpauth:// URI for a QR code."),
        "publicKey": _object({}, additionalProperties=True, description="webauthn: creation options (base64url)."),
        "recovery_codes": {"type": "array", "items": {"type": "string"}},
    },
    ["authenticator_type"],
)
CHALLENGE_REQUEST = _object(
    {
        "mfa_token": _string("The token of the mfa_required answer."),
        "client_id": {"type": "string"},
        "client_secret": {"type": "string"},
        "challenge_type": _string(
            "Space-separated: otp, oob (a code by email), webauthn. Omitted: the factor enrolled first; an email "
            "only when the user has nothing else."
        ),
        "authenticator_id": {"type": "string"},
    },
    ["mfa_token"],
)
CHALLENGE_RESPONSE = _object(
    {
        "challenge_type": {"type": "string", "enum": ["otp", "oob", "webauthn"]},
        "oob_code": _string("oob: names the code just sent; send it back with the code (mfa-oob)."),
        "binding_method": {"type": "string", "enum": ["prompt"]},
        "publicKey": _object({}, additionalProperties=True, description="webauthn: request options (base64url)."),
    },
    ["challenge_type"],
)
PASSKEY_REQUEST = _object(
    {"client_id": {"type": "string"}, "client_secret": {"type": "string"}, "realm": _string("A connection name.")},
    ["client_id"],
)
PASSKEY_RESPONSE = _object(
    {
        "authn_params_public_key": _object({}, additionalProperties=True, description="WebAuthn options."),
        "auth_session": _string("Send it back with the webauthn grant (single use, five minutes)."),
    },
    ["authn_params_public_key", "auth_session"],
)
PRIMARY_AUTHENTICATE_REQUEST = _object(
    {
        "client_id": {"type": "string"},
        "client_secret": {"type": "string"},
        "challenge_hint": {
            "type": "string",
            "enum": ["urn:okta:params:oauth:grant-type:mfa-webauthn", "urn:okta:params:oauth:grant-type:webauthn"],
        },
        "mfa_token": _string("With the mfa-webauthn hint."),
        "realm": {"type": "string"},
    },
    ["client_id", "challenge_hint"],
)
DISCOVERY = _object(
    {
        "issuer": {"type": "string"},
        "token_endpoint": {"type": "string"},
        "jwks_uri": {"type": "string"},
        "userinfo_endpoint": {"type": "string"},
        "revocation_endpoint": {"type": "string"},
        "mfa_challenge_endpoint": {"type": "string"},
        "grant_types_supported": {"type": "array", "items": {"type": "string"}},
        "token_endpoint_auth_methods_supported": {"type": "array", "items": {"type": "string"}},
    },
    ["issuer", "token_endpoint", "jwks_uri"],
    additionalProperties=True,
)
JWKS = _object(
    {
        "keys": {
            "type": "array",
            "items": _object(
                {
                    "kty": {"type": "string"},
                    "kid": {"type": "string"},
                    "alg": {"type": "string"},
                    "use": {"type": "string"},
                },
                ["kty", "kid"],
                additionalProperties=True,
            ),
        }
    },
    ["keys"],
)
HEALTH = _object({"status": {"type": "string"}}, ["status"], additionalProperties=True)


def _json(schema: dict[str, Any]) -> dict[str, OpenAPIMediaType]:
    return {JSON: OpenAPIMediaType(schema=json_schema(schema))}


def _response(description: str, schema: dict[str, Any] | None = None) -> OpenAPIResponse:
    return OpenAPIResponse(description=description, content=_json(schema) if schema is not None else None)


def _error(description: str) -> OpenAPIResponse:
    return _response(description, OAUTH_ERROR)


ERRORS = {
    "400": _error("invalid_request, invalid_grant, unsupported_grant_type, invalid_scope, ..."),
    "401": _error("invalid_client, or a missing or invalid bearer token (with WWW-Authenticate)."),
    "403": _error("access_denied, invalid_grant (wrong credentials), unauthorized_client, ..."),
    "413": _error("The body is larger than the endpoint accepts."),
    "415": _error("The Content-Type is not accepted."),
    "429": _error("too_many_attempts (brute-force protection) or too many requests."),
    "500": _error("server_error: an outage or a bug; the details are only in the server's log."),
}


def documented(
    *,
    success: dict[str, OpenAPIResponse],
    request: dict[str, Any] | None = None,
    media_types: tuple[str, ...] = (FORM, JSON),
    errors: tuple[str, ...] = tuple(ERRORS),
    extra: dict[str, OpenAPIResponse] | None = None,
    security: list[dict[str, list[str]]] | None = None,
) -> type[Operation]:
    """An `Operation` class for a handler's ``operation_class``: request body, responses and security as given."""
    responses = {**success, **{code: ERRORS[code] for code in errors}, **(extra or {})}
    body = (
        RequestBody(content={media: OpenAPIMediaType(schema=json_schema(request)) for media in media_types})
        if request is not None
        else None
    )

    @dataclass
    class DocumentedOperation(Operation):
        def __post_init__(self) -> None:
            if body is not None:
                self.request_body = body
            self.responses = dict(responses)
            if security is not None:
                self.security = security

    return DocumentedOperation


TOKEN = documented(
    request=TOKEN_REQUEST,
    success={"200": _response("Tokens (Cache-Control: no-store).", TOKEN_RESPONSE)},
    extra={
        "403": OpenAPIResponse(
            description="access_denied / invalid_grant / unauthorized_client, or mfa_required with an mfa_token.",
            # anyOf, not oneOf: an mfa_required body is also a valid error body (found by the fuzz, issue 12).
            content={JSON: OpenAPIMediaType(schema=json_schema({"anyOf": [OAUTH_ERROR, MFA_REQUIRED]}))},
        )
    },
    security=[{}, {"clientSecretBasic": []}],
)
AUTHORIZE_CHALLENGE = documented(
    request=AUTHORIZE_CHALLENGE_REQUEST,
    success={"200": _response("An authorization code (Cache-Control: no-store).", AUTHORIZATION_CODE_RESPONSE)},
    errors=("400", "413", "415", "429", "500"),
    extra={
        "401": OpenAPIResponse(
            description="insufficient_authorization: what the user must provide next; or invalid_client.",
            content={JSON: OpenAPIMediaType(schema=json_schema({"anyOf": [OAUTH_ERROR, INSUFFICIENT_AUTHORIZATION]}))},
        ),
        "503": _error("temporarily_unavailable (with Retry-After): the password hashing queue is full."),
    },
    security=[{}, {"clientSecretBasic": []}],
)
REVOKE = documented(
    request=REVOKE_REQUEST,
    success={"200": _response("Revoked, or an unknown token (RFC 7009 §2.2: the same answer).")},
    errors=("400", "401", "413", "415", "429", "500"),
    security=[{}, {"clientSecretBasic": []}],
)
USERINFO_OPERATION = documented(
    success={"200": _response("The user's claims.", USERINFO)},
    errors=("401", "403", "429", "500"),
    security=[{"bearer": []}],
)
LIST_AUTHENTICATORS = documented(
    success={"200": _response("The user's authenticators.", {"type": "array", "items": AUTHENTICATOR})},
    errors=("401", "403", "429", "500"),
    security=[{"bearer": []}],
)
ASSOCIATE = documented(
    request=ASSOCIATE_REQUEST,
    media_types=(JSON, FORM),
    success={
        "200": _response("The new (pending) authenticator's secret, and the recovery code once.", ASSOCIATE_RESPONSE)
    },
    security=[{"bearer": []}],
)
CHALLENGE = documented(
    request=CHALLENGE_REQUEST,
    success={"200": _response("Which challenge to answer (for otp nothing is sent).", CHALLENGE_RESPONSE)},
    security=[{}, {"clientSecretBasic": []}],
)
PRIMARY_AUTHENTICATE = documented(
    request=PRIMARY_AUTHENTICATE_REQUEST,
    success={"200": _response("challenge_type (the grant) and WebAuthn request options (publicKey).")},
    security=[{}, {"clientSecretBasic": []}],
)
PASSKEY_CHALLENGE = documented(
    request=PASSKEY_REQUEST,
    success={"200": _response("Request options for a discoverable passkey, and the auth_session.", PASSKEY_RESPONSE)},
    security=[{}, {"clientSecretBasic": []}],
)
PASSKEY_REGISTER = documented(
    request=PASSKEY_REQUEST,
    success={"200": _response("Creation options for the token's user, and the auth_session.", PASSKEY_RESPONSE)},
    security=[{"bearer": []}],
)
REMOVE_AUTHENTICATOR = documented(
    success={"204": _response("Removed.")},
    errors=("401", "403", "429", "500"),
    extra={"404": _error("not_found: no such authenticator of this user.")},
    security=[{"bearer": []}],
)
DISCOVERY_OPERATION = documented(success={"200": _response("The metadata document.", DISCOVERY)}, errors=("500",))
JWKS_OPERATION = documented(
    success={"200": _response("The published signing keys (Cache-Control: public, max-age=300).", JWKS)},
    errors=("500",),
)
HEALTH_OPERATION = documented(
    success={"200": _response("Alive / ready.", HEALTH)},
    errors=(),
    extra={"503": _response("Not ready (the body says what is missing).", HEALTH)},
)


def openapi_config(version: str) -> OpenAPIConfig:
    """Litestar's OpenAPI plugin, serving the JSON document at ``/schema`` (and ``/schema/openapi.json``)."""
    return OpenAPIConfig(
        title="identity",
        version=version,
        description="A self-hosted authorization server speaking Auth0's wire format (shared/API.md).",
        path=SCHEMA_PATH,
        render_plugins=[JsonRenderPlugin(path=["/", "/openapi.json"])],
        components=Components(
            security_schemes={
                "clientSecretBasic": SecurityScheme(
                    type="http", scheme="basic", description="client_secret_basic: client_id and secret."
                ),
                "bearer": SecurityScheme(
                    type="http", scheme="bearer", description="An access token, or an mfa_token where stated."
                ),
            }
        ),
    )
