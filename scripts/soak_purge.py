"""Soak: many logins against one server that purges periodically; do the tables stay flat?

Every login leaves rows behind: a customer's login (with offline_access) a refresh-token family, an employee's login
(a rule demands MFA there) an mfa transaction. Lifetimes are short here (refresh tokens 20 s, mfa_tokens 60 s) and
the server purges every 5 s (IDENTITY_PURGE_INTERVAL), so each table should level off at about rate x lifetime
(refresh-token families: plus the ten minutes a dead family is kept) instead of growing with the count. Table sizes
are sampled every few seconds; the report compares the largest size in the second half of the run with the first
half, and with the number of logins.

    .venv/bin/python scripts/soak_purge.py [--logins 100000] [--connections 16] [--sqlite]

All traffic goes to 127.0.0.1; the run stops after --logins logins or --max-seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_rotation import IDENTITY, free_port, postgres_database

AUDIENCE = "https://api.soak.test/"
TABLES = ("mfa_transaction", "refresh_token", "attack_counter", "log_event", "web_session", "userinfo_claims")
TENANT = f"""
[tenant]
default_directory = "customers"
default_audience = "{AUDIENCE}"
mfa_token_lifetime = 60

[[connections]]
name = "customers"

[[connections]]
name = "employees"

[[apis]]
identifier = "{AUDIENCE}"
name = "Soak API"
scopes = ["read:things"]
token_lifetime = 600
allow_offline_access = true

[[clients]]
client_id = "soak"
name = "Soak"
token_endpoint_auth_method = "none"
grant_types = ["password", "http://auth0.com/oauth/grant-type/password-realm", "refresh_token"]
connections = ["customers", "employees"]
refresh_token = {{ expiration_type = "expiring", token_lifetime = 20, idle_token_lifetime = 20 }}

[[users]]
connection = "customers"
email = "customer@soak.test"
password = "soak customer password"

[[users]]
connection = "employees"
email = "employee@soak.test"
password = "soak employee password"

[[rules]]
name = "employees need MFA"
handler = "identity.rules.builtin:require_mfa_for_connections"
config = {{ connections = ["employees"] }}
"""


async def count_rows(url: str) -> dict[str, int]:
    from sqlalchemy import text

    from identity.settings import normalize_database_url
    from identity.store.db import create_engine

    engine = create_engine(normalize_database_url(url))
    try:
        async with engine.connect() as conn:
            return {t: int((await conn.execute(text(f"SELECT COUNT(*) FROM {t}"))).scalar() or 0) for t in TABLES}  # noqa: S608
    finally:
        await engine.dispose()


async def drive(base: str, url: str, args: argparse.Namespace) -> dict[str, Any]:
    done = {"logins": 0, "non_expected": 0}
    samples: list[tuple[float, int, dict[str, int]]] = []
    started = time.monotonic()
    stop_at = started + args.max_seconds

    async def worker(n: int) -> None:
        async with httpx.AsyncClient(timeout=30) as client:
            while done["logins"] < args.logins and time.monotonic() < stop_at:
                employee = n % 2 == 1
                form = {
                    "grant_type": "http://auth0.com/oauth/grant-type/password-realm",
                    "client_id": "soak",
                    "realm": "employees" if employee else "customers",
                    "username": "employee@soak.test" if employee else "customer@soak.test",
                    "password": "soak employee password" if employee else "soak customer password",
                    "scope": "offline_access",
                }
                response = await client.post(base + "/oauth/token", data=form)
                expected = 403 if employee else 200
                done["logins"] += 1
                if response.status_code != expected or (employee and response.json().get("error") != "mfa_required"):
                    done["non_expected"] += 1

    async def sampler() -> None:
        while done["logins"] < args.logins and time.monotonic() < stop_at:
            samples.append((round(time.monotonic() - started, 1), done["logins"], await count_rows(url)))
            await asyncio.sleep(args.sample_every)

    await asyncio.gather(sampler(), *(worker(n) for n in range(args.connections)))
    samples.append((round(time.monotonic() - started, 1), done["logins"], await count_rows(url)))
    half = len(samples) // 2
    report: dict[str, Any] = {
        "logins": done["logins"],
        "unexpected_answers": done["non_expected"],
        "seconds": round(time.monotonic() - started, 1),
        "logins_per_second": round(done["logins"] / (time.monotonic() - started), 1),
        "tables": {},
    }
    for table in TABLES:
        first = max((s[2][table] for s in samples[:half]), default=0)
        second = max((s[2][table] for s in samples[half:]), default=0)
        report["tables"][table] = {
            "max_first_half": first,
            "max_second_half": second,
            "at_end": samples[-1][2][table],
        }
    report["samples"] = [{"t": t, "logins": n, **rows} for t, n, rows in samples]
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--logins", type=int, default=100_000)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--max-seconds", type=float, default=1800)
    parser.add_argument("--sample-every", type=float, default=5)
    parser.add_argument("--sqlite", action="store_true")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="identity-soak-"))
    made = None if args.sqlite else postgres_database()
    url, drop = made if made else (f"sqlite:///{work / 'soak.db'}", lambda: None)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("IDENTITY_")},
        "IDENTITY_DATABASE_URL": url,
        "IDENTITY_ENCRYPTION_KEYS": "k1=" + base64.b64encode(secrets.token_bytes(32)).decode(),
        "IDENTITY_PURGE_INTERVAL": "5",
        "IDENTITY_ARGON2_TIME_COST": "1",
        "IDENTITY_ARGON2_MEMORY_KIB": "8192",
        "IDENTITY_LOG_LEVEL": "WARNING",
    }
    server = None
    try:
        subprocess.run([IDENTITY, "db", "upgrade"], env=env, check=True, capture_output=True)
        (work / "tenant.toml").write_text(TENANT)
        subprocess.run(
            [IDENTITY, "tenant", "apply", str(work / "tenant.toml")], env=env, check=True, capture_output=True
        )
        port = free_port()
        log = (work / "server.log").open("wb")
        server = subprocess.Popen([IDENTITY, "serve", "--port", str(port)], env=env, stdout=log, stderr=log)
        base = f"http://127.0.0.1:{port}"
        for _ in range(300):
            try:
                if httpx.get(base + "/readyz").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        report = asyncio.run(drive(base, url, args))
        report["database"] = "postgresql" if made else "sqlite"
        report["load_average_1m_at_end"] = os.getloadavg()[0]
        print(json.dumps(report, indent=2))
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
        drop()


if __name__ == "__main__":
    main()
