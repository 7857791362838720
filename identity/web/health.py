"""``/readyz``: whether this instance should get traffic (a load balancer's readiness probe).

``/healthz`` answers liveness (the process serves, the database answers). ``/readyz`` answers 200 only when the
database answers, its schema is at this release's migration head (or at a revision this release does not know: a
newer release migrated it, and the old instances serve on until they are replaced) and the signing keys are loaded,
and 503 with the failing checks otherwise, and from the moment a shutdown begins (``Services.draining``), so a
balancer stops sending new requests while in-flight ones finish.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from litestar import MediaType, Response, get
from litestar.di import NamedDependency
from sqlalchemy import text

from identity.store.db import current_revisions
from identity.web import openapi
from identity.web.deps import Services

__all__ = ["readyz"]

logger = logging.getLogger("identity.health")
_CHECK_TIMEOUT_SECONDS = 5.0


async def _database(services: Services) -> str | None:
    async with services.engine.connect() as connection:
        await connection.execute(text("SELECT 1"))
    return None


async def _migrations(services: Services) -> str | None:
    current = await current_revisions(services.engine)
    if current and not current & services.known_revisions:
        # Migrated by a newer release during a rolling upgrade: this instance keeps serving until it is replaced
        # (an upgrade's migrations keep the previous release working).
        return None
    if current != services.migration_heads:
        return f"the database schema is at {sorted(current) or 'no revision'}, this release needs " + str(
            sorted(services.migration_heads)
        )
    return None


async def _keys(services: Services) -> str | None:
    if services.keys is None:
        return "signing keys are not loaded"
    return None


@get("/readyz", operation_class=openapi.HEALTH_OPERATION, tags=["operations"])
async def readyz(services: NamedDependency[Services]) -> Response[dict[str, Any]]:
    """200 ``{"status": "ready"}``, or 503 with the checks that failed."""
    checks: dict[str, str] = {}
    if services.draining:
        checks["shutdown"] = "shutting down: finishing in-flight requests"
    for name, check in (("database", _database), ("migrations", _migrations), ("keys", _keys)):
        try:
            problem = await asyncio.wait_for(check(services), _CHECK_TIMEOUT_SECONDS)
        except Exception as exc:  # an unreachable database must answer 503, not 500
            logger.warning("readiness check %s failed: %s", name, type(exc).__name__)
            problem = f"{name} check failed ({type(exc).__name__})"
        if problem is not None:
            checks[name] = problem
    headers = {"Cache-Control": "no-store"}
    if checks:
        return Response(
            {"status": "unavailable", "checks": checks}, status_code=503, media_type=MediaType.JSON, headers=headers
        )
    return Response({"status": "ready"}, media_type=MediaType.JSON, headers=headers)


def watch_for_shutdown(services: Services, *, delay_seconds: float = 0.0) -> None:
    """Mark the instance as draining when SIGTERM arrives, then hand the signal to the server (uvicorn).

    Called from the app's startup, when uvicorn has installed its own handler: that handler is wrapped, not replaced.
    With ``delay_seconds`` the server keeps accepting requests for that long after SIGTERM while ``/readyz`` says
    503, so a load balancer polling it stops routing here before the listening socket closes. uvicorn then finishes
    every in-flight request before it exits. A second signal stops at once. Only in the main thread (uvicorn's);
    in-process test clients run the app elsewhere and keep the default.
    """
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return
    loop = asyncio.get_running_loop()
    previous = signal.getsignal(signal.SIGTERM)
    if not callable(previous):
        return
    forward = previous

    def on_sigterm(signum: int, frame: Any) -> None:
        if services.draining or delay_seconds <= 0:
            services.draining = True
            forward(signum, frame)
            return
        services.draining = True
        logger.info("SIGTERM: draining for %.1f s before the server stops accepting", delay_seconds)
        loop.call_soon_threadsafe(loop.call_later, delay_seconds, forward, signum, frame)

    signal.signal(signal.SIGTERM, on_sigterm)
