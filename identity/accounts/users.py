"""Users of the directories: password authentication and creation."""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from identity.accounts.errors import InvalidUserData, UnknownConnection, UnknownUser, UserExists
from identity.accounts.passwords import PasswordHasher
from identity.accounts.sessions import end_user_sessions
from identity.oauth2.interfaces import Connection, LoginBlocked, User
from identity.store import login_failures
from identity.store import users as user_queries
from identity.store.models import ConnectionRow, UserRow, row_id, utcnow
from identity.store.tenant import tenant_row

__all__ = ["MIN_PASSWORD_LENGTH", "DirectoryAuthenticator", "UserService", "new_user_id"]

MIN_PASSWORD_LENGTH = 8
MAX_PASSWORD_LENGTH = 1024
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_USERNAME = re.compile(r"^[A-Za-z0-9_.+\-]{1,128}$")
_USER_ID = re.compile(r"^[A-Za-z0-9_.\-]{1,50}$")
_PROFILE_FIELDS = ("email_verified", "name", "nickname", "picture")


def new_user_id() -> str:
    """A new, stable, globally unique subject: ``auth0|`` and 96 random bits in hex (Auth0's shape)."""
    return "auth0|" + secrets.token_hex(12)


class DirectoryAuthenticator:
    """`identity.oauth2.interfaces.UserAuthenticator` over the database and Argon2id."""

    def __init__(self, session: AsyncSession, hasher: PasswordHasher) -> None:
        self.session = session
        self.hasher = hasher

    async def by_id(self, user_id: str) -> User | None:
        """The user as stored now (refresh grants reflect the user's current state)."""
        found = await user_queries.by_user_id(self.session, user_id)
        await self.session.commit()
        return user_queries.user_from_row(*found) if found is not None else None

    async def authenticate(
        self, connection: Connection, username: str, password: str, *, ip: str | None = None
    ) -> User | None:
        """The user if the password is right. Unknown users cost one dummy hash, like a wrong password.

        Consecutive failures are counted per (directory, identifier, IP), for unknown identifiers too, so the
        answer never tells whether an account exists; at the tenant's threshold the pair is blocked for a while.
        """
        tenant = await tenant_row(self.session)
        key = login_failures.failure_key(connection.id, user_queries.login_key(username), ip)
        failures = await login_failures.state(self.session, key)
        now = utcnow()
        blocked_for = (now - failures.blocked_at).total_seconds() if failures and failures.blocked_at else None
        if blocked_for is not None and blocked_for < tenant.brute_force_block_seconds:
            await self.session.commit()
            raise LoginBlocked()
        row = await user_queries.by_login(self.session, connection.id, username)
        # End the read transaction before the slow hash, so no connection or lock is held during it.
        await self.session.commit()
        result = await self.hasher.verify(row.password_hash if row is not None else None, password)
        if row is None or not result.ok:
            if failures is not None and failures.blocked_at is not None:
                await login_failures.reset(self.session, key)  # the block expired: start counting again
            await login_failures.record_failure(self.session, key, now, max_attempts=tenant.brute_force_max_attempts)
            return None
        if result.needs_rehash:
            new_hash = await self.hasher.hash(password)
            await user_queries.replace_password_hash(self.session, row_id(row), row.password_hash, new_hash)
        if failures is not None:
            await login_failures.reset(self.session, key)
        if not row.blocked:
            await user_queries.record_login(self.session, row_id(row))
        await self.session.commit()
        return user_queries.user_from_row(row, connection.name)


class UserService:
    """Creation and update of users (CLI, tenant file, admin API)."""

    def __init__(self, session: AsyncSession, hasher: PasswordHasher) -> None:
        self.session = session
        self.hasher = hasher

    async def create(
        self,
        connection: str,
        *,
        password: str,
        email: str | None = None,
        username: str | None = None,
        email_verified: bool = False,
        blocked: bool = False,
        name: str | None = None,
        nickname: str | None = None,
        picture: str | None = None,
        user_id: str | None = None,
        app_metadata: Mapping[str, Any] | None = None,
        user_metadata: Mapping[str, Any] | None = None,
    ) -> tuple[UserRow, str]:
        """Create a user in ``connection``; returns the row and the connection name.

        ``user_id`` (without the ``auth0|`` prefix) keeps an id from another system when users are imported.
        """
        connection_row = await self._connection(connection)
        email, username = _check_identifiers(email, username)
        check_password(password)
        if user_id is not None and not _USER_ID.match(user_id):
            raise InvalidUserData("a user_id has 1 to 50 letters, digits or _ . - (no prefix)")
        row = UserRow(
            user_id="auth0|" + user_id if user_id is not None else new_user_id(),
            connection_id=row_id(connection_row),
            email=email,
            email_key=user_queries.login_key(email) if email else None,
            username=username,
            username_key=user_queries.login_key(username) if username else None,
            password_hash=await self.hasher.hash(password),
            email_verified=email_verified,
            blocked=blocked,
            name=name or email or username,
            nickname=nickname or (email.split("@")[0] if email else username),
            picture=picture,
            app_metadata=dict(app_metadata or {}),
            user_metadata=dict(user_metadata or {}),
        )
        self.session.add(row)
        try:
            await self.session.commit()
        except IntegrityError:
            await self.session.rollback()
            raise UserExists(f"a user with that email or username already exists in {connection!r}") from None
        return row, connection_row.name

    async def upsert(self, connection: str, *, password: str, **fields: Any) -> tuple[UserRow, str, bool]:
        """Create the user, or update password and profile of the existing one; ``True`` when created."""
        connection_row = await self._connection(connection)
        login = fields.get("email") or fields.get("username")
        if not login:
            raise InvalidUserData("a user needs an email or a username")
        existing = await user_queries.by_login(self.session, row_id(connection_row), login)
        if existing is None:
            row, name = await self.create(connection, password=password, **fields)
            return row, name, True
        check_password(password)
        if not (await self.hasher.verify(existing.password_hash, password)).ok:
            # A new password ends every session: refresh tokens issued under the old one stop working, and so do
            # the enrollment pages signed in with it.
            await end_user_sessions(self.session, row_id(existing), existing.user_id, "password_change", utcnow())
        existing.password_hash = await self.hasher.hash(password)
        for key in ("email_verified", "blocked", "name", "app_metadata", "user_metadata"):
            if fields.get(key) is not None:
                setattr(existing, key, fields[key])
        existing.updated_at = utcnow()
        self.session.add(existing)
        await self.session.commit()
        return existing, connection_row.name, False

    async def get(self, user_id: str) -> tuple[UserRow, str]:
        """The user and the name of its connection; `UnknownUser` when there is none."""
        found = await user_queries.by_user_id(self.session, user_id)
        if found is None:
            raise UnknownUser(f"no user {user_id!r}")
        return found

    async def update(self, user_id: str, changes: Mapping[str, Any]) -> tuple[UserRow, str]:
        """Change a user (admin API, CLI). Every change is checked before any is written.

        ``changes`` may hold ``blocked``, ``password``, ``email``, ``username``, ``email_verified``, ``name``,
        ``nickname``, ``picture``, and ``app_metadata``/``user_metadata`` (merged key by key; a ``None`` value removes
        the key, as Auth0's PATCH does). A new password or a block ends every session of the user.
        """
        row, connection = await self.get(user_id)
        end_sessions: str | None = None
        if "email" in changes or "username" in changes:
            email = changes.get("email", row.email)
            username = changes.get("username", row.username)
            email, username = _check_identifiers(email, username)
            row.email, row.email_key = email, user_queries.login_key(email) if email else None
            row.username, row.username_key = username, user_queries.login_key(username) if username else None
        new_hash = None
        if (password := changes.get("password")) is not None:
            check_password(password)
            new_hash = await self.hasher.hash(password)
        for key in _PROFILE_FIELDS:
            if key in changes:
                setattr(row, key, changes[key])
        for key in ("app_metadata", "user_metadata"):
            if (patch := changes.get(key)) is not None:
                merged = dict(getattr(row, key))
                for name, value in patch.items():
                    if value is None:
                        merged.pop(name, None)
                    else:
                        merged[name] = value
                setattr(row, key, merged)
        if new_hash is not None:
            row.password_hash, end_sessions = new_hash, "password_change"
        if changes.get("blocked") is not None:
            if changes["blocked"] and not row.blocked:
                end_sessions = end_sessions or "blocked"
            row.blocked = bool(changes["blocked"])
        row.updated_at = utcnow()
        self.session.add(row)
        if end_sessions is not None:
            # As the CLI does on a new password: refresh tokens and web sessions end, on every instance.
            await end_user_sessions(self.session, row_id(row), row.user_id, end_sessions, utcnow())
        try:
            await self.session.commit()
        except IntegrityError:
            await self.session.rollback()
            raise UserExists(f"a user with that email or username already exists in {connection!r}") from None
        return row, connection

    async def delete(self, user_id: str) -> None:
        """Delete a user with its factors, sessions and tokens (the tables cascade)."""
        row, _ = await self.get(user_id)
        await self.session.delete(row)
        await self.session.commit()

    async def _connection(self, name: str) -> ConnectionRow:
        row = (await self.session.execute(select(ConnectionRow).where(col(ConnectionRow.name) == name))).scalar()
        if row is None:
            raise UnknownConnection(f"no connection named {name!r}")
        return row


def check_password(password: str) -> None:
    """The password policy: at least 8 characters (Auth0's "low" policy), at most 1024."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidUserData(f"the password must have at least {MIN_PASSWORD_LENGTH} characters")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise InvalidUserData(f"the password must have at most {MAX_PASSWORD_LENGTH} characters")


def _check_identifiers(email: str | None, username: str | None) -> tuple[str | None, str | None]:
    email = email.strip() if email else None
    username = username.strip() if username else None
    if not email and not username:
        raise InvalidUserData("a user needs an email or a username")
    if email and not _EMAIL.match(email):
        raise InvalidUserData("the email address is not valid")
    if username and not _USERNAME.match(username):
        raise InvalidUserData("a username has 1 to 128 letters, digits or _ . + - (no @)")
    return email, username
