#!/usr/bin/env python3
"""Benchmark the mfa-otp grant on ONE identity worker.

Usage (from the repository root)::

    .venv/bin/python scripts/bench_mfa.py [--users 300] [--connections 8]
    .venv/bin/python scripts/bench_mfa.py --database-url postgresql://postgres@127.0.0.1:5432/postgres

A TOTP time step is accepted once per authenticator, so each measured request needs its own user: the script creates
N users, enrolls each through the MFA API (password grant -> mfa_required -> /mfa/associate -> mfa-otp), then, for
the measurement, gets one fresh mfa_token per user (password grants, not timed), waits for the next 30-second step
and sends the N mfa-otp requests over C keep-alive connections, timing them. Each grant checks the code (with the
replay guard's conditional UPDATE), burns the mfa_token in the same transaction and signs the tokens. Prints a
Markdown table. Load goes only to 127.0.0.1 and is bounded by N.
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

import httpx
import pyotp

ROOT = Path(__file__).resolve().parent.parent
IDENTITY = str(Path(sys.executable).parent / "identity")
MFA_OTP = "http://auth0.com/oauth/grant-type/mfa-otp"
PASSWORD = "bench password 0123"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def tenant(users: int) -> str:
    lines = [
        '[tenant]\ndefault_directory = "people"\ndefault_audience = "https://api.bench/"\nmfa_policy = "if-enrolled"',
        'brute_force_max_attempts = 100\n[[connections]]\nname = "people"',
        '[[apis]]\nidentifier = "https://api.bench/"\nscopes = ["read"]',
        '[[clients]]\nclient_id = "app"\ntoken_endpoint_auth_method = "none"\nconnections = ["people"]',
        f'grant_types = ["password", "{MFA_OTP}"]',
    ]
    lines += [
        f'[[users]]\nconnection = "people"\nemail = "u{i}@bench.test"\npassword = "{PASSWORD}"' for i in range(users)
    ]
    return "\n".join(lines) + "\n"


async def mfa_token(client: httpx.AsyncClient, i: int) -> str:
    data = {"grant_type": "password", "client_id": "app", "username": f"u{i}@bench.test", "password": PASSWORD}
    response = await client.post("/oauth/token", data=data)
    assert response.status_code == 403, response.text
    return str(response.json()["mfa_token"])


async def gather_limited(coros: list, limit: int) -> list:  # type: ignore[type-arg]
    semaphore = asyncio.Semaphore(limit)

    async def one(coro):  # type: ignore[no-untyped-def]
        async with semaphore:
            return await coro

    return await asyncio.gather(*(one(c) for c in coros))


async def scenario(base_url: str, users: int, connections: int) -> dict[str, float]:
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=60) as client:
        # Enroll every user (first mfa_required under "always"-like conditions: no factor yet, so force it
        # through the MFA API audience, which always demands MFA).
        secrets_by_user: dict[int, str] = {}

        async def enroll(i: int) -> None:
            data = {"grant_type": "password", "client_id": "app", "username": f"u{i}@bench.test",
                    "password": PASSWORD, "audience": base_url + "/mfa/"}  # fmt: skip
            token = (await client.post("/oauth/token", data=data)).json()["mfa_token"]
            headers = {"Authorization": f"Bearer {token}"}
            body = {"authenticator_types": ["otp"]}
            secret = (await client.post("/mfa/associate", json=body, headers=headers)).json()["secret"]
            code = pyotp.TOTP(secret).now()
            done = await client.post(
                "/oauth/token", data={"grant_type": MFA_OTP, "client_id": "app", "mfa_token": token, "otp": code}
            )
            assert done.status_code == 200, done.text
            secrets_by_user[i] = secret

        await gather_limited([enroll(i) for i in range(users)], connections)
        tokens = await gather_limited([mfa_token(client, i) for i in range(users)], connections)
        # Enrollment used the current step: wait for the next one so every code is new.
        await asyncio.sleep(30 - time.time() % 30 + 0.5)
        codes = [pyotp.TOTP(secrets_by_user[i]).now() for i in range(users)]
        latencies: list[float] = []

        async def grant(i: int) -> int:
            started = time.perf_counter()
            response = await client.post(
                "/oauth/token",
                data={"grant_type": MFA_OTP, "client_id": "app", "mfa_token": tokens[i], "otp": codes[i]},
            )
            latencies.append(time.perf_counter() - started)
            return response.status_code

        started = time.perf_counter()
        statuses = await gather_limited([grant(i) for i in range(users)], connections)
        elapsed = time.perf_counter() - started
    latencies.sort()
    return {
        "ok": statuses.count(200),
        "requests": len(statuses),
        "per_second": statuses.count(200) / elapsed,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99) - 1] * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--users", type=int, default=300)
    parser.add_argument("--connections", type=int, default=8)
    options = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="identity-bench-mfa-"))
    database_url = options.database_url or f"sqlite:///{work / 'bench.db'}"
    drop = None
    if database_url.startswith("postgresql"):
        import asyncpg

        name = f"identity_bench_{secrets.token_hex(4)}"

        async def run_sql(statement: str) -> None:
            conn = await asyncpg.connect(options.database_url)
            try:
                await conn.execute(statement)
            finally:
                await conn.close()

        asyncio.run(run_sql(f'CREATE DATABASE "{name}"'))
        database_url = options.database_url.rsplit("/", 1)[0] + "/" + name
        drop = lambda: asyncio.run(run_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))  # noqa: E731
    port = free_port()
    env = {
        **os.environ,
        "IDENTITY_DATABASE_URL": database_url,
        "IDENTITY_ISSUER": f"http://127.0.0.1:{port}/",
        "IDENTITY_ENCRYPTION_KEYS": "b1=" + base64.b64encode(secrets.token_bytes(32)).decode(),
    }
    (work / "tenant.toml").write_text(tenant(options.users))
    server = None
    try:
        subprocess.run([IDENTITY, "db", "upgrade"], env=env, check=True, cwd=work, capture_output=True)
        subprocess.run([IDENTITY, "tenant", "apply", "tenant.toml"], env=env, check=True, cwd=work, capture_output=True)
        server = subprocess.Popen(
            [IDENTITY, "serve", "--port", str(port)],
            env=env,
            cwd=work,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        base_url = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                if httpx.get(base_url + "/healthz").status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        result = asyncio.run(scenario(base_url, options.users, options.connections))
    finally:
        if server is not None:
            server.terminate()
            server.wait(10)
        if drop is not None:
            drop()
    kind = "PostgreSQL" if database_url.startswith("postgresql") else "SQLite"
    print(f"| mfa-otp grants, one worker, {kind} | {result['per_second']:.1f} /s ({result['ok']:.0f} of "
          f"{result['requests']:.0f} OK, {options.connections} connections) | p50 {result['p50_ms']:.1f} ms, "
          f"p99 {result['p99_ms']:.1f} ms |")  # fmt: skip


if __name__ == "__main__":
    main()
