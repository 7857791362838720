"""Rules used by the tests, importable as ``tests.rule_handlers:<name>`` like an operator's own module."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from identity.clock import Clock, SystemClock

SEEN: list[dict[str, Any]] = []
CLOCK: Clock = SystemClock()
"""`recent_login` takes its now here (an operator's rule reads the wall clock); a test moving time shares its clock."""


def record(event: Any, api: Any) -> None:
    SEEN.append(
        {
            "protocol": event.transaction.protocol,
            "requested_scopes": event.transaction.requested_scopes,
            "acr_values": event.transaction.acr_values,
            "audience": event.transaction.requested_audience,
            "client": event.client.client_id,
            "connection": event.connection.name,
            "user": event.user.user_id,
            "email": event.user.email,
            "logins_count": event.user.logins_count,
            "app_metadata": dict(event.user.app_metadata),
            "ip": event.request.ip,
            "methods": [m["name"] for m in event.authentication.methods],
            "config": dict(event.config),
        }
    )


def claims(event: Any, api: Any) -> None:
    api.access_token.set_custom_claim("https://example.test/plan", event.config.get("plan", "gold"))
    api.id_token.set_custom_claim("https://example.test/connection", event.connection.name)


async def async_claims(event: Any, api: Any) -> None:
    await asyncio.sleep(0)
    api.access_token.set_custom_claim("https://example.test/async", True)


def drop_delete_scope(event: Any, api: Any) -> None:
    api.access_token.remove_scope("delete:things")
    api.access_token.add_scope("not:an:api:scope")


def add_scope_back(event: Any, api: Any) -> None:
    api.access_token.add_scope("delete:things")


def deny(event: Any, api: Any) -> None:
    api.access.deny("You can't log in from this app")


def deny_swallowed(event: Any, api: Any) -> None:
    with contextlib.suppress(Exception):
        api.access.deny("denied even if caught")


def raises(event: Any, api: Any) -> None:
    raise RuntimeError("secret internal detail")


def redirect(event: Any, api: Any) -> None:
    api.redirect.send_user_to("https://example.test/consent")


def bad_claim(event: Any, api: Any) -> None:
    api.access_token.set_custom_claim("plan", "gold")


def registered_claim(event: Any, api: Any) -> None:
    api.access_token.set_custom_claim("sub", "someone-else")


def slow(event: Any, api: Any) -> None:
    time.sleep(2)


async def slow_async(event: Any, api: Any) -> None:
    await asyncio.sleep(5)


def mfa_for_employees(event: Any, api: Any) -> None:
    if event.connection.name == "employees":
        api.multifactor.enable("any")


def set_metadata(event: Any, api: Any) -> None:
    api.user.set_app_metadata("last_rule_login", "yes")


def mutate_event(event: Any, api: Any) -> None:
    event.user.app_metadata["roles"] = ["admin"]


def recent_login(event: Any, api: Any) -> None:
    """ "Log in again after N hours": deny once the authentication is older than ``config["max_age"]`` seconds."""
    authenticated = min(method["timestamp"] for method in event.authentication.methods)
    SEEN.append({"protocol": event.transaction.protocol, "authenticated": authenticated})
    if CLOCK.now() - authenticated > event.config["max_age"]:
        api.access.deny("Please log in again")


def noop(event: Any, api: Any) -> None:
    return None


# --- rules that overstep (issue 12): they edit api's lists and dictionaries instead of calling its methods ---------


def tamper_directly(event: Any, api: Any) -> None:
    api.access_token.scopes.extend(["admin:everything", "offline_access", "read:reports"])
    api.access_token.claims.update(
        {
            "amr": ["mfa", "hwk"],
            "acr": "urn:example:high",
            "nbf": 4_102_444_800,
            "iss": "https://evil.example/",
            "sub": "someone-else",
            "auth_time": 1,
            "scope": "admin:everything",
            "https://example.test/kept": 1,
        }
    )
    api.id_token.claims.update({"auth_time": 1, "amr": ["mfa"], "sub": "someone-else", "https://example.test/kept": 2})


def add_offline_access(event: Any, api: Any) -> None:
    api.access_token.scopes.append("offline_access")


def deny_enrollment_page(event: Any, api: Any) -> None:
    if event.transaction.protocol == "enrollment-page":
        api.access.deny("Not from the enrollment page")
