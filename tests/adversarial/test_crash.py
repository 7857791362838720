"""Crash durability: SIGKILL the server in the middle of sustained password, mfa-otp and refresh load, restart it.

Each kill: a few seconds of load from concurrent clients (password grants with refresh tokens, mfa-otp grants of
enrolled users, refresh-token rotation chains), SIGKILL at a random moment, a new server on the same database. Then:

- every access token a client received verifies against the restarted server's JWKS (the key was durable before
  the token left);
- every refresh token a client received is stored (durable before the response), and the newest one of each chain
  rotates once more, unless its request was in flight at the kill (then the server may have rotated it without the
  client hearing: presenting it again is a reuse and must revoke the family, never succeed);
- no refresh token was exchanged twice (each used token has exactly one child), no family is half-rotated;
- no mfa-otp success spent an already spent code step or mfa_token (each success: a distinct (user, step); every
  success's mfa_token consumed in the database);
- the database passes its integrity check (SQLite ``integrity_check`` and ``foreign_key_check``; PostgreSQL
  ``amcheck`` on every index when the extension is available).
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import jwt
import pyotp
import pytest

from identity.crypto import sha256_hex
from identity.settings import EncryptionKeys
from tests.adversarial.conftest import (
    MFA_OTP,
    PASSWORD,
    PUBLIC,
    cheap_hashing_env,
    db,
    db_run,
    email,
)
from tests.e2e.conftest import (
    IdentityServer,
    database_environ,
    serve_spec,
    start_servers,
)

KILLS = 3
MAX_WINDOW = 20.0
CRASH_ISSUER = "http://crash.adversarial.test/"
MFA_USERS = tuple(f"crash-mfa-{n}" for n in range(6))
CHAINS = 4
PASSWORD_WORKERS = 3


@dataclass
class Seen:
    """What the clients received, across every kill."""

    access_tokens: list[str] = field(default_factory=list)
    refresh_tokens: list[str] = field(default_factory=list)
    mfa_successes: list[tuple[int, str, int, str]] = field(default_factory=list)
    """(load window, user, step, mfa_token) of every mfa-otp success (steps are made usable again per window)."""
    window: int = 0
    answers: dict[str, int] = field(default_factory=dict)

    def successes(self) -> dict[str, int]:
        return {kind: self.answers.get(f"{kind}: 200", 0) for kind in ("password", "refresh", "mfa")}

    def note(self, kind: str) -> None:
        self.answers[kind] = self.answers.get(kind, 0) + 1


@dataclass
class Chain:
    token: str
    in_flight: bool = False


async def password_worker(client: httpx.AsyncClient, seen: Seen, stop: asyncio.Event) -> None:
    while not stop.is_set():
        try:
            response = await client.post(
                "/oauth/token",
                data={
                    "grant_type": "password",
                    "client_id": PUBLIC,
                    "username": email("crash"),
                    "password": PASSWORD,
                    "scope": "offline_access read:things",
                },
            )
        except httpx.HTTPError:
            seen.note("password: cut")
            return
        seen.note(f"password: {response.status_code}")
        if response.status_code == 200:
            body = response.json()
            seen.access_tokens.append(body["access_token"])
            seen.refresh_tokens.append(body["refresh_token"])


async def refresh_worker(client: httpx.AsyncClient, chain: Chain, seen: Seen, stop: asyncio.Event) -> None:
    while not stop.is_set():
        chain.in_flight = True
        try:
            response = await client.post(
                "/oauth/token", data={"grant_type": "refresh_token", "client_id": PUBLIC, "refresh_token": chain.token}
            )
        except httpx.HTTPError:
            seen.note("refresh: cut")
            return  # in flight at the kill: leave in_flight set
        chain.in_flight = False
        seen.note(f"refresh: {response.status_code}")
        if response.status_code != 200:
            return
        body = response.json()
        seen.access_tokens.append(body["access_token"])
        seen.refresh_tokens.append(body["refresh_token"])
        chain.token = body["refresh_token"]


async def mfa_worker(client: httpx.AsyncClient, user: str, secret: str, seen: Seen, stop: asyncio.Event) -> None:
    while not stop.is_set():
        try:
            paused = await client.post(
                "/oauth/token",
                data={"grant_type": "password", "client_id": PUBLIC, "username": email(user), "password": PASSWORD},
            )
            if paused.status_code != 403:
                seen.note(f"mfa login: {paused.status_code}")
                await asyncio.sleep(0.05)
                continue
            mfa_token = paused.json()["mfa_token"]
            now = time.time()
            code = pyotp.TOTP(secret).at(now)
            response = await client.post(
                "/oauth/token",
                data={"grant_type": MFA_OTP, "client_id": PUBLIC, "mfa_token": mfa_token, "otp": code},
            )
        except httpx.HTTPError:
            seen.note("mfa: cut")
            return
        seen.note(f"mfa: {response.status_code}")
        if response.status_code == 200:
            seen.access_tokens.append(response.json()["access_token"])
            seen.mfa_successes.append((seen.window, user, int(now // 30), mfa_token))
        else:
            await asyncio.sleep(0.1)


async def load_then_kill(
    server: IdentityServer, chains: list[Chain], secrets: dict[str, str], seen: Seen, seconds: float
) -> None:
    stop = asyncio.Event()
    limits = httpx.Limits(max_connections=32)
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30, limits=limits) as client:
        tasks = [asyncio.create_task(password_worker(client, seen, stop)) for _ in range(PASSWORD_WORKERS)]
        tasks += [asyncio.create_task(refresh_worker(client, chain, seen, stop)) for chain in chains]
        tasks += [asyncio.create_task(mfa_worker(client, u, s, seen, stop)) for u, s in secrets.items()]
        # Kill at a random moment past `seconds`, once each kind of load has had a success in this window (on a
        # loaded machine that can take a while), and at the latest after MAX_WINDOW seconds.
        started, before = time.monotonic(), seen.successes()
        while time.monotonic() - started < MAX_WINDOW:
            await asyncio.sleep(0.1)
            now = seen.successes()
            if time.monotonic() - started >= seconds and all(now[kind] > before[kind] for kind in now):
                break
        server.process.process.kill()  # SIGKILL: no shutdown, no flush, whatever was in flight is cut
        server.process.process.wait(timeout=30)
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
    server.process.stop()


def start(env: dict[str, str], log_dir: Any, attempt: int) -> IdentityServer:
    (server,) = start_servers([serve_spec(f"crash-{attempt}", env, issuer=CRASH_ISSUER)], log_dir)
    return server


def enroll(server: IdentityServer, user: str) -> str:
    paused = httpx.post(
        f"{server.base_url}/oauth/token",
        data={
            "grant_type": "password",
            "client_id": PUBLIC,
            "username": email(user),
            "password": PASSWORD,
            "audience": CRASH_ISSUER + "mfa/",
        },
        timeout=30,
    )
    mfa_token = paused.json()["mfa_token"]
    secret = httpx.post(
        f"{server.base_url}/mfa/associate",
        json={"authenticator_types": ["otp"]},
        headers={"Authorization": f"Bearer {mfa_token}"},
        timeout=30,
    ).json()["secret"]
    confirmed = httpx.post(
        f"{server.base_url}/oauth/token",
        data={"grant_type": MFA_OTP, "client_id": PUBLIC, "mfa_token": mfa_token, "otp": pyotp.TOTP(secret).now()},
        timeout=30,
    )
    assert confirmed.status_code == 200, confirmed.text
    return str(secret)


def next_codes(database_url: str) -> None:
    """Let each MFA user's current code count once more (as a new time step would), with a full attempt bucket."""
    emails = {"e" + str(n): email(user) for n, user in enumerate(MFA_USERS)}
    where = "user_pk IN (SELECT id FROM users WHERE email IN (" + ", ".join(f":{name}" for name in emails) + "))"
    db_run(
        database_url,
        [
            (f"UPDATE authenticator SET last_step = 0 WHERE {where}", emails),
            (f"DELETE FROM mfa_attempt WHERE {where}", emails),
        ],
    )


def integrity(database_url: str) -> dict[str, Any]:
    if database_url.startswith("sqlite"):
        ((result,),) = db(database_url, "PRAGMA integrity_check")
        foreign = db(database_url, "PRAGMA foreign_key_check")
        assert result == "ok", result
        assert foreign == [], foreign
        return {"sqlite_integrity_check": result, "foreign_key_violations": 0}
    try:
        db(database_url, "CREATE EXTENSION IF NOT EXISTS amcheck")
    except Exception:
        return {"amcheck": "unavailable"}
    indexes = db(
        database_url,
        "SELECT c.oid::regclass::text FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
        "JOIN pg_namespace n ON n.oid = c.relnamespace JOIN pg_am a ON a.oid = c.relam "
        "WHERE n.nspname = 'public' AND a.amname = 'btree'",
    )
    for (index,) in indexes:
        db(database_url, f"SELECT bt_index_check('{index}'::regclass, true)")
    return {"amcheck_indexes": len(indexes)}


def check_families(database_url: str) -> int:
    """No token used twice, none half-rotated; the number of families."""
    twice = db(
        database_url,
        "SELECT parent_id, count(*) FROM refresh_token WHERE parent_id IS NOT NULL "
        "GROUP BY parent_id HAVING count(*) > 1",
    )
    assert twice == [], f"tokens with two successors: {twice}"
    used_without_child = db(
        database_url,
        "SELECT p.id FROM refresh_token p WHERE p.used_at IS NOT NULL AND NOT EXISTS "
        "(SELECT 1 FROM refresh_token c WHERE c.parent_id = p.id)",
    )
    assert used_without_child == [], f"used tokens without a successor (half-rotated): {used_without_child}"
    child_of_unused = db(
        database_url,
        "SELECT c.id FROM refresh_token c JOIN refresh_token p ON p.id = c.parent_id WHERE p.used_at IS NULL",
    )
    assert child_of_unused == [], f"successors of tokens never marked used (half-rotated): {child_of_unused}"
    orphans = db(
        database_url,
        "SELECT c.id FROM refresh_token c WHERE c.parent_id IS NOT NULL AND NOT EXISTS "
        "(SELECT 1 FROM refresh_token p WHERE p.id = c.parent_id)",
    )
    assert orphans == [], orphans
    ((families,),) = db(database_url, "SELECT count(DISTINCT family_id) FROM refresh_token")
    return int(families)


@pytest.fixture
def crash_env(
    database_url: str, encryption_keys: EncryptionKeys, adversarial_tenant: dict[str, str]
) -> Iterator[dict[str, str]]:
    import tempfile
    from pathlib import Path

    from tests.e2e.conftest import apply_tenant_file

    users = "".join(
        f'\n[[users]]\nconnection = "customers"\nemail = "{email(name)}"\npassword = "{PASSWORD}"\n'
        for name in MFA_USERS
    )
    path = Path(tempfile.mkdtemp()) / "crash.toml"
    path.write_text(users)
    env = cheap_hashing_env(database_environ(database_url, encryption_keys))
    apply_tenant_file(path, env)
    yield env


def test_sigkill_under_load_loses_nothing_and_spends_nothing_twice(
    crash_env: dict[str, str], database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    log_dir = tmp_path_factory.mktemp("crash-logs")
    rng = random.Random()
    seen = Seen()
    server = start(crash_env, log_dir, 0)
    secrets = {user: enroll(server, user) for user in MFA_USERS}
    chains = []
    for _ in range(CHAINS):
        login = httpx.post(
            f"{server.base_url}/oauth/token",
            data={
                "grant_type": "password",
                "client_id": PUBLIC,
                "username": email("crash"),
                "password": PASSWORD,
                "scope": "offline_access read:things",
            },
            timeout=30,
        )
        assert login.status_code == 200, login.text
        chains.append(Chain(login.json()["refresh_token"]))
        seen.refresh_tokens.append(chains[-1].token)

    survived = 0
    reuse_refused = 0
    for attempt in range(1, KILLS + 1):
        next_codes(database_url)
        seen.window = attempt
        asyncio.run(load_then_kill(server, chains, secrets, seen, rng.uniform(1.5, 3.0)))
        server = start(crash_env, log_dir, attempt)
        survived += 1
        # The newest token of each chain: rotates once more, unless it was in flight at the kill.
        for chain in chains:
            response = httpx.post(
                f"{server.base_url}/oauth/token",
                data={"grant_type": "refresh_token", "client_id": PUBLIC, "refresh_token": chain.token},
                timeout=30,
            )
            if chain.in_flight and response.status_code != 200:
                assert response.status_code == 403 and response.json()["error"] == "invalid_grant", response.text
                reuse_refused += 1
                fresh = httpx.post(
                    f"{server.base_url}/oauth/token",
                    data={
                        "grant_type": "password",
                        "client_id": PUBLIC,
                        "username": email("crash"),
                        "password": PASSWORD,
                        "scope": "offline_access read:things",
                    },
                    timeout=30,
                )
                chain.token, chain.in_flight = fresh.json()["refresh_token"], False
                seen.refresh_tokens.append(chain.token)
                continue
            assert response.status_code == 200, f"a chain's newest token was lost: {response.text}"
            chain.token, chain.in_flight = response.json()["refresh_token"], False
            seen.refresh_tokens.append(chain.token)

    # Everything a client received, checked against the last server and the database.
    jwks = jwt.PyJWKClient(f"{server.base_url}/.well-known/jwks.json")
    for token in seen.access_tokens:
        key = jwks.get_signing_key_from_jwt(token)
        header = jwt.get_unverified_header(token)
        jwt.decode(token, key.key, algorithms=[header["alg"]], issuer=CRASH_ISSUER, options={"verify_aud": False})
    stored = {row[0] for row in db(database_url, "SELECT token_hash FROM refresh_token")}
    missing = [token for token in seen.refresh_tokens if sha256_hex(token) not in stored]
    assert missing == [], f"{len(missing)} refresh tokens a client received are not stored"
    families = check_families(database_url)
    steps = [(window, user, step) for window, user, step, _ in seen.mfa_successes]
    assert len(steps) == len(set(steps)), "a code step was accepted twice"
    for *_, mfa_token in seen.mfa_successes:
        ((consumed,),) = db(
            database_url, "SELECT consumed_at FROM mfa_transaction WHERE token_hash = :h", h=sha256_hex(mfa_token)
        )
        assert consumed is not None, "an mfa_token that completed a login is not spent"
    checked = integrity(database_url)
    server.process.stop()
    figures = {
        "kills_survived": survived,
        "access_tokens_verified": len(seen.access_tokens),
        "refresh_tokens_stored": len(seen.refresh_tokens),
        "families": families,
        "mfa_successes": len(seen.mfa_successes),
        "in_flight_reuse_refused": reuse_refused,
        "answers": seen.answers,
        **checked,
    }
    print("crash:", json.dumps(figures))
    assert survived == KILLS
    assert seen.access_tokens and seen.mfa_successes, figures
    log = "".join(path.read_text(errors="replace") for path in log_dir.iterdir())
    assert "Traceback" not in log, log[-4000:]
