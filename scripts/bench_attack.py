"""Attack protection figures (issue 11): a blocked request against a normal failed one, the burst, the audit cost.

    .venv/bin/python scripts/bench_attack.py [--database postgresql://postgres@127.0.0.1:5432/postgres] [--rounds 40]

The app is served by uvicorn on 127.0.0.1 in this process (real Argon2id at the default cost, one hash worker
per CPU), on a fresh SQLite database in a temporary directory, or in a fresh database next to the PostgreSQL URL
given. Prints one JSON object:

- ``failed_ms`` / ``blocked_ms`` / ``unknown_ms``: p50 and p99 of sequential logins: wrong password (each from its
  own address, so none is blocked), a blocked identifier and address (refused before any hash), an unknown user;
- ``burst``: 50 concurrent wrong passwords for one account: answers, Argon2 computations, wall time;
- ``audit_emit_us``: the cost of writing one audit event on the login's path (log record + queue), per event.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchkit import summary

from identity.app import create_app
from identity.audit import AuditLog, LogEvent
from identity.settings import Settings
from identity.store.db import migrate
from tests.api.serving import serving
from tests.conftest import _postgres_database, apply

SECRET = "bench-backend-secret-0123456789abcdefghij"
PASSWORD = "a long bench password 2026"
TENANT = {
    "tenant": {"default_directory": "bench", "suspicious_ip_throttling": {"enabled": False}},
    "connections": [{"name": "bench"}],
    "clients": [
        {
            "client_id": "backend",
            "client_secret": SECRET,
            "token_endpoint_auth_method": "client_secret_post",
            "grant_types": ["password"],
            "connections": ["bench"],
            "is_token_endpoint_ip_header_trusted": True,
        }
    ],
    "users": [{"connection": "bench", "email": "user@bench.test", "password": PASSWORD}],
}


def form(username: str, password: str) -> dict[str, str]:
    return {
        "grant_type": "password",
        "client_id": "backend",
        "client_secret": SECRET,
        "username": username,
        "password": password,
    }


async def measure(settings: Settings, rounds: int) -> dict[str, object]:
    app = create_app(settings)
    hasher = app.state.services.hasher
    async with serving(app) as client:

        async def timed(username: str, password: str, address: str, expect: int) -> float:
            start = time.perf_counter()
            response = await client.post(
                "/oauth/token", data=form(username, password), headers={"auth0-forwarded-for": address}
            )
            elapsed = time.perf_counter() - start
            assert response.status_code == expect, response.text
            return elapsed

        await timed("user@bench.test", PASSWORD, "192.0.2.1", 200)  # warm up
        failed = [await timed("user@bench.test", "wrong", f"198.51.100.{n % 250}", 403) for n in range(rounds)]
        for _ in range(10):
            await timed("user@bench.test", "wrong", "203.0.113.1", 403)
        blocked = [await timed("user@bench.test", PASSWORD, "203.0.113.1", 429) for _ in range(rounds)]
        unknown = [await timed(f"nobody{n}@bench.test", "x", f"198.51.100.{n % 250}", 403) for n in range(rounds)]

        before = hasher.computations
        start = time.perf_counter()
        answers = await asyncio.gather(
            *(
                client.post(
                    "/oauth/token",
                    data=form("user@bench.test", f"guess {n}"),
                    headers={"auth0-forwarded-for": "203.0.113.2"},
                )
                for n in range(50)
            )
        )
        burst = {
            "answers": dict(Counter(answer.status_code for answer in answers)),
            "argon2_computations": hasher.computations - before,
            "wall_ms": round(1000 * (time.perf_counter() - start), 1),
        }

    audit = AuditLog(None)
    event = LogEvent(type="fp", client_id="backend", ip="198.51.100.1", user_name="user@bench.test")
    start = time.perf_counter()
    for _ in range(20_000):
        audit.emit(event)
    emit_us = (time.perf_counter() - start) / 20_000 * 1e6
    return {
        "failed_ms": summary(failed),
        "blocked_ms": summary(blocked),
        "unknown_ms": summary(unknown),
        "burst": burst,
        "audit_emit_us": round(emit_us, 2),
        "load_average_1m": os.getloadavg()[0],  # other work on the machine while measuring
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database", help="a PostgreSQL admin URL (a fresh database is created next to it)")
    parser.add_argument("--rounds", type=int, default=40)
    args = parser.parse_args()
    drop = None
    if args.database:
        url, drop = _postgres_database(args.database)
    else:
        url = f"sqlite:///{tempfile.mkdtemp()}/bench.db"
    try:
        # A queue long enough for the whole burst: what stops it is the reservation, not load shedding.
        settings = Settings(database_url=url, issuer="http://127.0.0.1/", hash_queue=200, hash_wait_ms=60_000)
        migrate(settings.database_url)
        apply(settings, {**TENANT, "users": [dict(user) for user in TENANT["users"]]})
        result = asyncio.run(measure(settings, args.rounds))
        result["database"] = "postgresql" if args.database else "sqlite"
        print(json.dumps(result, indent=2))
    finally:
        if drop is not None:
            drop()


if __name__ == "__main__":
    main()
