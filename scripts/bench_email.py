#!/usr/bin/env python3
"""Benchmark emailed codes on ONE identity worker: /mfa/challenge (a code sent over SMTP) and the mfa-oob grant.

Usage (from the repository root, with the test extra installed: the mail server is aiosmtpd)::

    .venv/bin/python scripts/bench_email.py [--users 200] [--connections 8]
    .venv/bin/python scripts/bench_email.py --database-url postgresql://postgres@127.0.0.1:5432/postgres

A real SMTP server (aiosmtpd, `tests.smtp_support.SmtpSink`, in this process's thread) on 127.0.0.1 receives every
message. Each user enrolls an email factor through the MFA API (not timed: the code read from the email confirms it).
Then every user gets a fresh mfa_token (not timed) and the N ``/mfa/challenge`` requests are sent over C keep-alive
connections and timed: each takes a send from the user's bucket, stores the hashed code, commits, and hands the
message to the mail server before answering. Then the N mfa-oob grants with the codes read from the emails, timed:
each holds the user's attempt bucket, checks the code, spends it and burns the mfa_token in one transaction, and
signs the tokens. Load goes only to 127.0.0.1 and is bounded by N.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))
from bench_webauthn import IDENTITY, free_port, load, report  # noqa: E402  (the same harness)

from identity.mail import Mailer  # noqa: E402
from tests.smtp_support import SmtpSink  # noqa: E402  (the repository's test helper)

MFA_OOB = "http://auth0.com/oauth/grant-type/mfa-oob"
PASSWORD = "bench password 0123"


async def timed(
    url: str, bodies: list[dict[str, Any]], connections: int
) -> tuple[float, list[float], list[int], list[dict[str, Any]]]:
    """`bench_webauthn.timed`, keeping each answer at its body's index (the oob_codes go with their users)."""
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    queue: asyncio.Queue[int] = asyncio.Queue()
    for index in range(len(bodies)):
        queue.put_nowait(index)
    latencies: list[float] = []
    statuses: list[int] = []
    answers: list[dict[str, Any]] = [{} for _ in bodies]
    async with httpx.AsyncClient(limits=limits, timeout=120) as client:

        async def worker() -> None:
            while not queue.empty():
                index = queue.get_nowait()
                start = time.perf_counter()
                response = await client.post(url, json=bodies[index])
                latencies.append(time.perf_counter() - start)
                statuses.append(response.status_code)
                answers[index] = response.json()

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(connections)))
        return time.perf_counter() - start, latencies, statuses, answers


async def mailer_alone(sink: SmtpSink, messages: int = 100) -> tuple[float, float]:
    """Wall and CPU milliseconds per message of `Mailer.send_code` alone, one after the other (the sink included)."""
    mailer = Mailer(sink.settings())
    wall, cpu = time.perf_counter(), time.process_time()
    for i in range(messages):
        await mailer.send_code(to=f"alone{i}@bench.test", code="123456", issuer_name="Bench", minutes=5)
    return 1000 * (time.perf_counter() - wall) / messages, 1000 * (time.process_time() - cpu) / messages


def tenant(users: int) -> str:
    lines = [
        '[tenant]\ndefault_directory = "people"\ndefault_audience = "https://api.bench/"\nmfa_policy = "always"',
        'brute_force_max_attempts = 100\nsuspicious_ip_throttling = { allowlist = ["127.0.0.1"] }',
        '[[connections]]\nname = "people"',
        '[[apis]]\nidentifier = "https://api.bench/"\nscopes = ["read"]',
        '[[clients]]\nclient_id = "app"\ntoken_endpoint_auth_method = "none"\nconnections = ["people"]',
        f'grant_types = ["password", "{MFA_OOB}"]',
    ]
    lines += [
        f'[[users]]\nconnection = "people"\nemail = "u{i}@bench.test"\npassword = "{PASSWORD}"' for i in range(users)
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-email-"))
    key = base64.b64encode(secrets.token_bytes(32)).decode()
    database_url = args.database_url or f"sqlite:///{work}/bench.db"
    port = free_port()
    with SmtpSink() as sink:
        wall_ms, cpu_ms = asyncio.run(mailer_alone(sink))
        print(
            f"Mailer.send_code alone, serially: {wall_ms:.1f} ms wall, {cpu_ms:.1f} ms CPU per message (sink included)"
        )
        sink.clear()
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("IDENTITY_")},
            **sink.env,
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
        try:
            run(base, sink, args.users, args.connections, database_url)
        finally:
            server.terminate()
            server.wait(timeout=30)


def run(base: str, sink: SmtpSink, users: int, connections: int, database_url: str) -> None:
    with httpx.Client(base_url=base, timeout=60) as http:
        for _ in range(300):
            try:
                if http.get("/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)

        def mfa_token(i: int) -> str:
            login = {"grant_type": "password", "client_id": "app", "username": f"u{i}@bench.test"}
            token: str = http.post("/oauth/token", data={**login, "password": PASSWORD}).json()["mfa_token"]
            return token

        for i in range(users):
            token = mfa_token(i)
            body = {"authenticator_types": ["oob"], "oob_channels": ["email"]}
            answer = http.post("/mfa/associate", json=body, headers={"Authorization": f"Bearer {token}"})
            assert answer.status_code == 200, answer.text
            code = sink.code_for(f"u{i}@bench.test")
            grant = {"grant_type": MFA_OOB, "client_id": "app", "mfa_token": token}
            confirmed = http.post(
                "/oauth/token", data={**grant, "oob_code": answer.json()["oob_code"], "binding_code": code}
            )
            assert confirmed.status_code == 200, confirmed.text
        sink.clear()
        tokens = [mfa_token(i) for i in range(users)]
        challenges: list[dict[str, Any]] = [
            {"client_id": "app", "mfa_token": token, "challenge_type": "oob"} for token in tokens
        ]
        print(f"load before (1 / 5 min): {load()}")
        print("| request | requests | 200 | per s | p50 ms | p99 ms |\n|---|---|---|---|---|---|")
        sent = asyncio.run(timed(base + "/mfa/challenge", challenges, connections))
        print(report("/mfa/challenge (code emailed)", *sent[:3]))
        grants: list[dict[str, Any]] = []
        for i, (token, answer) in enumerate(zip(tokens, sent[3], strict=True)):
            code = sink.code_for(f"u{i}@bench.test")
            grant = {"grant_type": MFA_OOB, "client_id": "app", "mfa_token": token}
            grants.append({**grant, "oob_code": answer["oob_code"], "binding_code": code})
        print(report("mfa-oob grant", *asyncio.run(timed(base + "/oauth/token", grants, connections))[:3]))
        print(f"load after (1 / 5 min): {load()}; database {database_url.split(':')[0]}, one worker, "
              f"{connections} connections; {len(sink.messages)} emails received")  # fmt: skip


if __name__ == "__main__":
    main()
