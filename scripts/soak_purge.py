"""Soak: many logins against one server that purges periodically; do the tables stay flat?

Every login leaves rows behind: a customer's login (openid offline_access) a refresh-token family, the userinfo
claims of its access token and an audit event; an employee's login (a rule demands MFA there) an mfa transaction and
an audit event. Lifetimes are short here (refresh tokens 20 s, access tokens 60 s, mfa_tokens 60 s) and the server
purges every 5 s (IDENTITY_PURGE_INTERVAL), so each table should level off at about rate x lifetime (refresh-token
families: plus the ten minutes a dead family is kept, `identity.housekeeping.DEAD_FAMILY_RETENTION`) instead of
growing with the count.

The soak measures table growth, not hashing: the server runs with cheap Argon2 parameters (t=1, 1 MiB) and a hash
queue deep enough for every connection (no 503 load shedding), so the run reaches --logins successful logins (a 200,
or the employee's 403 mfa_required) in bounded time. Audit events (``log_event``) are kept for
IDENTITY_LOG_RETENTION_DAYS by design; to show that the purge bounds them by that window, --old-events events dated
past the window are written before the server starts: the first purge must remove them all, and what stays is the
events of the window. Every table's row count is sampled every --sample-every seconds.

    .venv/bin/python scripts/soak_purge.py [--logins 100000] [--connections 16] [--workers 2] [--sqlite]

All traffic goes to 127.0.0.1; the run stops after --logins successful logins or --max-seconds.
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
RETENTION_DAYS = 30
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
token_lifetime = 60
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


def all_tables() -> list[str]:
    """Every table of the schema (the models register them)."""
    from sqlmodel import SQLModel

    import identity.store.models  # noqa: F401

    return sorted(SQLModel.metadata.tables)


async def count_rows(url: str, tables: list[str]) -> dict[str, int]:
    from sqlalchemy import text

    from identity.settings import normalize_database_url
    from identity.store.db import create_engine

    engine = create_engine(normalize_database_url(url))
    try:
        async with engine.connect() as conn:
            return {t: int((await conn.execute(text(f'SELECT COUNT(*) FROM "{t}"'))).scalar() or 0) for t in tables}  # noqa: S608
    finally:
        await engine.dispose()


async def write_old_events(url: str, count: int) -> None:
    """``count`` audit events dated a day past the retention window: the server's first purge must remove them."""
    from datetime import UTC, datetime, timedelta

    from sqlalchemy import insert

    from identity.settings import normalize_database_url
    from identity.store.db import create_engine
    from identity.store.models import LogEventRow

    date = datetime.now(UTC) - timedelta(days=RETENTION_DAYS + 1)
    engine = create_engine(normalize_database_url(url))
    try:
        async with engine.begin() as conn:
            for start in range(0, count, 5000):
                rows = [
                    {"log_id": f"soak-old-{n:08d}", "date": date, "type": "s", "description": "soak", "details": {}}
                    for n in range(start, min(count, start + 5000))
                ]
                await conn.execute(insert(LogEventRow), rows)
    finally:
        await engine.dispose()


async def drive(base: str, url: str, args: argparse.Namespace) -> dict[str, Any]:
    done = {"answers": 0, "logins": 0, "unexpected": 0}
    statuses: dict[str, int] = {}
    tables = all_tables()
    samples: list[tuple[float, int, dict[str, int]]] = []
    started = time.monotonic()
    stop_at = started + args.max_seconds

    def running() -> bool:
        return done["logins"] < args.logins and time.monotonic() < stop_at

    async def worker(n: int) -> None:
        # A connection per request: the server's worker processes share the listening socket, and each new
        # connection goes to one that is free, so no worker sits idle behind another's keep-alive connections.
        limits = httpx.Limits(max_keepalive_connections=0)
        async with httpx.AsyncClient(timeout=60, limits=limits) as client:
            while running():
                employee = n % 2 == 1
                form = {
                    "grant_type": "http://auth0.com/oauth/grant-type/password-realm",
                    "client_id": "soak",
                    "realm": "employees" if employee else "customers",
                    "username": "employee@soak.test" if employee else "customer@soak.test",
                    "password": "soak employee password" if employee else "soak customer password",
                    "scope": "openid offline_access",
                }
                response = await client.post(base + "/oauth/token", data=form)
                done["answers"] += 1
                key = str(response.status_code)
                if response.status_code >= 400:
                    key += " " + str(response.json().get("error"))
                statuses[key] = statuses.get(key, 0) + 1
                if key == ("403 mfa_required" if employee else "200"):
                    done["logins"] += 1
                else:
                    done["unexpected"] += 1

    async def sampler() -> None:
        while running():
            samples.append((round(time.monotonic() - started, 1), done["logins"], await count_rows(url, tables)))
            await asyncio.sleep(args.sample_every)

    await asyncio.gather(sampler(), *(worker(n) for n in range(args.connections)))
    elapsed = time.monotonic() - started
    samples.append((round(elapsed, 1), done["logins"], await count_rows(url, tables)))
    half = len(samples) // 2
    report: dict[str, Any] = {
        "successful_logins": done["logins"],
        "answers": done["answers"],
        "unexpected_answers": done["unexpected"],
        "answers_by_status": statuses,
        "seconds": round(elapsed, 1),
        "logins_per_second": round(done["logins"] / elapsed, 1),
        "tables": {},
    }
    for table in tables:
        first = max((s[2][table] for s in samples[:half]), default=0)
        second = max((s[2][table] for s in samples[half:]), default=0)
        report["tables"][table] = {
            "max_first_half": first,
            "max_second_half": second,
            "at_end": samples[-1][2][table],
        }
    report["samples"] = [{"t": t, "logins": n, **rows} for t, n, rows in samples]
    return report


def markdown(report: dict[str, Any], every: float) -> str:
    """The samples as a table, one row per ``every`` seconds: the tables that ever held a row, then the empty ones."""
    samples = report["samples"]
    tables = list(report["tables"])
    changing = [t for t in tables if len({s[t] for s in samples}) > 1]
    constant = [t for t in tables if t not in changing]
    picked, next_t = [], 0.0
    for sample in samples:
        if sample["t"] >= next_t or sample is samples[-1]:
            picked.append(sample)
            next_t = sample["t"] + every
    lines = [
        "| t (s) | logins | " + " | ".join(changing) + " |",
        "|" + "---:|" * (2 + len(changing)),
    ]
    lines += [f"| {s['t']:.0f} | {s['logins']:,} | " + " | ".join(f"{s[t]:,}" for t in changing) + " |" for s in picked]
    lines.append("")
    lines.append("Constant through the run: " + ", ".join(f"`{t}` {samples[-1][t]:,}" for t in constant) + ".")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--logins", type=int, default=100_000, help="successful logins to reach")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2, help="server processes (identity serve --workers)")
    parser.add_argument("--max-seconds", type=float, default=3600)
    parser.add_argument("--sample-every", type=float, default=5)
    parser.add_argument("--old-events", type=int, default=20_000, help="audit events written past the retention")
    parser.add_argument("--sqlite", action="store_true")
    parser.add_argument("--markdown", type=float, default=0, metavar="SECONDS",
                        help="also print the samples as a Markdown table, one row per SECONDS")  # fmt: skip
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="identity-soak-"))
    made = None if args.sqlite else postgres_database()
    url, drop = made if made else (f"sqlite:///{work / 'soak.db'}", lambda: None)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("IDENTITY_")},
        "IDENTITY_DATABASE_URL": url,
        "IDENTITY_ENCRYPTION_KEYS": "k1=" + base64.b64encode(secrets.token_bytes(32)).decode(),
        "IDENTITY_PURGE_INTERVAL": "5",
        "IDENTITY_LOG_RETENTION_DAYS": str(RETENTION_DAYS),
        # Cheap hashing and no load shedding: the soak is about table sizes, not Argon2 (docs/benchmarks.md measures
        # that), and a 503 leaves no row behind.
        "IDENTITY_ARGON2_TIME_COST": "1",
        "IDENTITY_ARGON2_MEMORY_KIB": "1024",
        "IDENTITY_HASH_QUEUE": str(max(64, 4 * args.connections)),
        "IDENTITY_HASH_WAIT_MS": "60000",
        "IDENTITY_LOG_LEVEL": "WARNING",
    }
    server = None
    try:
        subprocess.run([IDENTITY, "db", "upgrade"], env=env, check=True, capture_output=True)
        (work / "tenant.toml").write_text(TENANT)
        subprocess.run(
            [IDENTITY, "tenant", "apply", str(work / "tenant.toml")], env=env, check=True, capture_output=True
        )
        asyncio.run(write_old_events(url, args.old_events))
        port = free_port()
        log = (work / "server.log").open("wb")
        command = [IDENTITY, "serve", "--port", str(port), "--workers", str(args.workers)]
        server = subprocess.Popen(command, env=env, stdout=log, stderr=log)
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
        report["old_events_written"] = args.old_events
        report["server_workers"] = args.workers
        report["load_average_1m_at_end"] = os.getloadavg()[0]
        print(json.dumps(report, indent=2))
        if args.markdown:
            print(markdown(report, args.markdown))
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
        drop()


if __name__ == "__main__":
    main()
