"""Example rules for the demo tenant. Point a tenant file at them with handler = "examples/rules/acme.py:NAME"."""

from typing import Any


def add_plan(event: Any, api: Any) -> None:
    """Put the user's plan (from app_metadata) into the access token as a namespaced claim."""
    plan = event.user.app_metadata.get("plan", "free")
    api.access_token.set_custom_claim("https://acme.test/plan", plan)


def read_only_for_cli(event: Any, api: Any) -> None:
    """The CLI never gets write access, whatever it asks for."""
    if event.client.client_id == "acme-cli":
        api.access_token.remove_scope("write:orders")
