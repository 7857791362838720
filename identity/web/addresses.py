"""The end user's address and the audit trail of a request, decided once at the edge (`identity.network`)."""

from __future__ import annotations

from typing import Any

from litestar import Request

from identity.audit import AuditTrail
from identity.network import resolve_client_ip
from identity.settings import Settings

__all__ = ["client_address", "request_trail"]


def client_address(request: Request[Any, Any, Any], settings: Settings) -> str | None:
    """The TCP peer, or the client a trusted proxy names in ``X-Forwarded-For`` (``IDENTITY_TRUSTED_PROXIES``)."""
    peer = request.client.host if request.client else None
    return resolve_client_ip(peer, request.headers.getall("x-forwarded-for", []), settings.proxies)


def request_trail(request: Request[Any, Any, Any], settings: Settings) -> AuditTrail:
    """A fresh audit trail for ``request``: address, user agent, host."""
    return AuditTrail(
        ip=client_address(request, settings),
        user_agent=(request.headers.get("user-agent") or None),
        hostname=request.url.hostname,
    )
