"""``identity serve --workers 2``: no response waits for the client's delayed ACK.

Without ``TCP_NODELAY`` on accepted connections, a response written in two parts (headers, then body) is held back by
Nagle's algorithm until the client acknowledges the first part, and Linux clients delay that ACK by about 40 ms: one
keep-alive connection then gets about 23 responses a second. With the socket set up right, a small response on a
keep-alive connection takes well under a millisecond on an idle machine; the bound below (median of 50 under 10 ms)
leaves a wide margin for a loaded one while the stall, 40 ms on every request, cannot pass it.
"""

from __future__ import annotations

import http.client
import statistics
import time
from collections.abc import Iterator

import pytest

from tests.e2e.conftest import (
    AppliedTenant,
    IdentityServer,
    ServerSpec,
    start_servers,
    stop_and_check,
)

REQUESTS = 50
MEDIAN_BOUND_S = 0.010


@pytest.fixture(scope="module")
def two_workers(
    e2e_env: dict[str, str], applied_tenant: AppliedTenant, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[IdentityServer]:
    spec = ServerSpec(
        name="workers-2",
        args=lambda port: ["serve", "--host", "127.0.0.1", "--port", str(port), "--workers", "2"],
        env=lambda port: {**e2e_env, "IDENTITY_ISSUER": f"http://127.0.0.1:{port}/"},
    )
    (server,) = start_servers([spec], tmp_path_factory.mktemp("workers-logs"))
    try:
        yield server
    finally:
        stop_and_check(server)


def _timed_gets(server: IdentityServer, path: str) -> list[float]:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        durations = []
        for _ in range(REQUESTS + 5):
            started = time.perf_counter()
            connection.request("GET", path)
            response = connection.getresponse()
            body = response.read()
            durations.append(time.perf_counter() - started)
            assert response.status == 200, body
            assert response.getheader("connection", "").lower() != "close"  # the same connection throughout
        return durations[5:]  # the first requests warm up the worker
    finally:
        connection.close()


@pytest.mark.parametrize("path", ["/.well-known/jwks.json", "/.well-known/openid-configuration"])
def test_a_keep_alive_connection_never_waits_for_a_delayed_ack(two_workers: IdentityServer, path: str) -> None:
    durations = _timed_gets(two_workers, path)

    median = statistics.median(durations)
    assert median < MEDIAN_BOUND_S, f"median {median * 1000:.1f} ms over {REQUESTS} requests (Nagle stall is ~40 ms)"
