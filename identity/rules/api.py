"""What a rule sees (``event``) and can do (``api``), after Auth0 Actions' post-login objects (API.md §5.2).

A rule is a callable ``on_post_login(event, api)``, plain or ``async``::

    def add_roles(event, api):
        roles = event.user.app_metadata.get("roles", [])
        api.access_token.set_custom_claim("https://acme.test/roles", roles)

``event`` is read-only (frozen dataclasses and read-only mappings). ``api`` records decisions; nothing is issued
until every rule has run.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from identity.oauth2.policy import REGISTERED_CLAIMS, claim_problem

__all__ = [
    "REGISTERED_CLAIMS",
    "AccessDeniedByRule",
    "Event",
    "EventAuthentication",
    "EventClient",
    "EventConnection",
    "EventRequest",
    "EventTransaction",
    "EventUser",
    "InvalidClaim",
    "PostLoginApi",
    "RedirectAttempted",
]


class AccessDeniedByRule(Exception):
    """``api.access.deny(reason)`` was called: the reason is the error description."""


class RedirectAttempted(Exception):
    """A rule tried to redirect, which a password exchange cannot do."""


class InvalidClaim(ValueError):
    """A custom claim is not namespaced or would overwrite a registered claim."""


def _frozen(mapping: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(dict(mapping))


@dataclass(frozen=True)
class EventTransaction:
    """The token request being processed."""

    protocol: str
    """``oauth2-password`` for both password grants; ``oauth2-refresh-token`` on refresh."""
    requested_scopes: tuple[str, ...]
    requested_audience: str | None
    acr_values: tuple[str, ...] = ()
    """The ``acr_values`` the request asked for (RFC 9470 step-up), in order; empty when none."""


@dataclass(frozen=True)
class EventClient:
    """The application."""

    client_id: str
    name: str
    metadata: Mapping[str, Any]


@dataclass(frozen=True)
class EventConnection:
    """The user directory."""

    name: str
    strategy: str


@dataclass(frozen=True)
class EventUser:
    """The user, as stored when the rule runs."""

    user_id: str
    email: str | None
    email_verified: bool
    username: str | None
    name: str | None
    app_metadata: Mapping[str, Any]
    user_metadata: Mapping[str, Any]
    logins_count: int


@dataclass(frozen=True)
class EventRequest:
    """The HTTP request."""

    ip: str | None
    user_agent: str | None


@dataclass(frozen=True)
class EventAuthentication:
    """How the user authenticated so far: ``[{"name": "pwd", "timestamp": ...}]``."""

    methods: tuple[Mapping[str, Any], ...]


@dataclass(frozen=True)
class Event:
    """Everything a rule may read. ``config`` is the rule's own ``config`` table from the tenant file."""

    transaction: EventTransaction
    client: EventClient
    connection: EventConnection
    user: EventUser
    request: EventRequest
    authentication: EventAuthentication
    config: Mapping[str, Any] = field(default_factory=lambda: _frozen({}))


def _check_claim(key: str, value: Any) -> None:
    if (problem := claim_problem(key, value)) is not None:
        raise InvalidClaim(problem)


class _Access:
    def __init__(self) -> None:
        self.denied: str | None = None

    def deny(self, reason: str) -> None:
        """Refuse the login with ``reason`` as the error description; stops the pipeline."""
        self.denied = str(reason)
        raise AccessDeniedByRule(self.denied)


class _AccessToken:
    def __init__(self, scopes: tuple[str, ...], allowed: frozenset[str]) -> None:
        self.claims: dict[str, Any] = {}
        self.scopes = list(scopes)
        self._allowed = allowed

    def set_custom_claim(self, key: str, value: Any) -> None:
        """Add a namespaced claim to the access token."""
        _check_claim(key, value)
        self.claims[key] = value

    def add_scope(self, scope: str) -> None:
        """Grant a scope, if the API (or OpenID Connect) defines it; others are ignored."""
        if scope in self._allowed and scope not in self.scopes:
            self.scopes.append(scope)

    def remove_scope(self, scope: str) -> None:
        """Withdraw a scope."""
        if scope in self.scopes:
            self.scopes.remove(scope)


class _IdToken:
    def __init__(self) -> None:
        self.claims: dict[str, Any] = {}

    def set_custom_claim(self, key: str, value: Any) -> None:
        """Add a namespaced claim to the ID token."""
        _check_claim(key, value)
        self.claims[key] = value


class _Multifactor:
    def __init__(self) -> None:
        self.enabled = False

    def enable(self, provider: str = "any", *, allow_remember_browser: bool = False) -> None:
        """Demand a second factor: the answer becomes ``mfa_required`` even where policy would not ask."""
        del provider, allow_remember_browser  # one OTP provider here; no browser to remember
        self.enabled = True


class _User:
    def __init__(self) -> None:
        self.app_metadata: dict[str, Any] = {}

    def set_app_metadata(self, key: str, value: Any) -> None:
        """Set a key of the user's ``app_metadata``; saved when the login's tokens are issued.

        Not saved when the login stops at ``mfa_required`` and the second factor never comes, nor when a later rule
        denies it: someone who knows only the password cannot make rules write.
        """
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError, RecursionError):
            raise InvalidClaim(f"app_metadata key {key!r} has a value that is not JSON") from None
        self.app_metadata[str(key)] = value


class _Redirect:
    def __init__(self) -> None:
        self.attempted = False

    def can_redirect(self) -> bool:
        """Always ``False``: nothing can redirect a password exchange."""
        return False

    def send_user_to(self, url: str, **_: Any) -> None:
        """Fails the flow (``interaction_required``): a password exchange has no browser to redirect."""
        self.attempted = True
        raise RedirectAttempted(url)


class PostLoginApi:
    """What a rule can do: ``access``, ``access_token``, ``id_token``, ``multifactor``, ``user``, ``redirect``."""

    def __init__(self, scopes: tuple[str, ...], allowed_scopes: frozenset[str]) -> None:
        self.access = _Access()
        self.access_token = _AccessToken(scopes, allowed_scopes)
        self.id_token = _IdToken()
        self.multifactor = _Multifactor()
        self.user = _User()
        self.redirect = _Redirect()
