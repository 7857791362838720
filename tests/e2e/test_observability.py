"""The running server's logs and metrics, as an operator sees them: JSON lines on standard error, Prometheus text."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import httpx

from tests.e2e.conftest import (
    ALICE_CUSTOMER_PASSWORD,
    ALICE_EMAIL,
    PUBLIC_CLIENT,
    AppliedTenant,
    IdentityServer,
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

        # With a metrics port, the public port has no /metrics; the metrics port has them.
        assert httpx.get(f"{quiet.base_url}/metrics").status_code == 404
        separate = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics").text
        assert _sample(separate, "identity_token_grants_total", grant_type="password", outcome="success") == 1
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
