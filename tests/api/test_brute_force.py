"""Brute-force protection on the password grants (API.md §4.1): per identifier and IP, unknown identifiers too."""

from __future__ import annotations

from typing import Any

from litestar import Litestar
from litestar.testing import TestClient

from identity.oauth2.grants.password import BLOCKED
from identity.settings import Settings
from tests.conftest import ALICE_CUSTOMER_PASSWORD, apply, run_db, standard_tenant

TOO_MANY = {"error": "too_many_attempts", "error_description": BLOCKED}


def login(client: TestClient[Litestar], password: str, username: str = "alice@example.test") -> Any:
    return client.post(
        "/oauth/token",
        data={"grant_type": "password", "client_id": "public-app", "username": username, "password": password},
    )


def with_limits(attempts: int, seconds: int = 900) -> dict[str, Any]:
    data = standard_tenant()
    data["tenant"].update(brute_force_max_attempts=attempts, brute_force_block_seconds=seconds)
    return data


def test_the_pair_is_blocked_after_the_threshold_even_for_the_right_password(settings: Settings, app: Litestar) -> None:
    apply(settings, with_limits(3))
    with TestClient(app) as client:
        for _ in range(3):
            assert login(client, "wrong").json()["error"] == "invalid_grant"
        blocked = login(client, ALICE_CUSTOMER_PASSWORD)
        assert blocked.status_code == 429 and blocked.json() == TOO_MANY
        assert blocked.headers["cache-control"] == "no-store"
        # Another identifier from the same address is unaffected, and so is another directory.
        other = login(client, "wrong", username="bob@example.test")
        assert other.json()["error"] == "invalid_grant"


def test_a_success_resets_the_count(settings: Settings, app: Litestar) -> None:
    apply(settings, with_limits(3))
    with TestClient(app) as client:
        for _ in range(2):
            login(client, "wrong")
        assert login(client, ALICE_CUSTOMER_PASSWORD).status_code == 200
        for _ in range(2):
            login(client, "wrong")
        assert login(client, ALICE_CUSTOMER_PASSWORD).status_code == 200


def test_unknown_identifiers_are_counted_the_same_way(settings: Settings, app: Litestar) -> None:
    apply(settings, with_limits(2))
    with TestClient(app) as client:
        answers = [login(client, "wrong", username="nobody@example.test").json() for _ in range(3)]
    assert answers[:2] == [{"error": "invalid_grant", "error_description": "Wrong email or password."}] * 2
    assert answers[2] == TOO_MANY


def test_the_block_lifts_after_its_time(settings: Settings, app: Litestar) -> None:
    from datetime import timedelta

    from sqlalchemy import update

    from identity.store.models import LoginFailureRow

    apply(settings, with_limits(2, seconds=60))
    with TestClient(app) as client:
        login(client, "wrong")
        login(client, "wrong")
        assert login(client, ALICE_CUSTOMER_PASSWORD).status_code == 429

        async def age(session: Any, _: Any) -> None:
            rows = (await session.execute(LoginFailureRow.__table__.select())).all()
            assert len(rows) == 1 and "alice" not in str(rows[0])  # only a hash of the pair is stored
            await session.execute(update(LoginFailureRow).values(blocked_at=rows[0].blocked_at - timedelta(seconds=61)))
            await session.commit()

        run_db(settings, age)
        assert login(client, ALICE_CUSTOMER_PASSWORD).status_code == 200
