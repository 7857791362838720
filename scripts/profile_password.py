"""Where a password grant's CPU goes: one `identity serve` worker under password load, profiled with py-spy.

    .venv/bin/pip install py-spy   # once
    .venv/bin/python scripts/profile_password.py [--seconds 6] [--connections 8]

Seeds 100 users at OWASP's Argon2id cost (as ./scripts/bench does), starts one worker, prints its resident size before
any login, then drives password grants with wrk while `py-spy record --gil` samples the worker, and prints: the grant
rate, the milliseconds per grant during which Python held the GIL (Argon2 runs in threads without it), the functions
that held it longest, and the resident size after the load. docs/benchmarks.md quotes its figures.
"""

from __future__ import annotations

import argparse
import base64
import collections
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import bench

SAMPLES_PER_SECOND = 100


def gil_profile(raw: Path) -> tuple[int, collections.Counter[str]]:
    """Samples in which the worker held the GIL, and the same samples by function (inclusive)."""
    total, functions = 0, collections.Counter[str]()
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        frames = stack.split(";")
        if frames[-1].startswith("Runner.run"):
            continue  # the event loop waiting for work
        total += int(count)
        for name in {re.sub(r" \(.*\)$", "", frame) for frame in frames[1:]}:
            functions[name] += int(count)
    return total, functions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=6)
    parser.add_argument("--connections", type=int, default=8)
    args = parser.parse_args()
    spy = shutil.which("py-spy", path=str(bench.BIN)) or shutil.which("py-spy")
    if spy is None or shutil.which("wrk") is None:
        raise SystemExit("needs py-spy (.venv/bin/pip install py-spy) and wrk (apt-get install wrk)")
    workdir = Path(tempfile.mkdtemp(prefix="identity-profile-"))
    try:
        with bench.database(None, workdir) as db:
            env = {k: v for k, v in os.environ.items() if not k.startswith("IDENTITY_")} | {
                "IDENTITY_DATABASE_URL": db.url,
                "IDENTITY_ENCRYPTION_KEYS": "k1=" + base64.b64encode(os.urandom(32)).decode(),
            }
            bench.seed(db, workdir, 100, 0, env)
            users = workdir / "users.txt"
            users.write_text("".join(f"user{n}@bench.test {bench.PASSWORD}\n" for n in range(100)))
            with bench.server({**env, **bench.OWASP}, 1, workdir, "profile") as target:
                (pid,) = target.workers()
                before = bench.rss_mib(pid)
                raw = workdir / "profile.txt"
                sampler = subprocess.Popen(
                    [spy, "record", "--gil", "--format", "raw", "-r", str(SAMPLES_PER_SECOND), "-o", str(raw),
                     "-d", str(args.seconds), "-p", str(pid)],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                )  # fmt: skip
                result = bench.wrk(target, "password", workdir, conns=args.connections, duration=args.seconds,
                                   users=users, audience=bench.AUDIENCE)  # fmt: skip
                sampler.wait()
                after = bench.rss_mib(pid)
        held, functions = gil_profile(raw)
        grants = max(result.ok, 1)
        print(f"password grants: {result.rate:.1f}/s ({result.ok} in {args.seconds} s, {result.failures} failed)")
        print(f"GIL held per grant: {held * 1000 / SAMPLES_PER_SECOND / grants:.1f} ms")
        print(f"worker RSS: {before:.0f} MiB before the first login, {after:.0f} MiB after the load")
        print("functions holding the GIL, ms per grant (inclusive):")
        for name, count in functions.most_common(40)[8:]:
            print(f"  {count * 1000 / SAMPLES_PER_SECOND / grants:6.2f}  {name}")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
