"""Rules shipped with identity, ready to list in a tenant file. Each reads its settings from ``event.config``.

```toml
[[rules]]
name = "roles"
handler = "identity.rules.builtin:add_roles"
config = { namespace = "https://acme.test/" }

[[rules]]
name = "mfa for employees"
handler = "identity.rules.builtin:require_mfa_for_connections"
config = { connections = ["employees"] }

[[rules]]
name = "block ranges"
handler = "identity.rules.builtin:deny_ip_ranges"
config = { cidrs = ["203.0.113.0/24"] }
```
"""

from __future__ import annotations

import ipaddress

from identity.rules.api import Event, PostLoginApi

__all__ = ["add_roles", "deny_ip_ranges", "require_mfa_for_connections"]


def add_roles(event: Event, api: PostLoginApi) -> None:
    """Put ``app_metadata.roles`` into both tokens as ``<namespace>roles`` (config ``namespace``, a URL)."""
    namespace = str(event.config.get("namespace", "https://identity.local/"))
    if not namespace.endswith("/"):
        namespace += "/"
    roles = event.user.app_metadata.get("roles", [])
    roles = [str(role) for role in roles] if isinstance(roles, list) else []
    api.access_token.set_custom_claim(namespace + "roles", roles)
    api.id_token.set_custom_claim(namespace + "roles", roles)


def require_mfa_for_connections(event: Event, api: PostLoginApi) -> None:
    """Demand a second factor for users of the listed directories (config ``connections``)."""
    if event.connection.name in event.config.get("connections", ()):
        api.multifactor.enable("any")


def deny_ip_ranges(event: Event, api: PostLoginApi) -> None:
    """Refuse logins from the listed networks (config ``cidrs``; config ``reason`` for the message)."""
    if event.request.ip is None:
        return
    try:
        address = ipaddress.ip_address(event.request.ip)
    except ValueError:
        return
    for cidr in event.config.get("cidrs", ()):
        if address in ipaddress.ip_network(str(cidr), strict=False):
            api.access.deny(str(event.config.get("reason", "Access from your network is not allowed")))
