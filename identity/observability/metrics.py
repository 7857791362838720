"""Prometheus metrics (prometheus-client), one registry per app.

Off unless ``IDENTITY_METRICS=on``; then served at ``/metrics`` on the main port, or, with
``IDENTITY_METRICS_PORT``, only on that port (bound to ``IDENTITY_METRICS_HOST``, 127.0.0.1 by default), since the
figures are for operators, not the public. Series:

- ``identity_http_requests_total{method, route, status}`` and ``identity_http_request_duration_seconds{method,
  route}``: ``route`` is the route template (``/mfa/authenticators/{authenticator_id}``), ``<unmatched>`` for a 404.
- ``identity_token_grants_total{grant_type, outcome}``: ``outcome`` is ``success`` or the error code
  (``mfa_required``, ``invalid_grant``, ``too_many_attempts``, ...). Unknown grant types count as ``other``.
- ``identity_password_hash_queue_depth`` (hashes submitted, not finished) and
  ``identity_password_hash_wait_seconds`` (time a hash waited for a worker thread).
- ``identity_db_pool_connections{state}``: ``checked_out``, ``idle``, ``overflow``; ``identity_db_pool_size``.

With ``identity serve --workers N`` the supervisor gives the workers a fresh private directory in
``PROMETHEUS_MULTIPROC_DIR`` (prometheus-client's multiprocess mode, see ``identity.server``): every worker writes its
figures there and whichever worker answers a scrape reports the sum over all workers (``MultiProcessCollector``).
The gauges are then written by each worker as it answers requests and summed over the live workers (``livesum``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

from litestar import Response, get
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest, multiprocess
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

__all__ = ["CONTENT_TYPE", "KNOWN_GRANT_TYPES", "Metrics", "multiprocess_dir"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
KNOWN_GRANT_TYPES = frozenset(
    {
        "password",
        "http://auth0.com/oauth/grant-type/password-realm",
        "http://auth0.com/oauth/grant-type/mfa-otp",
        "http://auth0.com/oauth/grant-type/mfa-oob",
        "http://auth0.com/oauth/grant-type/mfa-recovery-code",
        "refresh_token",
        "client_credentials",
        "authorization_code",
        "urn:ietf:params:oauth:grant-type:webauthn",
    }
)
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class _Live(Collector):
    """Gauges read at scrape time: the hash queue and the database pool."""

    def __init__(self, hash_depth: Callable[[], int], pool: Callable[[], Any]) -> None:
        self._hash_depth = hash_depth
        self._pool = pool

    def collect(self) -> Iterator[GaugeMetricFamily]:
        yield GaugeMetricFamily(
            "identity_password_hash_queue_depth",
            "Password hashes submitted and not finished (queued or running).",
            value=self._hash_depth(),
        )
        pool = self._pool()
        connections = GaugeMetricFamily(
            "identity_db_pool_connections", "Database connections of this process's pool.", labels=["state"]
        )
        size = getattr(pool, "size", None)
        if callable(size):
            checked_out = int(pool.checkedout())
            connections.add_metric(["checked_out"], checked_out)
            connections.add_metric(["idle"], int(pool.checkedin()))
            connections.add_metric(["overflow"], max(0, int(pool.overflow())))
            yield connections
            yield GaugeMetricFamily("identity_db_pool_size", "Configured pool size.", value=int(size()))
        else:  # a pool without a fixed size (e.g. NullPool): only what is in use is known
            connections.add_metric(["checked_out"], int(getattr(pool, "checkedout", lambda: 0)()))
            yield connections


def multiprocess_dir() -> str | None:
    """The directory of prometheus-client's multiprocess mode, when this process is one of several workers."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


class _SharedLive:
    """The scrape-time gauges in multiprocess mode: each worker writes its own, the scrape sums the live ones."""

    def __init__(self, hash_depth: Callable[[], int], pool: Callable[[], Any], registry: CollectorRegistry) -> None:
        self._hash_depth = hash_depth
        self._pool = pool
        self.depth = Gauge(
            "identity_password_hash_queue_depth",
            "Password hashes submitted and not finished (queued or running).",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.connections = Gauge(
            "identity_db_pool_connections",
            "Database connections of the workers' pools.",
            ["state"],
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.size = Gauge(
            "identity_db_pool_size",
            "Configured pool size, summed over workers.",
            registry=registry,
            multiprocess_mode="livesum",
        )

    def update(self) -> None:
        self.depth.set(self._hash_depth())
        pool = self._pool()
        size = getattr(pool, "size", None)
        if callable(size):
            self.connections.labels("checked_out").set(int(pool.checkedout()))
            self.connections.labels("idle").set(int(pool.checkedin()))
            self.connections.labels("overflow").set(max(0, int(pool.overflow())))
            self.size.set(int(size()))
        else:
            self.connections.labels("checked_out").set(int(getattr(pool, "checkedout", lambda: 0)()))


class Metrics:
    """The service's metrics and their registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.shared_dir = multiprocess_dir()
        self._shared_live: _SharedLive | None = None
        if self.shared_dir is not None:
            # The metric objects below write to the directory's files; a scrape reads every worker's files.
            self.scrape_registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(self.scrape_registry, path=self.shared_dir)  # type: ignore[no-untyped-call]
        else:
            self.scrape_registry = self.registry
        self.requests = Counter(
            "identity_http_requests",
            "HTTP requests answered, by route template and status.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "identity_http_request_duration_seconds",
            "Time from the request's arrival to the end of its response.",
            ["method", "route"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.grants = Counter(
            "identity_token_grants",
            "Token requests by grant type and outcome (success or the error code).",
            ["grant_type", "outcome"],
            registry=self.registry,
        )
        self.hash_wait = Histogram(
            "identity_password_hash_wait_seconds",
            "Time a password hash waited for a free worker thread.",
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
            registry=self.registry,
        )

    def watch(self, hash_depth: Callable[[], int], pool: Callable[[], Any]) -> None:
        """Add the gauges read at scrape time (in multiprocess mode, written as requests are answered)."""
        if self.shared_dir is not None:
            self._shared_live = _SharedLive(hash_depth, pool, self.registry)
            self._shared_live.update()
        else:
            self.registry.register(_Live(hash_depth, pool))

    def request(self, method: str, route: str, status: int, seconds: float) -> None:
        """Count one answered request."""
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(method, route).observe(seconds)
        if self._shared_live is not None:
            self._shared_live.update()

    def grant(self, grant_type: str | None, outcome: str) -> None:
        """Count one token request."""
        label = grant_type if grant_type in KNOWN_GRANT_TYPES else "other"
        self.grants.labels(label, outcome).inc()

    def render(self) -> bytes:
        """The text exposition format."""
        self.refresh()
        return generate_latest(self.scrape_registry)

    def refresh(self) -> None:
        """In multiprocess mode, write this worker's live gauges now (before a scrape)."""
        if self._shared_live is not None:
            self._shared_live.update()

    def process_exited(self) -> None:
        """In multiprocess mode, drop this worker's live gauges from the sums (its counters stay counted)."""
        if self.shared_dir is not None:
            multiprocess.mark_process_dead(os.getpid(), self.shared_dir)  # type: ignore[no-untyped-call]


def metrics_handler(metrics: Metrics) -> Any:
    """A ``GET /metrics`` route handler for the main port (when no separate metrics port is set)."""

    @get("/metrics", include_in_schema=False, sync_to_thread=False)
    def serve_metrics() -> Response[bytes]:
        return Response(metrics.render(), media_type=CONTENT_TYPE, headers={"Cache-Control": "no-store"})

    return serve_metrics


class _RenderingRegistry(CollectorRegistry):
    """What the metrics port serves: the same figures as ``Metrics.render`` (live gauges refreshed first)."""

    def __init__(self, metrics: Metrics) -> None:
        super().__init__()
        self._metrics = metrics

    def collect(self) -> Iterator[Any]:
        self._metrics.refresh()
        yield from self._metrics.scrape_registry.collect()


def start_metrics_server(metrics: Metrics, host: str, port: int) -> Callable[[], None]:
    """Serve ``/metrics`` on its own port (a thread of prometheus-client); returns the function that stops it."""
    import logging

    from prometheus_client import start_http_server

    try:
        server, thread = start_http_server(port, addr=host, registry=_RenderingRegistry(metrics))
    except OSError as exc:
        # Another worker process of this instance already serves the port.
        logging.getLogger("identity.metrics").warning("metrics port %s:%s not opened: %s", host, port, exc)
        return lambda: None
    logging.getLogger("identity.metrics").info("metrics at http://%s:%s/metrics", host, port)

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

    return stop
