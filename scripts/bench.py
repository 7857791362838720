"""The token endpoint at the machine's limits: one command, ``./scripts/bench``, prints one table.

It runs identity as an operator would (``identity serve --workers N`` on a fresh database: SQLite by default,
PostgreSQL with ``--postgres URL``), seeds a tenant and users, drives it with ``wrk`` (Debian package) on 127.0.0.1
only, and measures, for 1 and 2 workers:

- password grants (OWASP Argon2id) next to a bare Argon2 verify loop on the same cores (the ratio), JWKS p99 while
  password grants saturate the CPU;
- refresh grants (rotation, a durable commit: SQLite ``synchronous=NORMAL``, and ``FULL`` beside it);
- mfa-otp grants over a burst of pre-issued mfa_tokens (users enrolled ahead, cheap Argon2 for their password step);
- a trivial GET (JWKS);
- p50/p99 of each at saturation and at 80% of that rate (paced by the wrk script), resident memory per worker idle
  and under load, and how busy the machine was with other work before each run.

Every run is bounded (``--duration`` seconds, at most 15); the whole command takes about three minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import datetime as dt
import hashlib
import hmac
import json
import multiprocessing
import os
import re
import secrets
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
LUA = ROOT / "scripts" / "wrk" / "load.lua"
AUDIENCE = "https://api.bench.test/"
CLIENT_ID = "bench"
CLIENT_SECRET = "bench-secret-" + "0123456789abcdef" * 2
PASSWORD = "bench-password-0123"  # no spaces: the wrk script splits "user password" lines
JWKS_PROBE_RATE = 20
"""JWKS requests per second beside the password grants (2 connections): enough for a p99, too few to compete."""
OWASP = {"IDENTITY_ARGON2_TIME_COST": "2", "IDENTITY_ARGON2_MEMORY_KIB": "19456", "IDENTITY_ARGON2_PARALLELISM": "1"}
CHEAP = {
    "IDENTITY_ARGON2_TIME_COST": "1",
    "IDENTITY_ARGON2_MEMORY_KIB": "8",
    "IDENTITY_ARGON2_PARALLELISM": "1",
    "IDENTITY_HASH_QUEUE": "64",  # setup logins: no load shedding
}
NPROC = os.cpu_count() or 2


def say(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------------ machine and load


def _busy_jiffies() -> tuple[int, int]:
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


def busy_share(seconds: float = 0.5) -> float:
    """The share of all CPUs busy over ``seconds`` (the load other work puts on the machine right now)."""
    b0, t0 = _busy_jiffies()
    time.sleep(seconds)
    b1, t1 = _busy_jiffies()
    return (b1 - b0) / max(1, t1 - t0)


def rss_mib(pid: int) -> float:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def children(pid: int) -> list[int]:
    with contextlib.suppress(OSError):
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    return []


def _cmdline(pid: int) -> bytes:
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    return b""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# ------------------------------------------------------------------------------------------------------ database


@dataclass
class Database:
    kind: str
    url: str
    description: str


@contextlib.contextmanager
def database(postgres: str | None, workdir: Path) -> Iterator[Database]:
    if postgres is None:
        yield Database("sqlite", f"sqlite:///{workdir / 'bench.db'}", "SQLite (WAL, temporary file)")
        return
    if not re.match(r"^postgres(ql)?://(postgres@)?(127\.0\.0\.1|localhost)[:/]", postgres):
        raise SystemExit("--postgres must point at 127.0.0.1 (e.g. postgresql://postgres@127.0.0.1:5432/postgres)")
    admin = re.sub(r"^postgres(ql)?://", "postgresql://", postgres)
    name = "identity_bench_" + secrets.token_hex(4)
    url = admin.rsplit("/", 1)[0] + "/" + name
    asyncio.run(_pg(admin, f'CREATE DATABASE "{name}"'))
    try:
        version = asyncio.run(_pg(url, "SHOW server_version", fetch=True))
        fsync = asyncio.run(_pg(url, "SHOW fsync", fetch=True))
        yield Database("postgresql", url, f"PostgreSQL {version} (fsync={fsync}, fresh database on 127.0.0.1)")
    finally:
        asyncio.run(_pg(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def _pg(url: str, statement: str, *, fetch: bool = False) -> Any:
    import asyncpg

    connection = await asyncio.wait_for(asyncpg.connect(url), 10)
    try:
        return await connection.fetchval(statement) if fetch else await connection.execute(statement)
    finally:
        await connection.close()


# ---------------------------------------------------------------------------------------------------------- seed


def tenant_toml(users: int) -> str:
    lines = [
        "[tenant]",
        'default_directory = "customers"',
        f'default_audience = "{AUDIENCE}"',
        'mfa_policy = "if-enrolled"',
        "[[connections]]",
        'name = "customers"',
        "[[apis]]",
        f'identifier = "{AUDIENCE}"',
        'name = "Bench API"',
        'scopes = ["read:things"]',
        'signing_alg = "RS256"',
        "allow_offline_access = true",
        "[[clients]]",
        f'client_id = "{CLIENT_ID}"',
        'name = "Bench client"',
        f'client_secret = "{CLIENT_SECRET}"',
        'token_endpoint_auth_method = "client_secret_post"',
        'grant_types = ["password", "refresh_token", "http://auth0.com/oauth/grant-type/mfa-otp"]',
        'connections = ["customers"]',
    ]
    for n in range(users):
        lines += ["[[users]]", 'connection = "customers"', f'email = "user{n}@bench.test"', f'password = "{PASSWORD}"']
    return "\n".join(lines) + "\n"


def seed(db: Database, workdir: Path, users: int, mfa_users: int, env: dict[str, str]) -> list[tuple[str, str]]:
    """Migrate, apply the tenant (``users`` at OWASP cost), enroll ``mfa_users`` with TOTP; their (email, secret)."""
    tenant = workdir / "tenant.toml"
    tenant.write_text(tenant_toml(users))
    run([str(BIN / "identity"), "db", "upgrade"], env)
    run([str(BIN / "identity"), "tenant", "apply", str(tenant)], {**env, **OWASP})
    return asyncio.run(_enroll(db, env, mfa_users))


async def _enroll(db: Database, env: dict[str, str], count: int) -> list[tuple[str, str]]:
    from sqlmodel import col, select

    from identity.accounts.factors import FactorService
    from identity.accounts.passwords import PasswordHasher
    from identity.accounts.users import UserService
    from identity.clock import SystemClock
    from identity.crypto import SecretBox
    from identity.settings import Argon2Params, Settings
    from identity.store import mfa as queries
    from identity.store.db import create_engine, create_sessionmaker
    from identity.store.models import AuthenticatorRow

    settings = Settings.from_env(env)
    engine = create_engine(settings.database_url)
    hasher = PasswordHasher(Argon2Params(time_cost=1, memory_kib=8), workers=2)
    enrolled = []
    try:
        async with create_sessionmaker(engine)() as session:
            users, factors = (
                UserService(session, hasher),
                FactorService(session, SecretBox(settings.encryption_keys), SystemClock()),
            )
            for n in range(count):
                email = f"mfa{n}@bench.test"
                row, _ = await users.create("customers", password=PASSWORD, email=email)
                enrollment = await factors.enrollment.associate(row.user_id, issuer="bench")
                authenticator = (
                    await session.execute(
                        select(AuthenticatorRow).where(col(AuthenticatorRow.public_id) == enrollment.authenticator_id)
                    )
                ).scalar_one()
                # Activated without accepting a code, so every time step is still unused for the burst.
                await queries.activate(session, authenticator.id or 0, row.id or 0, dt.datetime.now(dt.UTC))
                if n % 200 == 199:
                    await session.commit()
                enrolled.append((email, enrollment.secret))
            await session.commit()
    finally:
        hasher.close()
        await engine.dispose()
    return enrolled


def totp(secret: str, at: float) -> str:
    key = base64.b32decode(secret.upper() + "=" * (-len(secret) % 8))
    digest = hmac.new(key, struct.pack(">Q", int(at // 30)), hashlib.sha1).digest()
    offset = digest[-1] & 0x0F
    return f"{(struct.unpack('>I', digest[offset : offset + 4])[0] & 0x7FFFFFFF) % 1_000_000:06d}"


def run(args: list[str], env: dict[str, str]) -> str:
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=600, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{done.stderr}")
    return done.stdout


# -------------------------------------------------------------------------------------------------------- server


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def workers(self) -> list[int]:
        kids = [pid for pid in children(self.process.pid) if b"resource_tracker" not in _cmdline(pid)]
        return kids or [self.process.pid]

    def rss(self) -> list[float]:
        return [rss_mib(pid) for pid in self.workers()]

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


@contextlib.contextmanager
def server(env: dict[str, str], workers: int, workdir: Path, name: str) -> Iterator[Server]:
    import urllib.request

    port = free_port()
    log = workdir / f"server-{name}.log"
    process = subprocess.Popen(
        [str(BIN / "identity"), "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)],
        env={**env, "IDENTITY_ISSUER": f"http://127.0.0.1:{port}/"},
        cwd=workdir,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    started = Server(process, port, log)
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise SystemExit(f"identity serve exited:\n{log.read_text()}")
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(f"{started.url}/healthz", timeout=2) as response,  # noqa: S310 (loopback)
            ):
                if response.status == 200 and len(started.workers()) >= workers:
                    break
            if time.monotonic() > deadline:
                raise SystemExit(f"identity serve did not become ready:\n{log.read_text()}")
            time.sleep(0.2)
        time.sleep(0.5)
        yield started
    finally:
        started.stop()


class RssWatch:
    """The largest resident size of any worker while the block runs (sampled every 0.2 s)."""

    def __init__(self, target: Server) -> None:
        self.target = target
        self.peak = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            self.peak = max([self.peak, *self.target.rss()])

    def __enter__(self) -> RssWatch:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


# ----------------------------------------------------------------------------------------------------------- wrk


@dataclass
class Result:
    rate: float
    p50: float
    p99: float
    ok: int
    requests: int
    status: dict[str, int]
    errors: int
    busy_before: float
    target_rate: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def failures(self) -> int:
        return self.requests - self.ok + self.errors


def wrk(target: Server, mode: str, workdir: Path, *, conns: int, duration: float, **params: Any) -> Result:
    """One bounded wrk run against ``target``; ``params`` go to the Lua script."""
    result = workdir / f"wrk-{secrets.token_hex(4)}.json"
    busy = busy_share()
    args = [
        "wrk", "-t1", f"-c{conns}", f"-d{max(1, round(duration))}s", "--latency", "--timeout", "10s",
        "-s", str(LUA), target.url, "--", f"mode={mode}", f"result={result}",
        f"client_id={CLIENT_ID}", f"client_secret={CLIENT_SECRET}",
        *(f"{key}={value}" for key, value in params.items() if value is not None),
    ]  # fmt: skip
    subprocess.run(args, capture_output=True, timeout=duration + 30, check=True)
    data = json.loads(result.read_text())
    return Result(
        rate=data["rate"],
        p50=data["p50_ms"],
        p99=data["p99_ms"],
        ok=data["ok"],
        requests=data["requests"],
        status={str(k): int(v) for k, v in data["status"].items()},
        errors=data["socket_errors"] + data["timeouts"],
        busy_before=busy,
        target_rate=params.get("rate"),
    )


def wrk_background(target: Server, mode: str, workdir: Path, **kwargs: Any) -> tuple[threading.Thread, list[Result]]:
    out: list[Result] = []
    thread = threading.Thread(target=lambda: out.append(wrk(target, mode, workdir, **kwargs)), daemon=True)
    thread.start()
    return thread, out


# -------------------------------------------------------------------------------------------------------- argon2


def _argon2_worker(seconds: float, queue: Any) -> None:
    from argon2 import PasswordHasher, Type

    hasher = PasswordHasher(time_cost=2, memory_cost=19456, parallelism=1, hash_len=32, salt_len=16, type=Type.ID)
    stored = hasher.hash(PASSWORD)
    count, end = 0, time.monotonic() + seconds
    while time.monotonic() < end:
        hasher.verify(stored, PASSWORD)
        count += 1
    queue.put(count)


def argon2_ceiling(processes: int, seconds: float) -> float:
    """Bare Argon2id verifies per second (OWASP parameters) on ``processes`` processes."""
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    workers = [context.Process(target=_argon2_worker, args=(seconds, queue)) for _ in range(processes)]
    for worker in workers:
        worker.start()
    total = sum(queue.get(timeout=seconds + 60) for _ in workers)
    for worker in workers:
        worker.join()
    return total / seconds


# ----------------------------------------------------------------------------------------------------- mfa tokens


def mfa_tokens(target: Server, emails: list[str]) -> list[str]:
    """One mfa_token per user, from password grants (their hashes are cheap: this is setup, not measurement)."""
    import httpx

    async def go() -> list[str]:
        limit = asyncio.Semaphore(8)
        async with httpx.AsyncClient(base_url=target.url, timeout=30) as client:

            async def one(email: str) -> str:
                async with limit:
                    for _ in range(20):  # a 503 (load shedding on a busy machine) is retried
                        response = await client.post(
                            "/oauth/token",
                            data={
                                "grant_type": "password",
                                "username": email,
                                "password": PASSWORD,
                                "client_id": CLIENT_ID,
                                "client_secret": CLIENT_SECRET,
                                "audience": AUDIENCE,
                            },
                        )
                        if response.status_code != 503:
                            break
                        await asyncio.sleep(0.5)
                    token = response.json().get("mfa_token")
                    if not token:
                        raise SystemExit(
                            f"expected mfa_required for {email}, got {response.status_code} {response.text}"
                        )
                    return str(token)

            return list(await asyncio.gather(*(one(email) for email in emails)))

    return asyncio.run(go())


def otp_pool(path: Path, tokens: list[str], secrets_: list[str]) -> Path:
    at = time.time()
    if at % 30 > 27:  # about to change step: take the next one (the server accepts one step either side)
        at += 3
    path.write_text("".join(f"{token} {totp(secret, at)}\n" for token, secret in zip(tokens, secrets_, strict=True)))
    return path


# ----------------------------------------------------------------------------------------------------------- run


@dataclass
class Options:
    postgres: str | None
    duration: float
    workers: list[int]
    users: int
    mfa_per_run: int
    full: bool
    keep: bool


def measure_workers(
    env: dict[str, str], workers: int, options: Options, workdir: Path, mfa: dict[str, list[tuple[str, str]]]
) -> dict[str, Any]:
    d = options.duration
    out: dict[str, Any] = {"workers": workers}
    users_file = workdir / "users.txt"
    with server({**env, **OWASP}, workers, workdir, f"w{workers}") as target:
        say(f"{workers} worker(s): warming up")
        wrk(target, "get", workdir, conns=8, duration=1)
        pool = workdir / f"refresh-w{workers}.txt"
        wrk(target, "password", workdir, conns=8, duration=2, users=users_file, audience=AUDIENCE,
            scope="offline_access", capture="refresh_token", out=pool)  # fmt: skip
        out["rss_idle"] = target.rss()

        with RssWatch(target) as watch:
            say(f"{workers} worker(s): trivial GET")
            get = wrk(target, "get", workdir, conns=32, duration=d)
            get80 = wrk(target, "get", workdir, conns=32, duration=d, rate=round(get.rate * 0.8))
            discovery = wrk(target, "get", workdir, conns=32, duration=d, path="/.well-known/openid-configuration")

            say(f"{workers} worker(s): password grants, with JWKS beside them")
            # A latency probe, paced: unpaced, two connections of JWKS would take the event loop from the grants
            # and the password rate would measure the mix (it read a quarter of the password-only rate).
            jwks_thread, jwks = wrk_background(target, "get", workdir, conns=2, duration=d, rate=JWKS_PROBE_RATE)
            more = workdir / f"refresh-more-w{workers}.txt"
            password = wrk(target, "password", workdir, conns=8, duration=d, users=users_file, audience=AUDIENCE,
                           scope="offline_access", capture="refresh_token", out=more)  # fmt: skip
            jwks_thread.join()
            password80 = wrk(target, "password", workdir, conns=8, duration=d, users=users_file,
                             audience=AUDIENCE, rate=round(password.rate * 0.8))  # fmt: skip
            tokens = pool.read_text().split() + more.read_text().split()
            say(f"{workers} worker(s): refresh grants ({len(tokens)} token chains)")
            pool.write_text("\n".join(tokens) + "\n")
            refresh = wrk(target, "refresh", workdir, conns=16, duration=d, pool=pool, poolout=pool)
            refresh80 = wrk(target, "refresh", workdir, conns=16, duration=d, pool=pool, poolout=pool,
                            rate=round(refresh.rate * 0.8))  # fmt: skip

            say(f"{workers} worker(s): mfa-otp bursts")
            burst, paced = mfa["burst"], mfa["paced"]
            burst_tokens = mfa_tokens_cached[f"{workers}-burst"]
            # wrk runs its full -d even when the burst is used up first: guess from the refresh rate (a similar
            # cost); a burst that outlasts the guess is measured over the whole run, which is the saturation rate too.
            guess = max(2.0, min(15.0, len(burst_tokens) / max(refresh.rate, 1.0)))
            mfa_sat = wrk(target, "mfa", workdir, conns=16, duration=guess,
                          pool=otp_pool(workdir / "otp-burst.txt", burst_tokens, [s for _, s in burst]))  # fmt: skip
            paced_tokens = mfa_tokens_cached[f"{workers}-paced"]
            paced_s = max(2.0, min(15.0, len(paced_tokens) / max(mfa_sat.rate * 0.8, 1.0) + 1))
            mfa80 = wrk(target, "mfa", workdir, conns=16, duration=paced_s, rate=round(mfa_sat.rate * 0.8),
                        pool=otp_pool(workdir / "otp-paced.txt", paced_tokens, [s for _, s in paced]))  # fmt: skip
        out.update(
            get=get, get80=get80, discovery=discovery, password=password, password80=password80,
            jwks_under_password=jwks[0],
            refresh=refresh, refresh80=refresh80, mfa=mfa_sat, mfa80=mfa80, rss_loaded=watch.peak,
        )  # fmt: skip
    return out


mfa_tokens_cached: dict[str, list[str]] = {}


def run_all(options: Options) -> str:
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install wrk")
    started = dt.datetime.now(dt.UTC)
    workdir = Path(tempfile.mkdtemp(prefix="identity-bench-"))
    load_at_start = busy_share(1.0)
    say(f"work directory {workdir}; machine {load_at_start * 100:.0f}% busy with other work")
    try:
        with database(options.postgres, workdir) as db:
            env = {k: v for k, v in os.environ.items() if not k.startswith("IDENTITY_")} | {
                "IDENTITY_DATABASE_URL": db.url,
                "IDENTITY_ENCRYPTION_KEYS": "k1=" + base64.b64encode(os.urandom(32)).decode(),
            }
            per_run = options.mfa_per_run
            total_mfa = per_run * 2 * len(options.workers)
            say(f"seeding {options.users} users (OWASP Argon2id) and {total_mfa} TOTP-enrolled users")
            enrolled = seed(db, workdir, options.users, total_mfa, env)
            (workdir / "users.txt").write_text(
                "".join(f"user{n}@bench.test {PASSWORD}\n" for n in range(options.users))
            )
            say("issuing mfa_tokens (password step on a server with cheap Argon2: setup, not measured)")
            chunks = {}
            with server({**env, **CHEAP}, 2, workdir, "mfa-setup") as setup:
                for index, workers in enumerate(options.workers):
                    for part, offset in (("burst", 0), ("paced", 1)):
                        chunk = enrolled[(2 * index + offset) * per_run : (2 * index + offset + 1) * per_run]
                        chunks[f"{workers}-{part}"] = chunk
                        mfa_tokens_cached[f"{workers}-{part}"] = mfa_tokens(setup, [email for email, _ in chunk])
            say("bare Argon2id loop (OWASP) on 1 and on all CPUs")
            ceiling_1 = argon2_ceiling(1, min(options.duration, 5))
            ceiling_n = argon2_ceiling(NPROC, min(options.duration, 5))
            results = []
            for workers in options.workers:
                mfa = {"burst": chunks[f"{workers}-burst"], "paced": chunks[f"{workers}-paced"]}
                results.append(measure_workers(env, workers, options, workdir, mfa))
            full = None
            if db.kind == "sqlite" and options.full:
                workers = max(options.workers)
                say(f"refresh grants with IDENTITY_SQLITE_SYNCHRONOUS=FULL, {workers} workers")
                with server(
                    {**env, **OWASP, "IDENTITY_SQLITE_SYNCHRONOUS": "FULL"}, workers, workdir, "full"
                ) as target:
                    pool = workdir / "refresh-full.txt"
                    wrk(target, "password", workdir, conns=8, duration=3, users=workdir / "users.txt",
                        audience=AUDIENCE, scope="offline_access", capture="refresh_token", out=pool)  # fmt: skip
                    full_sat = wrk(
                        target, "refresh", workdir, conns=16, duration=options.duration, pool=pool, poolout=pool
                    )
                    full80 = wrk(target, "refresh", workdir, conns=16, duration=options.duration, pool=pool,
                                 poolout=pool, rate=round(full_sat.rate * 0.8))  # fmt: skip
                full = (workers, full_sat, full80)
            return render(options, db, started, load_at_start, ceiling_1, ceiling_n, results, full)
    finally:
        if not options.keep:
            shutil.rmtree(workdir, ignore_errors=True)


# -------------------------------------------------------------------------------------------------------- report


def _lat(result: Result) -> str:
    return f"{result.p50:.1f} / {result.p99:.1f}"


def _rate(result: Result) -> str:
    bad = f", {result.failures} failed" if result.failures else ""
    return f"{result.rate:,.0f}{bad}"


def render(
    options: Options,
    db: Database,
    started: dt.datetime,
    load: float,
    ceiling_1: float,
    ceiling_n: float,
    results: list[dict[str, Any]],
    full: tuple[int, Result, Result] | None,
) -> str:
    head = (
        "| measure | " + " | ".join(f"{r['workers']} worker{'s' if r['workers'] > 1 else ''}" for r in results) + " |"
    )
    rows = [head, "|---|" + "---|" * len(results)]

    def row(name: str, cell: Any) -> None:
        rows.append(f"| {name} | " + " | ".join(cell(r) for r in results) + " |")

    row("password grants/s (saturation, 8 connections)", lambda r: _rate(r["password"]))
    row(
        f"÷ bare Argon2 loop on {NPROC} processes ({ceiling_n:.1f}/s)",
        lambda r: f"{r['password'].rate / ceiling_n:.2f}",
    )
    row("password p50 / p99 ms: saturation", lambda r: _lat(r["password"]))
    row(
        "password p50 / p99 ms: at 80% (rate achieved)",
        lambda r: f"{_lat(r['password80'])} ({r['password80'].rate:.0f}/s)",
    )
    row(
        f"JWKS p99 ms while password grants saturate ({JWKS_PROBE_RATE}/s probe)",
        lambda r: f"{r['jwks_under_password'].p99:.1f}",
    )
    row("refresh grants/s (rotation, 16 connections)", lambda r: _rate(r["refresh"]))
    row("refresh p50 / p99 ms: saturation", lambda r: _lat(r["refresh"]))
    row(
        "refresh p50 / p99 ms: at 80% (rate achieved)",
        lambda r: f"{_lat(r['refresh80'])} ({r['refresh80'].rate:.0f}/s)",
    )
    row(f"mfa-otp grants/s (burst of {options.mfa_per_run} mfa_tokens)", lambda r: _rate(r["mfa"]))
    row("mfa-otp p50 / p99 ms: saturation", lambda r: _lat(r["mfa"]))
    row("mfa-otp p50 / p99 ms: at 80% (rate achieved)", lambda r: f"{_lat(r['mfa80'])} ({r['mfa80'].rate:.0f}/s)")
    row("JWKS GET/s (32 connections)", lambda r: _rate(r["get"]))
    row("JWKS p50 / p99 ms: saturation", lambda r: _lat(r["get"]))
    row("JWKS p50 / p99 ms: at 80% (rate achieved)", lambda r: f"{_lat(r['get80'])} ({r['get80'].rate:,.0f}/s)")
    row("OpenID discovery GET/s (32 connections)", lambda r: _rate(r["discovery"]))
    row("discovery p50 / p99 ms: saturation", lambda r: _lat(r["discovery"]))
    row("RSS per worker, MiB: idle", lambda r: " / ".join(f"{v:.0f}" for v in r["rss_idle"]))
    row("RSS per worker, MiB: largest under load", lambda r: f"{r['rss_loaded']:.0f}")
    every = [res for r in results for key, res in r.items() if isinstance(res, Result)]
    busiest = max(res.busy_before for res in every)
    lines = [
        f"identity benchmark, {started:%Y-%m-%d %H:%M} UTC: {db.description}, {NPROC} CPUs, wrk 1 thread, "
        f"{options.duration:.0f} s per run",
        "",
        *rows,
    ]
    if full is not None:
        workers, sat, paced = full
        normal = next(r for r in results if r["workers"] == workers)["refresh"]
        lines += [
            "",
            f"SQLite `synchronous`, refresh grants with {workers} workers: NORMAL {_rate(normal)}/s; "
            f"FULL {_rate(sat)}/s, p50 / p99 {_lat(sat)} ms at saturation, {_lat(paced)} ms at {paced.rate:.0f}/s.",
        ]
    lines += [
        "",
        f"Bare Argon2id loop (m=19456 KiB, t=2, p=1): {ceiling_1:.1f}/s on 1 process, {ceiling_n:.1f}/s on {NPROC}. "
        f"Other work on the machine: {load * 100:.0f}% of all CPUs busy at the start, at most "
        f"{busiest * 100:.0f}% in the half second before a run (the runs need the whole machine: figures taken "
        "under load are lower bounds).",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], prog="scripts/bench")
    parser.add_argument("--postgres", metavar="URL", help="PostgreSQL server on 127.0.0.1 (a fresh database is made)")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per wrk run (at most 15; default 5)")
    parser.add_argument("--workers", default="1,2", help="worker counts to compare (default 1,2)")
    parser.add_argument("--users", type=int, default=100, help="password users (default 100)")
    parser.add_argument("--mfa-burst", type=int, default=600, help="mfa_tokens per mfa-otp burst (default 600)")
    parser.add_argument("--no-full", action="store_true", help="skip the SQLite synchronous=FULL refresh run")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs, wrk results)")
    args = parser.parse_args(argv)
    if not 1 <= args.duration <= 15:
        parser.error("--duration must be between 1 and 15 seconds")
    options = Options(
        postgres=args.postgres,
        duration=args.duration,
        workers=[int(w) for w in args.workers.split(",")],
        users=args.users,
        mfa_per_run=args.mfa_burst,
        full=not args.no_full,
        keep=args.keep,
    )
    print(run_all(options), end="")


if __name__ == "__main__":
    main()
