"""Server-side sessions and CSRF protection for the enrollment pages.

- The session data lives in the ``web_session`` table (`SqlSessionStore`), so every instance on the database sees the
  same sessions. Rows are keyed by the SHA-256 of the session id: a copy of the table holds no usable cookie.
- The cookie carries the session id and its HMAC (`SignedSessionBackend`), is ``HttpOnly``, ``SameSite=Lax``, and
  ``Secure`` with the ``__Host-`` prefix when the issuer is https. A new id is issued at sign-in (no fixation), and a
  session ends after `IDLE_SECONDS` without a request.
- CSRF uses Litestar's double-submit cookie with the token in a hidden form field; the middleware is mounted on the
  ``/enroll`` router only, so API clients never meet it.

The cookie and CSRF keys are derived from the first encryption key: rotating it signs everybody out of the pages.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from litestar.config.csrf import CSRFConfig
from litestar.connection import ASGIConnection, Request
from litestar.datastructures import Cookie, MutableScopeHeaders
from litestar.middleware import DefineMiddleware
from litestar.middleware.csrf import CSRFMiddleware
from litestar.middleware.session.server_side import ServerSideSessionBackend, ServerSideSessionConfig
from litestar.stores.base import Store
from litestar.types import Empty, Message, ScopeSession
from litestar.utils.dataclass import extract_dataclass_items
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from identity.clock import Clock
from identity.crypto import sha256_hex
from identity.settings import Settings
from identity.store import web_sessions as queries

__all__ = [
    "IDLE_SECONDS",
    "STORE_NAME",
    "SignedSessionBackend",
    "SignedSessionConfig",
    "SqlSessionStore",
    "csrf_middleware",
    "end_session",
    "session_config",
    "start_session",
]

IDLE_SECONDS = 15 * 60
STORE_NAME = "web_sessions"
_ROTATE = "identity.rotate_session"
_LOADED = "identity.session_loaded"


def _derive_key(settings: Settings, purpose: str) -> bytes:
    return hmac.new(settings.encryption_keys.keys[0][1], b"identity/" + purpose.encode(), hashlib.sha256).digest()


def _secure(settings: Settings) -> bool:
    return settings.issuer.startswith("https://")


class SqlSessionStore(Store):
    """A Litestar `Store` over the ``web_session`` table; time comes from the injected clock."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], clock: Clock) -> None:
        self.sessions = sessions
        self.clock = clock

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self.clock.now(), UTC)

    def _expiry(self, seconds: int | timedelta | None) -> datetime | None:
        if seconds is None:
            return None
        return self._now() + (seconds if isinstance(seconds, timedelta) else timedelta(seconds=seconds))

    async def set(self, key: str, value: str | bytes, expires_in: int | timedelta | None = None) -> None:
        """Store ``value`` under ``key``, replacing what was there."""
        data = value.encode() if isinstance(value, str) else value
        async with self.sessions() as db:
            await queries.put(db, sha256_hex(key), data, self._expiry(expires_in))
            await db.commit()

    async def get(self, key: str, renew_for: int | timedelta | None = None) -> bytes | None:
        """The value under ``key`` unless it expired; ``renew_for`` pushes its expiry forward."""
        async with self.sessions() as db:
            row = await queries.find(db, sha256_hex(key), self._now())
            if row is not None and renew_for is not None:
                await queries.set_expiry(db, row.key_hash, self._expiry(renew_for) or self._now())
            await db.commit()
        return row.data if row is not None else None

    async def delete(self, key: str) -> None:
        """Forget ``key``."""
        await self.discard(key)

    async def discard(self, key: str) -> bool:
        """Forget ``key``; ``False`` when it was already gone (another request ended the session)."""
        async with self.sessions() as db:
            removed = await queries.remove(db, sha256_hex(key))
            await db.commit()
        return removed

    async def create(self, key: str, value: bytes, expires_in: int | None, user_id: str | None) -> None:
        """Store a session under a new id."""
        async with self.sessions() as db:
            await queries.insert(db, sha256_hex(key), value, self._expiry(expires_in), user_id)
            await db.commit()

    async def change(self, key: str, value: bytes, expires_in: int | None, user_id: str | None) -> bool:
        """Replace the data of a live session; ``False`` (and nothing written) when it has ended meanwhile."""
        async with self.sessions() as db:
            changed = await queries.update_live(
                db, sha256_hex(key), value, self._expiry(expires_in), user_id, self._now()
            )
            await db.commit()
        return changed

    async def delete_all(self) -> None:
        """Forget every session."""
        async with self.sessions() as db:
            await queries.remove_all(db)
            await db.commit()

    async def exists(self, key: str) -> bool:
        """Whether ``key`` holds a live value."""
        return await self.get(key) is not None

    async def expires_in(self, key: str) -> int | None:
        """Seconds until ``key`` expires (``None`` when unknown or without expiry)."""
        async with self.sessions() as db:
            row = await queries.find(db, sha256_hex(key), self._now())
            await db.commit()
        if row is None or row.expires_at is None:
            return None
        return int((row.expires_at - self._now()).total_seconds())

    async def purge_expired(self) -> None:
        """Delete the rows of expired sessions."""
        async with self.sessions() as db:
            await queries.purge_expired(db, self._now())
            await db.commit()


class SignedSessionBackend(ServerSideSessionBackend):
    """Server-side sessions whose cookie is ``<id>.<HMAC-SHA256(id)>``; an empty session leaves no row or cookie."""

    config: SignedSessionConfig

    def _sign(self, session_id: str) -> str:
        return session_id + "." + hmac.new(self.config.signing_key, session_id.encode(), hashlib.sha256).hexdigest()

    def _verified_id(self, connection: ASGIConnection[Any, Any, Any, Any]) -> str | None:
        session_id, _, signature = (connection.cookies.get(self.config.key) or "").rpartition(".")
        if not session_id or not hmac.compare_digest(self._sign(session_id), f"{session_id}.{signature}"):
            return None
        return session_id

    def generate_session_id(self) -> str:
        """A new random id (256 bits)."""
        return secrets.token_urlsafe(self.config.session_id_bytes)

    def get_session_id(self, connection: ASGIConnection[Any, Any, Any, Any]) -> str:
        """The id from a correctly signed cookie (empty when there is none: a new id is drawn when storing)."""
        return self._verified_id(connection) or ""

    async def load_from_connection(self, connection: ASGIConnection[Any, Any, Any, Any]) -> dict[str, Any]:
        """The session of a correctly signed cookie, if it is still stored; otherwise an empty one.

        What was loaded is kept in the request's scope: the response writes the session back only if it changed.
        """
        session_id = self._verified_id(connection)
        if session_id is None:
            return {}
        data = await self.get(session_id, store=self.config.get_store_from_app(connection.scope["app"]))
        if data is None:
            return {}
        connection.scope.setdefault("state", {})[_LOADED] = data
        return self.deserialize_data(data)

    async def store_in_message(
        self, scope_session: ScopeSession, message: Message, connection: ASGIConnection[Any, Any, Any, Any]
    ) -> None:
        """Write the session back only if this request changed it, and never re-create one that ended meanwhile.

        - empty session: its row and cookie go (sign-out, expiry);
        - new session (no stored session when the request began, or `start_session` asked for a new id): a new id,
          inserted; rotating a stored session first deletes it, and if another request (a sign-out) deleted it
          already, nothing is created: a request in flight cannot bring a signed-out session back;
        - changed session: an UPDATE of the live row only (no upsert), so a deleted session stays deleted;
        - unchanged session: nothing written (the idle expiry moved when it was read, ``renew_on_access``).
        """
        store = self.config.get_store_from_app(connection.scope["app"])
        if not isinstance(store, SqlSessionStore):
            raise TypeError("the enrollment pages need the SqlSessionStore")
        headers = MutableScopeHeaders.from_message(message)
        params = dict(extract_dataclass_items(self.config, exclude_none=True, include=Cookie.__dict__.keys()))
        state = connection.scope.get("state", {})
        session_id = self._verified_id(connection)
        loaded: bytes | None = state.get(_LOADED)

        def expire_cookie() -> None:
            if self.config.key in connection.cookies:
                expired = {**params, "max_age": 0, "expires": 0}
                headers.add("Set-Cookie", Cookie(key=self.config.key, value="", **expired).to_header(header=""))

        if scope_session is Empty or not scope_session:
            if session_id is not None and loaded is not None:
                await store.discard(session_id)
            expire_cookie()
            return
        data = self.serialize_data(scope_session, connection.scope)
        user_id = scope_session.get("user_id") if isinstance(scope_session, dict) else None
        user_id = user_id if isinstance(user_id, str) else None
        max_age = int(self.config.max_age) if self.config.max_age is not None else None
        if session_id is None or loaded is None or state.get(_ROTATE):
            if session_id is not None and loaded is not None and not await store.discard(session_id):
                expire_cookie()  # the session ended while this request ran: it stays ended
                return
            session_id = self.generate_session_id()
            await store.create(session_id, data, max_age, user_id)
        elif scope_session != self.deserialize_data(loaded) and not await store.change(
            session_id, data, max_age, user_id
        ):
            expire_cookie()
            return
        headers.add(
            "Set-Cookie", Cookie(key=self.config.key, value=self._sign(session_id), **params).to_header(header="")
        )


@dataclass
class SignedSessionConfig(ServerSideSessionConfig):
    """`ServerSideSessionConfig` with the key that signs the cookie."""

    _backend_class = SignedSessionBackend
    signing_key: bytes = field(default=b"", repr=False)


def session_config(settings: Settings) -> SignedSessionConfig:
    """The session cookie of the pages: HttpOnly, SameSite=Lax, Secure and ``__Host-`` under https."""
    secure = _secure(settings)
    return SignedSessionConfig(
        key="__Host-identity-session" if secure else "identity-session",
        max_age=IDLE_SECONDS,
        path="/",
        secure=secure,
        httponly=True,
        samesite="lax",
        store=STORE_NAME,
        renew_on_access=True,
        signing_key=_derive_key(settings, "web-session-cookie"),
    )


def csrf_middleware(settings: Settings) -> DefineMiddleware:
    """Litestar's CSRF middleware (token in the ``_csrf_token`` form field), for the router it is mounted on."""
    secure = _secure(settings)
    config = CSRFConfig(
        secret=_derive_key(settings, "csrf").hex(),
        cookie_name="__Host-csrftoken" if secure else "csrftoken",
        cookie_path="/",
        cookie_secure=secure,
        cookie_httponly=True,
        cookie_samesite="strict",
    )
    return DefineMiddleware(CSRFMiddleware, config=config)


def start_session(request: Request[Any, Any, Any], data: dict[str, Any]) -> None:
    """Replace the session with ``data`` under a new id (sign-in: an id known before it is worthless after)."""
    request.set_session(data)
    request.scope.setdefault("state", {})[_ROTATE] = True


def end_session(connection: ASGIConnection[Any, Any, Any, Any]) -> None:
    """Forget the session and expire its cookie."""
    connection.clear_session()
