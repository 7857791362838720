#!/usr/bin/env python3
"""Benchmark refresh grants (rotation, committed before the answer) and the cost of rules, on ONE identity worker.

Usage (from the repository root)::

    .venv/bin/python scripts/bench_refresh.py                                   # SQLite (temporary file)
    .venv/bin/python scripts/bench_refresh.py --database-url postgresql://postgres@127.0.0.1:5432/postgres

With a PostgreSQL URL the script creates a fresh ``identity_bench_<random>`` database on that server and drops it
afterwards. It migrates it, applies a small tenant (one public client with the ``refresh_token`` grant, rotating,
leeway 0) and measures, in this order:

1. in-process: ``RulesEngine.run`` with 0 rules, 5 no-op plain rules and 5 no-op ``async`` rules (``timeit``);
2. a bare Litestar app defined in this file (``GET /ping`` answering ``{"ok": true}``), served by ``uvicorn.run`` in
   its own process exactly as ``identity serve`` serves identity (one worker, ``log_level="info"``), under load;
3. ONE ``identity serve`` with no rules: refresh grants under load. Every load connection owns one refresh-token
   family (one password login before the clock starts) and presents the token it got last, so that every grant
   rotates: a conditional UPDATE of the presented row, the INSERT of its successor and a COMMIT, before the answer;
4. the same with five no-op rules in the tenant (rules run on refresh, ``protocol = oauth2-refresh-token``);
5. on SQLite only: step 3 again with ``PRAGMA synchronous=FULL`` (identity sets ``NORMAL`` with WAL, which survives a
   crash of the process but not of the machine); the pragma is added by a ``sitecustomize`` on the server's
   PYTHONPATH, identity itself is unchanged;
6. the bare app again, to see whether the machine changed in between.

The load generator is a separate process (async httpx, N keep-alive connections, D seconds, the first seconds
discarded as warm-up). After each identity run the stored rows are checked: one row per token handed out, every used
row with exactly one successor. All load goes to 127.0.0.1 only and is bounded in time. The results are printed as
Markdown and written to ``docs/benchmarks.md`` between ``<!-- bench-refresh:KIND -->`` markers (the section of the
same database kind is replaced; the other sections of the file are left as they are).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import re
import secrets
import shlex
import sys
import tempfile
import time
import timeit
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchkit import (
    AUDIENCE,
    DOC,
    IDENTITY,
    ROOT,
    TENANT_COMMON_TOML,
    Database,
    argument_parser,
    collect,
    doc_block,
    free_port,
    load_report,
    machine,
    machine_busy,
    proc_cpu_seconds,
    run_cli,
    save_doc,
    serving,
    spawn_role,
    wait_for_quiet,
    working_tree,
)

CLIENT_ID = "bench-app"
SCOPE = "offline_access read:things"
USERS = [(f"user{i}@bench.test", f"bench password number {i}") for i in range(4)]
RULES = 5

TENANT_TOML = f"""
[tenant]
friendly_name = "Refresh benchmark"
{TENANT_COMMON_TOML}allow_offline_access = true

[[clients]]
client_id = "{CLIENT_ID}"
name = "Bench app"
token_endpoint_auth_method = "none"
grant_types = ["password", "refresh_token"]
connections = ["customers"]
refresh_token = {{ rotation_type = "rotating", leeway = 0 }}
""" + "".join(
    f'\n[[users]]\nconnection = "customers"\nemail = "{email}"\npassword = "{password}"\n' for email, password in USERS
)

NOOP_RULES = "".join(f"\n\ndef noop_{i}(event, api):\n    pass\n" for i in range(RULES))

# Loaded as ``sitecustomize`` by the server for the synchronous=FULL run: every new SQLite connection gets the pragma
# after identity's own ones (listeners run in the order they were added), and the value read back is recorded.
SYNCHRONOUS_FULL = """\
import os

from sqlalchemy import event

import identity.store.db as _db

_create_engine = _db.create_engine


def create_engine(database_url, **options):
    engine = _create_engine(database_url, **options)
    if database_url.startswith("sqlite"):

        @event.listens_for(engine.sync_engine, "connect")
        def _full(dbapi_connection, _record):
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA synchronous=FULL")
            cursor.execute("PRAGMA synchronous")
            value = cursor.fetchone()[0]
            cursor.close()
            with open(os.environ["BENCH_PRAGMA_LOG"], "a") as log:
                log.write(f"{value}\\n")

    return engine


_db.create_engine = create_engine
"""


# ------------------------------------------------------------------------------------ roles run in child processes


def role_bare_server(params: dict[str, Any]) -> None:
    """The baseline: a bare Litestar JSON endpoint, served the way ``identity serve`` serves identity."""
    import uvicorn
    from litestar import Litestar, get

    @get("/ping")
    async def ping() -> dict[str, bool]:
        return {"ok": True}

    uvicorn.run(Litestar(route_handlers=[ping]), host="127.0.0.1", port=params["port"], log_level="info")


def role_load(params: dict[str, Any]) -> dict[str, Any]:
    """``GET /ping`` or refresh grants from ``concurrency`` connections until ``start_at + duration``."""
    import httpx

    async def run() -> dict[str, Any]:
        start_at, duration, warmup = params["start_at"], params["duration"], params["warmup"]
        concurrency, mode = params["concurrency"], params["mode"]
        tokens: list[str] = list(params.get("tokens", []))
        results: list[tuple[float, float, int]] = []  # (finished at, latency, status); status 0 = exception
        errors: Counter[str] = Counter()
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        async with httpx.AsyncClient(base_url=params["base_url"], limits=limits, timeout=30.0) as client:
            await asyncio.gather(
                *(client.get("/healthz" if mode == "refresh" else "/ping") for _ in range(concurrency))
            )
            await asyncio.sleep(max(0.0, start_at - time.time()))
            end = start_at + duration
            cpu0, wall0 = time.process_time(), time.perf_counter()

            async def worker(index: int) -> None:
                while time.time() < end:
                    t0 = time.perf_counter()
                    try:
                        if mode == "ping":
                            response = await client.get("/ping")
                            ok = response.status_code == 200 and response.json() == {"ok": True}
                        else:
                            form = {
                                "grant_type": "refresh_token",
                                "client_id": CLIENT_ID,
                                "refresh_token": tokens[index],
                            }
                            response = await client.post("/oauth/token", data=form)
                            ok = response.status_code == 200
                            if ok:
                                tokens[index] = response.json()["refresh_token"]
                        status = response.status_code if ok else -response.status_code
                        if not ok:
                            errors[f"HTTP {response.status_code}: {response.text[:120]}"] += 1
                    except httpx.HTTPError as exc:
                        status = 0
                        errors[f"{type(exc).__name__}: {exc}"[:160]] += 1
                    results.append((time.time(), time.perf_counter() - t0, status))
                    if status != 200 and mode == "refresh":
                        return  # this family is gone (it would only produce errors); the others go on

            await asyncio.gather(*(worker(i) for i in range(concurrency)))
            cpu = (time.process_time() - cpu0) / (time.perf_counter() - wall0)
        return load_report(results, errors, start_at=start_at, duration=duration, warmup=warmup, cpu=cpu)

    return asyncio.run(run())


ROLES = {"load": role_load}


# ------------------------------------------------------------------------------------------------- the environment


def sql(database_url: str, statements: list[str]) -> list[Any]:
    """The first value of each statement, on an engine made the way the server makes its own."""
    from sqlalchemy import text

    from identity.settings import normalize_database_url
    from identity.store.db import create_engine

    async def go() -> list[Any]:
        engine = create_engine(normalize_database_url(database_url))
        try:
            async with engine.connect() as connection:
                return [(await connection.execute(text(statement))).scalar() for statement in statements]
        finally:
            await engine.dispose()

    return asyncio.run(go())


def durability(database: Database) -> str:
    """What a COMMIT waits for on this database, as configured for the server."""
    if database.kind == "sqlite":
        mode, synchronous = sql(database.url, ["PRAGMA journal_mode", "PRAGMA synchronous"])
        names = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}
        return f"journal_mode={mode}, synchronous={names.get(synchronous, synchronous)} (identity's settings)"
    fsync, commit, method = sql(database.url, ["SHOW fsync", "SHOW synchronous_commit", "SHOW wal_sync_method"])
    return f"fsync={fsync}, synchronous_commit={commit}, wal_sync_method={method} (server settings)"


def row_counts(database_url: str) -> dict[str, int]:
    """Rows of refresh_token, and the two ways a rotation could be left half-written."""
    total, used_without_child, shared_parent = sql(
        database_url,
        [
            "SELECT COUNT(*) FROM refresh_token",
            "SELECT COUNT(*) FROM refresh_token p WHERE p.used_at IS NOT NULL "
            "AND NOT EXISTS (SELECT 1 FROM refresh_token c WHERE c.parent_id = p.id)",
            "SELECT COUNT(*) FROM (SELECT parent_id FROM refresh_token WHERE parent_id IS NOT NULL "
            "GROUP BY parent_id HAVING COUNT(*) > 1) AS shared",
        ],
    )
    return {"rows": int(total), "used_without_child": int(used_without_child), "shared_parent": int(shared_parent)}


def code_under_test() -> str:
    return working_tree("identity/ or alembic/")


# ------------------------------------------------------------------------------------------------------ the phases


def rules_timeit(number_hint: float) -> dict[str, Any]:
    """Seconds per ``RulesEngine.run`` with no rules and with five no-op rules, in process (timeit, best of 5)."""
    from identity.oauth2.interfaces import Api, Client, Connection, GrantResult, User
    from identity.rules.pipeline import Rule, RulesEngine

    def noop(event: Any, api: Any) -> None:
        del event, api

    async def async_noop(event: Any, api: Any) -> None:
        del event, api

    client = Client(
        client_id=CLIENT_ID,
        name="Bench app",
        token_endpoint_auth_method="none",  # noqa: S106
        secret_hash=None,
        grant_types=frozenset({"password", "refresh_token"}),
        connections=frozenset({"customers"}),
    )
    result = GrantResult(
        grant_type="refresh_token",
        client=client,
        user=User(user_id="auth0|bench", connection="customers", email="user0@bench.test"),
        connection=Connection(id=1, name="customers"),
        api=Api(identifier=AUDIENCE, name="Bench API", scopes=("read:things", "write:things")),
        audience=AUDIENCE,
        scopes=("offline_access", "read:things"),
    )
    engines = {
        "no rules": RulesEngine([]),
        f"{RULES} no-op rules (plain functions)": RulesEngine(
            [Rule(name=f"noop {i}", handler=noop) for i in range(RULES)]
        ),
        f"{RULES} no-op rules (async functions)": RulesEngine(
            [Rule(name=f"async noop {i}", handler=async_noop) for i in range(RULES)]
        ),
    }
    loop = asyncio.new_event_loop()
    out: dict[str, Any] = {}
    try:

        async def nothing() -> None:
            return None

        timers = {"event loop round trip only": timeit.Timer(lambda: loop.run_until_complete(nothing()))}
        for label, engine in engines.items():

            def once(engine: RulesEngine = engine) -> None:
                loop.run_until_complete(
                    engine.run(
                        result,
                        protocol="oauth2-refresh-token",
                        requested_scopes=None,
                        client_ip="127.0.0.1",
                        user_agent="bench",
                    )
                )

            timers[label] = timeit.Timer(once)
        for label, timer in timers.items():
            number, elapsed = timer.autorange()
            number = max(number, int(number * number_hint / max(elapsed, 1e-9)))
            best = min(timer.repeat(repeat=5, number=number)) / number
            out[label] = {"seconds": best, "number": number}
    finally:
        loop.run_until_complete(loop.shutdown_default_executor())
        loop.close()
    return out


def measure(mode: str, base_url: str, pid: int, options: Options, tokens: list[str] | None = None) -> dict[str, Any]:
    """Load the server from a separate process; the load result plus server CPU and machine use in the window."""
    idle_before = wait_for_quiet(step)
    warmup = min(2.0, options.duration / 5)
    start_at = time.time() + 1.5
    params = {
        "base_url": base_url,
        "mode": mode,
        "start_at": start_at,
        "duration": options.duration,
        "warmup": warmup,
        "concurrency": options.concurrency,
        "tokens": tokens or [],
    }
    load_proc = spawn_role(__file__, "load", params, params_on_stdin=True)
    time.sleep(max(0.0, start_at + warmup - time.time()))
    cpu0, busy0 = proc_cpu_seconds(pid), machine_busy()
    t0 = time.perf_counter()
    time.sleep(max(0.0, start_at + options.duration - 0.2 - time.time()))
    cpu1, busy1 = proc_cpu_seconds(pid), machine_busy()
    window = time.perf_counter() - t0
    load = collect(load_proc, options.duration + 90)
    return {
        "load": load,
        "rate": load["ok"] / load["window"],
        "server_cpu": (cpu1 - cpu0) / window,
        "machine_util": (busy1[0] - busy0[0]) / max(1, busy1[1] - busy0[1]),
        "idle_before": idle_before,
    }


def logins(base_url: str, count: int) -> list[str]:
    """One refresh-token family per load connection (password grants, before any clock starts)."""
    import httpx

    tokens = []
    with httpx.Client(base_url=base_url, timeout=60.0) as client:
        for i in range(count):
            email, password = USERS[i % len(USERS)]
            form = {
                "grant_type": "password",
                "client_id": CLIENT_ID,
                "username": email,
                "password": password,
                "scope": SCOPE,
            }
            response = client.post("/oauth/token", data=form)
            if response.status_code != 200 or "refresh_token" not in response.json():
                raise SystemExit(f"a login failed ({response.status_code} {response.text[:200]})")
            tokens.append(response.json()["refresh_token"])
    return tokens


def check_refresh(base_url: str, token: str) -> None:
    """One refresh must succeed and rotate before anything is measured."""
    import httpx

    form = {"grant_type": "refresh_token", "client_id": CLIENT_ID, "refresh_token": token}
    response = httpx.post(base_url + "/oauth/token", data=form, timeout=30)
    body = response.json()
    if response.status_code != 200 or body.get("refresh_token") in (None, token):
        raise SystemExit(f"a refresh grant failed or did not rotate ({response.status_code} {response.text[:200]})")


@dataclass
class Options:
    database_url: str | None
    duration: float
    concurrency: int
    timeit_seconds: float
    write: bool
    command: str


def run(options: Options) -> str:
    info = machine()
    with tempfile.TemporaryDirectory(prefix="identity-bench-refresh-") as tmp:
        workdir = Path(tmp)
        with Database.prepare(options.database_url, workdir) as database:
            env = {
                **os.environ,
                "IDENTITY_DATABASE_URL": database.url,
                "IDENTITY_ENCRYPTION_KEYS": "bench=" + base64.b64encode(secrets.token_bytes(32)).decode(),
            }
            step(f"database: {database.description}")
            run_cli(["db", "upgrade"], env, workdir)
            tenant = workdir / "tenant.toml"
            rules_file = workdir / "noop_rules.py"
            rules_file.write_text(NOOP_RULES)
            commit = durability(database)

            step("in-process RulesEngine.run timings (timeit)")
            engine_times = rules_timeit(options.timeit_seconds)

            phases: dict[str, dict[str, Any]] = {}
            logs: dict[str, str] = {}

            def bare(label: str) -> None:
                port = free_port()
                log = workdir / f"{label}.log"
                command = [sys.executable, __file__, "--role", "bare-server", "--port", str(port)]
                step(f"{label}: bare Litestar GET /ping, {options.concurrency} connections for {options.duration:.0f}s")
                with serving(command, env, workdir, port, log, "/ping") as process:
                    phases[label] = measure("ping", f"http://127.0.0.1:{port}", process.pid, options)
                logs[label] = log.read_text(errors="replace")

            def identity(label: str, rules: bool, extra_env: dict[str, str] | None = None) -> None:
                port = free_port()
                server_env = {**env, "IDENTITY_ISSUER": f"http://127.0.0.1:{port}/", **(extra_env or {})}
                rules_toml = "".join(
                    f'\n[[rules]]\nname = "noop {i}"\nhandler = "{rules_file}:noop_{i}"\n' for i in range(RULES)
                )
                tenant.write_text(("rules = []\n" if not rules else "") + TENANT_TOML + (rules_toml if rules else ""))
                run_cli(["tenant", "apply", str(tenant)], env, workdir)
                log = workdir / f"{label}.log"
                step(f"{label}: refresh grants, {options.concurrency} connections for {options.duration:.0f}s")
                with serving(
                    [IDENTITY, "serve", "--host", "127.0.0.1", "--port", str(port)],
                    server_env,
                    workdir,
                    port,
                    log,
                    "/healthz",
                ) as process:
                    base_url = f"http://127.0.0.1:{port}"
                    tokens = logins(base_url, options.concurrency + 1)
                    check_refresh(base_url, tokens.pop())
                    before = row_counts(database.url)
                    result = measure("refresh", base_url, process.pid, options, tokens)
                after = row_counts(database.url)
                result["rows_added"] = after["rows"] - before["rows"]
                result["half_written"] = after["used_without_child"] + after["shared_parent"]
                phases[label] = result
                logs[label] = log.read_text(errors="replace")

            bare("bare")
            identity("refresh", rules=False)
            identity("refresh, 5 rules", rules=True)
            if database.kind == "sqlite":
                probe = workdir / "probe"
                probe.mkdir()
                (probe / "sitecustomize.py").write_text(SYNCHRONOUS_FULL)
                pragma_log = workdir / "pragma.log"
                identity(
                    "refresh, synchronous=FULL",
                    rules=False,
                    extra_env={"PYTHONPATH": str(probe), "BENCH_PRAGMA_LOG": str(pragma_log)},
                )
                seen = set(pragma_log.read_text().split()) if pragma_log.exists() else set()
                phases["refresh, synchronous=FULL"]["pragma_seen"] = sorted(seen)
            bare("bare, again")

    results = {
        "machine": info,
        "database": database.description,
        "kind": database.kind,
        "durability": commit,
        "code": code_under_test(),
        "engine": engine_times,
        "phases": phases,
        "log_problems": {
            label: [line for line in text.splitlines() if re.search(r"Traceback|ERROR|CRITICAL|\" 5\d\d", line)][:5]
            for label, text in logs.items()
        },
    }
    if os.environ.get("BENCH_JSON"):
        Path(os.environ["BENCH_JSON"]).write_text(json.dumps(results, indent=2))
    return render(results, options)


def step(message: str) -> None:
    print(f"[bench-refresh] {message}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------------------ the report


def render(r: dict[str, Any], options: Options) -> str:
    m, phases, cores = r["machine"], r["phases"], int(r["machine"]["cores"])
    bare, refresh, ruled = phases["bare"], phases["refresh"], phases["refresh, 5 rules"]
    lines = [
        f"### {r['kind']}: {r['database']}",
        "",
        f"- Run: {m['date']}; `{options.command}`",
        f"- Code: {r['code']}",
        f"- Machine: {m['cpu']}, {m['cores']} cores, Linux {m['kernel']}, Python {m['python']}",
        "- Server: ONE process, one uvicorn worker, default info logging (an access-log line per request), for "
        'identity (`identity serve`) and for the bare Litestar app alike (`uvicorn.run(app, log_level="info")`)',
        f"- Commit: {r['durability']}",
        f"- Refresh grant: public client, rotating, leeway 0, scope `{SCOPE}` (one RS256 access token, no ID token); "
        "each connection owns one family and presents its newest token, so every grant is a conditional UPDATE, "
        "an INSERT and a COMMIT before the answer",
        f"- Load: {options.concurrency} concurrent keep-alive connections (async httpx, its own process) for "
        f"{options.duration:.0f}s per run, the first {options.duration - bare['load']['window']:.0f}s discarded; "
        f"it runs on the same {m['cores']} cores as the server",
        "",
        "| Run | Requests/s | p50 / p95 / p99 (ms) | Server CPU | Load generator CPU | Whole machine "
        "| Server CPU per request | Capacity of one full core |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for label, phase in phases.items():
        load, lat = phase["load"], phase["load"]["latency"]
        name = {
            "bare": "Bare Litestar `GET /ping`",
            "bare, again": "Bare Litestar `GET /ping`, again at the end",
            "refresh": "**Refresh grants (rotation + commit), no rules**",
            "refresh, 5 rules": f"Refresh grants, {RULES} no-op rules",
            "refresh, synchronous=FULL": "Refresh grants, no rules, SQLite `synchronous=FULL`",
        }[label]
        per_request = phase["server_cpu"] * 1000 / phase["rate"] if phase["rate"] else float("nan")
        lines.append(
            f"| {name} | {phase['rate']:.0f} | {lat['p50']:.1f} / {lat['p95']:.1f} / {lat['p99']:.1f} | "
            f"{phase['server_cpu'] * 100:.0f}% | {load['cpu'] * 100:.0f}% | {phase['machine_util'] * cores * 100:.0f}% "
            f"| {per_request:.2f} ms | {1000 / per_request:.0f} /s |"
        )
    rules_cost = 1000 / ruled["rate"] - 1000 / refresh["rate"]
    bare_cpu = bare["server_cpu"] * 1000 / bare["rate"]
    refresh_cpu = refresh["server_cpu"] * 1000 / refresh["rate"]
    lines += [
        "",
        f"- **Refresh grants ÷ bare Litestar endpoint: {refresh['rate'] / bare['rate']:.2f}** "
        f"({refresh['rate']:.0f} vs {bare['rate']:.0f} requests/s in the same run); by server CPU per request, "
        f"which does not depend on who saturates first: **{bare_cpu / refresh_cpu:.3f}** ({refresh_cpu:.2f} ms vs "
        f"{bare_cpu:.2f} ms). The capacity column is 1 s divided by the server CPU per request: what the worker would "
        "do with a core to itself.",
        f"- {RULES} no-op rules: {ruled['rate']:.0f} vs {refresh['rate']:.0f} refresh grants/s "
        f"({(ruled['rate'] / refresh['rate'] - 1) * 100:+.0f}%, {rules_cost:+.2f} ms of wall time per request at "
        f"this concurrency; server CPU per request {ruled['server_cpu'] * 1000 / ruled['rate']:.2f} ms vs "
        f"{refresh['server_cpu'] * 1000 / refresh['rate']:.2f} ms).",
    ]
    if "refresh, synchronous=FULL" in phases:
        full = phases["refresh, synchronous=FULL"]
        lines.append(
            f"- SQLite with `synchronous=FULL` (an fsync per commit, durable against power loss): {full['rate']:.0f} "
            f"refresh grants/s, {full['rate'] / refresh['rate']:.2f} times identity's `NORMAL` "
            f"(the server's connections read back synchronous = {', '.join(full.get('pragma_seen', [])) or '?'})."
        )
    lines += [
        "",
        "In-process `RulesEngine.run` (timeit, best of 5; plain rules run in a worker thread, `async` ones on the "
        "loop):",
        "",
        "| Pipeline | Time per run |",
        "|---|---|",
    ]
    for label, timing in r["engine"].items():
        lines.append(f"| {label} | {timing['seconds'] * 1e6:.1f} µs |")
    lines.append("")
    notes = []
    if bare["load"]["cpu"] > 0.85:
        notes.append(
            f"the bare endpoint's rate is bounded by the load generator ({bare['load']['cpu'] * 100:.0f}% of a core, "
            f"the server {bare['server_cpu'] * 100:.0f}%): compare server CPU per request rather than requests/s"
        )
    for label, phase in phases.items():
        if phase["load"]["errors"]:
            notes.append(f"{label}: errors under load: {phase['load']['errors']}")
        if "rows_added" in phase and phase["rows_added"] != phase["load"]["ok_total"]:
            notes.append(
                f"{label}: {phase['load']['ok_total']} refresh grants answered 200 but {phase['rows_added']} rows "
                "were added"
            )
        if phase.get("half_written"):
            notes.append(f"{label}: {phase['half_written']} half-written rotations in refresh_token")
        if phase["idle_before"] > 0.15:
            notes.append(f"{label}: the machine was {phase['idle_before'] * 100:.0f}% busy before the run")
        ours = phase["server_cpu"] + phase["load"]["cpu"]
        if phase["machine_util"] * cores - ours > 0.15:
            notes.append(
                f"{label}: other processes used {(phase['machine_util'] * cores - ours) * 100:.0f}% CPU: noisy numbers"
            )
    for label, problems in r["log_problems"].items():
        if problems:
            notes.append(f"{label}: server log problems: " + "; ".join(f"`{p.strip()[:150]}`" for p in problems))
    checked = [phase for phase in phases.values() if "rows_added" in phase]
    lines.append(
        f"Stored rows after the identity runs: {sum(p['rows_added'] for p in checked)} rows added for "
        f"{sum(p['load']['ok_total'] for p in checked)} refresh grants answered 200; half-written rotations: "
        f"{sum(p['half_written'] for p in checked)}."
    )
    lines.append("")
    if notes:
        lines += ["Problems seen in this run:", "", *[f"- {n}" for n in notes], ""]
    return "\n".join(lines)


DOC_INTRO = """## Refresh grants and rules (`scripts/bench_refresh.py`)

Refresh grants per second on ONE identity worker, every grant rotating its token (a conditional UPDATE, the INSERT of
the successor and a COMMIT before the answer), next to a bare Litestar JSON endpoint served the same way in the same
run; and the cost of the rules pipeline (refresh grants with no rules and with five no-op rules, and
`RulesEngine.run` in process). See the script's docstring for exactly what it does. Each section below is one run on
one database kind; rerunning the script replaces the section of the same kind and leaves the rest of this file alone.
Reproduce with, from the repository root:

```sh
.venv/bin/python scripts/bench_refresh.py                                                    # SQLite
.venv/bin/python scripts/bench_refresh.py --database-url postgresql://postgres@127.0.0.1:5432/postgres
```
"""


def write_doc(section: str, kind: str) -> None:
    """Replace (or append) this script's introduction and its section for ``kind``; nothing else changes."""
    text = DOC.read_text() if DOC.exists() else "# Benchmarks\n"
    for name, body in (("intro", DOC_INTRO), (kind, section)):
        pattern, block = doc_block("bench-refresh", name, body)
        text = (
            pattern.sub(lambda _, block=block: block, text)
            if pattern.search(text)
            else (text.rstrip() + "\n\n" + block)
        )
    save_doc(text)


# ------------------------------------------------------------------------------------------------------------ main


def main(argv: list[str] | None = None) -> None:
    parser = argument_parser(__doc__, 15.0, "seconds of load per run (default 15)")
    parser.add_argument("--concurrency", type=int, default=8, help="concurrent connections (default 8)")
    parser.add_argument("--timeit-seconds", type=float, default=0.5, help="seconds per timeit repetition")
    parser.add_argument("--no-write", action="store_true", help=f"do not update {DOC.relative_to(ROOT)}")
    parser.add_argument("--role", choices=[*sorted(ROLES), "bare-server"], help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.role == "bare-server":
        role_bare_server({"port": args.port})
        return
    if args.role:
        json.dump(ROLES[args.role](json.loads(sys.stdin.read())), sys.stdout)
        return
    if not 1 <= args.concurrency <= 64:
        parser.error("--concurrency must be between 1 and 64")
    if not 5 <= args.duration <= 300:
        parser.error("--duration must be between 5 and 300 seconds")
    if not 0.05 <= args.timeit_seconds <= 10:
        parser.error("--timeit-seconds must be between 0.05 and 10")
    shown = [".venv/bin/python", "scripts/bench_refresh.py", *(argv if argv is not None else sys.argv[1:])]
    options = Options(
        database_url=args.database_url,
        duration=args.duration,
        concurrency=args.concurrency,
        timeit_seconds=args.timeit_seconds,
        write=not args.no_write,
        command=shlex.join(shown),
    )
    started = time.monotonic()
    section = run(options)
    print(section)
    if options.write:
        kind = "sqlite" if "sqlite: " in section.splitlines()[0] else "postgresql"
        write_doc(section, kind)
        step(f"wrote the {kind} section of {DOC.relative_to(ROOT)}")
    step(f"done in {time.monotonic() - started:.0f}s")


if __name__ == "__main__":
    main()
