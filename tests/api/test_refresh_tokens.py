"""Refresh tokens through the token endpoint: issue, rotate, reuse detection, leeway, narrowing, expiry, revoke,
userinfo. TestClient over the real app and database, with a frozen clock where time matters."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import jwt
import pytest
from litestar import Litestar
from litestar.testing import TestClient

from identity.app import create_app
from identity.clock import FrozenClock
from identity.settings import Settings
from tests.conftest import (
    ALICE_CUSTOMER_PASSWORD,
    API,
    CONFIDENTIAL_SECRET,
    REPORTS_API,
    apply,
    run_db,
    standard_tenant,
)

UNKNOWN = {"error": "invalid_grant", "error_description": "Unknown or invalid refresh token."}


def tenant_with(policy: dict[str, Any] | None = None) -> dict[str, Any]:
    data = standard_tenant()
    for client in data["clients"]:
        client["grant_types"] = [*client["grant_types"], "refresh_token"]
        if policy is not None:
            client["refresh_token"] = policy
    return data


@pytest.fixture
def clock() -> FrozenClock:
    import time

    return FrozenClock(time.time())


@pytest.fixture
def start(settings: Settings, clock: FrozenClock) -> Iterator[Any]:
    clients: list[TestClient[Litestar]] = []

    def go(policy: dict[str, Any] | None = None) -> TestClient[Litestar]:
        apply(settings, tenant_with(policy))
        client = TestClient(create_app(settings, clock=clock), base_url="https://identity.test")
        client.__enter__()
        clients.append(client)
        return client

    yield go
    for client in clients:
        client.__exit__(None, None, None)


def login(client: TestClient[Litestar], scope: str = "openid profile offline_access", **extra: str) -> Any:
    data = {
        "grant_type": "password",
        "client_id": "public-app",
        "username": "alice@example.test",
        "password": ALICE_CUSTOMER_PASSWORD,
        "scope": scope,
        **extra,
    }
    return client.post("/oauth/token", data=data)


def refresh(client: TestClient[Litestar], token: str, **extra: str) -> Any:
    return client.post(
        "/oauth/token", data={"grant_type": "refresh_token", "client_id": "public-app", "refresh_token": token, **extra}
    )


def test_offline_access_gives_a_refresh_token_only_when_everything_allows_it(start: Any, settings: Settings) -> None:
    client = start()
    body = login(client).json()
    assert body["refresh_token"].startswith("v1.")
    assert "offline_access" in body["scope"].split()
    assert "refresh_token" not in login(client, scope="openid").json()
    # The reports API does not allow offline access.
    assert "refresh_token" not in login(client, audience=REPORTS_API).json()


def test_client_without_the_refresh_grant_gets_no_refresh_token(settings: Settings, app: Litestar) -> None:
    apply(settings, standard_tenant())
    with TestClient(app) as client:
        body = login(client).json()
    assert "refresh_token" not in body
    assert "offline_access" not in body["scope"].split()


def test_rotation_returns_new_tokens_and_retires_the_old(start: Any) -> None:
    client = start()
    first = login(client).json()["refresh_token"]
    tokens = [first]
    for _ in range(3):
        response = refresh(client, tokens[-1])
        assert response.status_code == 200, response.text
        assert response.headers["cache-control"] == "no-store"
        body = response.json()
        assert body["refresh_token"] not in tokens
        assert body["token_type"] == "Bearer" and body["access_token"] and body["id_token"]
        claims = jwt.decode(body["access_token"], options={"verify_signature": False})
        assert claims["gty"] == "refresh_token" and claims["aud"][0] == API
        tokens.append(body["refresh_token"])
    # Replaying an old token burns the family: the newest one dies too.
    assert refresh(client, tokens[1]).json() == UNKNOWN
    assert refresh(client, tokens[-1]).json() == UNKNOWN


def test_leeway_gives_the_immediately_previous_token_the_same_successor(start: Any, clock: FrozenClock) -> None:
    client = start({"leeway": 30})
    t0 = login(client).json()["refresh_token"]
    t1 = refresh(client, t0).json()["refresh_token"]
    clock.advance(10)
    again = refresh(client, t0)
    assert again.status_code == 200 and again.json()["refresh_token"] == t1
    t2 = refresh(client, t1).json()["refresh_token"]
    # t0 is now second-to-last: reuse is a breach even within leeway.
    assert refresh(client, t0).json() == UNKNOWN
    assert refresh(client, t2).json() == UNKNOWN


def test_leeway_expires(start: Any, clock: FrozenClock) -> None:
    client = start({"leeway": 5})
    t0 = login(client).json()["refresh_token"]
    t1 = refresh(client, t0).json()["refresh_token"]
    clock.advance(6)
    assert refresh(client, t0).json() == UNKNOWN
    assert refresh(client, t1).json() == UNKNOWN


def test_scope_can_narrow_but_not_widen(start: Any) -> None:
    client = start()
    token = login(client, scope="openid offline_access read:things write:things").json()["refresh_token"]
    narrowed = refresh(client, token, scope="read:things")
    assert narrowed.status_code == 200
    assert narrowed.json()["scope"] == "read:things offline_access"
    wider = refresh(client, narrowed.json()["refresh_token"], scope="read:things delete:things")
    assert wider.status_code == 400 and wider.json()["error"] == "invalid_scope"


def test_absolute_and_idle_lifetimes(start: Any, clock: FrozenClock) -> None:
    client = start({"token_lifetime": 3600, "idle_token_lifetime": 600})
    token = login(client).json()["refresh_token"]
    clock.advance(500)
    token = refresh(client, token).json()["refresh_token"]  # renews idle expiry
    clock.advance(500)
    token = refresh(client, token).json()["refresh_token"]
    clock.advance(601)
    assert refresh(client, token).json() == UNKNOWN
    token = login(client).json()["refresh_token"]
    for _ in range(7):
        clock.advance(550)
        response = refresh(client, token)
        if response.status_code != 200:
            break
        token = response.json()["refresh_token"]
    assert response.json() == UNKNOWN  # the absolute hour ran out although it was never idle


def test_non_rotating_tokens_are_reused_without_a_new_one(start: Any) -> None:
    client = start({"rotation_type": "non-rotating"})
    token = login(client).json()["refresh_token"]
    for _ in range(3):
        body = refresh(client, token).json()
        assert "refresh_token" not in body and body["access_token"]


def test_blocked_and_deleted_users_get_invalid_grant(start: Any, settings: Settings) -> None:
    from sqlalchemy import delete, update

    from identity.store.models import UserRow

    client = start()
    token = login(client).json()["refresh_token"]

    async def block(session: Any, _: Any) -> None:
        await session.execute(update(UserRow).where(UserRow.email == "alice@example.test").values(blocked=True))
        await session.commit()

    run_db(settings, block)
    blocked = refresh(client, token)
    assert blocked.status_code == 403 and blocked.json()["error"] == "invalid_grant"

    async def remove(session: Any, _: Any) -> None:
        await session.execute(delete(UserRow).where(UserRow.email == "alice@example.test"))
        await session.commit()

    run_db(settings, remove)
    assert refresh(client, token).json()["error"] == "invalid_grant"


def test_another_clients_refresh_token_is_unknown(start: Any) -> None:
    client = start()
    token = login(client).json()["refresh_token"]
    response = client.post(
        "/oauth/token",
        data={
            "grant_type": "refresh_token",
            "client_id": "confidential-app",
            "client_secret": CONFIDENTIAL_SECRET,
            "refresh_token": token,
        },
    )
    assert response.json() == UNKNOWN


def test_revoke_kills_the_family_and_answers_200_for_anything(start: Any) -> None:
    client = start()
    token = login(client).json()["refresh_token"]
    newer = refresh(client, token).json()["refresh_token"]
    assert client.post("/oauth/revoke", data={"client_id": "public-app", "token": "v1.nonsense"}).status_code == 200
    response = client.post("/oauth/revoke", data={"client_id": "public-app", "token": token})
    assert response.status_code == 200 and response.content == b""
    assert refresh(client, newer).json() == UNKNOWN
    missing = client.post("/oauth/revoke", data={"client_id": "public-app"})
    assert missing.status_code == 400 and missing.json()["error"] == "invalid_request"


def test_userinfo_reflects_scopes_and_the_current_user(start: Any) -> None:
    client = start()
    body = login(client, scope="openid email").json()
    info = client.get("/userinfo", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert info.status_code == 200
    claims = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert info.json() == {"sub": claims["sub"], "email": "alice@example.test", "email_verified": True}
    posted = client.post("/userinfo", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert posted.json() == info.json()
    no_openid = login(client, scope="read:things").json()["access_token"]
    denied = client.get("/userinfo", headers={"Authorization": f"Bearer {no_openid}"})
    assert denied.status_code == 401 and denied.json()["error"] == "invalid_token"
    assert denied.headers["www-authenticate"].startswith("Bearer ")
    missing = client.get("/userinfo")
    assert missing.status_code == 401 and "www-authenticate" in missing.headers


def test_password_change_and_mfa_reset_end_sessions(start: Any, settings: Settings) -> None:
    client = start()
    token = login(client).json()["refresh_token"]
    data = tenant_with()
    for user in data["users"]:
        if user["connection"] == "customers" and user["email"] == "alice@example.test":
            user["password"] = "a brand new password"
    apply(settings, data)
    assert refresh(client, token).json() == UNKNOWN
