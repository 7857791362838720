"""Members of Auth0's bodies that identity has no setting for are accepted only with the value in force, answered
with it, and otherwise refused with a 400 saying they are not supported (``identity.management.fields``); a
refused body writes nothing. ``given_name`` and ``family_name`` are stored and reach the OIDC profile claims."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import TestClient

from identity.settings import Settings
from tests.api.management_support import login, open_management


@pytest.fixture
def api(settings: Settings) -> Iterator[TestClient[Litestar]]:
    with open_management(settings) as client:
        yield client


def refused(response: Any, *mentions: str) -> None:
    """A 400 that says the member is not supported (not an unknown member), naming what it mentions."""
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["errorCode"] == "operation_not_supported" and "is not supported" in body["message"], body
    for mention in mentions:
        assert mention in body["message"], (mention, body)


def test_connection_options_and_realms(api: TestClient[Litestar]) -> None:
    in_force = {"brute_force_protection": True, "disable_signup": True, "requires_username": False}
    created = api.post("/api/v2/connections", json={"name": "staff", "options": in_force, "realms": ["staff"]})
    assert created.status_code == 201, created.text
    assert created.json()["options"] == in_force and created.json()["realms"] == ["staff"]
    count = len(api.get("/api/v2/connections").json())
    for options, mention in [
        ({"passwordPolicy": "good"}, "password_min_length"),
        ({"requires_username": True}, "optional"),
        ({"disable_signup": False}, "signup"),
        ({"brute_force_protection": False}, "/attack-protection/brute-force-protection"),
        ({"import_mode": True}, "options.import_mode"),
    ]:
        refused(api.post("/api/v2/connections", json={"name": "other", "options": options}), mention)
    refused(api.post("/api/v2/connections", json={"name": "other", "realms": ["elsewhere"]}), "realms")
    wrong_type = api.post("/api/v2/connections", json={"name": "other", "options": {"disable_signup": "yes"}})
    assert wrong_type.status_code == 400 and "options.disable_signup" in wrong_type.json()["message"]
    assert len(api.get("/api/v2/connections").json()) == count  # nothing was created

    path = f"/api/v2/connections/{created.json()['id']}"
    assert api.patch(path, json={"options": {"disable_signup": True}, "realms": ["staff"]}).status_code == 200
    refused(api.patch(path, json={"options": {"requires_username": True}}), "requires_username")
    # Brute-force protection is tenant-wide: the connections show the tenant's setting, and only it is accepted.
    assert api.patch("/api/v2/attack-protection/brute-force-protection", json={"enabled": False}).status_code == 200
    assert api.get(path).json()["options"]["brute_force_protection"] is False
    refused(api.patch(path, json={"options": {"brute_force_protection": True}}), "tenant-wide")


def test_client_descriptive_members(api: TestClient[Litestar], settings: Settings) -> None:
    lifetime = settings.id_token_lifetime
    described = {
        "app_type": "non_interactive",
        "is_first_party": True,
        "oidc_conformant": True,
        "callbacks": [],
        "jwt_configuration": {"alg": "RS256", "lifetime_in_seconds": lifetime},
    }
    created = api.post("/api/v2/clients", json={"name": "Exporter", "grant_types": ["client_credentials"], **described})
    assert created.status_code == 201, created.text
    assert {key: created.json()[key] for key in described} == described
    public = {"name": "Phone app", "token_endpoint_auth_method": "none", "grant_types": ["password"]}
    assert api.post("/api/v2/clients", json={**public, "app_type": "native"}).json()["app_type"] == "native"
    web = api.post("/api/v2/clients", json={"name": "Portal", "grant_types": ["password"], "app_type": "regular_web"})
    assert web.json()["app_type"] == "regular_web"
    count = len(api.get("/api/v2/clients").json())
    for body, mention in [
        ({**public, "app_type": "spa"}, "CORS"),
        ({"name": "x", "app_type": "native"}, "regular_web"),
        ({"name": "x", "is_first_party": False}, "first-party"),
        ({"name": "x", "oidc_conformant": False}, "OIDC"),
        ({"name": "x", "callbacks": ["https://x.test/cb"]}, "/authorize"),
        ({"name": "x", "jwt_configuration": {"alg": "HS256"}}, "RS256"),
        ({"name": "x", "jwt_configuration": {"lifetime_in_seconds": 60}}, str(lifetime)),
        ({"name": "x", "jwt_configuration": {"secret_encoded": True}}, "jwt_configuration.secret_encoded"),
    ]:
        refused(api.post("/api/v2/clients", json=body), mention)
    assert len(api.get("/api/v2/clients").json()) == count

    path = f"/api/v2/clients/{created.json()['client_id']}"
    same = api.patch(path, json={"is_first_party": True, "app_type": "non_interactive"})
    assert same.status_code == 200 and same.json()["name"] == "Exporter"
    refused(api.patch(path, json={"name": "Renamed", "oidc_conformant": False}), "oidc_conformant")
    assert api.get(path).json()["name"] == "Exporter"
    assert api.patch(path, json={}).status_code == 400


def test_resource_server_members(api: TestClient[Litestar]) -> None:
    described = {
        "token_lifetime_for_web": 3600,
        "token_dialect": "access_token",
        "enforce_policies": False,
        "skip_consent_for_verifiable_first_party_clients": True,
    }
    body = {"identifier": "https://ledger.test/", "token_lifetime": 3600, **described}
    created = api.post("/api/v2/resource-servers", json=body)
    assert created.status_code == 201, created.text
    assert {key: created.json()[key] for key in described} == described
    secret = "an HS256 signing secret of 32 characters or more"
    for extra, mention in [
        ({"token_lifetime_for_web": 7200}, "token_lifetime_for_web"),
        ({"token_dialect": "rfc9068_profile"}, "access_token dialect"),
        ({"enforce_policies": True}, "RBAC"),
        ({"skip_consent_for_verifiable_first_party_clients": False}, "consent"),
        ({"signing_secret": secret}, "HS256"),
    ]:
        answer = api.post("/api/v2/resource-servers", json={"identifier": "https://other.test/", **extra})
        refused(answer, mention)
        assert secret not in answer.text
    assert api.get("/api/v2/resource-servers/https:%2F%2Fother.test%2F").status_code == 404

    path = f"/api/v2/resource-servers/{created.json()['id']}"
    changed = api.patch(path, json={"token_lifetime": 600, "token_lifetime_for_web": 600})
    assert changed.status_code == 200 and changed.json()["token_lifetime_for_web"] == 600
    refused(api.patch(path, json={"signing_secret": secret}), "signing_secret")
    assert api.patch(path, json={"token_dialect": "access_token"}).json()["token_lifetime"] == 600


def test_user_names_are_stored_and_phone_members_refused(api: TestClient[Litestar]) -> None:
    body = {"connection": "customers", "email": "ivan@example.test", "password": "ivan's long password 2026"}
    created = api.post("/api/v2/users", json={**body, "given_name": "Ivan", "family_name": "Petrov"})
    assert created.status_code == 201, created.text
    user = api.get(f"/api/v2/users/{created.json()['user_id']}").json()
    assert (user["given_name"], user["family_name"]) == ("Ivan", "Petrov")
    refused(api.post("/api/v2/users", json={**body, "phone_number": "+15555550100"}), "SMS")
    refused(api.post("/api/v2/users", json={**body, "phone_verified": True}), "phone_verified")
    too_long = api.post("/api/v2/users", json={**body, "email": "x@example.test", "given_name": "x" * 151})
    assert too_long.status_code == 400 and "given_name" in too_long.json()["message"]
    quiet = api.post("/api/v2/users", json={**body, "email": "judy@example.test", "phone_number": None})
    assert quiet.status_code == 201, quiet.text

    # Alice's names reach the profile claims of /userinfo.
    alice = api.get("/api/v2/users", params={"q": 'email:"alice@example.test"', "connection": "customers"}).json()
    path = f"/api/v2/users/{alice[0]['user_id']}"
    assert api.patch(path, json={"given_name": "Alice", "family_name": "Liddell"}).status_code == 200
    refused(api.patch(path, json={"phone_number": "+15555550100"}), "phone_number")
    assert api.patch(path, json={"phone_number": None}).status_code == 200
    token = login(api, scope="openid profile").json()["access_token"]
    info = api.get("/userinfo", headers={"Authorization": f"Bearer {token}"}).json()
    assert (info["given_name"], info["family_name"]) == ("Alice", "Liddell")
    assert api.patch(path, json={"family_name": None}).json()["family_name"] is None
