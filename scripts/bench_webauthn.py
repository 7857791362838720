#!/usr/bin/env python3
"""Benchmark the two WebAuthn grants on ONE identity worker: mfa-webauthn (second factor) and webauthn (passkey).

Usage (from the repository root, with the test extra installed: the software authenticator is soft-webauthn)::

    .venv/bin/python scripts/bench_webauthn.py [--users 200] [--connections 8]
    .venv/bin/python scripts/bench_webauthn.py --database-url postgresql://postgres@127.0.0.1:5432/postgres

Each user enrolls one key (user-verifying, so a passkey login is complete on its own) through the MFA API. Then, not
timed, every user gets a fresh mfa_token and WebAuthn request options (``/mfa/challenge``), and the key signs them;
the N mfa-webauthn grants are sent over C keep-alive connections and timed. The same again for passkey logins:
``/passkey/challenge`` per user (not timed), N webauthn grants (timed). Each grant finds the ceremony by its
challenge, verifies the ES256 assertion with py_webauthn, burns the challenge, moves the sign count and (mfa) burns
the mfa_token in one transaction, and signs the tokens. Load goes only to 127.0.0.1 and is bounded by N.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tests.e2e.webauthn_support import SoftKey, okta_form  # noqa: E402  (the repository's test helper)

IDENTITY = str(Path(sys.executable).parent / "identity")
MFA_WEBAUTHN = "urn:okta:params:oauth:grant-type:mfa-webauthn"
WEBAUTHN = "urn:okta:params:oauth:grant-type:webauthn"
PASSWORD = "bench password 0123"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def tenant(users: int) -> str:
    lines = [
        '[tenant]\ndefault_directory = "people"\ndefault_audience = "https://api.bench/"\nmfa_policy = "always"',
        # One address plays every user here: passkey challenges would draw from its suspicious-IP bucket.
        'brute_force_max_attempts = 100\nsuspicious_ip_throttling = { allowlist = ["127.0.0.1"] }',
        '[[connections]]\nname = "people"',
        '[[apis]]\nidentifier = "https://api.bench/"\nscopes = ["read"]',
        '[[clients]]\nclient_id = "app"\ntoken_endpoint_auth_method = "none"\nconnections = ["people"]',
        f'grant_types = ["password", "{MFA_WEBAUTHN}", "{WEBAUTHN}"]',
    ]
    lines += [
        f'[[users]]\nconnection = "people"\nemail = "u{i}@bench.test"\npassword = "{PASSWORD}"' for i in range(users)
    ]
    return "\n".join(lines) + "\n"


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"{one:.2f} / {five:.2f}"


async def timed(url: str, bodies: list[dict[str, Any]], connections: int) -> tuple[float, list[float], list[int]]:
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)
    latencies: list[float] = []
    statuses: list[int] = []
    async with httpx.AsyncClient(limits=limits, timeout=120) as client:

        async def worker() -> None:
            while not queue.empty():
                body = queue.get_nowait()
                start = time.perf_counter()
                response = await client.post(url, json=body)
                latencies.append(time.perf_counter() - start)
                statuses.append(response.status_code)

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(connections)))
        return time.perf_counter() - start, latencies, statuses


def report(name: str, elapsed: float, latencies: list[float], statuses: list[int]) -> str:
    ok = statuses.count(200)
    ordered = sorted(latencies)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return (
        f"| {name} | {len(statuses)} | {ok} | {ok / elapsed:.1f} | {statistics.median(latencies) * 1000:.0f} "
        f"| {p99 * 1000:.0f} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-webauthn-"))
    key = base64.b64encode(secrets.token_bytes(32)).decode()
    database_url = args.database_url or f"sqlite:///{work}/bench.db"
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("IDENTITY_")},
        "IDENTITY_DATABASE_URL": database_url,
        "IDENTITY_ENCRYPTION_KEYS": f"k1={key}",
        "IDENTITY_ISSUER": f"http://127.0.0.1:{port}/",
        "IDENTITY_ARGON2_TIME_COST": "1",
        "IDENTITY_ARGON2_MEMORY_KIB": "1024",
        "IDENTITY_LOG_LEVEL": "WARNING",
    }
    if args.database_url and args.database_url.startswith("postgres"):
        print("note: the PostgreSQL database must be empty (its tables are created by `identity db upgrade`)")
    subprocess.run([IDENTITY, "db", "upgrade"], env=env, cwd=work, check=True, capture_output=True)
    (work / "tenant.toml").write_text(tenant(args.users))
    subprocess.run([IDENTITY, "tenant", "apply", "tenant.toml"], env=env, cwd=work, check=True, capture_output=True)
    server = subprocess.Popen(
        [IDENTITY, "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=env, cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    origin = f"http://localhost:{port}"
    try:
        with httpx.Client(base_url=base, timeout=60) as http:
            for _ in range(300):
                try:
                    if http.get("/healthz").status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.1)

            def mfa_token(i: int) -> str:
                login = {"grant_type": "password", "client_id": "app", "username": f"u{i}@bench.test"}
                answer = http.post("/oauth/token", data={**login, "password": PASSWORD})
                token: str = answer.json()["mfa_token"]
                return token

            keys = []
            for i in range(args.users):
                token = mfa_token(i)
                options = http.post("/mfa/associate", json={"authenticator_types": ["webauthn"]},
                                    headers={"Authorization": f"Bearer {token}"}).json()["publicKey"]  # fmt: skip
                key_ = SoftKey(user_verified=True)
                created = key_.create(options, origin)
                confirmed = http.post("/oauth/token", data={"grant_type": MFA_WEBAUTHN, "client_id": "app",
                                                            "mfa_token": token, **created["response"]})  # fmt: skip
                assert confirmed.status_code == 200, confirmed.text
                keys.append(key_)
            second: list[dict[str, Any]] = []
            for i, key_ in enumerate(keys):
                token = mfa_token(i)
                asked = {"client_id": "app", "mfa_token": token, "challenge_type": "webauthn"}
                options = http.post("/mfa/challenge", data=asked).json()["publicKey"]
                second.append({"grant_type": MFA_WEBAUTHN, "client_id": "app", "mfa_token": token,
                               **okta_form(key_.get(options, origin))})  # fmt: skip
            print(f"load before (1 / 5 min): {load()}")
            print("| grant | requests | 200 | grants/s | p50 ms | p99 ms |\n|---|---|---|---|---|---|")
            print(report("mfa-webauthn", *asyncio.run(timed(base + "/oauth/token", second, args.connections))))
            passkey: list[dict[str, Any]] = []
            for key_ in keys:
                started = http.post("/passkey/challenge", data={"client_id": "app"}).json()
                passkey.append({"grant_type": WEBAUTHN, "client_id": "app", "auth_session": started["auth_session"],
                                "authn_response": key_.get(started["authn_params_public_key"], origin)})  # fmt: skip
            print(report("webauthn (passkey)", *asyncio.run(timed(base + "/oauth/token", passkey, args.connections))))
            print(f"load after (1 / 5 min): {load()}; database {database_url.split(':')[0]}, one worker, "
                  f"{args.connections} connections")  # fmt: skip
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
