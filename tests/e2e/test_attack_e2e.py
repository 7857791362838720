"""Attack protection against real ``identity serve`` processes (issue 11).

- ``X-Forwarded-For`` is believed only from ``IDENTITY_TRUSTED_PROXIES`` (empty by default: uvicorn's own
  proxy-header handling, which trusted loopback, is off), read right to left.
- Two instances on one database share one count: the 11th failure is refused whichever instance gets it.
- Load shedding: with the hash queue full, password requests get ``503 temporarily_unavailable`` with
  ``Retry-After`` at once, while JWKS and refresh keep answering quickly.

This module adds its own directory, API, clients and users to the shared e2e database (``identity tenant apply``);
it never empties it. Latency bounds are generous: the machine is shared.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator

import httpx
import pytest

from tests.e2e.conftest import (
    AppliedTenant,
    IdentityServer,
    apply_tenant_file,
    query,
    serve_spec,
    start_servers,
    stop_and_check,
)

API = "https://attack.e2e.test/"
PUBLIC = "attack-public"
BACKEND = "attack-backend"
BACKEND_SECRET = "attack-backend-secret-0123456789abcdefghij"
SHED_USER = "shed@attack.e2e.test"
SHED_PASSWORD = "a long password for shedding"
REALM = "http://auth0.com/oauth/grant-type/password-realm"

TENANT = f"""
[[connections]]
name = "attack"

[[apis]]
identifier = "{API}"
name = "Attack API"
scopes = ["read:things"]
allow_offline_access = true

[[clients]]
client_id = "{PUBLIC}"
name = "Attack public"
token_endpoint_auth_method = "none"
grant_types = ["{REALM}", "refresh_token"]
connections = ["attack"]

[[clients]]
client_id = "{BACKEND}"
name = "Attack backend"
client_secret = "{BACKEND_SECRET}"
token_endpoint_auth_method = "client_secret_post"
grant_types = ["{REALM}"]
connections = ["attack"]
is_token_endpoint_ip_header_trusted = true

[[users]]
connection = "attack"
email = "{SHED_USER}"
password = "{SHED_PASSWORD}"
"""


@pytest.fixture(scope="module")
def attack_env(
    e2e_env: dict[str, str], applied_tenant: AppliedTenant, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, str]:
    path = tmp_path_factory.mktemp("attack") / "tenant.toml"
    path.write_text(TENANT)
    apply_tenant_file(path, e2e_env)
    return e2e_env


@pytest.fixture(scope="module")
def servers(
    attack_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, IdentityServer]]:
    """``default``: no trusted proxies; ``proxied``: 127.0.0.1 trusted; ``a``/``b``: two instances, one database;
    ``shedding``: one hash worker, a queue of 4."""
    shedding = {**attack_env, "IDENTITY_HASH_WORKERS": "1", "IDENTITY_HASH_QUEUE": "4", "IDENTITY_HASH_WAIT_MS": "1500"}
    specs = [
        serve_spec("default", attack_env),
        serve_spec("proxied", {**attack_env, "IDENTITY_TRUSTED_PROXIES": "127.0.0.1/32"}),
        serve_spec("a", attack_env),
        serve_spec("b", attack_env),
        serve_spec("shedding", shedding),
    ]
    started = start_servers(specs, tmp_path_factory.mktemp("attack-logs"))
    try:
        yield dict(zip(["default", "proxied", "a", "b", "shedding"], started, strict=True))
    finally:
        for server in started:
            stop_and_check(server)


def form_of(username: str, password: str) -> dict[str, str]:
    return {"grant_type": REALM, "client_id": PUBLIC, "realm": "attack", "username": username, "password": password}


def login(server: IdentityServer, username: str, password: str, **headers: str) -> httpx.Response:
    return httpx.post(server.token_url, data=form_of(username, password), headers=headers, timeout=30)


FLOOD = """
import asyncio, json, sys, time
import httpx

async def main(url, form, count):
    limits = httpx.Limits(max_connections=count, max_keepalive_connections=count)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        async def one():
            start = time.perf_counter()
            response = await client.post(url, data=form)
            return [response.status_code, time.perf_counter() - start, response.json(),
                    response.headers.get("retry-after")]
        print(json.dumps(await asyncio.gather(*(one() for _ in range(count)))))

asyncio.run(main(sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3])))
"""


def test_x_forwarded_for_is_not_believed_by_default(servers: dict[str, IdentityServer]) -> None:
    server = servers["default"]
    for _ in range(10):
        assert login(server, "xff-victim@attack.e2e.test", "wrong").status_code == 403
    assert login(server, "xff-victim@attack.e2e.test", "wrong").status_code == 429
    for claimed in ["203.0.113.7", "203.0.113.8, 198.51.100.1", "::1"]:
        spoofed = login(server, "xff-victim@attack.e2e.test", "wrong", **{"X-Forwarded-For": claimed})
        assert spoofed.status_code == 429, claimed
    spoofed = login(
        server, "xff-victim@attack.e2e.test", "wrong", **{"Forwarded": "for=203.0.113.9", "X-Real-IP": "1.2.3.4"}
    )
    assert spoofed.status_code == 429


def test_x_forwarded_for_from_a_trusted_proxy_is_read_right_to_left(
    servers: dict[str, IdentityServer], database_url: str
) -> None:
    server = servers["proxied"]
    user = "xff-proxied@attack.e2e.test"
    for n in range(10):
        # The client wrote the left part; the trusted proxy appended 203.0.113.7: only that one counts.
        answer = login(server, user, "wrong", **{"X-Forwarded-For": f"10.0.0.{n}, 203.0.113.7"})
        assert answer.status_code == 403
    assert login(server, user, "wrong", **{"X-Forwarded-For": "9.9.9.9, 203.0.113.7"}).status_code == 429
    assert login(server, user, "wrong", **{"X-Forwarded-For": "203.0.113.8"}).status_code == 403  # another user
    time.sleep(1)  # the audit writer stores in the background
    rows = query(database_url, "SELECT ip, client_ip FROM log_event WHERE user_name = 'xff-proxied@attack.e2e.test'")
    assert {row[0] for row in rows} == {"203.0.113.7", "203.0.113.8"}


def test_auth0_forwarded_for_from_a_trusted_backend(servers: dict[str, IdentityServer]) -> None:
    server = servers["default"]
    form = {
        "grant_type": REALM,
        "client_id": BACKEND,
        "client_secret": BACKEND_SECRET,
        "realm": "attack",
        "username": "backend-user@attack.e2e.test",
        "password": "wrong",
    }
    for _ in range(10):
        assert (
            httpx.post(server.token_url, data=form, headers={"auth0-forwarded-for": "198.51.100.20"}).status_code == 403
        )
    assert httpx.post(server.token_url, data=form, headers={"auth0-forwarded-for": "198.51.100.20"}).status_code == 429
    assert httpx.post(server.token_url, data=form, headers={"auth0-forwarded-for": "198.51.100.21"}).status_code == 403


def test_two_instances_share_one_count(servers: dict[str, IdentityServer]) -> None:
    user = "two-instances@attack.e2e.test"
    answers = [login(servers["a" if n % 2 else "b"], user, "wrong").status_code for n in range(10)]
    assert answers == [403] * 10
    assert login(servers["a"], user, "wrong").status_code == 429
    assert login(servers["b"], user, "wrong").status_code == 429
    # A concurrent burst split across both instances cannot outrun the shared count either.
    other = "two-instances-burst@attack.e2e.test"

    async def burst() -> list[int]:
        async with httpx.AsyncClient(timeout=60) as client:
            form = {"grant_type": REALM, "client_id": PUBLIC, "realm": "attack", "username": other, "password": "x"}
            urls = [servers["a" if n % 2 else "b"].token_url for n in range(40)]
            return [r.status_code for r in await asyncio.gather(*(client.post(url, data=form) for url in urls))]

    statuses = Counter(asyncio.run(burst()))
    # Exactly ten reach the hash; the rest are refused: blocked (429), or shed by a full hash queue (503).
    assert statuses[403] == 10 and statuses[429] + statuses[503] == 30, statuses


def test_shedding_keeps_cheap_endpoints_fast_while_200_password_requests_queue(
    servers: dict[str, IdentityServer], database_url: str
) -> None:
    server = servers["shedding"]
    first = login(server, SHED_USER, SHED_PASSWORD)
    assert first.status_code == 200, first.text
    refresh_token = httpx.post(
        server.token_url,
        data={
            "grant_type": REALM,
            "client_id": PUBLIC,
            "realm": "attack",
            "username": SHED_USER,
            "password": SHED_PASSWORD,
            "scope": "offline_access",
            "audience": API,
        },
    ).json()["refresh_token"]

    # The flood comes from another process, so the probes below are not delayed by the flooding client's own loop.
    flood = subprocess.Popen(
        [sys.executable, "-c", FLOOD, server.token_url, json.dumps(form_of(SHED_USER, SHED_PASSWORD)), "200"],
        stdout=subprocess.PIPE,
        text=True,
    )
    time.sleep(0.3)  # let the flood fill the queue
    jwks: list[float] = []
    refresh: list[float] = []
    with httpx.Client(timeout=60) as client:
        for _ in range(25):
            start = time.perf_counter()
            assert client.get(server.jwks_url).status_code == 200
            jwks.append(time.perf_counter() - start)
            start = time.perf_counter()
            answer = client.post(
                server.token_url,
                data={"grant_type": "refresh_token", "client_id": PUBLIC, "refresh_token": refresh_token},
            )
            refresh.append(time.perf_counter() - start)
            assert answer.status_code == 200, answer.text
            refresh_token = answer.json()["refresh_token"]
    out, _ = flood.communicate(timeout=120)
    passwords = [(status, elapsed, body, retry) for status, elapsed, body, retry in json.loads(out)]
    result = {"passwords": passwords, "jwks": jwks, "refresh": refresh}
    statuses = Counter(status for status, _, _, _ in passwords)
    shed = [(elapsed, (body, retry)) for status, elapsed, body, retry in passwords if status == 503]
    served = [elapsed for status, elapsed, _, _ in passwords if status == 200]
    figures = {
        "statuses": dict(statuses),
        "503 p50 ms": round(1000 * statistics.median(e for e, _ in shed), 1) if shed else None,
        "200 p50 ms": round(1000 * statistics.median(served), 1) if served else None,
        "200 max ms": round(1000 * max(served), 1) if served else None,
        "jwks p99 ms": round(1000 * percentile(result["jwks"], 99), 1),
        "refresh p99 ms": round(1000 * percentile(result["refresh"], 99), 1),
    }
    print("shedding:", json.dumps(figures))
    assert set(statuses) <= {200, 503}, statuses
    assert statuses[503] >= 100 and statuses[200] >= 3, statuses
    for _, (body, retry) in shed:
        assert body["error"] == "temporarily_unavailable"
        assert int(retry) >= 1
    # The server's own time for each answer (its request log): the flooding client's figures above also contain
    # the client's time to open 200 connections on a loaded machine.
    server_ms: dict[int, list[float]] = {200: [], 503: []}
    for line in server.process.stderr().splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("logger") == "identity.request" and entry.get("path") == "/oauth/token":
            server_ms.setdefault(entry["status"], []).append(entry["duration_ms"])
    figures["server 503 p50 ms"] = statistics.median(server_ms[503]) if server_ms[503] else None
    figures["server 200 max ms"] = max(server_ms[200]) if server_ms[200] else None
    print("shedding (server side):", json.dumps(figures))
    # Generous bounds for a shared, loaded 2-core machine (figures are printed): the point is that nobody waits
    # behind 200 hashes (~10 s of Argon2 on one worker) and that cheap endpoints keep answering.
    assert len(server_ms[503]) >= 100, figures
    # A refusal costs no hash: on a quiet machine it takes milliseconds (the goal is under 100 ms); on a loaded one
    # the event loop itself is starved, so the bound is relative to what a hash-bound answer took meanwhile.
    assert statistics.median(server_ms[503]) < max(1000.0, 0.75 * max(server_ms[200])), figures
    assert max(served) < 15.0, figures
    assert percentile(result["jwks"], 99) < 2.0, figures
    assert percentile(result["refresh"], 99) < 3.0, figures
    time.sleep(1)  # the audit writer stores in the background
    logged = query(database_url, "SELECT count(*) FROM log_event WHERE type = 'api_limit'")
    assert logged[0][0] >= 1


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))]
