"""SIGTERM drains: every request in flight when the stop begins gets its full answer, none a reset.

Passwords are hashed at a deliberately high Argon2 cost here, with one hash thread, so that several password grants
are still being worked on (queued for the hash or hashing) when the signal arrives.
"""

from __future__ import annotations

import secrets
import signal
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import (
    PASSWORD_REALM,
    PUBLIC_CLIENT,
    AppliedTenant,
    IdentityServer,
    create_user,
    serve_spec,
    start_servers,
    stop_and_check,
)

SLOW = {"IDENTITY_ARGON2_TIME_COST": "16", "IDENTITY_HASH_WORKERS": "1"}
IN_FLIGHT = 4
DELAY = 1.0


def _grant(server: IdentityServer, email: str, password: str, results: list[Any]) -> None:
    try:
        with httpx.Client(timeout=60) as client:  # one connection per request
            response = client.post(
                server.token_url,
                data={
                    "grant_type": PASSWORD_REALM,
                    "client_id": PUBLIC_CLIENT,
                    "realm": "employees",
                    "username": email,
                    "password": password,
                },
            )
        results.append((time.monotonic(), response))
    except httpx.HTTPError as exc:
        results.append((time.monotonic(), exc))


def _slow_user(env: dict[str, str]) -> tuple[str, str]:
    email, password = f"drain-{secrets.token_hex(4)}@e2e.test", secrets.token_urlsafe(12)
    create_user({**env, **SLOW}, "employees", password, email=email)
    return email, password


def test_sigterm_lets_in_flight_requests_finish(
    e2e_env: dict[str, str], applied_tenant: AppliedTenant, tmp_path: Path
) -> None:
    env = {**e2e_env, **SLOW, "IDENTITY_SHUTDOWN_DELAY": str(DELAY)}
    email, password = _slow_user(env)
    (server,) = start_servers([serve_spec("drain", env)], tmp_path)
    results: list[Any] = []
    threads = [threading.Thread(target=_grant, args=(server, email, password, results)) for _ in range(IN_FLIGHT)]
    for thread in threads:
        thread.start()
    time.sleep(0.3)  # every request sent; one hash alone takes longer than this
    signalled = time.monotonic()
    server.process.process.send_signal(signal.SIGTERM)
    # During the delay the instance still serves, but tells the balancer it is going away.
    with httpx.Client(timeout=5) as client:
        readiness = client.get(f"{server.base_url}/readyz")
    for thread in threads:
        thread.join(timeout=90)
    stop_and_check(server)

    responses = [answer for _, answer in results]
    failures = [r for r in responses if not isinstance(r, httpx.Response) or r.status_code != 200]
    assert len(results) == IN_FLIGHT
    assert not failures, failures
    assert all("access_token" in r.json() for r in responses if isinstance(r, httpx.Response))
    # The grants really were in flight when the signal came: most of them were answered after it.
    assert sum(finished > signalled for finished, _ in results) >= 2, [f - signalled for f, _ in results]
    assert readiness.status_code == 503
    assert "shutdown" in readiness.json()["checks"]
    # After the stop nothing listens any more.
    with pytest.raises(httpx.ConnectError), httpx.Client(timeout=2) as client:
        client.get(f"{server.base_url}/healthz")
