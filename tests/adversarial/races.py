"""A race harness: N requests that reach the real server together, each over its own connection.

Each request's body is sent but for its last byte; when all N got that far, the last bytes go out at once (the
"last-byte sync" of race testing), so the server sees N complete requests within a millisecond or so and has to
decide them concurrently. How many really overlap in the database is bounded by the server's connection pool.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import httpx
from sqlalchemy import insert, select

from identity.crypto import sha256_hex
from identity.store.db import create_engine
from identity.store.models import MfaTransactionRow

DEFAULT_ROUNDS = 20
DEFAULT_CONCURRENCY = 64


@dataclass(frozen=True)
class Shot:
    """One request of a burst: a form POST (or a GET) with optional headers."""

    path: str
    form: dict[str, str] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    auth: tuple[str, str] | None = None


async def _synchronised_body(body: bytes, arrived: asyncio.Semaphore, go: asyncio.Event) -> AsyncIterator[bytes]:
    yield body[:-1]
    arrived.release()
    await go.wait()
    yield body[-1:]


async def burst_async(base_url: str, shots: Sequence[Shot], *, cookies: dict[str, str] | None = None) -> list[Any]:
    """Fire ``shots`` together; the responses (or the exceptions) in order."""
    limits = httpx.Limits(max_connections=len(shots), max_keepalive_connections=len(shots))
    async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=120, cookies=cookies) as client:
        # No warm-up needed: every connection is open (and its request all but sent) before the last bytes go.
        arrived = asyncio.Semaphore(0)
        go = asyncio.Event()

        async def send(shot: Shot) -> httpx.Response:
            headers = dict(shot.headers)
            if shot.form is None:  # a GET cannot hold back a byte: it starts when all the others are ready
                arrived.release()
                await go.wait()
                return await client.get(shot.path, headers=headers, auth=shot.auth or httpx.USE_CLIENT_DEFAULT)
            body = urlencode(shot.form).encode()
            headers.update({"Content-Type": "application/x-www-form-urlencoded", "Content-Length": str(len(body))})
            return await client.post(
                shot.path,
                content=_synchronised_body(body, arrived, go),
                headers=headers,
                auth=shot.auth or httpx.USE_CLIENT_DEFAULT,
                follow_redirects=False,
            )

        tasks = [asyncio.create_task(send(shot)) for shot in shots]
        for _ in shots:
            await asyncio.wait_for(arrived.acquire(), 60)
        go.set()
        return list(await asyncio.gather(*tasks, return_exceptions=True))


def burst(base_url: str, shots: Sequence[Shot], *, cookies: dict[str, str] | None = None) -> list[Any]:
    return asyncio.run(burst_async(base_url, shots, cookies=cookies))


def clone_mfa_tokens(database_url: str, template: str, count: int) -> list[str]:
    """``count`` fresh mfa_tokens standing for the same paused login as ``template`` (rows copied in the database).

    A login per mfa_token would cost the harness a password hash each; the rows are what a login would store.
    """
    table = MfaTransactionRow.__table__  # type: ignore[attr-defined]
    tokens = [secrets.token_urlsafe(32) for _ in range(count)]

    async def go() -> None:
        engine = create_engine(database_url)
        try:
            async with engine.begin() as conn:
                row = (await conn.execute(select(table).where(table.c.token_hash == sha256_hex(template)))).one()
                values = {name: value for name, value in row._mapping.items() if name not in ("id", "token_hash")}
                await conn.execute(insert(table), [{**values, "token_hash": sha256_hex(token)} for token in tokens])
        finally:
            await engine.dispose()

    asyncio.run(go())
    return tokens
