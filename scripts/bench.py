#!/usr/bin/env python3
"""Benchmark the password grant of one identity worker against a bare Argon2 loop on the same machine.

Usage (from the repository root)::

    .venv/bin/python scripts/bench.py                                   # SQLite (temporary file)
    .venv/bin/python scripts/bench.py --database-url postgresql://postgres@127.0.0.1:5432/postgres

With a PostgreSQL URL the script creates a fresh ``identity_bench_<random>`` database on that server and drops it
afterwards. It migrates it, applies a small tenant, starts ONE ``identity serve`` process on a free port of
127.0.0.1 and measures, in this order:

1. bare Argon2id ``verify`` (same parameters as the server) for a fixed time, in one thread and in a thread pool the
   size of ``IDENTITY_HASH_WORKERS`` (default: the number of CPUs), in a separate process;
2. ``GET /.well-known/jwks.json`` latency on the idle server;
3. sequential wrong-password, unknown-user and successful grants, interleaved, on the idle server;
4. password grants from an async httpx load generator (a separate process, N concurrent connections, D seconds),
   while another process polls ``GET /.well-known/jwks.json`` every 20 ms.

During the load it also reads, from /proc, the CPU time of the server, of its event-loop thread (and how long that
thread waited for a CPU), of the load generator and the probe, of PostgreSQL, and of the whole machine, so that
contention from unrelated processes shows up in the report instead of silently skewing it. Before the baseline and
before the load it waits (at most 60 s each) for the machine to be nearly idle.

``--git-ref REF`` runs the server from ``git archive REF`` instead of the working tree. The Argon2id parameters come
from ``IDENTITY_ARGON2_TIME_COST`` / ``IDENTITY_ARGON2_MEMORY_KIB`` / ``IDENTITY_ARGON2_PARALLELISM`` like the
server's, so ``IDENTITY_ARGON2_TIME_COST=1 IDENTITY_ARGON2_MEMORY_KIB=64`` measures everything except the hash.

All load goes to 127.0.0.1 only and is bounded in request count (by concurrency) and time. The results are printed
as Markdown and written to ``docs/benchmarks.md`` (the section of the same database kind is replaced).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import re
import secrets
import shlex
import subprocess
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchkit import (
    DOC,
    IDENTITY,
    ROOT,
    TENANT_COMMON_TOML,
    Database,
    argument_parser,
    collect,
    doc_block,
    free_port,
    git,
    load_report,
    machine,
    machine_busy,
    proc_cpu_seconds,
    run_cli,
    save_doc,
    serving,
    spawn_role,
    summary,
    wait_for_quiet,
    working_tree,
)

CLIENT_ID = "bench-cli"
USERS = [(f"user{i}@bench.test", f"bench password number {i}") for i in range(4)]
# Targets of the wrong-password requests: enough of them that none reaches the brute-force threshold (10
# consecutive failures per identifier and IP), so every answer is the plain 403 and no block is measured.
WRONG_USERS = [(f"typo{i}@bench.test", f"typo user password {i}") for i in range(25)]
# The server's Argon2id parameters (identity.settings reads the same variables, with the same defaults).
ARGON2 = {
    "time_cost": int(os.environ.get("IDENTITY_ARGON2_TIME_COST", 2)),
    "memory_cost": int(os.environ.get("IDENTITY_ARGON2_MEMORY_KIB", 19 * 1024)),
    "parallelism": int(os.environ.get("IDENTITY_ARGON2_PARALLELISM", 1)),
    "hash_len": 32,
    "salt_len": 16,
}

TENANT_TOML = f"""
[tenant]
friendly_name = "Benchmark"
{TENANT_COMMON_TOML}
[[clients]]
client_id = "{CLIENT_ID}"
name = "Bench CLI"
token_endpoint_auth_method = "none"
grant_types = ["password"]
connections = ["customers"]
""" + "".join(
    f'\n[[users]]\nconnection = "customers"\nemail = "{email}"\npassword = "{password}"\n'
    for email, password in USERS + WRONG_USERS
)


# ------------------------------------------------------------------------------------ roles run in child processes


def role_argon2(params: dict[str, Any]) -> dict[str, Any]:
    """Bare Argon2id verify loop: ``threads`` threads for ``duration`` seconds each verifying a prepared hash."""
    from argon2 import PasswordHasher, Type

    hasher = PasswordHasher(type=Type.ID, **ARGON2)
    password = "a prepared password for the baseline"
    prepared = hasher.hash(password)
    hasher.verify(prepared, password)  # warm up
    threads, duration = params["threads"], params["duration"]
    deadline = time.perf_counter() + duration

    def loop() -> int:
        count = 0
        while time.perf_counter() < deadline:
            hasher.verify(prepared, password)
            count += 1
        return count

    started = time.perf_counter()
    cpu0 = time.process_time()
    with ThreadPoolExecutor(max_workers=threads) as pool:
        counts = [f.result() for f in [pool.submit(loop) for _ in range(threads)]]
    elapsed = time.perf_counter() - started
    cpu = time.process_time() - cpu0
    return {"threads": threads, "verifies": sum(counts), "elapsed": elapsed, "cpu": cpu}


def role_load(params: dict[str, Any]) -> dict[str, Any]:
    """Password grants from ``concurrency`` connections until ``start + duration`` (wall clock)."""
    import httpx

    async def run() -> dict[str, Any]:
        start_at, duration, warmup = params["start_at"], params["duration"], params["warmup"]
        concurrency = params["concurrency"]
        results: list[tuple[float, float, int]] = []  # (finished at, latency, status); status 0 = exception
        errors: Counter[str] = Counter()
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        async with httpx.AsyncClient(base_url=params["base_url"], limits=limits, timeout=30.0) as client:
            await asyncio.sleep(max(0.0, start_at - time.time()))
            end = time.time() + duration
            cpu0, wall0 = time.process_time(), time.perf_counter()

            async def worker(index: int) -> None:
                i = index
                while time.time() < end:
                    email, password = USERS[i % len(USERS)]
                    i += 1
                    form = {"grant_type": "password", "client_id": CLIENT_ID, "username": email, "password": password}
                    t0 = time.perf_counter()
                    try:
                        response = await client.post("/oauth/token", data=form)
                        status = response.status_code
                        if status != 200:
                            errors[f"HTTP {status}: {response.text[:120]}"] += 1
                    except httpx.HTTPError as exc:
                        status = 0
                        errors[f"{type(exc).__name__}: {exc}"[:160]] += 1
                    results.append((time.time(), time.perf_counter() - t0, status))

            await asyncio.gather(*(worker(i) for i in range(concurrency)))
            cpu = (time.process_time() - cpu0) / (time.perf_counter() - wall0)
        return load_report(results, errors, start_at=start_at, duration=duration, warmup=warmup, cpu=cpu)

    return asyncio.run(run())


def role_jwks(params: dict[str, Any]) -> dict[str, Any]:
    """``GET /.well-known/jwks.json`` every ``interval`` seconds, sequentially, from ``start_at`` for ``duration``."""
    import httpx

    latencies: list[float] = []
    errors: Counter[str] = Counter()
    interval = params["interval"]
    with httpx.Client(base_url=params["base_url"], timeout=10.0) as client:
        client.get("/.well-known/jwks.json")  # open the connection before measuring
        time.sleep(max(0.0, params["start_at"] - time.time()))
        end = time.time() + params["duration"]
        next_at = time.perf_counter()
        cpu0, wall0 = time.process_time(), time.perf_counter()
        while time.time() < end:
            t0 = time.perf_counter()
            try:
                response = client.get("/.well-known/jwks.json")
                if response.status_code == 200 and b'"keys"' in response.content:
                    latencies.append(time.perf_counter() - t0)
                else:
                    errors[f"HTTP {response.status_code}"] += 1
            except httpx.HTTPError as exc:
                errors[type(exc).__name__] += 1
            next_at += interval
            time.sleep(max(0.0, next_at - time.perf_counter()))
        cpu = (time.process_time() - cpu0) / (time.perf_counter() - wall0)
    return {"latency": summary(latencies), "errors": dict(errors), "cpu": cpu}


ROLES = {"argon2": role_argon2, "load": role_load, "jwks": role_jwks}


# ------------------------------------------------------------------------------------------------- the environment


def loop_schedstat(pid: int) -> tuple[float, float]:
    """(seconds on a CPU, seconds runnable but waiting for a CPU) of the server's main thread (the event loop)."""
    with contextlib.suppress(OSError, ValueError):
        running, waiting, _ = Path(f"/proc/{pid}/task/{pid}/schedstat").read_text().split()
        return int(running) / 1e9, int(waiting) / 1e9
    return float("nan"), float("nan")


def postgres_cpu_seconds() -> float:
    """CPU time of every PostgreSQL server process on the machine (to tell the database from noise)."""
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            text = stat.read_text()
            if text[text.index("(") + 1 : text.rindex(")")] in ("postgres", "postmaster"):
                fields = text.rsplit(")", 1)[1].split()
                total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def code_under_test(git_ref: str | None, workdir: Path) -> tuple[str | None, str]:
    """Where the server's ``identity`` package comes from (a PYTHONPATH entry, or None) and how to describe it.

    Without ``git_ref`` the server runs the working tree (the editable install). With it, the tree of that commit is
    exported (``git archive``, read-only for the repository) and put first on the server's PYTHONPATH.
    """
    if git_ref is None:
        return None, working_tree("identity/")
    commit = git("rev-parse", "--verify", f"{git_ref}^{{commit}}")
    source = workdir / "src"
    source.mkdir()
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", "--format=tar", commit], capture_output=True, timeout=60, check=True
    )
    subprocess.run(["tar", "-x", "-C", str(source)], input=archive.stdout, timeout=60, check=True)
    return str(source), f"commit {commit[:7]} (`--git-ref {git_ref}`, exported with git archive)"


def server(
    env: dict[str, str], cwd: Path, port: int, log: Path
) -> contextlib.AbstractContextManager[subprocess.Popen[bytes]]:
    """ONE ``identity serve`` process on 127.0.0.1:port, ready when /healthz answers."""
    command = [IDENTITY, "serve", "--host", "127.0.0.1", "--port", str(port)]
    return serving(command, env, cwd, port, log, "/healthz", ready="healthy")


# ------------------------------------------------------------------------------------------------------ the phases


def check_grant(base_url: str, log: Path) -> None:
    """One password grant must succeed before anything is measured: a broken server is not benchmarked."""
    import httpx

    email, password = USERS[0]
    form = {"grant_type": "password", "client_id": CLIENT_ID, "username": email, "password": password}
    response = httpx.post(base_url + "/oauth/token", data=form, timeout=30)
    if response.status_code != 200 or "access_token" not in response.json():
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:])
        raise SystemExit(f"a password grant failed ({response.status_code} {response.text[:200]}); server log:\n{tail}")


def sequential_grants(base_url: str, samples: int) -> dict[str, dict[str, float]]:
    """Interleaved wrong-password / unknown-user / correct grants, one at a time, on the idle server."""
    import httpx

    kinds: dict[str, list[float]] = {"wrong password": [], "unknown user": [], "success": []}
    statuses: dict[str, Counter[int]] = {kind: Counter() for kind in kinds}
    email, password = USERS[0]
    with httpx.Client(base_url=base_url, timeout=30.0) as client:
        for i in range(samples):
            # Each failure goes to another identifier (unknown ones are new every time), so the brute-force
            # protection never blocks one; the successes use a user that never fails, so they reset nothing.
            forms = {
                "wrong password": {"username": WRONG_USERS[i % len(WRONG_USERS)][0], "password": "not the password"},
                "unknown user": {"username": f"nobody{i}@bench.test", "password": "not the password"},
                "success": {"username": email, "password": password},
            }
            for kind in kinds if i % 2 == 0 else reversed(kinds):
                form = {"grant_type": "password", "client_id": CLIENT_ID, **forms[kind]}
                t0 = time.perf_counter()
                response = client.post("/oauth/token", data=form)
                kinds[kind].append(time.perf_counter() - t0)
                statuses[kind][response.status_code] += 1
    out: dict[str, dict[str, Any]] = {}
    for kind, latencies in kinds.items():
        out[kind] = {**summary(latencies), "statuses": dict(statuses[kind])}
    return out


@dataclass
class Options:
    database_url: str | None
    duration: float
    concurrency: int
    jwks_interval: float
    baseline_duration: float
    samples: int
    write: bool
    git_ref: str | None
    command: str


def run(options: Options) -> tuple[str, str]:
    """Set up, measure, and return the Markdown section and the database kind."""
    hash_workers = int(os.environ.get("IDENTITY_HASH_WORKERS") or os.cpu_count() or 2)
    info = machine()
    with tempfile.TemporaryDirectory(prefix="identity-bench-") as tmp:
        workdir = Path(tmp)
        with Database.prepare(options.database_url, workdir) as database:
            port = free_port()
            pythonpath, code = code_under_test(options.git_ref, workdir)
            env = {
                **os.environ,
                **(
                    {"PYTHONPATH": os.pathsep.join(filter(None, [pythonpath, os.environ.get("PYTHONPATH")]))}
                    if pythonpath
                    else {}
                ),
                "IDENTITY_DATABASE_URL": database.url,
                "IDENTITY_ISSUER": f"http://127.0.0.1:{port}/",
                "IDENTITY_ENCRYPTION_KEYS": "bench=" + base64.b64encode(secrets.token_bytes(32)).decode(),
                "IDENTITY_HASH_WORKERS": str(hash_workers),
            }
            tenant = workdir / "tenant.toml"
            tenant.write_text(TENANT_TOML)
            step(f"database: {database.description}; code: {code}")
            run_cli(["db", "upgrade"], env, workdir)
            run_cli(["tenant", "apply", str(tenant)], env, workdir)

            seconds = options.baseline_duration
            idle_before = wait_for_quiet(step)
            step(f"bare Argon2id baseline: 1 thread, then {hash_workers} threads, {seconds:.0f}s each")
            single = collect(spawn_role(__file__, "argon2", {"threads": 1, "duration": options.baseline_duration}), 120)
            pool = collect(
                spawn_role(__file__, "argon2", {"threads": hash_workers, "duration": options.baseline_duration}), 120
            )

            log = workdir / "server.log"
            with server(env, workdir, port, log) as process:
                base_url = f"http://127.0.0.1:{port}"
                step("JWKS on the idle server")
                idle_jwks = collect(
                    spawn_role(
                        __file__,
                        "jwks",
                        {
                            "base_url": base_url,
                            "start_at": time.time() + 0.5,
                            "duration": min(5.0, options.duration / 2),
                            "interval": options.jwks_interval,
                        },
                    ),
                    60,
                )
                check_grant(base_url, log)
                step(f"sequential grants: {options.samples} each of wrong password, unknown user, success")
                sequential = sequential_grants(base_url, options.samples)

                step(f"password-grant load: {options.concurrency} connections for {options.duration:.0f}s + JWKS probe")
                idle_before = max(idle_before, wait_for_quiet(step))
                warmup = min(2.0, options.duration / 5)
                start_at = time.time() + 1.5  # both children are up and connected by then
                load_proc = spawn_role(
                    __file__,
                    "load",
                    {
                        "base_url": base_url,
                        "start_at": start_at,
                        "duration": options.duration,
                        "warmup": warmup,
                        "concurrency": options.concurrency,
                    },
                )
                jwks_proc = spawn_role(
                    __file__,
                    "jwks",
                    {
                        "base_url": base_url,
                        "start_at": start_at + warmup,
                        "duration": options.duration - warmup - 0.5,
                        "interval": options.jwks_interval,
                    },
                )
                time.sleep(max(0.0, start_at + warmup - time.time()))
                cpu0, busy0 = proc_cpu_seconds(process.pid), machine_busy()
                loop0, pg0 = loop_schedstat(process.pid), postgres_cpu_seconds()
                t0 = time.perf_counter()
                time.sleep(max(0.0, start_at + options.duration - 0.5 - time.time()))
                cpu1, busy1 = proc_cpu_seconds(process.pid), machine_busy()
                loop1, pg1 = loop_schedstat(process.pid), postgres_cpu_seconds()
                window = time.perf_counter() - t0
                load = collect(load_proc, options.duration + 90)
                loaded_jwks = collect(jwks_proc, options.duration + 60)
                server_cpu = (cpu1 - cpu0) / window
                loop_cpu = (loop1[0] - loop0[0]) / window
                loop_wait = (loop1[1] - loop0[1]) / window
                postgres_cpu = (pg1 - pg0) / window
                machine_util = (busy1[0] - busy0[0]) / max(1, busy1[1] - busy0[1])
                alive = process.poll() is None
            log_text = log.read_text(errors="replace")

    results = {
        "machine": info,
        "database": database.description,
        "code": code,
        "kind": database.kind,
        "hash_workers": hash_workers,
        "single": single,
        "pool": pool,
        "idle_jwks": idle_jwks,
        "sequential": sequential,
        "load": load,
        "loaded_jwks": loaded_jwks,
        "server_cpu": server_cpu,
        "loop_cpu": loop_cpu,
        "loop_wait": loop_wait,
        "postgres_cpu": postgres_cpu,
        "idle_before": idle_before,
        "machine_util": machine_util,
        "server_alive": alive,
        "log_problems": [
            line for line in log_text.splitlines() if re.search(r"Traceback|ERROR|CRITICAL|\" 5\d\d", line)
        ][:20],
        "log_lines": log_text.count("\n"),
    }
    if os.environ.get("BENCH_JSON"):
        Path(os.environ["BENCH_JSON"]).write_text(json.dumps(results, indent=2))
    return render(results, options), database.kind


def step(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------------------ the report


def _ms(value: float) -> str:
    return f"{value:.1f}"


def render(r: dict[str, Any], options: Options) -> str:
    m = r["machine"]
    single_rate = r["single"]["verifies"] / r["single"]["elapsed"]
    pool_rate = r["pool"]["verifies"] / r["pool"]["elapsed"]
    load = r["load"]
    grants_rate = load["ok"] / load["window"]
    lat = load["latency"]
    idle, loaded = r["idle_jwks"]["latency"], r["loaded_jwks"]["latency"]
    seq = r["sequential"]
    wrong, unknown = seq["wrong password"], seq["unknown user"]
    failures = load["failed_total"]
    grant_cpu_ms = r["server_cpu"] * 1000 / grants_rate
    verify_cpu_ms = r["pool"]["cpu"] * 1000 / r["pool"]["verifies"]
    pg_cpu = r["postgres_cpu"] if r["kind"] == "postgresql" else 0.0
    pg_note = "; PostgreSQL excluded" if pg_cpu else ""
    ours = r["server_cpu"] + load["cpu"] + r["loaded_jwks"]["cpu"] + pg_cpu
    other_cpu = max(0.0, r["machine_util"] * int(m["cores"]) - ours)
    lines = [
        f"### {r['kind']}: {r['database']}",
        "",
        f"- Run: {m['date']}; `{options.command}`",
        f"- Code: {r['code']}",
        f"- Machine: {m['cpu']}, {m['cores']} cores, Linux {m['kernel']}, Python {m['python']}",
        f"- Server: ONE `identity serve` process (one uvicorn worker, default info logging), "
        f"`IDENTITY_HASH_WORKERS={r['hash_workers']}`, Argon2id t={ARGON2['time_cost']}, "
        f"m={ARGON2['memory_cost']} KiB, p={ARGON2['parallelism']}, RS256 access tokens",
        f"- Load: {options.concurrency} concurrent keep-alive connections (async httpx, its own process) for "
        f"{options.duration:.0f}s, the first {options.duration - load['window']:.0f}s discarded as warm-up; "
        f"JWKS probe (another process) every {options.jwks_interval * 1000:.0f} ms. The load generator and the "
        f"probe run on the same {m['cores']} cores as the server.",
        "",
        "| Measure | Value |",
        "|---|---|",
        f"| Bare Argon2id verify, 1 thread | {single_rate:.1f} /s ({1000 / single_rate:.1f} ms each) |",
        f"| Bare Argon2id verify, {r['pool']['threads']} threads | {pool_rate:.1f} /s "
        f"(the loop process used {r['pool']['cpu'] / r['pool']['elapsed'] * 100:.0f}% CPU) |",
        f"| **Password grants, one worker** | **{grants_rate:.1f} /s** ({load['ok']} OK in {load['window']:.0f}s) |",
        f"| **Ratio grants ÷ bare Argon2 ({r['pool']['threads']} threads)** | **{grants_rate / pool_rate:.2f}** |",
        f"| Ratio grants ÷ bare Argon2 (1 thread) | {grants_rate / single_rate:.2f} |",
        f"| Grant latency under load p50 / p95 / p99 / max (ms) | {_ms(lat['p50'])} / {_ms(lat['p95'])} / "
        f"{_ms(lat['p99'])} / {_ms(lat['max'])} |",
        f"| Failed grants during the load (whole run) | {failures} of {load['total']} |",
        f"| CPU during the load (of {m['cores']}00%): server / load generator / JWKS probe / whole machine | "
        f"{r['server_cpu'] * 100:.0f}% / {load['cpu'] * 100:.0f}% / {r['loaded_jwks']['cpu'] * 100:.0f}% / "
        f"{r['machine_util'] * int(m['cores']) * 100:.0f}% |",
        f"| Server CPU by thread during the load: event loop (main thread) / hash pool and other threads | "
        f"{r['loop_cpu'] * 100:.0f}% / {(r['server_cpu'] - r['loop_cpu']) * 100:.0f}% |",
        f"| Event loop thread runnable but waiting for a CPU during the load (of wall time) | "
        f"{r['loop_wait'] * 100:.0f}% |",
        *([f"| PostgreSQL server processes' CPU during the load | {pg_cpu * 100:.0f}% |"] if pg_cpu else []),
        f"| CPU of other processes on the machine during the load (noise{pg_note}) | {other_cpu * 100:.0f}% |",
        f"| CPU per operation: server per grant under load / bare Argon2 verify ({r['pool']['threads']} threads) | "
        f"{grant_cpu_ms:.1f} ms / {verify_cpu_ms:.1f} ms |",
        f"| CPU-normalised ratio (bare verify CPU ÷ server CPU per grant; insensitive to other load) | "
        f"{verify_cpu_ms / grant_cpu_ms:.2f} |",
        f"| **JWKS p99 while grants saturate the CPU** | **{_ms(loaded['p99'])} ms** |",
        f"| JWKS under load p50 / p95 / p99 / max (ms), n | {_ms(loaded['p50'])} / {_ms(loaded['p95'])} / "
        f"{_ms(loaded['p99'])} / {_ms(loaded['max'])}, {loaded['n']} |",
        f"| JWKS idle p50 / p95 / p99 / max (ms), n | {_ms(idle['p50'])} / {_ms(idle['p95'])} / "
        f"{_ms(idle['p99'])} / {_ms(idle['max'])}, {idle['n']} |",
        f"| Wrong password, idle, mean / p50 (ms), n | {_ms(wrong['mean'])} / {_ms(wrong['p50'])}, {wrong['n']} |",
        f"| Unknown user, idle, mean / p50 (ms), n | {_ms(unknown['mean'])} / {_ms(unknown['p50'])}, {unknown['n']} |",
        f"| Successful grant, idle, mean / p50 (ms), n | {_ms(seq['success']['mean'])} / "
        f"{_ms(seq['success']['p50'])}, {seq['success']['n']} |",
        "",
    ]
    notes = []
    for kind in ("wrong password", "unknown user", "success"):
        expected = 200 if kind == "success" else 403
        statuses = seq[kind]["statuses"]
        if set(statuses) != {str(expected)} and set(statuses) != {expected}:
            notes.append(f"sequential {kind}: unexpected statuses {statuses}")
    if load["errors"]:
        notes.append(f"grant errors under load: {load['errors']}")
    for name in ("idle_jwks", "loaded_jwks"):
        if r[name]["errors"]:
            notes.append(f"JWKS errors ({name}): {r[name]['errors']}")
    if r["idle_before"] > 0.15:
        notes.append(
            f"the machine was {r['idle_before'] * 100:.0f}% busy with other work before the baseline or the load"
        )
    if other_cpu > 0.15:
        notes.append(f"other processes used {other_cpu * 100:.0f}% CPU during the load: the numbers are noisy")
    if not r["server_alive"]:
        notes.append("the server process exited during the run")
    if r["log_problems"]:
        notes.append("server log problems: " + "; ".join(f"`{p.strip()[:150]}`" for p in r["log_problems"][:5]))
    if notes:
        lines += ["Problems seen in this run:", "", *[f"- {n}" for n in notes], ""]
    return "\n".join(lines)


DOC_HEADER = """# Benchmarks

## Password grant and JWKS under load (`scripts/bench.py`)

Produced by `scripts/bench.py` (see its docstring for exactly what it measures). Each section is one run on one
database kind; rerunning the script replaces the section of the same kind. Reproduce with, from the repository root:

```sh
.venv/bin/python scripts/bench.py --git-ref HEAD                                     # SQLite
.venv/bin/python scripts/bench.py --git-ref HEAD --database-url postgresql://postgres@127.0.0.1:5432/postgres
```

`--git-ref HEAD` runs the server from `git archive HEAD` (read-only for the repository), so changes in progress in
the working tree do not leak into the numbers; leave it out to benchmark the working tree.

The PostgreSQL run creates a fresh `identity_bench_<random>` database on that server and drops it afterwards.
Everything runs on one machine: the load generator and the JWKS probe share the CPU with the server, so the numbers
are a lower bound for a server with the machine to itself.
"""


NOTES_ANCHOR = "<!-- bench:notes -->"


def write_doc(section: str, kind: str) -> None:
    pattern, block = doc_block("bench", kind, section)
    text = DOC.read_text() if DOC.exists() else DOC_HEADER
    if pattern.search(text):
        text = pattern.sub(lambda _: block, text)
    elif NOTES_ANCHOR in text:  # hand-written notes stay after the measured sections
        text = text.replace(NOTES_ANCHOR, block + "\n" + NOTES_ANCHOR, 1)
    else:
        text = text.rstrip() + "\n\n" + block
    save_doc(text)


# ------------------------------------------------------------------------------------------------------------ main


def main(argv: list[str] | None = None) -> None:
    parser = argument_parser(__doc__, 20.0, "seconds of password-grant load (default 20)")
    parser.add_argument("--concurrency", type=int, default=8, help="concurrent grant connections (default 8)")
    parser.add_argument("--jwks-interval", type=float, default=0.02, help="seconds between JWKS probes")
    parser.add_argument("--baseline-duration", type=float, default=5.0, help="seconds per bare Argon2 run")
    parser.add_argument("--samples", type=int, default=100, help="sequential requests of each kind")
    parser.add_argument(
        "--git-ref",
        help="benchmark this commit (exported with git archive) instead of the working tree, e.g. HEAD",
    )
    parser.add_argument("--no-write", action="store_true", help=f"do not update {DOC.relative_to(ROOT)}")
    parser.add_argument("--role", choices=sorted(ROLES), help=argparse.SUPPRESS)
    parser.add_argument("--params", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.role:
        json.dump(ROLES[args.role](json.loads(args.params)), sys.stdout)
        return
    if not 1 <= args.concurrency <= 256:
        parser.error("--concurrency must be between 1 and 256")
    if not 1 <= args.samples <= 8 * len(WRONG_USERS):
        parser.error(f"--samples must be between 1 and {8 * len(WRONG_USERS)} (brute-force protection)")
    if not 5 <= args.duration <= 600:
        parser.error("--duration must be between 5 and 600 seconds")
    shown = [".venv/bin/python", "scripts/bench.py", *(argv if argv is not None else sys.argv[1:])]
    options = Options(
        database_url=args.database_url,
        duration=args.duration,
        concurrency=args.concurrency,
        jwks_interval=args.jwks_interval,
        baseline_duration=args.baseline_duration,
        samples=args.samples,
        write=not args.no_write,
        git_ref=args.git_ref,
        command=shlex.join(shown),
    )
    started = time.monotonic()
    section, kind = run(options)
    print(section)
    if options.write:
        write_doc(section, kind)
        step(f"wrote the {kind} section of {DOC.relative_to(ROOT)}")
    step(f"done in {time.monotonic() - started:.0f}s")


if __name__ == "__main__":
    main()
