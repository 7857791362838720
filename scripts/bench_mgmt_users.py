#!/usr/bin/env python3
"""Benchmark ``GET /api/v2/users`` of the Management API with many users, on ONE identity worker, with wrk.

Usage (from the repository root)::

    .venv/bin/python scripts/bench_mgmt_users.py                       # SQLite (temporary file), 10,000 users
    .venv/bin/python scripts/bench_mgmt_users.py --database-url postgresql://postgres@127.0.0.1:5432/postgres
    .venv/bin/python scripts/bench_mgmt_users.py --users 10000 --duration 10 --connections 8

The script migrates a fresh database, applies a tenant with one machine-to-machine client and its Management API
grant, inserts the users directly (one cheap Argon2 hash shared by all rows: the benchmark is about the listing, not
about hashing), starts ``identity serve`` on 127.0.0.1, gets a management token with ``client_credentials`` and runs
``wrk`` (``-t1 -cN -dD``) with that bearer token against four listings:

1. the first page (``per_page=50``, default sort ``created_at``);
2. a deep page with the total (``page=150&per_page=50&include_totals=true``: an OFFSET of 7,500 and a COUNT);
3. a search by exact email (``q=email:"user05000@bench.test"``);
4. a prefix search with the total (``q=email:user05*&include_totals=true``).

Every listing is checked once with httpx before it is loaded (status 200, the expected users). All load goes to
127.0.0.1 and is bounded in time. The results are printed as Markdown (requests/s and wrk's latency percentiles).
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import httpx
from benchkit import Database, argument_parser, free_port, machine, run_cli, serving, wait_for_quiet

SCOPES = ["read:users"]
CLIENT, SECRET = "bench-m2m", "bench-m2m-secret-0123456789abcdefghijklmnop"


def step(message: str) -> None:
    print(f"[bench-mgmt-users] {message}", file=sys.stderr, flush=True)


def seed(database_url: str, count: int) -> None:
    """Insert ``count`` users into the ``bench`` connection in batches (direct inserts, one cheap hash)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from sqlmodel import select

    from identity.accounts.passwords import PasswordHasher
    from identity.settings import Argon2Params, normalize_database_url
    from identity.store.db import create_engine, create_sessionmaker
    from identity.store.models import ConnectionRow, UserRow

    async def go() -> None:
        hasher = PasswordHasher(Argon2Params(time_cost=1, memory_kib=8, parallelism=1), workers=1)
        engine = create_engine(normalize_database_url(database_url))
        try:
            password_hash = await hasher.hash("bench password 1234567")
            async with create_sessionmaker(engine)() as session:
                row = (await session.execute(select(ConnectionRow).where(ConnectionRow.name == "bench"))).scalar()
                assert row is not None and row.id is not None
                for start in range(0, count, 1000):
                    session.add_all(
                        UserRow(
                            user_id=f"auth0|bench{number:06d}",
                            connection_id=row.id,
                            email=f"user{number:05d}@bench.test",
                            email_key=f"user{number:05d}@bench.test",
                            password_hash=password_hash,
                            name=f"Bench User {number}",
                            app_metadata={"plan": "pro" if number % 3 else "free"},
                        )
                        for number in range(start, min(count, start + 1000))
                    )
                    await session.commit()
        finally:
            hasher.close()
            await engine.dispose()

    asyncio.run(go())


def wrk(url: str, token: str, connections: int, duration: float) -> dict[str, Any]:
    result = subprocess.run(
        [
            "wrk", "-t1", f"-c{connections}", f"-d{duration:.0f}s", "--latency",
            "-H", f"Authorization: Bearer {token}", url,
        ],
        capture_output=True, text=True, timeout=duration + 60, check=True,
    )  # fmt: skip
    text = result.stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))  # type: ignore[union-attr]
    latency = dict(re.findall(r"\s+(50|90|99)%\s+([\d.]+\w+)", text))
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    return {"rate": rate, "latency": latency, "errors": int(non_2xx.group(1)) if non_2xx else 0}


def main() -> None:
    parser = argument_parser(__doc__ or "", 10.0, "seconds of load per listing (default 10)")
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--connections", type=int, default=8)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (apt-get install wrk)")
    with tempfile.TemporaryDirectory(prefix="bench-mgmt-") as tmp, Database.prepare(args.database_url, Path(tmp)) as db:
        workdir = Path(tmp)
        port = free_port()
        env = {
            "PATH": str(Path(sys.executable).parent) + ":/usr/bin:/bin",
            "IDENTITY_DATABASE_URL": db.url,
            "IDENTITY_ENCRYPTION_KEYS": "bench=" + base64.b64encode(secrets.token_bytes(32)).decode(),
            "IDENTITY_ISSUER": f"http://127.0.0.1:{port}/",
        }
        run_cli(["db", "upgrade"], env, workdir)
        tenant = workdir / "tenant.toml"
        tenant.write_text(
            '[[connections]]\nname = "bench"\n\n'
            f'[[clients]]\nclient_id = "{CLIENT}"\nclient_secret = "{SECRET}"\ngrant_types = ["client_credentials"]\n\n'
            f'[[client_grants]]\nclient_id = "{CLIENT}"\naudience = "##ISSUER##api/v2/"\nscope = {json.dumps(SCOPES)}\n'
        )
        run_cli(["tenant", "apply", str(tenant)], env, workdir)
        step(f"inserting {args.users} users into {db.description}")
        seed(db.url, args.users)
        command = [str(Path(sys.executable).with_name("identity")), "serve", "--port", str(port)]
        base = f"http://127.0.0.1:{port}"
        with serving(command, env, workdir, port, workdir / "server.log", "/healthz"):
            token = httpx.post(
                f"{base}/oauth/token",
                data={
                    "grant_type": "client_credentials",
                    "client_id": CLIENT,
                    "client_secret": SECRET,
                    "audience": f"{base}/api/v2/",
                },
            ).json()["access_token"]
            headers = {"Authorization": f"Bearer {token}"}
            listings = {
                "first page (per_page=50)": ("/api/v2/users?per_page=50", 50, None),
                "page 150 with the total": ("/api/v2/users?page=150&per_page=50&include_totals=true", 50, args.users),
                'q=email:"user05000@bench.test"': ('/api/v2/users?q=email:"user05000@bench.test"', 1, None),
                "q=email:user05* with the total": ("/api/v2/users?q=email:user05*&include_totals=true", 50, None),
            }
            rows = []
            for name, (path, expected, total) in listings.items():
                body = httpx.get(base + path, headers=headers, timeout=30).json()
                users = body["users"] if isinstance(body, dict) else body
                assert len(users) == expected, (name, body)
                if total is not None:
                    assert body["total"] == total, (name, body["total"])
                busy = wait_for_quiet(step)
                step(f"{name}: wrk for {args.duration:.0f}s (machine {busy * 100:.0f}% busy before)")
                result = wrk(base + path, token, args.connections, args.duration)
                rows.append((name, result, busy))
    info = machine()
    print(f"\n### GET /api/v2/users, {args.users} users, {db.description}\n")
    print(
        f"One `identity serve` worker; `wrk -t1 -c{args.connections} -d{args.duration:.0f}s`; {info.get('cpu', '')}\n"
    )
    print("| listing | requests/s | p50 | p90 | p99 | non-2xx | machine busy before |")
    print("|---|---|---|---|---|---|---|")
    for name, result, busy in rows:
        lat = result["latency"]
        print(
            f"| {name} | {result['rate']:.0f} | {lat.get('50', '?')} | {lat.get('90', '?')} | {lat.get('99', '?')} "
            f"| {result['errors']} | {busy * 100:.0f}% |"
        )


if __name__ == "__main__":
    main()
