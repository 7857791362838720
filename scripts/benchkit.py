"""Helpers shared by the benchmark scripts (``scripts/bench_attack.py``, ``scripts/bench_mgmt_users.py``).

Imported as ``benchkit``: the scripts run as ``python scripts/<name>.py``, which puts ``scripts/`` on ``sys.path``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import platform
import re
import secrets
import socket
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
IDENTITY = str(VENV_BIN / "identity")
DOC = ROOT / "docs" / "benchmarks.md"

AUDIENCE = "https://api.bench.test/"
# The tenant both scripts apply, from its default directory to its API (each adds its own settings after it).
TENANT_COMMON_TOML = f"""default_directory = "customers"
default_audience = "{AUDIENCE}"

[[connections]]
name = "customers"

[[apis]]
identifier = "{AUDIENCE}"
name = "Bench API"
scopes = ["read:things", "write:things"]
signing_alg = "RS256"
token_lifetime = 3600
"""


# ----------------------------------------------------------------------------------------------------------- stats


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100), nearest-rank on sorted values; NaN when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def summary(latencies_s: list[float]) -> dict[str, float]:
    """Latency summary in milliseconds."""
    ms = [v * 1000 for v in latencies_s]
    return {
        "n": len(ms),
        "mean": statistics.fmean(ms) if ms else float("nan"),
        "p50": percentile(ms, 50),
        "p95": percentile(ms, 95),
        "p99": percentile(ms, 99),
        "max": max(ms) if ms else float("nan"),
    }


# ------------------------------------------------------------------------------------ roles run in child processes


def spawn_role(
    script: str, role: str, params: dict[str, Any], *, params_on_stdin: bool = False
) -> subprocess.Popen[str]:
    """Run ``role`` of ``script`` in a fresh Python process; its JSON result comes on stdout.

    The parameters go as ``--params JSON`` on the command line, or on stdin with ``params_on_stdin``.
    """
    if not params_on_stdin:
        return subprocess.Popen(
            [sys.executable, script, "--role", role, "--params", json.dumps(params)],
            stdout=subprocess.PIPE,
            text=True,
        )
    process = subprocess.Popen(
        [sys.executable, script, "--role", role], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert process.stdin is not None
    process.stdin.write(json.dumps(params))
    process.stdin.close()
    process.stdin = None  # written and closed: communicate() must not touch it again
    return process


def collect(process: subprocess.Popen[str], timeout: float) -> dict[str, Any]:
    """Wait (bounded) for a role process and parse its result."""
    try:
        out, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        raise RuntimeError(f"benchmark child {process.args!r} did not finish in {timeout:.0f}s") from None
    if process.returncode != 0:
        raise RuntimeError(f"benchmark child {process.args!r} failed with exit status {process.returncode}")
    result: dict[str, Any] = json.loads(out)
    return result


# ------------------------------------------------------------------------------------------------- the environment


@dataclass
class Database:
    """The database under test: a temporary SQLite file, or a fresh PostgreSQL database on a given server."""

    kind: str
    url: str
    description: str

    @classmethod
    @contextlib.contextmanager
    def prepare(cls, given: str | None, workdir: Path) -> Iterator[Database]:
        if given is None:
            path = workdir / "bench.db"
            yield cls("sqlite", f"sqlite:///{path}", "SQLite (temporary file, WAL)")
            return
        if given.startswith("sqlite"):
            yield cls("sqlite", given, "SQLite (given URL)")
            return
        if not given.startswith(("postgresql", "postgres:")):
            raise SystemExit(f"unsupported --database-url {given!r}: use sqlite:///... or postgresql://...")
        admin = re.sub(r"^postgres(ql)?(\+\w+)?://", "postgresql://", given)
        name = "identity_bench_" + secrets.token_hex(4)
        base, _, _ = admin.partition("?")
        head, _, _ = base.rpartition("/")
        url = f"{head}/{name}"
        asyncio.run(_pg(admin, f'CREATE DATABASE "{name}"'))
        try:
            version = asyncio.run(_pg(url, "SHOW server_version", fetch=True))
            yield cls("postgresql", url, f"PostgreSQL {version} (fresh database `{name}` on 127.0.0.1, asyncpg)")
        finally:
            asyncio.run(_pg(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def _pg(url: str, statement: str, *, fetch: bool = False) -> Any:
    import asyncpg

    connection = await asyncio.wait_for(asyncpg.connect(url), 10)
    try:
        return await connection.fetchval(statement) if fetch else await connection.execute(statement)
    finally:
        await connection.close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def proc_cpu_seconds(pid: int, tid: int | None = None) -> float:
    """User + system CPU time of a process (all its threads), or of one of its threads, from /proc."""
    path = f"/proc/{pid}/stat" if tid is None else f"/proc/{pid}/task/{tid}/stat"
    fields = Path(path).read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


def wait_for_quiet(step: Callable[[str], None], limit: float = 0.15, patience: float = 60.0) -> float:
    """Wait (bounded) until the machine is mostly idle; returns the last busy fraction measured over one second.

    ``step`` reports progress (each script prints with its own prefix).
    """
    deadline = time.monotonic() + patience
    while True:
        before = machine_busy()
        time.sleep(1.0)
        after = machine_busy()
        busy = (after[0] - before[0]) / max(1, after[1] - before[1])
        if busy <= limit or time.monotonic() > deadline:
            return busy
        step(f"the machine is {busy * 100:.0f}% busy with other work; waiting for it to quiet down")


def machine() -> dict[str, str]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


def git(*args: str) -> str:
    result = subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True, timeout=30, check=True)
    return result.stdout.strip()


def working_tree(under: str) -> str:
    """How to describe the working tree (the editable install) as the code under test.

    ``under`` names, in the description, where uncommitted changes were looked for (identity/ and alembic/).
    """
    head = git("rev-parse", "--short", "HEAD")
    changed = [line[3:] for line in git("status", "--porcelain", "--", "identity", "alembic").splitlines()]
    if changed:
        return f"working tree on {head}, with uncommitted changes to {len(changed)} path(s) under {under}"
    return f"working tree, clean, at {head}"


def run_cli(args: list[str], env: dict[str, str], cwd: Path) -> None:
    result = subprocess.run([IDENTITY, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        raise SystemExit(f"identity {' '.join(args)} failed:\n{result.stderr}")


# ------------------------------------------------------------------------------------------------------ the report


def doc_block(tag: str, name: str, body: str) -> tuple[re.Pattern[str], str]:
    """The pattern of the ``<!-- tag:name -->`` ... ``<!-- /tag:name -->`` block of the doc, and its new text."""
    begin, end = f"<!-- {tag}:{name} -->", f"<!-- /{tag}:{name} -->"
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end) + r"\n?", re.DOTALL)
    return pattern, f"{begin}\n{body.rstrip()}\n{end}\n"


def load_report(
    results: list[tuple[float, float, int]],
    errors: Counter[str],
    *,
    start_at: float,
    duration: float,
    warmup: float,
    cpu: float,
) -> dict[str, Any]:
    """What a load role reports: totals, and the latency of the successes in the steady window (after the warmup)."""
    window_start = start_at + warmup
    steady = [r for r in results if window_start <= r[0] <= start_at + duration]
    ok = [lat for _, lat, status in steady if status == 200]
    return {
        "window": duration - warmup,
        "total": len(results),
        "ok_total": sum(1 for r in results if r[2] == 200),
        "steady": len(steady),
        "ok": len(ok),
        "failed_total": sum(1 for r in results if r[2] != 200),
        "latency": summary(ok),
        "errors": dict(errors.most_common(10)),
        "cpu": cpu,
    }


@contextlib.contextmanager
def serving(
    command: list[str], env: dict[str, str], cwd: Path, port: int, log: Path, ready_path: str, ready: str = "ready"
) -> Iterator[subprocess.Popen[bytes]]:
    """One server process on 127.0.0.1:port, ready when ``ready_path`` answers 200; stopped afterwards.

    ``ready`` is the word for that state in the error when it does not come within 60 s.
    """
    import httpx

    with log.open("wb") as log_file:
        process = subprocess.Popen(command, env=env, cwd=cwd, stdout=log_file, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 60
            while True:
                if process.poll() is not None:
                    raise SystemExit(f"the server exited with status {process.returncode}:\n{log.read_text()}")
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(f"http://127.0.0.1:{port}{ready_path}", timeout=2).status_code == 200:
                        break
                if time.monotonic() > deadline:
                    raise SystemExit(f"the server did not become {ready} in 60s:\n{log.read_text()}")
                time.sleep(0.2)
            yield process
        finally:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def save_doc(text: str) -> None:
    """Write ``docs/benchmarks.md``."""
    DOC.parent.mkdir(parents=True, exist_ok=True)
    DOC.write_text(text)


def argument_parser(doc: str, duration: float, duration_help: str) -> argparse.ArgumentParser:
    """The command-line parser of a benchmark script (described by its docstring), with its first two options."""
    parser = argparse.ArgumentParser(description=doc.split("\n", 1)[0])
    parser.add_argument(
        "--database-url",
        help="sqlite:///... to use as is, or a PostgreSQL server URL (a fresh "
        "database is created there and dropped afterwards); default: a temporary SQLite file",
    )
    parser.add_argument("--duration", type=float, default=duration, help=duration_help)
    return parser
