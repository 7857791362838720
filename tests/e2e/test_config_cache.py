"""Two instances cache the tenant configuration, and both follow a change made by ``identity tenant apply`` within 5 s.

Each instance keeps the configuration in memory and reads the database's version counter with each request's first
statement (`identity.store.config`). The instances serve the old configuration first (so it is cached), then a separate
process applies a change; both must answer with the new configuration within the 5 seconds the contract allows: a
client that did not exist becomes usable, then a grant type taken away from it is refused.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import (
    ALICE_CUSTOMER_PASSWORD,
    ALICE_EMAIL,
    PASSWORD_REALM,
    AppliedTenant,
    IdentityServer,
    apply_tenant_file,
    serve_spec,
    start_servers,
    stop_and_check,
)

CLIENT = "e2e-cache-client"
DEADLINE_S = 5.0


def _client_toml(grant_types: list[str]) -> str:
    listed = ", ".join(f'"{grant}"' for grant in grant_types)
    return f"""\
[[clients]]
client_id = "{CLIENT}"
name = "E2E cache client"
token_endpoint_auth_method = "none"
grant_types = [{listed}]
connections = ["customers"]
"""


@pytest.fixture(scope="module")
def instances(
    e2e_env: dict[str, str], applied_tenant: AppliedTenant, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[list[IdentityServer]]:
    specs = [serve_spec(f"cache-{name}", e2e_env) for name in ("a", "b")]
    servers = start_servers(specs, tmp_path_factory.mktemp("cache-logs"))
    try:
        yield servers
    finally:
        for server in servers:
            stop_and_check(server)


def _password_grant(server: IdentityServer) -> httpx.Response:
    return httpx.post(
        server.token_url,
        data={
            "grant_type": "password",
            "client_id": CLIENT,
            "username": ALICE_EMAIL,
            "password": ALICE_CUSTOMER_PASSWORD,
        },
        timeout=10,
    )


def _until(servers: list[IdentityServer], done: Callable[[httpx.Response], bool]) -> dict[str, float]:
    """Seconds until each server's answer satisfies ``done`` (fails after twice the deadline)."""
    started = time.monotonic()
    took: dict[str, float] = {}
    while len(took) < len(servers) and time.monotonic() - started < 2 * DEADLINE_S:
        for server in servers:
            if server.base_url not in took and done(_password_grant(server)):
                took[server.base_url] = time.monotonic() - started
        time.sleep(0.1)
    assert len(took) == len(servers), f"only {sorted(took)} changed within {2 * DEADLINE_S} s"
    return took


def test_both_instances_follow_a_tenant_apply_within_5_seconds(
    instances: list[IdentityServer], e2e_env: dict[str, str], tmp_path: Path
) -> None:
    for server in instances:  # the old configuration is cached: the client does not exist
        response = _password_grant(server)
        assert response.status_code == 401, response.text
        assert response.json()["error"] == "invalid_client"

    added = tmp_path / "add-client.toml"
    added.write_text(_client_toml(["password", PASSWORD_REALM]))
    apply_tenant_file(added, e2e_env)
    took = _until(instances, lambda response: response.status_code == 200)
    assert max(took.values()) < DEADLINE_S, took

    narrowed = tmp_path / "narrow-client.toml"
    narrowed.write_text(_client_toml([PASSWORD_REALM]))
    apply_tenant_file(narrowed, e2e_env)
    took = _until(
        instances, lambda response: response.status_code == 403 and response.json()["error"] == "unauthorized_client"
    )
    assert max(took.values()) < DEADLINE_S, took
