"""Running the ASGI app: one process, or several worker processes sharing one listening socket.

uvicorn's multi-process path creates its listening socket as ``socket.socket(AF_INET)`` (protocol 0). asyncio only
sets ``TCP_NODELAY`` on accepted connections whose socket says ``IPPROTO_TCP``, so every worker's responses were sent
with Nagle's algorithm on: a response written in two parts (headers, then body) waited for the client's delayed ACK,
about 40 ms per request on Linux. Here the socket is created with ``IPPROTO_TCP`` and ``TCP_NODELAY`` is also set on
the listening socket (Linux copies it to accepted sockets), so every connection of every worker has it.

uvloop and httptools are used when installed (the ``uvicorn[standard]`` extra, a dependency of identity): both are
measured faster than asyncio's default loop and h11 (docs/benchmarks.md).

With metrics on and several workers, the supervisor creates a private directory for prometheus-client's
multiprocess mode before the workers start and removes it at exit (identity.observability.metrics).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import tempfile
from typing import Any

from identity.settings import Settings

__all__ = ["listening_socket", "serve"]


def listening_socket(host: str, port: int) -> socket.socket:
    """A bound TCP socket whose accepted connections get ``TCP_NODELAY``."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock


def serve(
    settings: Settings, *, host: str, port: int, workers: int = 1, loop: str = "auto", http: str = "auto"
) -> None:
    """Serve until interrupted; ``workers`` > 1 forks that many processes, each building its own app."""
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    protocol: Any = http
    if http in ("auto", "httptools") and importlib.util.find_spec("httptools") is not None:
        # httptools with time and size limits (identity.http_limits); each worker applies them from its settings.
        from identity.http_limits import LimitedHttpToolsProtocol, configure

        configure(settings.http)
        protocol = LimitedHttpToolsProtocol
    # log_config=None: uvicorn keeps identity's JSON logging (identity.observability.logging); its access log is
    # replaced by identity's request log.
    # proxy_headers off: uvicorn would otherwise believe X-Forwarded-For from 127.0.0.1 and rewrite the peer.
    # The client address is decided once, by identity.network with IDENTITY_TRUSTED_PROXIES.
    options: dict[str, Any] = {
        "host": host,
        "port": port,
        "log_level": "warning",
        "loop": loop,
        "http": protocol,
        "log_config": None,
        "access_log": False,
        "proxy_headers": False,
    }
    if workers <= 1:
        from identity.app import create_app

        uvicorn.run(create_app(settings), **options)
        return
    config = uvicorn.Config("identity.asgi:app", workers=workers, **options)
    shared = _multiprocess_metrics_dir() if settings.ops.metrics else None
    sock = listening_socket(host, port)
    try:
        Multiprocess(config, sockets=[sock]).run()
    except KeyboardInterrupt:
        pass
    finally:
        sock.close()
        if shared is not None:
            shutil.rmtree(shared, ignore_errors=True)


def _multiprocess_metrics_dir() -> str:
    """A fresh private directory for prometheus-client's multiprocess mode, inherited by the spawned workers.

    Every worker writes its counters there, so a scrape answered by any worker (or by the metrics port, opened by
    the first worker) covers all of them. Fresh for each run: figures of an earlier run are never summed in.
    """
    path = tempfile.mkdtemp(prefix="identity-metrics-")  # mode 0700
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = path
    return path
