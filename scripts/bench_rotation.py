"""A signing-key rotation under load: does any request fail, does any token fail to verify?

Starts several ``identity serve`` instances on one database (PostgreSQL when reachable, else SQLite), drives password
grants at them from concurrent clients, and in the middle runs ``identity keys rotate`` as an operator would. Each
client verifies every token it gets the way an API does: against a JWKS it fetched and keeps for the JWKS max-age,
never refetching on an unknown kid (the strictest common verifier). Every fifth token is also presented to
``/userinfo`` of another instance. Reported: requests during the run and during the rotation window, non-200 answers,
tokens that failed to verify, how long until every instance signed with the new key.

    .venv/bin/python scripts/bench_rotation.py [--duration 30] [--connections 8] [--instances 2] [--sqlite]

All traffic goes to 127.0.0.1; the run is bounded by --duration.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import jwt

VENV_BIN = Path(sys.executable).parent
IDENTITY = str(VENV_BIN / "identity")
ADMIN_PG = os.environ.get("IDENTITY_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
AUDIENCE = "https://api.rotation.test/"
PASSWORD = "rotation bench password"
JWKS_MAX_AGE = 5
KEYS_REFRESH = 2
TENANT = f"""
[tenant]
default_directory = "customers"
default_audience = "{AUDIENCE}"

[[connections]]
name = "customers"

[[apis]]
identifier = "{AUDIENCE}"
name = "Rotation API"
scopes = ["read:things"]
signing_alg = "RS256"
token_lifetime = 3600

[[clients]]
client_id = "bench"
name = "Bench"
token_endpoint_auth_method = "none"
grant_types = ["password"]
connections = ["customers"]

[[users]]
connection = "customers"
email = "user@rotation.test"
password = "{PASSWORD}"
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def postgres_database() -> tuple[str, Any] | None:
    import asyncpg

    name = f"identity_rotation_{secrets.token_hex(4)}"

    async def run(sql: str) -> None:
        conn = await asyncio.wait_for(asyncpg.connect(ADMIN_PG), 5)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    try:
        asyncio.run(run(f'CREATE DATABASE "{name}"'))
    except (TimeoutError, OSError, asyncpg.PostgresError):
        return None
    url = ADMIN_PG.rsplit("/", 1)[0] + "/" + name
    return url, lambda: asyncio.run(run(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@dataclass
class Tally:
    requests: int = 0
    non_200: dict[str, int] = field(default_factory=dict)
    transport_errors: int = 0
    verified: int = 0
    verify_failures: int = 0
    userinfo_checked: int = 0
    userinfo_failures: int = 0
    kids: dict[str, int] = field(default_factory=dict)
    window_requests: int = 0
    window_non_200: int = 0
    window_verify_failures: int = 0


class CachedJwks:
    """A verifier's JWKS cache: fetched once, kept for max-age, never refetched on an unknown kid."""

    def __init__(self, client: httpx.AsyncClient, url: str) -> None:
        self.client, self.url = client, url
        self.fetched_at = -1e9
        self.keys: dict[str, Any] = {}

    async def key(self, kid: str) -> Any:
        if time.monotonic() - self.fetched_at > JWKS_MAX_AGE:
            document = (await self.client.get(self.url)).json()
            self.keys = {k["kid"]: jwt.PyJWK(k).key for k in document["keys"] if k.get("alg") == "RS256"}
            self.fetched_at = time.monotonic()
        return self.keys.get(kid)


async def load(bases: list[str], stop: asyncio.Event, tally: Tally, window: list[float], worker: int) -> None:
    async with httpx.AsyncClient(timeout=30) as client:
        jwks = CachedJwks(client, bases[worker % len(bases)] + "/.well-known/jwks.json")
        turn = worker
        while not stop.is_set():
            base = bases[turn % len(bases)]
            turn += 1
            in_window = bool(window) and window[0] <= time.monotonic() <= window[1]
            try:
                response = await client.post(
                    base + "/oauth/token",
                    data={
                        "grant_type": "password",
                        "client_id": "bench",
                        "username": "user@rotation.test",
                        "password": PASSWORD,
                        "scope": "openid",
                    },
                )
            except httpx.HTTPError:
                tally.transport_errors += 1
                continue
            tally.requests += 1
            tally.window_requests += in_window
            if response.status_code != 200:
                tally.non_200[str(response.status_code)] = tally.non_200.get(str(response.status_code), 0) + 1
                tally.window_non_200 += in_window
                continue
            token = response.json()["access_token"]
            kid = jwt.get_unverified_header(token)["kid"]
            tally.kids[kid] = tally.kids.get(kid, 0) + 1
            key = await jwks.key(kid)
            try:
                if key is None:
                    raise jwt.InvalidTokenError(f"kid {kid} not in the cached JWKS")
                jwt.decode(token, key, algorithms=["RS256"], audience=AUDIENCE)
                tally.verified += 1
            except jwt.InvalidTokenError:
                tally.verify_failures += 1
                tally.window_verify_failures += in_window
            if tally.requests % 5 == 0:
                other = bases[turn % len(bases)]
                info = await client.get(other + "/userinfo", headers={"Authorization": f"Bearer {token}"})
                tally.userinfo_checked += 1
                tally.userinfo_failures += info.status_code != 200


async def signing_kid(client: httpx.AsyncClient, base: str) -> str:
    response = await client.post(
        base + "/oauth/token",
        data={"grant_type": "password", "client_id": "bench", "username": "user@rotation.test", "password": PASSWORD},
    )
    return str(jwt.get_unverified_header(response.json()["access_token"])["kid"])


async def run(args: argparse.Namespace, bases: list[str], env: dict[str, str]) -> dict[str, Any]:
    tally = Tally()
    window: list[float] = []
    stop = asyncio.Event()
    started = time.monotonic()
    workers = [asyncio.create_task(load(bases, stop, tally, window, n)) for n in range(args.connections)]
    async with httpx.AsyncClient(timeout=30) as client:
        before = {base: await signing_kid(client, base) for base in bases}
        await asyncio.sleep(args.duration / 4)
        rotate_started = time.monotonic()
        # The window: from the command's start until every instance signs with the new key, plus a JWKS max-age.
        window[:] = [rotate_started, rotate_started + 3600]
        rotated = await asyncio.to_thread(
            subprocess.run, [IDENTITY, "keys", "rotate", "--alg", "RS256"], env=env, capture_output=True, text=True
        )
        if rotated.returncode != 0:
            raise SystemExit(f"identity keys rotate failed: {rotated.stderr}")
        rotate_seconds = time.monotonic() - rotate_started
        new_kid = json.loads(rotated.stdout)[0]["current"]
        followed: dict[str, float] = {}
        while len(followed) < len(bases) and time.monotonic() < rotate_started + 120:
            for base in bases:
                if base not in followed and await signing_kid(client, base) == new_kid:
                    followed[base] = round(time.monotonic() - rotate_started, 2)
            await asyncio.sleep(0.2)
        window[1] = time.monotonic() + JWKS_MAX_AGE
        await asyncio.sleep(max(JWKS_MAX_AGE + 1, started + args.duration - time.monotonic()))
    stop.set()
    await asyncio.gather(*workers)
    return {
        "duration_s": round(time.monotonic() - started, 1),
        "connections": args.connections,
        "instances": len(bases),
        "keys_refresh_s": KEYS_REFRESH,
        "jwks_max_age_s": JWKS_MAX_AGE,
        "requests": tally.requests,
        "non_200": tally.non_200,
        "transport_errors": tally.transport_errors,
        "tokens_verified": tally.verified,
        "tokens_failed_to_verify": tally.verify_failures,
        "userinfo_checked_on_another_instance": tally.userinfo_checked,
        "userinfo_failures": tally.userinfo_failures,
        "rotation_window": {
            "seconds": round(window[1] - window[0], 1),
            "requests": tally.window_requests,
            "non_200": tally.window_non_200,
            "tokens_failed_to_verify": tally.window_verify_failures,
        },
        "rotate_command_s": round(rotate_seconds, 2),
        "instances_signing_with_new_key_after_s": sorted(followed.values()),
        "old_kids": sorted(set(before.values())),
        "new_kid": new_kid,
        "tokens_by_kid": tally.kids,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=30.0)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--instances", type=int, default=2)
    parser.add_argument("--sqlite", action="store_true", help="use SQLite even when PostgreSQL is reachable")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="identity-rotation-"))
    made = None if args.sqlite else postgres_database()
    url, drop = made if made else (f"sqlite:///{work / 'rotation.db'}", lambda: None)
    keys = "k1=" + __import__("base64").b64encode(secrets.token_bytes(32)).decode()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("IDENTITY_")},
        "IDENTITY_DATABASE_URL": url,
        "IDENTITY_ENCRYPTION_KEYS": keys,
        "IDENTITY_KEYS_REFRESH": str(KEYS_REFRESH),
        "IDENTITY_JWKS_MAX_AGE": str(JWKS_MAX_AGE),
        "IDENTITY_ARGON2_TIME_COST": "1",
        "IDENTITY_ARGON2_MEMORY_KIB": "8192",
        "IDENTITY_LOG_LEVEL": "WARNING",
    }
    servers: list[subprocess.Popen[bytes]] = []
    try:
        subprocess.run([IDENTITY, "db", "upgrade"], env=env, check=True, capture_output=True)
        (work / "tenant.toml").write_text(TENANT)
        tenant = [IDENTITY, "tenant", "apply", str(work / "tenant.toml")]
        subprocess.run(tenant, env=env, check=True, capture_output=True)
        bases = []
        for n in range(args.instances):
            port = free_port()
            log = (work / f"instance-{n}.log").open("wb")
            servers.append(
                subprocess.Popen(
                    [IDENTITY, "serve", "--port", str(port)],
                    env={**env, "IDENTITY_ISSUER": "http://127.0.0.1:1/"},  # one issuer for every instance
                    stdout=log,
                    stderr=log,
                )
            )
            bases.append(f"http://127.0.0.1:{port}")
        for base in bases:
            for _ in range(300):
                try:
                    if httpx.get(base + "/readyz").status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.1)
        # The next key must have been published for max-age + refresh before a rotation is allowed.
        time.sleep(JWKS_MAX_AGE + KEYS_REFRESH + 1)
        report = asyncio.run(run(args, bases, env))
        report["database"] = "postgresql" if made else "sqlite"
        report["load_average_1m_at_end"] = os.getloadavg()[0]
        print(json.dumps(report, indent=2))
    finally:
        for server in servers:
            server.terminate()
        for server in servers:
            server.wait(timeout=30)
        drop()


if __name__ == "__main__":
    main()
