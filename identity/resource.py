"""Verifying identity's access tokens in an API written in Python, with RFC 9470's step-up challenge.

An API (a resource server) keeps one `ResourceServer` and calls `verify` with the bearer token of each request::

    from identity.resource import MULTI_FACTOR, ResourceServer, TokenRefused

    api = ResourceServer(issuer="https://login.example.com/", audience="https://api.example.com/")

    try:
        claims = api.verify(token, scopes=("transfer:funds",), acr_values=(MULTI_FACTOR,), max_age=300)
    except TokenRefused as refused:
        return refused.status, refused.body(), {"WWW-Authenticate": refused.www_authenticate()}

The keys come from the issuer's JWKS (`PyJWKClient`: cached, refetched once for an unknown ``kid``, so a key rotation
needs no restart). PyJWT checks the signature, ``iss``, ``aud`` and the algorithm (RS256 or ES256, never whatever the
token names); ``exp`` and ``nbf`` are checked on the injected clock. Then the step-up checks of RFC 9470: when
``acr_values`` are asked and the token's ``acr`` is none of them, or ``max_age`` is asked and ``auth_time`` is missing
or older, the answer is ``401 insufficient_user_authentication`` with the ``acr_values``/``max_age`` the client must
ask for at the token endpoint. Missing scopes are ``403 insufficient_scope`` (RFC 6750 §3.1). No web framework: this
module imports PyJWT and the engine's constants. ``MULTI_FACTOR`` is the ``acr`` of tokens issued after a second
factor.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jwt

from identity.oauth2.first_party import MULTI_FACTOR

__all__ = ["MULTI_FACTOR", "ResourceServer", "TokenRefused"]

_ALGORITHMS = ("RS256", "ES256")


@dataclass
class TokenRefused(Exception):
    """Why a bearer token is refused, with the status and ``WWW-Authenticate`` challenge to answer (RFC 6750, 9470)."""

    error: str
    description: str
    status: int = 401
    acr_values: tuple[str, ...] = ()
    max_age: int | None = None
    scope: tuple[str, ...] = ()

    def __str__(self) -> str:
        return f"{self.error}: {self.description}"

    def body(self) -> dict[str, str]:
        """The JSON error body."""
        return {"error": self.error, "error_description": self.description}

    def www_authenticate(self) -> str:
        """The ``WWW-Authenticate`` header value: ``Bearer error="…", error_description="…"[, acr_values, max_age]``."""
        params = [("error", self.error), ("error_description", self.description)]
        if self.acr_values:
            params.append(("acr_values", " ".join(self.acr_values)))
        if self.max_age is not None:
            params.append(("max_age", str(self.max_age)))
        if self.scope:
            params.append(("scope", " ".join(self.scope)))
        return "Bearer " + ", ".join(f'{name}="{_quoted(value)}"' for name, value in params)


class ResourceServer:
    """Checks identity's access tokens for one API (its ``audience``), keys from the issuer's JWKS."""

    def __init__(
        self,
        issuer: str,
        audience: str,
        *,
        jwks_url: str | None = None,
        leeway: float = 0,
        clock: Callable[[], float] = time.time,
        jwks_client: jwt.PyJWKClient | None = None,
    ) -> None:
        self.issuer = issuer
        self.audience = audience
        self.leeway = leeway
        self.clock = clock
        self.jwks = jwks_client or jwt.PyJWKClient(jwks_url or issuer.rstrip("/") + "/.well-known/jwks.json")

    def verify(
        self,
        token: str,
        *,
        scopes: Sequence[str] = (),
        acr_values: Sequence[str] = (),
        max_age: int | None = None,
    ) -> Mapping[str, Any]:
        """The token's claims if it is valid for this API and meets what is asked; `TokenRefused` otherwise."""
        claims = self._decode(token)
        granted = set(str(claims.get("scope", "")).split())
        if missing := [scope for scope in scopes if scope not in granted]:
            raise TokenRefused(
                "insufficient_scope", f"the token lacks the scope {missing[0]}", status=403, scope=tuple(scopes)
            )
        if acr_values and claims.get("acr") not in acr_values:
            raise TokenRefused(
                "insufficient_user_authentication",
                "A different authentication level is required",
                acr_values=tuple(acr_values),
                max_age=max_age,
            )
        if max_age is not None:
            auth_time = claims.get("auth_time")
            if not isinstance(auth_time, int | float) or self.clock() - auth_time > max_age + self.leeway:
                raise TokenRefused(
                    "insufficient_user_authentication",
                    "More recent authentication is required",
                    acr_values=tuple(acr_values),
                    max_age=max_age,
                )
        return claims

    def _decode(self, token: str) -> Mapping[str, Any]:
        try:
            key = self.jwks.get_signing_key_from_jwt(token)
            claims: dict[str, Any] = jwt.decode(
                token,
                key.key,
                algorithms=list(_ALGORITHMS),
                audience=self.audience,
                issuer=self.issuer,
                # Time is checked below on the injected clock (PyJWT would read the wall clock).
                options={
                    "require": ["exp", "iss", "aud", "sub"],
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                },
            )
        except jwt.PyJWKClientConnectionError as exc:
            raise TokenRefused("invalid_token", "the issuer's keys could not be fetched", status=503) from exc
        except (jwt.PyJWTError, ValueError) as exc:
            raise TokenRefused("invalid_token", _reason(exc)) from exc
        now = self.clock()
        expires, not_before = claims.get("exp"), claims.get("nbf")
        if not isinstance(expires, int | float) or now >= expires + self.leeway:
            raise TokenRefused("invalid_token", "the token has expired")
        if not_before is not None and (not isinstance(not_before, int | float) or now + self.leeway < not_before):
            raise TokenRefused("invalid_token", "the token is not valid yet")
        return claims


def _reason(exc: Exception) -> str:
    if isinstance(exc, jwt.InvalidAudienceError):
        return "the token is not for this API"
    if isinstance(exc, jwt.InvalidIssuerError):
        return "the token is not from this issuer"
    return "the token is malformed or its signature does not verify"


def _quoted(value: str) -> str:
    """A quoted-string's content (RFC 9110 §5.6.4): backslash and double quote escaped."""
    return value.replace("\\", "\\\\").replace('"', '\\"')
