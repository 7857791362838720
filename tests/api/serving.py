"""A real uvicorn server for an app, in the test's own event loop: true concurrency over TCP on 127.0.0.1, while the
test can still read the app's in-process counters (the hasher's ``computations``)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import uvicorn
from litestar import Litestar

__all__ = ["serving"]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@asynccontextmanager
async def serving(app: Litestar, *, connections: int = 200) -> AsyncIterator[httpx.AsyncClient]:
    """Serve ``app`` with uvicorn (proxy headers off, as ``identity serve``) and yield a client pointed at it."""
    config = uvicorn.Config(app, host="127.0.0.1", port=_free_port(), log_level="warning", proxy_headers=False)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
        limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
        base_url = f"http://127.0.0.1:{config.port}"
        async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=120) as client:
            yield client
    finally:
        server.should_exit = True
        await task
