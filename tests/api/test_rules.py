"""Rules end to end through the token endpoint (TestClient over the real app and database)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import jwt
import pyotp
import pytest
from litestar import Litestar
from litestar.testing import TestClient

from identity.app import create_app
from identity.clock import FrozenClock, SystemClock
from identity.oauth2.first_party import MULTI_FACTOR
from identity.rules.pipeline import RuleLoadError
from identity.settings import Settings
from identity.tenant_file import TenantFileError
from tests import rule_handlers
from tests.conftest import ALICE_CUSTOMER_PASSWORD, ALICE_EMPLOYEE_PASSWORD, API, ISSUER, apply, standard_tenant

MFA_OTP = "http://auth0.com/oauth/grant-type/mfa-otp"
REALM = "http://auth0.com/oauth/grant-type/password-realm"


def with_rules(*rules: dict[str, Any]) -> dict[str, Any]:
    data = standard_tenant()
    data["rules"] = list(rules)
    for client in data["clients"]:
        client["grant_types"] = [*client["grant_types"], MFA_OTP]
    return data


def rule(name: str, handler: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "handler": f"tests.rule_handlers:{handler}", **extra}


@pytest.fixture
def start(settings: Settings) -> Iterator[Any]:
    clients: list[TestClient[Litestar]] = []

    def go(*rules: dict[str, Any]) -> TestClient[Litestar]:
        apply(settings, with_rules(*rules))
        client = TestClient(create_app(settings), base_url="https://identity.test")
        client.__enter__()
        clients.append(client)
        return client

    rule_handlers.SEEN.clear()
    yield go
    for client in clients:
        client.__exit__(None, None, None)


def login(client: TestClient[Litestar], **extra: str) -> Any:
    data = {
        "grant_type": "password",
        "client_id": "public-app",
        "username": "alice@example.test",
        "password": ALICE_CUSTOMER_PASSWORD,
        **extra,
    }
    return client.post("/oauth/token", data=data)


def refresh(client: TestClient[Litestar], token: str) -> Any:
    return client.post(
        "/oauth/token", data={"grant_type": "refresh_token", "client_id": "public-app", "refresh_token": token}
    )


def claims_of(client: TestClient[Litestar], token: str, audience: str = API) -> dict[str, Any]:
    jwks = client.get("/.well-known/jwks.json").json()
    kid = jwt.get_unverified_header(token)["kid"]
    key = jwt.PyJWK(next(k for k in jwks["keys"] if k["kid"] == kid))
    return jwt.decode(token, key, algorithms=[key.algorithm_name], audience=audience, issuer=ISSUER)


def test_rules_see_the_event_and_oauth2_password_for_both_password_grants(start: Any) -> None:
    client = start(rule("record", "record", config={"k": "v"}))
    assert login(client, scope="openid read:things").status_code == 200
    response = client.post(
        "/oauth/token",
        data={
            "grant_type": REALM,
            "client_id": "public-app",
            "realm": "employees",
            "username": "alice",
            "password": ALICE_EMPLOYEE_PASSWORD,
        },
    )
    assert response.status_code == 200
    first, second = rule_handlers.SEEN
    assert first["protocol"] == second["protocol"] == "oauth2-password"
    assert first["requested_scopes"] == ("openid", "read:things")
    assert first["audience"] == API
    assert (first["client"], first["connection"], second["connection"]) == ("public-app", "customers", "employees")
    assert first["email"] == "alice@example.test" and first["user"] != second["user"]
    assert first["methods"] == ["pwd"]
    assert first["config"] == {"k": "v"}
    assert first["ip"] == "testclient"


def test_rules_see_the_acr_values_asked(start: Any) -> None:
    """Auth0's step-up pattern: a rule reads ``event.transaction.acr_values`` (RFC 9470)."""
    client = start(rule("record", "record"))
    asked = f"{MULTI_FACTOR} urn:example:gold"

    assert login(client).status_code == 200
    stepped_up = login(client, acr_values=asked)

    assert stepped_up.status_code == 403 and stepped_up.json()["error"] == "mfa_required"
    plain, step_up = rule_handlers.SEEN
    assert plain["acr_values"] == ()
    assert step_up["acr_values"] == (MULTI_FACTOR, "urn:example:gold")


def test_a_rule_can_ask_for_a_new_login_after_hours_of_refreshing(settings: Settings) -> None:
    data = with_rules(rule("recent", "recent_login", config={"max_age": 8 * 3600}))
    for client in data["clients"]:
        client["grant_types"] = [*client["grant_types"], "refresh_token"]
    apply(settings, data)
    clock = FrozenClock(time.time())
    rule_handlers.SEEN.clear()
    rule_handlers.CLOCK = clock
    try:
        with TestClient(create_app(settings, clock=clock), base_url="https://identity.test") as client:
            logged_in_at = int(clock.now())
            token = login(client, scope="openid offline_access").json()["refresh_token"]
            clock.advance(7 * 3600)
            refreshed = refresh(client, token)
            assert refreshed.status_code == 200, refreshed.text
            clock.advance(2 * 3600)  # nine hours after the login, one after the last refresh
            late = refresh(client, refreshed.json()["refresh_token"])
            assert late.json() == {"error": "access_denied", "error_description": "Please log in again"}
            assert late.status_code == 403
            assert login(client, scope="openid offline_access").status_code == 200  # a new login passes again
    finally:
        rule_handlers.CLOCK = SystemClock()
    protocols = ["oauth2-password", "oauth2-refresh-token", "oauth2-refresh-token", "oauth2-password"]
    assert [seen["protocol"] for seen in rule_handlers.SEEN] == protocols
    assert [seen["authenticated"] for seen in rule_handlers.SEEN][:3] == [logged_in_at] * 3
    assert rule_handlers.SEEN[3]["authenticated"] == logged_in_at + 9 * 3600


def test_custom_claims_reach_signed_tokens(start: Any) -> None:
    client = start(rule("claims", "claims", config={"plan": "platinum"}), rule("async", "async_claims"))
    body = login(client, scope="openid").json()
    access = claims_of(client, body["access_token"])
    assert access["https://example.test/plan"] == "platinum"
    assert access["https://example.test/async"] is True
    id_claims = jwt.decode(body["id_token"], options={"verify_signature": False})
    assert id_claims["https://example.test/connection"] == "customers"


def test_rules_restrict_scopes_but_never_beyond_the_api(start: Any) -> None:
    client = start(rule("restrict", "drop_delete_scope"))
    body = login(client).json()
    assert body["scope"] == "read:things write:things"
    assert claims_of(client, body["access_token"])["scope"] == "read:things write:things"


def test_add_scope_only_adds_api_scopes(start: Any) -> None:
    client = start(rule("add", "add_scope_back"))
    body = login(client, scope="read:things").json()
    assert body["scope"] == "read:things delete:things"


def test_deny_answers_access_denied_with_the_reason(start: Any) -> None:
    client = start(rule("deny", "deny"), rule("record", "record"))
    response = login(client)
    assert response.status_code == 403
    assert response.json() == {"error": "access_denied", "error_description": "You can't log in from this app"}
    assert rule_handlers.SEEN == []  # the pipeline stopped


def test_deny_counts_even_when_the_rule_swallows_it(start: Any) -> None:
    client = start(rule("sneaky", "deny_swallowed"))
    response = login(client)
    assert response.status_code == 403
    assert response.json()["error_description"] == "denied even if caught"


def test_a_raising_rule_is_a_generic_denial_and_the_detail_goes_to_the_log(
    start: Any, caplog: pytest.LogCaptureFixture
) -> None:
    client = start(rule("broken", "raises"))
    response = login(client)
    assert response.status_code == 403
    assert response.json() == {"error": "access_denied", "error_description": "Access denied: a rule failed"}
    assert "secret internal detail" not in response.text
    assert any("broken" in r.getMessage() for r in caplog.records)


def test_redirect_fails_the_password_exchange(start: Any) -> None:
    client = start(rule("redirect", "redirect"))
    response = login(client)
    assert response.status_code == 403
    assert response.json()["error"] == "interaction_required"
    assert response.headers["cache-control"] == "no-store"


@pytest.mark.parametrize("handler", ["bad_claim", "registered_claim"])
def test_invalid_claim_names_are_the_rules_error(start: Any, handler: str) -> None:
    client = start(rule("claimy", handler))
    response = login(client)
    assert response.status_code == 403
    body = response.json()
    assert body["error"] == "access_denied"
    assert "claimy" in body["error_description"] and "claim" in body["error_description"]


@pytest.mark.parametrize("handler", ["slow", "slow_async"])
def test_a_slow_rule_is_stopped_and_fails(start: Any, handler: str) -> None:
    client = start(rule("slow", handler, timeout_seconds=0.3))
    response = login(client)
    assert response.status_code == 403
    assert response.json()["error_description"] == "Access denied: a rule failed"


def test_event_is_read_only(start: Any) -> None:
    client = start(rule("mutate", "mutate_event"))
    assert login(client).status_code == 403


def test_mfa_forced_for_one_directory_only_and_claims_survive_the_detour(start: Any) -> None:
    client = start(rule("mfa", "mfa_for_employees"), rule("claims", "claims"), rule("restrict", "drop_delete_scope"))
    assert login(client).status_code == 200  # customers: no MFA (policy if-enrolled, no factor)
    response = client.post(
        "/oauth/token",
        data={
            "grant_type": REALM,
            "client_id": "public-app",
            "realm": "employees",
            "username": "alice",
            "password": ALICE_EMPLOYEE_PASSWORD,
        },
    )
    assert response.status_code == 403 and response.json()["error"] == "mfa_required"
    mfa_token = response.json()["mfa_token"]
    headers = {"Authorization": f"Bearer {mfa_token}"}
    secret = client.post("/mfa/associate", json={"authenticator_types": ["otp"]}, headers=headers).json()["secret"]
    done = client.post(
        "/oauth/token",
        data={
            "grant_type": MFA_OTP,
            "client_id": "public-app",
            "mfa_token": mfa_token,
            "otp": pyotp.TOTP(secret).now(),
        },
    )
    assert done.status_code == 200, done.text
    access = claims_of(client, done.json()["access_token"])
    assert access["https://example.test/plan"] == "gold"
    assert access["scope"] == "read:things write:things"
    assert access["amr"] == ["pwd", "mfa", "otp"]


def test_app_metadata_written_by_a_rule_is_saved(start: Any) -> None:
    client = start(rule("meta", "set_metadata"), rule("record", "record"))
    assert login(client).status_code == 200
    rule_handlers.SEEN.clear()
    assert login(client).status_code == 200
    # The second login's event shows what the first one saved.
    seen = rule_handlers.SEEN[0]
    assert seen["app_metadata"]["last_rule_login"] == "yes"
    assert seen["logins_count"] >= 1


def test_disabled_rules_do_not_run(start: Any) -> None:
    client = start(rule("deny", "deny", enabled=False))
    assert login(client).status_code == 200


def test_a_bad_handler_path_is_refused_when_applied(settings: Settings) -> None:
    with pytest.raises(TenantFileError, match="cannot import"):
        apply(settings, with_rules({"name": "missing", "handler": "tests.no_such_module:f"}))
    with pytest.raises(TenantFileError, match="no callable"):
        apply(settings, with_rules(rule("missing", "no_such_function")))


def test_a_handler_that_disappeared_fails_the_start(settings: Settings) -> None:
    from identity.rules.loader import load_rules
    from identity.store.rules import replace_rules
    from tests.conftest import run_db

    async def plant(session: Any, _: Any) -> None:
        await replace_rules(session, [{"name": "gone", "handler": "tests.rule_handlers:vanished"}])
        await session.commit()

    run_db(settings, plant)
    with pytest.raises(RuleLoadError, match="gone"):
        run_db(settings, lambda session, _: load_rules(session))


def test_a_rule_can_live_in_a_file(start: Any, tmp_path: Any) -> None:
    path = tmp_path / "my_rules.py"
    path.write_text(
        "def plan(event, api):\n    api.access_token.set_custom_claim('https://example.test/from-file', 1)\n"
    )
    client = start({"name": "file", "handler": f"{path}:plan"})
    body = login(client).json()
    assert claims_of(client, body["access_token"])["https://example.test/from-file"] == 1
