"""Whose address counts (API.md §4.2, §4.4): ``auth0-forwarded-for`` only from a trusted confidential client,
IPv6 grouped by /64, and suspicious-IP throttling across accounts with ``Retry-After`` and an allow-list.

Requests come from the in-process test transport; the end user's address is varied through a confidential client
flagged ``is_token_endpoint_ip_header_trusted`` (what a backend calling the token endpoint does). The
``X-Forwarded-For`` side, which needs a real TCP peer, is tested against real servers in
``tests/e2e/test_attack_e2e.py``.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import TestClient

from identity.app import create_app
from identity.clock import FrozenClock
from identity.oauth2.grants.password import BLOCKED, SUSPICIOUS
from identity.settings import Settings
from identity.store import audit
from tests.conftest import ALICE_CUSTOMER_PASSWORD, CONFIDENTIAL_SECRET, apply, run_db, standard_tenant

TRUSTED = "confidential-app"
UNTRUSTED = "basic-app"


def tenant(*, max_attempts: int = 3, throttling: dict[str, Any] | None = None) -> dict[str, Any]:
    data = standard_tenant()
    data["tenant"].update(brute_force_max_attempts=max_attempts)
    data["tenant"]["suspicious_ip_throttling"] = throttling or {"enabled": False}
    for client in data["clients"]:
        if client["client_id"] == TRUSTED:
            client["is_token_endpoint_ip_header_trusted"] = True
    return data


def login(
    client: TestClient[Litestar],
    password: str,
    *,
    address: str | None = None,
    client_id: str = TRUSTED,
    username: str = "alice@example.test",
) -> Any:
    data = {"grant_type": "password", "username": username, "password": password}
    headers = {"auth0-forwarded-for": address} if address else {}
    auth = None
    if client_id == TRUSTED:
        data.update(client_id=TRUSTED, client_secret=CONFIDENTIAL_SECRET)
    elif client_id == UNTRUSTED:
        from tests.conftest import BASIC_SECRET

        auth = (UNTRUSTED, BASIC_SECRET)
    else:
        data["client_id"] = client_id
    return client.post("/oauth/token", data=data, headers=headers, auth=auth)


def logged(settings: Settings) -> list[audit.LogEvent]:
    deadline = time.monotonic() + 10
    while True:
        events = run_db(settings, lambda session, _: audit.search(session, per_page=1000, newest_first=False))
        if events or time.monotonic() > deadline:
            return events
        time.sleep(0.05)


def test_a_trusted_confidential_client_names_the_end_user_address(settings: Settings, app: Litestar) -> None:
    apply(settings, tenant())
    with TestClient(app) as client:
        for _ in range(3):
            assert login(client, "wrong", address="198.51.100.7").status_code == 403
        assert login(client, ALICE_CUSTOMER_PASSWORD, address="198.51.100.7").status_code == 429
        # Another end user behind the same backend is not blocked: the backend's own address is not the key.
        assert login(client, ALICE_CUSTOMER_PASSWORD, address="198.51.100.8").status_code == 200
    first = logged(settings)[0]
    assert (first.ip, first.client_ip) == ("198.51.100.7", "testclient")  # Auth0: ip = end user, client_ip = proxy


@pytest.mark.parametrize("client_id", ["public-app", UNTRUSTED])
def test_the_header_is_ignored_for_every_other_client(settings: Settings, app: Litestar, client_id: str) -> None:
    """A public client, and a confidential one not flagged: rotating the header gives no fresh attempts."""
    apply(settings, tenant())
    with TestClient(app) as client:
        for n in range(3):
            assert login(client, "wrong", address=f"203.0.113.{n}", client_id=client_id).status_code == 403
        blocked = login(client, ALICE_CUSTOMER_PASSWORD, address="203.0.113.99", client_id=client_id)
        assert blocked.status_code == 429 and blocked.json()["error_description"] == BLOCKED
    assert {event.ip for event in logged(settings)} == {"testclient"}


def test_a_malformed_header_is_ignored(settings: Settings, app: Litestar) -> None:
    apply(settings, tenant())
    with TestClient(app) as client:
        for value in ["not an address", "198.51.100.7 extra", "' OR 1=1 --"]:
            assert login(client, "wrong", address=value).status_code == 403
        assert login(client, ALICE_CUSTOMER_PASSWORD, address="also not one").status_code == 429
    assert {event.ip for event in logged(settings)} == {"testclient"}


def test_ipv6_addresses_in_one_64_share_a_count(settings: Settings, app: Litestar) -> None:
    apply(settings, tenant())
    with TestClient(app) as client:
        for n in range(3):
            assert login(client, "wrong", address=f"2001:db8:1:2::{n + 1:x}").status_code == 403
        rotated = login(client, ALICE_CUSTOMER_PASSWORD, address="2001:db8:1:2:ffff:ffff:ffff:fffe")
        assert rotated.status_code == 429
        assert login(client, ALICE_CUSTOMER_PASSWORD, address="2001:db8:1:3::1").status_code == 200  # next /64
    assert logged(settings)[0].ip == "2001:db8:1:2::1"  # the log keeps the full address


def test_suspicious_ip_throttling_counts_failures_across_accounts(settings: Settings) -> None:
    throttling = {"enabled": True, "stage": {"pre-login": {"max_attempts": 5, "rate": 60_000}}}
    apply(settings, tenant(max_attempts=10, throttling=throttling))
    clock = FrozenClock(time.time())
    with TestClient(create_app(settings, clock=clock)) as client:
        for n in range(5):
            answer = login(client, "wrong", address="192.0.2.50", username=f"user{n}@example.test")
            assert answer.status_code == 403
        throttled = login(client, ALICE_CUSTOMER_PASSWORD, address="192.0.2.50")
        assert throttled.status_code == 429
        assert throttled.json() == {"error": "too_many_attempts", "error_description": SUSPICIOUS}
        assert 55 <= int(throttled.headers["retry-after"]) <= 60  # one attempt back per 60 s
        assert login(client, ALICE_CUSTOMER_PASSWORD, address="192.0.2.51").status_code == 200  # another address
        clock.advance(61)
        assert login(client, ALICE_CUSTOMER_PASSWORD, address="192.0.2.50").status_code == 200  # refilled by one
        # A success gives its token back: the address can still fail once more before it is throttled again.
        assert login(client, "wrong", address="192.0.2.50", username="x@example.test").status_code == 403
        assert login(client, "wrong", address="192.0.2.50", username="y@example.test").status_code == 429
    assert "limit_mu" in [event.type for event in logged(settings)]


def test_allow_listed_addresses_are_not_throttled(settings: Settings, app: Litestar) -> None:
    throttling = {
        "enabled": True,
        "allowlist": ["192.0.2.0/24", "2001:db8:aaaa::/48"],
        "stage": {"pre-login": {"max_attempts": 2, "rate": 60_000}},
    }
    apply(settings, tenant(max_attempts=10, throttling=throttling))
    with TestClient(app) as client:
        for address in ("192.0.2.60", "2001:db8:aaaa:1::1"):
            for n in range(4):
                answer = login(client, "wrong", address=address, username=f"u{n}@example.test")
                assert answer.status_code == 403
        for n in range(2):
            login(client, "wrong", address="198.51.100.60", username=f"u{n}@example.test")
        assert login(client, ALICE_CUSTOMER_PASSWORD, address="198.51.100.60").status_code == 429
