"""A framework-neutral, immutable view of a token request.

Auth0 accepts ``application/x-www-form-urlencoded`` (RFC 6749 §4.3.2) and ``application/json`` bodies; its Python SDK
posts JSON with explicit ``null`` for unset members. Both become one `TokenRequest`:

- a parameter sent without a value (empty string, JSON ``null``) is treated as omitted (RFC 6749 §3.1);
- a parameter sent more than once is an ``invalid_request`` (RFC 6749 §3.2);
- in JSON, ``scope`` may be a string or an array of strings (Auth0: "Scope must be an array or a string"); any other
  parameter must be a string.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from identity.oauth2.errors import InvalidClient, InvalidRequest, InvalidScope

if TYPE_CHECKING:
    from identity.oauth2.interfaces import Client

__all__ = ["BasicCredentials", "TokenRequest", "parse_basic_authorization"]

_MAX_PARAMETER_LENGTH = 4096
_LONG_PARAMETERS = {"authn_response": 32 * 1024, "attestationObject": 24 * 1024, "clientDataJSON": 8 * 1024}
"""WebAuthn responses: an attestation with its certificate chain is longer than any other parameter."""
_JSON_OBJECT_PARAMETERS = frozenset({"authn_response", "user_profile"})
"""Members Auth0's passkey API sends as JSON objects; kept as their (compact) JSON text."""


@dataclass(frozen=True)
class BasicCredentials:
    """``client_id`` and ``client_secret`` from an ``Authorization: Basic`` header (RFC 6749 §2.3.1)."""

    client_id: str
    client_secret: str = field(repr=False)
    raw_client_id: str = field(default="", compare=False)
    """The id as sent, before form-decoding: many clients (curl -u, httpx, Authlib) do not form-encode."""
    raw_client_secret: str = field(default="", repr=False, compare=False)

    def secrets(self) -> tuple[str, ...]:
        """The secret as RFC 6749 §2.3.1 decodes it, and as sent when that differs."""
        if self.raw_client_secret and self.raw_client_secret != self.client_secret:
            return (self.client_secret, self.raw_client_secret)
        return (self.client_secret,)


def parse_basic_authorization(header: str | None, *, challenge_realm: str) -> BasicCredentials | None:
    """Decode a Basic header; ``None`` when there is no Basic header at all."""
    if not header:
        return None
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip().encode("ascii"), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, UnicodeEncodeError, ValueError):
        raise InvalidClient(challenge_realm=challenge_realm) from None
    client_id, sep, client_secret = decoded.partition(":")
    if not sep or not client_id:
        raise InvalidClient(challenge_realm=challenge_realm)
    if "\x00" in decoded or "%00" in decoded or len(decoded) > 2 * _MAX_PARAMETER_LENGTH:
        raise InvalidClient(challenge_realm=challenge_realm)  # never send a NUL or a huge id to the database
    # RFC 6749 §2.3.1: both parts are form-urlencoded before being joined.
    return BasicCredentials(
        unquote(client_id.replace("+", " ")),
        unquote(client_secret.replace("+", " ")),
        raw_client_id=client_id,
        raw_client_secret=client_secret,
    )


@dataclass(frozen=True)
class TokenRequest:
    """The parameters of one ``POST /oauth/token``, plus what the transport tells about the caller."""

    params: Mapping[str, str]
    basic: BasicCredentials | None = None
    client_ip: str | None = None
    """The end user's address, as far as is known: the transport's decision, then a trusted client's header."""
    user_agent: str | None = None
    forwarded_for: str | None = None
    """The ``auth0-forwarded-for`` header as sent; believed only for a client trusted with it (`for_client`)."""
    proxy_ip: str | None = None
    """The transport's address when ``client_ip`` came from ``auth0-forwarded-for`` (Auth0's ``client_ip``)."""

    @classmethod
    def from_form(cls, pairs: Iterable[tuple[str, str]], **transport: Any) -> TokenRequest:
        """Build from decoded form pairs, refusing repeated parameters."""
        params: dict[str, str] = {}
        seen: set[str] = set()
        for name, value in pairs:
            if name in seen:
                raise InvalidRequest(f"{name} parameter must not be included more than once")
            seen.add(name)
            if value:
                params[name] = _checked(name, value)
        return cls(params, **transport)

    @classmethod
    def from_json(cls, body: object, **transport: Any) -> TokenRequest:
        """Build from a decoded JSON object."""
        if not isinstance(body, dict):
            raise InvalidRequest("request body must be a JSON object")
        params: dict[str, str] = {}
        for name, value in body.items():
            if value is None or value == "":
                continue
            if name == "scope" and isinstance(value, list):
                if not all(isinstance(item, str) for item in value):
                    raise InvalidScope("Scope must be an array or a string")
                value = " ".join(value)
            elif name == "scope" and not isinstance(value, str):
                raise InvalidScope("Scope must be an array or a string")
            elif name in _JSON_OBJECT_PARAMETERS and isinstance(value, dict):
                try:
                    value = json.dumps(value, separators=(",", ":"))
                except (RecursionError, ValueError):
                    raise InvalidRequest(f"{name} parameter is malformed") from None
            elif not isinstance(value, str):
                raise InvalidRequest(f"{name} parameter must be a string")
            if value:
                params[name] = _checked(name, value)
        return cls(params, **transport)

    def for_client(self, client: Client) -> TokenRequest:
        """The request with the end user's address from ``auth0-forwarded-for``, when ``client`` may send it.

        API.md §4.4: only an authenticated (confidential) client flagged ``is_token_endpoint_ip_header_trusted``;
        for every other client, and for a value that is not one address, the header is ignored.
        """
        if not client.ip_header_trusted or client.token_endpoint_auth_method == "none" or not self.forwarded_for:
            return self
        candidate = self.forwarded_for.split(",")[0].strip()
        try:
            address = ipaddress.ip_address(candidate)
        except ValueError:
            return self
        return replace(self, client_ip=str(address), proxy_ip=self.client_ip)

    def get(self, name: str) -> str | None:
        """The parameter's value, or ``None`` when it was omitted."""
        return self.params.get(name)

    def require(self, name: str) -> str:
        """The parameter's value; ``invalid_request`` in Auth0's wording when it was omitted."""
        value = self.params.get(name)
        if value is None:
            raise InvalidRequest(f"missing {name} parameter")
        return value

    @property
    def grant_type(self) -> str:
        """The ``grant_type`` parameter (required)."""
        return self.require("grant_type")

    @property
    def scopes(self) -> tuple[str, ...] | None:
        """The requested scopes in order, without duplicates; ``None`` when ``scope`` was omitted."""
        raw = self.params.get("scope")
        if raw is None:
            return None
        return tuple(dict.fromkeys(raw.split()))


def _checked(name: str, value: str) -> str:
    if len(value) > _LONG_PARAMETERS.get(name, _MAX_PARAMETER_LENGTH):
        raise InvalidRequest(f"{name} parameter is too long")
    if "\x00" in value:
        raise InvalidRequest(f"{name} parameter is malformed")
    try:
        value.encode("utf-8")  # JSON may carry lone surrogates (\ud800), which are not text
    except UnicodeEncodeError:
        raise InvalidRequest(f"{name} parameter is malformed") from None
    return value
