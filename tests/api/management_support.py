"""The Management API over the app (TestClient) with an operations client that holds every management scope."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from litestar import Litestar
from litestar.testing import TestClient

from identity.app import create_app
from identity.settings import Settings
from identity.store.tenant import MANAGEMENT_API_SCOPES
from tests.api.support import alice_params
from tests.conftest import ISSUER, apply, standard_tenant

OPS, OPS_SECRET = "ops", "ops-secret-0123456789abcdefghijklmnopqrstuv"
MANAGEMENT = ISSUER + "api/v2/"


@contextmanager
def open_management(settings: Settings) -> Iterator[TestClient[Litestar]]:
    """The standard tenant plus the ``ops`` client; the client sends a management token with every request."""
    data = standard_tenant()
    data["clients"][0]["grant_types"] = [*data["clients"][0]["grant_types"], "refresh_token"]
    data["clients"].append({"client_id": OPS, "client_secret": OPS_SECRET, "grant_types": ["client_credentials"]})
    data["client_grants"] = [{"client_id": OPS, "audience": MANAGEMENT, "scope": list(MANAGEMENT_API_SCOPES)}]
    data["rules"] = [{"name": "deny all", "handler": "tests.rule_handlers:deny", "enabled": False}]
    apply(settings, data)
    with TestClient(create_app(settings), base_url="https://identity.test") as client:
        token = cc(client, MANAGEMENT).json()["access_token"]
        client.headers["Authorization"] = f"Bearer {token}"
        yield client


def cc(client: TestClient[Litestar], audience: str, client_id: str = OPS, secret: str = OPS_SECRET) -> Any:
    """A client_credentials request."""
    return client.post(
        "/oauth/token",
        data={
            "grant_type": "client_credentials",
            "client_id": client_id,
            "client_secret": secret,
            "audience": audience,
        },
        headers={"Authorization": ""},
    )


def login(client: TestClient[Litestar], **overrides: str | None) -> Any:
    """Alice's password grant (overrides change or drop parameters)."""
    return client.post("/oauth/token", data=alice_params(**overrides), headers={"Authorization": ""})
