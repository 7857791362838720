"""The audit log: every authentication event, with Auth0's type codes, to the database and to stdout.

`AuditLog.emit` never blocks and never raises: it logs the event through the stdlib logger ``identity.audit`` (the
event dict in ``extra={"event": ...}``, which `identity.observability.logging` renders as one JSON line, like the
request log) and queues the event for a background task that inserts queued events
in batches on its own database session. A login therefore never waits for the audit insert and never fails because
of it; if the database is down or the queue is full, the event is still on stdout and a warning says how many rows
were lost.

`AuditTrail` gathers, during one request, what the event will say (client, user, connection, addresses), so that
one event per request is written when it ends (`identity.web.oauth`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from identity.store import audit as audit_queries
from identity.store.audit import LogEvent

__all__ = ["DESCRIPTIONS", "AuditLog", "AuditTrail", "LogEvent", "purge"]

logger = logging.getLogger("identity.audit")
_internal = logging.getLogger("identity")

DESCRIPTIONS = {
    "s": "Success Login",
    "f": "Failed Login",
    "fp": "Wrong email or password.",
    "fu": "Wrong email or password.",
    "sepft": "Successful exchange of password for access token",
    "fepft": "Failed exchange of password for access token",
    "seotpft": "Successful exchange of password and OTP challenge for access token",
    "feotpft": "Failed exchange of password and OTP challenge for access token",
    "seoobft": "Successful exchange of password and OOB challenge for access token",
    "feoobft": "Failed exchange of password and OOB challenge for access token",
    "gd_send_email": "An email with a one-time code was sent",
    "gd_send_email_failure": "An email with a one-time code could not be sent",
    "sercft": "Successful exchange of password and MFA recovery code for access token",
    "fercft": "Failed exchange of password and MFA recovery code for access token",
    "sertft": "Successful exchange of refresh token for access token",
    "fertft": "Failed exchange of refresh token for access token",
    "ferrt": "Reused rotating refresh token: the family is revoked",
    "seacft": "Successful exchange of authorization code for access token",
    "feacft": "Failed exchange of authorization code for access token",
    "seccft": "Successful exchange of client credentials for access token",
    "feccft": "Failed exchange of client credentials for access token",
    "mfar": "Multifactor authentication required",
    "gd_start_enroll": "Second factor enrollment started",
    "gd_enrollment_complete": "Second factor enrollment complete",
    "gd_unenroll": "Second factor removed",
    "gd_auth_succeed": "Second factor verified",
    "gd_auth_failed": "Second factor verification failed",
    "gd_otp_rate_limit_exceed": "Too many failed second-factor attempts",
    "gd_recovery_succeed": "Recovery code accepted",
    "gd_recovery_failed": "Recovery code refused",
    "gd_recovery_rate_limit_exceed": "Too many failed recovery code attempts",
    "limit_wc": "An identifier was blocked from an IP after too many failed logins",
    "limit_sul": "An identifier was blocked from every IP after too many failed logins",
    "limit_mu": "An IP was throttled after too many failed logins across accounts",
    "ublkdu": "Brute-force block released",
    "pwd_leak": "Breached password",
    "api_limit": "Temporarily unavailable: the password hashing queue is full",
    "sapi": "Management API operation",
    "fapi": "Failed Management API operation",
    "sdu": "User deleted",
    "w": "Warning",
}
"""Auth0's log-event type codes (API.md §6) and the description each gets unless a more exact one is given."""

_QUEUE_LIMIT = 10_000
_BATCH = 200


class AuditLog:
    """Writes events to stdout at once and to the database in the background."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession] | None) -> None:
        self._sessions = sessions
        self._queue: asyncio.Queue[LogEvent] | None = None
        self._task: asyncio.Task[None] | None = None
        self.dropped = 0
        self._writer: Callable[[AsyncSession, list[LogEvent]], Any] = audit_queries.record

    def emit(self, event: LogEvent) -> None:
        """Log the event and queue it for the database; never raises, never waits."""
        try:
            logger.info("%s %s", event.type, event.description or "", extra={"event": event.to_dict()})
            if self._queue is None:
                return
            self._queue.put_nowait(event)
        except asyncio.QueueFull:
            self.dropped += 1
        except Exception:  # an audit problem must never become a login problem
            _internal.exception("audit event %s could not be queued", event.type)

    async def start(self) -> None:
        """Start the background writer on the running loop."""
        if self._sessions is None or self._task is not None:
            return
        self._queue = asyncio.Queue(maxsize=_QUEUE_LIMIT)
        self._task = asyncio.create_task(self._run(), name="identity-audit-writer")

    async def _run(self) -> None:
        queue = self._queue
        if queue is None:
            return
        while True:
            batch = [await queue.get()]
            while len(batch) < _BATCH and not queue.empty():
                batch.append(queue.get_nowait())
            await self._write(batch)
            for _ in batch:
                queue.task_done()

    async def _write(self, batch: list[LogEvent]) -> None:
        if self._sessions is None:
            return
        try:
            async with self._sessions() as session:
                await self._writer(session, batch)
        except Exception:
            self.dropped += len(batch)
            _internal.warning("audit log: %d event(s) not stored (they are on stdout)", len(batch), exc_info=True)

    async def flush(self) -> None:
        """Wait until every queued event is stored (or given up on)."""
        if self._queue is not None and self._task is not None and not self._task.done():
            await self._queue.join()

    async def close(self) -> None:
        """Store what is queued, then stop the writer."""
        if self._task is None:
            return
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.flush(), timeout=5)
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._task
        self._task = None
        self._queue = None


@dataclass
class AuditTrail:
    """What one request's event will say, filled in as the request goes (by the web layer and the services)."""

    ip: str | None = None
    client_ip: str | None = None
    """The peer that sent the request, when the end user's address came from a trusted header (Auth0's field)."""
    user_agent: str | None = None
    hostname: str | None = None
    client_id: str | None = None
    client_name: str | None = None
    user_id: str | None = None
    user_name: str | None = None
    connection: str | None = None
    connection_id: str | None = None
    audience: str | None = None
    scope: str | None = None
    type: str | None = None
    """A type decided inside a service (``fu``, ``fp``, ``limit_wc``, ...), which wins over the endpoint's guess."""
    description: str | None = None
    details: dict[str, Any] = field(default_factory=dict)
    also: list[str] = field(default_factory=list)
    """Further event types the request caused (an mfa-otp grant that also completed an enrollment)."""

    def note(self, event_type: str, description: str | None = None, **details: Any) -> None:
        """Record the precise outcome (the first one noted wins)."""
        if self.type is None:
            self.type = event_type
            self.description = description
        self.details.update(details)

    def event(self, event_type: str, description: str | None = None) -> LogEvent:
        """The event of this request: the noted type if any, else ``event_type``."""
        chosen = self.type or event_type
        text = (self.description if self.type else None) or description or DESCRIPTIONS.get(chosen)
        return LogEvent(
            type=chosen,
            description=text,
            client_id=self.client_id,
            client_name=self.client_name,
            ip=self.ip,
            client_ip=self.client_ip,
            user_agent=self.user_agent,
            user_id=self.user_id,
            user_name=self.user_name,
            connection=self.connection,
            connection_id=self.connection_id,
            strategy="auth0" if self.connection else None,
            strategy_type="database" if self.connection else None,
            audience=self.audience,
            scope=self.scope,
            hostname=self.hostname,
            details=dict(self.details),
        )

    def copy(self) -> AuditTrail:
        """An independent copy (for a second event of the same request)."""
        return replace(self, details=dict(self.details))


async def purge(session: AsyncSession, *, now: datetime, retention_days: int) -> dict[str, int]:
    """Housekeeping for ``identity purge``: expired attack counters and audit events past retention. Commits.

    Returns how many rows of each kind were removed.
    """
    from identity.store.attack import purge_expired

    counters = await purge_expired(session, now=now.timestamp())
    events = await audit_queries.purge_older_than(session, now - timedelta(days=retention_days))
    return {"attack_counters": counters, "log_events": events}
