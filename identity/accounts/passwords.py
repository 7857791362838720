"""Password hashing: Argon2id through argon2-cffi, always off the event loop.

Hashing costs tens of milliseconds of CPU and ~19 MiB of memory by design. It runs in a bounded thread pool (argon2-cffi
releases the GIL while hashing), so a burst of logins queues there instead of stalling the event loop, and memory
stays bounded by the number of workers. Unknown users are checked against a dummy hash with the same parameters, so
"no such user" and "wrong password" take the same time.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from argon2 import PasswordHasher as _Argon2
from argon2 import Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from identity.settings import Argon2Params

__all__ = ["PasswordHasher", "Verification"]

T = TypeVar("T")


class Verification:
    """The outcome of a password check."""

    __slots__ = ("needs_rehash", "ok")

    def __init__(self, *, ok: bool, needs_rehash: bool = False) -> None:
        self.ok = ok
        self.needs_rehash = needs_rehash


class PasswordHasher:
    """Argon2id hashing and verification in a bounded pool of worker threads."""

    def __init__(self, params: Argon2Params, *, workers: int) -> None:
        self._argon2 = _Argon2(
            time_cost=params.time_cost,
            memory_cost=params.memory_kib,
            parallelism=params.parallelism,
            hash_len=32,
            salt_len=16,
            type=Type.ID,
        )
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="argon2")
        self._dummy_hash = self._argon2.hash(secrets.token_urlsafe(24))
        self.pending = 0
        """Hashes submitted and not finished (queued or running): the queue depth the metrics report."""
        self.on_wait: Callable[[float], None] | None = None
        """Told, from the worker thread, how long each hash waited for it (the metrics' hash wait)."""

    def close(self) -> None:
        """Stop the worker threads."""
        self._pool.shutdown(wait=False, cancel_futures=True)

    def hash_sync(self, password: str) -> str:
        """Hash in the calling thread (for the CLI and the tenant loader, which are not on an event loop)."""
        return self._argon2.hash(password)

    async def hash(self, password: str) -> str:
        """Hash a new password in the worker pool."""
        return await self._run(self._argon2.hash, password)

    async def verify(self, password_hash: str | None, password: str) -> Verification:
        """Check ``password`` against ``password_hash``; ``None`` checks against the dummy hash and fails."""
        target = password_hash if password_hash is not None else self._dummy_hash
        ok = await self._run(self._verify, target, password)
        if not ok or password_hash is None:
            return Verification(ok=False)
        return Verification(ok=True, needs_rehash=self._argon2.check_needs_rehash(password_hash))

    async def _run(self, work: Callable[..., T], *args: str) -> T:
        submitted = time.perf_counter()

        def timed() -> T:
            if (observe := self.on_wait) is not None:
                observe(time.perf_counter() - submitted)
            return work(*args)

        self.pending += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, timed)
        finally:
            self.pending -= 1

    def _verify(self, password_hash: str, password: str) -> bool:
        try:
            return self._argon2.verify(password_hash, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False
