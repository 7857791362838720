"""Password hashing: Argon2id through argon2-cffi, always off the event loop.

Hashing costs tens of milliseconds of CPU and ~19 MiB of memory by design. It runs in a bounded thread pool (argon2-cffi
releases the GIL while hashing), so a burst of logins queues there instead of stalling the event loop, and memory
stays bounded by the number of workers. Unknown users are checked against a dummy hash with the same parameters, so
"no such user" and "wrong password" take the same time.

Load shedding: a login is admitted (`PasswordHasher.admission`) only while fewer than ``workers + queue`` logins
are hashing or waiting to; past that it fails at once with `HashingUnavailable` (the endpoint answers 503 with
``Retry-After``), and an admitted login that waits longer than ``wait_ms`` for a worker gives up the same way. So a
burst costs the excess requests a fast refusal instead of making every login, real users' included, slower. A
login whose password is checked may give its place back before slow work that is not hashing
(`leave_hash_admission`: an emailed code at the first-party endpoint waits for the mail server).
"""

from __future__ import annotations

import asyncio
import contextvars
import math
import secrets
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import TypeVar

from argon2 import PasswordHasher as _Argon2
from argon2 import Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from identity.settings import Argon2Params

__all__ = ["HashSlot", "HashingUnavailable", "PasswordHasher", "Verification", "leave_hash_admission"]

T = TypeVar("T")


class HashingUnavailable(Exception):
    """Every hash worker is busy and the queue is full (or the wait was too long): try again later."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"password hashing is saturated; retry after {retry_after} s")
        self.retry_after = retry_after


class Verification:
    """The outcome of a password check."""

    __slots__ = ("needs_rehash", "ok")

    def __init__(self, *, ok: bool, needs_rehash: bool = False) -> None:
        self.ok = ok
        self.needs_rehash = needs_rehash


class PasswordHasher:
    """Argon2id hashing and verification in a bounded pool of worker threads."""

    def __init__(self, params: Argon2Params, *, workers: int, queue: int | None = None, wait_ms: int = 2000) -> None:
        self.workers = workers
        self.queue = queue if queue is not None else 4 * workers
        self.wait_seconds = wait_ms / 1000
        self._admitted = 0
        self._running = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._lock = threading.Lock()
        self.computations = 0
        """How many Argon2 computations ran (hashes and verifications): the hook attack tests count with."""
        self.peak_admitted = 0
        """The most logins admitted at once (tests use it to show a burst really was concurrent)."""
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

    @property
    def queued(self) -> int:
        """Logins admitted and not yet hashing."""
        return max(0, self._admitted - self._running)

    @property
    def admitted(self) -> int:
        """Logins admitted now (at most ``workers + queue``)."""
        return self._admitted

    def _retry_after(self) -> int:
        return max(1, math.ceil(self.wait_seconds))

    @asynccontextmanager
    async def admission(self) -> AsyncIterator[HashSlot]:
        """Admit one login that will hash, or raise `HashingUnavailable` at once when the queue is full.

        Re-entrant within a task: the token endpoint admits a password request before any other work (so a flood
        is refused before it costs database round trips), and the password check inside it reuses that admission.
        """
        held = _ADMITTED.get()
        if held is not None and held._hasher is self and not held.left:
            yield held
            return
        if self._admitted >= self.workers + self.queue:
            raise HashingUnavailable(self._retry_after())
        self._admitted += 1
        self.peak_admitted = max(self.peak_admitted, self._admitted)
        slot = HashSlot(self)
        token = _ADMITTED.set(slot)
        try:
            yield slot
        finally:
            _ADMITTED.reset(token)
            slot.leave()

    async def _acquire(self, wait: float | None) -> None:
        if self._running < self.workers and not self._waiters:
            self._running += 1
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await asyncio.wait_for(waiter, wait)
        except TimeoutError:
            if waiter.done() and not waiter.cancelled():
                self._release()  # handed a worker just as the wait ran out: pass it on
            raise HashingUnavailable(self._retry_after()) from None
        finally:
            if waiter in self._waiters:
                self._waiters.remove(waiter)

    def _release(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the worker passes straight to the next waiter
                return
        self._running -= 1

    async def _in_worker(self, work: Callable[[], T], *, wait: float | None = None) -> T:
        submitted = time.perf_counter()

        def timed() -> T:
            if (observe := self.on_wait) is not None:
                observe(time.perf_counter() - submitted)
            return work()

        self.pending += 1
        try:
            await self._acquire(wait)
            try:
                return await asyncio.get_running_loop().run_in_executor(self._pool, timed)
            finally:
                self._release()
        finally:
            self.pending -= 1

    def _count(self) -> None:
        with self._lock:
            self.computations += 1

    def close(self) -> None:
        """Stop the worker threads."""
        self._pool.shutdown(wait=False, cancel_futures=True)

    def hash_sync(self, password: str) -> str:
        """Hash in the calling thread (for the CLI and the tenant loader, which are not on an event loop)."""
        return self._hash(password)

    async def hash(self, password: str) -> str:
        """Hash a new password in the worker pool (not shed: callers are admins and password changes)."""
        return await self._in_worker(lambda: self._hash(password))

    async def verify(self, password_hash: str | None, password: str, *, wait: float | None = None) -> Verification:
        """Check ``password`` against ``password_hash``; ``None`` checks against the dummy hash and fails.

        With ``wait``, give up with `HashingUnavailable` when no worker is free within that many seconds.
        """
        target = password_hash if password_hash is not None else self._dummy_hash
        ok = await self._in_worker(lambda: self._verify(target, password), wait=wait)
        return self._verification(password_hash, ok=ok)

    def _verification(self, password_hash: str | None, *, ok: bool) -> Verification:
        if not ok or password_hash is None:
            return Verification(ok=False)
        return Verification(ok=True, needs_rehash=self._argon2.check_needs_rehash(password_hash))

    def _hash(self, password: str) -> str:
        self._count()
        return self._argon2.hash(password)

    def _verify(self, password_hash: str, password: str) -> bool:
        self._count()
        try:
            return self._argon2.verify(password_hash, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False


_ADMITTED: contextvars.ContextVar[HashSlot | None] = contextvars.ContextVar("identity_hash_admission", default=None)


class HashSlot:
    """An admitted login's right to wait (at most ``wait_ms``) for a hash worker."""

    def __init__(self, hasher: PasswordHasher) -> None:
        self._hasher = hasher
        self.left = False
        """The login gave its place back (`leave`): a later admission in the same task is a new one."""

    def leave(self) -> None:
        """Give the place in the hash queue back (once; the admission's end does it otherwise)."""
        if not self.left:
            self.left = True
            self._hasher._admitted -= 1

    async def verify(self, password_hash: str | None, password: str) -> Verification:
        """Like `PasswordHasher.verify`; raises `HashingUnavailable` when no worker freed up in time."""
        return await self._hasher.verify(password_hash, password, wait=self._hasher.wait_seconds)


def leave_hash_admission() -> None:
    """Give this task's place in the hash queue back, if it holds one: its password was checked already.

    For slow work after the password that is not hashing (an email to the mail server), so that it keeps no other
    login out; the load shedding counts logins that will hash, not logins waiting for something else.
    """
    slot = _ADMITTED.get()
    if slot is not None:
        slot.leave()
