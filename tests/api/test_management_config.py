"""Management API changes take effect on the token endpoint at once (TestClient over the app and its database)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from litestar import Litestar
from litestar.testing import TestClient

from identity.settings import Settings
from tests.api.management_support import OPS, cc, login, open_management
from tests.conftest import API


@pytest.fixture
def api(settings: Settings) -> Iterator[TestClient[Litestar]]:
    with open_management(settings) as client:
        yield client


def test_a_rule_toggled_through_the_api_runs_from_the_next_login(api: TestClient[Litestar]) -> None:
    assert login(api).status_code == 200
    (rule,) = api.get("/api/v2/rules").json()
    assert (rule["name"], rule["enabled"], rule["stage"]) == ("deny all", False, "login_success")
    assert api.patch("/api/v2/rules/deny all", json={"enabled": True}).json()["enabled"] is True
    assert login(api).status_code == 403
    assert api.patch(f"/api/v2/rules/{rule['id']}", json={"enabled": False}).status_code == 200
    assert login(api).status_code == 200
    missing = api.patch("/api/v2/rules/nope", json={"enabled": False})
    assert missing.status_code == 404 and missing.json()["errorCode"] == "inexistent_resource"


def test_resource_servers_and_client_grants_drive_client_credentials(api: TestClient[Litestar]) -> None:
    created = api.post(
        "/api/v2/resource-servers",
        json={"identifier": "https://billing.test/", "name": "Billing", "scopes": [{"value": "read:invoices"}]},
    )
    assert created.status_code == 201, created.text
    assert cc(api, "https://billing.test/").json()["error"] == "access_denied"
    grant = api.post(
        "/api/v2/client-grants",
        json={"client_id": OPS, "audience": "https://billing.test/", "scope": ["read:invoices"]},
    )
    assert grant.status_code == 201 and grant.json()["id"].startswith("cgr_")
    assert cc(api, "https://billing.test/").json()["expires_in"] == 86_400
    assert (
        api.patch(f"/api/v2/resource-servers/{created.json()['id']}", json={"token_lifetime": 600}).status_code == 200
    )
    assert cc(api, "https://billing.test/").json()["expires_in"] == 600
    # Identifier in the path works too (URL-encoded), and the identifier cannot change.
    changed = api.patch("/api/v2/resource-servers/https:%2F%2Fbilling.test%2F", json={"name": "Invoices"})
    assert changed.status_code == 200, changed.text
    assert changed.json()["name"] == "Invoices"
    system = api.patch("/api/v2/resource-servers/management-api", json={"name": "Mine"})
    assert system.status_code == 403
    # Deleting the API deletes its grants: the audience is gone.
    assert api.delete(f"/api/v2/resource-servers/{created.json()['id']}").status_code == 204
    assert api.get("/api/v2/client-grants", params={"audience": "https://billing.test/"}).json() == []
    assert cc(api, "https://billing.test/").json()["error_description"] == "Service not found: https://billing.test/"
    # The default audience cannot go while it is the default.
    default = next(rs for rs in api.get("/api/v2/resource-servers").json() if rs["identifier"] == API)
    assert api.delete(f"/api/v2/resource-servers/{default['id']}").status_code == 409


def test_connections_decide_where_clients_may_log_in(api: TestClient[Litestar]) -> None:
    customers = next(c for c in api.get("/api/v2/connections").json() if c["name"] == "customers")
    assert "public-app" in customers["enabled_clients"] and customers["realms"] == ["customers"]
    updated = api.patch(f"/api/v2/connections/{customers['id']}", json={"enabled_clients": ["confidential-app"]})
    assert updated.json()["enabled_clients"] == ["confidential-app"]
    assert login(api).json()["error_description"] == "the connection was disabled"
    bad = api.patch(f"/api/v2/connections/{customers['id']}", json={"enabled_clients": ["ghost"]})
    assert bad.status_code == 400 and "ghost" in bad.json()["message"]
    assert api.delete(f"/api/v2/connections/{customers['id']}").status_code == 409  # it has users
    # Auth0's newer form: PATCH /connections/{id}/clients with status per client.
    path = f"/api/v2/connections/{customers['id']}/clients"
    assert api.patch(path, json=[{"client_id": "public-app", "status": True}]).status_code == 204
    assert login(api).status_code == 200
    assert api.patch(path, json=[{"client_id": "public-app", "status": False}]).status_code == 204
    assert api.get(path).json() == {"clients": [{"client_id": "confidential-app"}]}
    assert api.patch(path, json={"client_id": "public-app"}).status_code == 400
    created = api.post("/api/v2/connections", json={"name": "contractors", "enabled_clients": ["public-app"]})
    assert created.status_code == 201 and created.json()["strategy"] == "auth0"
    assert api.post("/api/v2/connections", json={"name": "contractors"}).status_code == 409
    assert api.post("/api/v2/connections", json={"name": "x", "strategy": "google-oauth2"}).status_code == 400
    assert api.delete(f"/api/v2/connections/{created.json()['id']}").status_code == 204
    assert api.get(f"/api/v2/connections/{created.json()['id']}").status_code == 404


def test_tenant_and_brute_force_settings(api: TestClient[Litestar]) -> None:
    cleared = api.patch("/api/v2/tenants/settings", json={"default_directory": None, "friendly_name": "Renamed"})
    assert cleared.status_code == 200 and cleared.json()["default_directory"] is None
    no_directory = login(api)
    assert no_directory.status_code == 500 and no_directory.json()["error"] == "server_error"
    assert api.patch("/api/v2/tenants/settings", json={"default_directory": "employees"}).status_code == 200
    assert login(api).json()["error"] == "invalid_grant"  # Alice's customer password, now checked as an employee
    assert api.patch("/api/v2/attack-protection/brute-force-protection", json={"max_attempts": 3}).status_code == 200
    assert api.get("/api/v2/attack-protection/brute-force-protection").json()["max_attempts"] == 3
    bad = api.patch("/api/v2/attack-protection/brute-force-protection", json={"mode": "sometimes"})
    assert bad.status_code == 400 and "brute_force_mode" in bad.json()["message"]
    bad = api.patch("/api/v2/attack-protection/brute-force-protection", json={"shields": ["user_notification"]})
    assert bad.status_code == 400 and "shields" in bad.json()["message"]
    lockout = {"mode": "count_per_identifier", "allowlist": ["10.0.0.0/8"], "enabled": False}
    changed = api.patch("/api/v2/attack-protection/brute-force-protection", json=lockout).json()
    assert (changed["mode"], changed["allowlist"], changed["enabled"]) == (
        "count_per_identifier",
        ["10.0.0.0/8"],
        False,
    )
    throttling = api.get("/api/v2/attack-protection/suspicious-ip-throttling").json()
    assert set(throttling) == {"enabled", "shields", "allowlist", "stage"} and "pre-login" in throttling["stage"]
    stage = {"pre-login": {"max_attempts": 50, "rate": 1_728_000}}
    changed = api.patch("/api/v2/attack-protection/suspicious-ip-throttling", json={"stage": stage}).json()
    assert changed["stage"]["pre-login"] == {"max_attempts": 50, "rate": 1_728_000}
    bad = api.patch("/api/v2/attack-protection/suspicious-ip-throttling", json={"allowlist": ["not a network"]})
    assert bad.status_code == 400 and "allowlist" in bad.json()["message"]
    assert api.get("/api/v2/attack-protection/suspicious-ip-throttling").json()["stage"]["pre-login"] == {
        "max_attempts": 50,
        "rate": 1_728_000,
    }


def test_clients_update_and_delete(api: TestClient[Litestar]) -> None:
    created = api.post("/api/v2/clients", json={"name": "Worker", "grant_types": ["client_credentials"]}).json()
    assert len(created["client_secret"]) >= 43
    assert (
        api.post(
            "/api/v2/client-grants", json={"client_id": created["client_id"], "audience": API, "scope": ["read:things"]}
        ).status_code
        == 201
    )
    assert cc(api, API, created["client_id"], created["client_secret"]).status_code == 200
    listed = api.get("/api/v2/clients", params={"include_totals": "true", "per_page": 2}).json()
    assert listed["total"] == 6 and len(listed["clients"]) == 2
    assert all("client_secret" not in client for client in listed["clients"])
    public = api.patch(f"/api/v2/clients/{created['client_id']}", json={"token_endpoint_auth_method": "none"})
    assert public.status_code == 400 and "client_credentials" in public.json()["message"]
    assert api.delete(f"/api/v2/clients/{created['client_id']}").status_code == 204
    assert cc(api, API, created["client_id"], created["client_secret"]).json()["error"] == "invalid_client"
    assert api.get("/api/v2/client-grants", params={"client_id": created["client_id"]}).json() == []


def test_users_search_sort_metadata_and_sessions(api: TestClient[Litestar]) -> None:
    alice = api.get("/api/v2/users-by-email", params={"email": "ALICE@example.test"}).json()
    assert sorted(user["identities"][0]["connection"] for user in alice) == ["customers", "employees"]
    customer = next(user for user in alice if user["identities"][0]["connection"] == "customers")
    user_id = customer["user_id"]

    merged = api.patch(f"/api/v2/users/{user_id}", json={"app_metadata": {"plan": "pro", "roles": ["a"]}}).json()
    assert merged["app_metadata"] == {"plan": "pro", "roles": ["a"]}
    merged = api.patch(f"/api/v2/users/{user_id}", json={"app_metadata": {"roles": None, "tier": 2}}).json()
    assert merged["app_metadata"] == {"plan": "pro", "tier": 2}
    found = api.get("/api/v2/users", params={"q": 'app_metadata.plan:"pro"'}).json()
    assert [user["user_id"] for user in found] == [user_id]
    by_connection = api.get("/api/v2/users", params={"connection": "customers", "sort": "email:-1"}).json()
    assert [user["email"] for user in by_connection] == ["bob@example.test", "alice@example.test"]
    blocked = api.get("/api/v2/users", params={"q": "blocked:true", "include_totals": "true"}).json()
    assert blocked["total"] == 1 and blocked["users"][0]["email"] == "bob@example.test"
    wildcard = api.get("/api/v2/users", params={"q": "email:*@example.test AND identities.connection:employees"})
    assert [user["username"] for user in wildcard.json()] == ["alice"]
    assert api.get("/api/v2/users", params={"q": "email:100%_*"}).json() == []  # LIKE characters are literal

    # A block ends the user's refresh tokens (on every instance: they are rows), like a new password.
    refresh = login(api, scope="offline_access").json()["refresh_token"]
    assert api.patch(f"/api/v2/users/{user_id}", json={"blocked": True}).status_code == 200
    api.patch(f"/api/v2/users/{user_id}", json={"blocked": False})
    reused = api.post(
        "/oauth/token",
        data={"grant_type": "refresh_token", "client_id": "public-app", "refresh_token": refresh},
        headers={"Authorization": ""},
    )
    assert reused.status_code == 403 and reused.json()["error"] == "invalid_grant"
    assert api.get(f"/api/v2/users/{user_id}").json()["multifactor"] == []


def test_breached_password_detection_settings_round_trip(api: TestClient[Litestar]) -> None:
    path = "/api/v2/attack-protection/breached-password-detection"
    assert api.get(path).json() == {"enabled": False, "shields": ["block"], "method": "standard"}  # off by default
    changed = api.patch(path, json={"enabled": True})
    assert changed.status_code == 200 and changed.json()["enabled"] is True
    assert api.get(path).json() == {"enabled": True, "shields": ["block"], "method": "standard"}
    bad = api.patch(path, json={"method": "enhanced"})
    assert bad.status_code == 400 and "method" in bad.json()["message"]
    bad = api.patch(path, json={"enabled": "yes"})
    assert bad.status_code == 400
    unknown = api.patch(path, json={"colour": "blue"})
    assert unknown.status_code == 400
    assert api.get(path).json()["enabled"] is True  # the refused changes left it as it was
    assert api.patch(path, json={"enabled": False}).json()["enabled"] is False
