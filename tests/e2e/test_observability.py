"""The running server's logs and metrics, as an operator sees them: JSON lines on standard error, Prometheus text."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from tests.e2e.conftest import (
    ALICE_CUSTOMER_PASSWORD,
    ALICE_EMAIL,
    PUBLIC_CLIENT,
    AppliedTenant,
    IdentityServer,
    ServerSpec,
    free_port,
    serve_spec,
    start_servers,
    stop_and_check,
)


def _grant(server: IdentityServer, password: str) -> httpx.Response:
    return httpx.post(
        server.token_url,
        data={"grant_type": "password", "client_id": PUBLIC_CLIENT, "username": ALICE_EMAIL, "password": password},
        timeout=30,
    )


def _token(server: IdentityServer, **form: str) -> httpx.Response:
    return httpx.post(server.token_url, data={"grant_type": "password", "client_id": PUBLIC_CLIENT, **form}, timeout=30)


def _sample(metrics: str, name: str, **labels: str) -> float:
    """The value of one series in the text exposition format (0 when absent)."""
    for line in metrics.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', line.split(" ")[0]))
        if all(found.get(key) == value for key, value in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_json_logs_and_metrics_of_a_running_server(
    e2e_env: dict[str, str], applied_tenant: AppliedTenant, tmp_path: Path
) -> None:
    metrics_port = free_port()
    loud, quiet = start_servers(
        [
            serve_spec("observed", {**e2e_env, "IDENTITY_METRICS": "on"}),
            serve_spec(
                "quiet",
                {
                    **e2e_env,
                    "IDENTITY_LOG_LEVEL": "WARNING",
                    "IDENTITY_METRICS": "on",
                    "IDENTITY_METRICS_PORT": str(metrics_port),
                },
            ),
        ],
        tmp_path,
    )
    try:
        for server in (loud, quiet):
            assert _grant(server, ALICE_CUSTOMER_PASSWORD).status_code == 200
            assert _grant(server, "wrong password").status_code == 403
            assert httpx.get(f"{server.base_url}/enroll").status_code == 200

        metrics = httpx.get(f"{loud.base_url}/metrics").text
        assert _sample(metrics, "identity_token_grants_total", grant_type="password", outcome="success") == 1
        assert _sample(metrics, "identity_token_grants_total", grant_type="password", outcome="invalid_grant") == 1
        assert _sample(metrics, "identity_http_requests_total", route="/oauth/token", status="403") == 1
        assert _sample(metrics, "identity_http_request_duration_seconds_count", route="/enroll") == 1
        assert _sample(metrics, "identity_password_hash_wait_seconds_count") >= 2
        assert "identity_password_hash_queue_depth 0.0" in metrics
        assert "identity_db_pool_connections" in metrics

        # The other outcomes an operator watches, on the quiet server (the loud one's log is checked line by line
        # below). mfa_required: a password grant for the MFA API always asks for a second factor.
        mfa = _token(quiet, username=ALICE_EMAIL, password=ALICE_CUSTOMER_PASSWORD, audience=f"{quiet.issuer}mfa/")
        assert (mfa.status_code, mfa.json()["error"]) == (403, "mfa_required")
        # 429: brute-force protection refuses the 11th guess for one identifier from one address (an identifier of
        # its own here, unknown to the tenant, so that no other test's user is blocked).
        guesses = [_token(quiet, username="metrics-guess@e2e.test", password=f"guess {n}") for n in range(11)]
        assert [r.status_code for r in guesses] == [403] * 10 + [429]
        assert guesses[-1].json()["error"] == "too_many_attempts"

        # With a metrics port, the public port has no /metrics; the metrics port has them.
        assert httpx.get(f"{quiet.base_url}/metrics").status_code == 404
        separate = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics").text
        assert _sample(separate, "identity_token_grants_total", grant_type="password", outcome="success") == 1
        assert _sample(separate, "identity_token_grants_total", grant_type="password", outcome="mfa_required") == 1
        assert _sample(separate, "identity_token_grants_total", grant_type="password", outcome="invalid_grant") == 11
        assert _sample(separate, "identity_token_grants_total", grant_type="password", outcome="too_many_attempts") == 1
        assert _sample(separate, "identity_http_requests_total", route="/oauth/token", status="429") == 1
        assert _sample(separate, "identity_http_requests_total", route="/oauth/token", status="403") == 12
    finally:
        stop_and_check(loud)
        stop_and_check(quiet)

    lines = [line for line in loud.process.stderr().splitlines() if line.strip().startswith("{")]
    records: list[dict[str, Any]] = [json.loads(line) for line in lines]
    requests = [r for r in records if r["logger"] == "identity.request"]
    tokens = [r for r in requests if r["route"] == "/oauth/token"]
    assert [r["status"] for r in tokens] == [200, 403]
    assert all(r["client_id"] == PUBLIC_CLIENT and r["client_ip"] == "127.0.0.1" for r in tokens)
    assert tokens[1]["error"] == "invalid_grant"
    assert all({"ts", "level", "method", "duration_ms", "request_id"} <= set(r) for r in requests)
    # Every line the server wrote is JSON, its own events as well as the requests.
    plain = [line for line in loud.process.stderr().splitlines() if line.strip() and not line.startswith("{")]
    assert plain == [], plain
    assert ALICE_CUSTOMER_PASSWORD not in loud.process.stderr()
    # At WARNING nothing of the normal traffic is logged.
    assert '"identity.request"' not in quiet.process.stderr()


def _workers_spec(name: str, env: dict[str, str]) -> ServerSpec:
    return ServerSpec(
        name=name,
        args=lambda port: ["serve", "--host", "127.0.0.1", "--port", str(port), "--workers", "2"],
        env=lambda port: {**env, "IDENTITY_ISSUER": f"http://127.0.0.1:{port}/"},
    )


def _descendants(pid: int) -> list[int]:
    """The processes below ``pid`` (from /proc)."""
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        children = parents.get(todo.pop(), [])
        found += children
        todo += children
    return found


def _multiprocess_dir(server: IdentityServer) -> Path:
    """The PROMETHEUS_MULTIPROC_DIR the supervisor gave its workers (read from a worker's environment)."""
    for pid in _descendants(server.process.process.pid):
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        for entry in environ:
            if entry.startswith(b"PROMETHEUS_MULTIPROC_DIR="):
                return Path(entry.split(b"=", 1)[1].decode())
    raise AssertionError("no worker has PROMETHEUS_MULTIPROC_DIR")


def _per_worker_jwks_counts(shared: Path, tmp_path: Path) -> dict[str, float]:
    """Each worker's own JWKS request count, read from its counter file alone."""
    counts = {}
    for index, file in enumerate(sorted(shared.glob("counter_*.db"))):
        alone = tmp_path / f"alone-{index}"
        alone.mkdir(parents=True)
        shutil.copy(file, alone / file.name)
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=str(alone))
        text = generate_latest(registry).decode()
        counts[file.name] = _sample(text, "identity_http_requests_total", route=JWKS_ROUTE, status="200")
    return counts


JWKS_ROUTE = "/.well-known/jwks.json"


def _jwks_burst(url: str, requests: int = 40) -> int:
    """``requests`` JWKS requests, eight at a time, each on a fresh connection; all must be answered 200."""
    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(lambda _: httpx.get(url, timeout=10).status_code, range(requests)))
    assert statuses == [200] * requests
    return requests


def test_metrics_of_several_workers_cover_all_of_them(
    e2e_env: dict[str, str], applied_tenant: AppliedTenant, tmp_path: Path
) -> None:
    metrics_port = free_port()
    main, separate = start_servers(
        [
            _workers_spec("workers-metrics", {**e2e_env, "IDENTITY_METRICS": "on"}),
            _workers_spec(
                "workers-metrics-port",
                {**e2e_env, "IDENTITY_METRICS": "on", "IDENTITY_METRICS_PORT": str(metrics_port)},
            ),
        ],
        tmp_path,
    )
    shared_dirs = []
    try:
        for server, scrape_url in (
            (main, f"{main.base_url}/metrics"),
            (separate, f"http://127.0.0.1:{metrics_port}/metrics"),
        ):
            shared = _multiprocess_dir(server)
            shared_dirs.append(shared)
            assert shared.is_dir() and (shared.stat().st_mode & 0o077) == 0
            jwks_url = server.base_url + JWKS_ROUTE
            sent = _jwks_burst(jwks_url)
            per_worker = _per_worker_jwks_counts(shared, tmp_path / f"{server.port}-{sent}")
            answered = [name for name, count in per_worker.items() if count > 0]
            if len(answered) == 1:
                # The kernel wakes every worker on a new connection and the first to run takes it, so one worker
                # can take them all (2,000 in a row in a CI run). Paused, it cannot: the other must answer.
                # Well inside uvicorn's 5-second health check, so the supervisor does not replace it.
                paused = int(answered[0].removeprefix("counter_").removesuffix(".db"))
                os.kill(paused, signal.SIGSTOP)
                try:
                    sent += _jwks_burst(jwks_url)
                finally:
                    os.kill(paused, signal.SIGCONT)
                per_worker = _per_worker_jwks_counts(shared, tmp_path / f"{server.port}-{sent}")
            assert len([count for count in per_worker.values() if count > 0]) == 2, per_worker
            assert sum(per_worker.values()) == sent
            # Whichever worker answers the scrape, the figure is the sum over both.
            for _ in range(5):
                scraped = httpx.get(scrape_url).text
                assert _sample(scraped, "identity_http_requests_total", route=JWKS_ROUTE, status="200") == sent
                assert "identity_password_hash_queue_depth 0.0" in scraped
                assert 'identity_db_pool_connections{state="checked_out"}' in scraped
        assert httpx.get(f"{separate.base_url}/metrics").status_code == 404
    finally:
        stop_and_check(main)
        stop_and_check(separate)
    # The supervisor removed its private directory at exit.
    assert shared_dirs and not any(shared.exists() for shared in shared_dirs)
