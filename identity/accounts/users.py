"""Users of the directories: password authentication and creation."""

from __future__ import annotations

import re
import secrets
import unicodedata
from collections.abc import Mapping
from typing import Any, NoReturn

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from identity.accounts.attack import AttemptReservation, ProtectionPolicy, first_leak_report, reserve_attempt
from identity.accounts.errors import InvalidUserData, UnknownConnection, UnknownUser, UserExists
from identity.accounts.password_policy import check_identifier, check_password, is_common, min_length_for, normalize
from identity.accounts.passwords import HashingUnavailable, PasswordHasher
from identity.accounts.sessions import end_user_sessions
from identity.audit import AuditTrail
from identity.clock import Clock, SystemClock, now_utc
from identity.oauth2.interfaces import Connection, LoginBlocked, Overloaded, PasswordLeaked, User
from identity.store import attack as counters
from identity.store import users as user_queries
from identity.store.models import ConnectionRow, UserRow, row_id
from identity.store.tenant import tenant_row, tenant_settings

__all__ = ["DirectoryAuthenticator", "UserService", "new_user_id", "user_identifier_hashes"]

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_USERNAME = re.compile(r"^[A-Za-z0-9_.+\-]{1,128}$")
_USER_ID = re.compile(r"^[A-Za-z0-9_.\-]{1,50}$")
_PROFILE_FIELDS = ("email_verified", "name", "given_name", "family_name", "nickname", "picture")


def new_user_id() -> str:
    """A new, stable, globally unique subject: ``auth0|`` and 96 random bits in hex (Auth0's shape)."""
    return "auth0|" + secrets.token_hex(12)


class DirectoryAuthenticator:
    """`identity.oauth2.interfaces.UserAuthenticator` over the database and Argon2id, with attack protection."""

    def __init__(
        self,
        session: AsyncSession,
        hasher: PasswordHasher,
        *,
        clock: Clock | None = None,
        trail: AuditTrail | None = None,
    ) -> None:
        self.session = session
        self.hasher = hasher
        self.clock = clock or SystemClock()
        self.trail = trail

    async def by_id(self, user_id: str) -> User | None:
        """The user as stored now (refresh grants reflect the user's current state).

        Does not commit: the read belongs to the request's transaction (a refresh grant reads the token and its user
        and rotates the token in one).
        """
        found = await user_queries.by_user_id(self.session, user_id)
        return user_queries.user_from_row(*found) if found is not None else None

    async def authenticate(
        self, connection: Connection, username: str, password: str, *, ip: str | None = None
    ) -> User | None:
        """The user if the password is right. Unknown users cost one dummy hash, like a wrong password.

        Order: admission to the hash queue (shed at once when full), then the attempt reserved in the database
        (`identity.accounts.attack`), then the hash. Unknown identifiers are counted like known ones, so neither
        the answer nor a block tells whether an account exists.
        """
        tenant = await tenant_settings(self.session)  # the request's cached configuration: no query
        policy = ProtectionPolicy.from_tenant(tenant)
        login = user_queries.login_key(username)
        if self.trail is not None:
            self.trail.user_name = username[:320]
            self.trail.connection, self.trail.connection_id = connection.name, str(connection.id)
        try:
            async with self.hasher.admission() as slot:
                reservation = await reserve_attempt(
                    self.session,
                    policy,
                    connection_id=connection.id,
                    connection=connection.name,
                    login_key=login,
                    ip=ip,
                    now=self.clock.now(),
                )
                row = await user_queries.by_login(self.session, connection.id, username)
                # One transaction: the reservation and the read. It ends before the slow hash, so no connection or
                # lock is held during it.
                await self.session.commit()
                try:
                    result = await slot.verify(row.password_hash if row is not None else None, normalize(password))
                except HashingUnavailable:
                    await reservation.cancel(self.session)
                    raise
        except LoginBlocked as blocked:
            self._note_blocked(blocked)
            raise
        except HashingUnavailable as busy:
            self._note("api_limit")
            raise Overloaded(busy.retry_after) from None
        if row is None or not result.ok:
            self._note("fu" if row is None else "fp", user=row)
            return None
        if policy.breached_passwords and is_common(normalize(password)):
            await self._refuse_leaked(row, reservation, ip=ip)
        if result.needs_rehash:
            new_hash = await self.hasher.hash(normalize(password))
            await user_queries.replace_password_hash(self.session, row_id(row), row.password_hash, new_hash)
        await reservation.succeeded(self.session)
        if not row.blocked:
            await user_queries.record_login(self.session, row_id(row), now_utc(self.clock))
        await self.session.commit()
        if self.trail is not None:
            self.trail.user_id = row.user_id
            if row.blocked:
                self.trail.note("f", "user is blocked")
        return user_queries.user_from_row(row, connection.name)

    async def _refuse_leaked(self, row: UserRow, reservation: AttemptReservation, *, ip: str | None) -> NoReturn:
        """Refuse the right password because it is a breached one (API.md §4.6).

        The attempt was no wrong guess, so its count is cleared. A ``pwd_leak`` event is written at most once an
        hour per address; the other refusals are logged as the grant's failure. Never the password itself.
        """
        await reservation.succeeded(self.session)
        await self.session.commit()
        if self.trail is not None:
            self.trail.user_id = row.user_id
            if await first_leak_report(self.session, ip=ip, now=self.clock.now()):
                self.trail.note("pwd_leak")
        raise PasswordLeaked(row.user_id)

    def _note(self, event_type: str, *, user: UserRow | None = None) -> None:
        if self.trail is None:
            return
        if user is not None:
            self.trail.user_id = user.user_id
        self.trail.note(event_type)

    def _note_blocked(self, blocked: LoginBlocked) -> None:
        codes = {
            LoginBlocked.SUSPICIOUS_IP: "limit_mu",
            LoginBlocked.ACCOUNT_LOCKOUT: "limit_sul",
            LoginBlocked.BRUTE_FORCE: "limit_wc",
        }
        self._note(codes.get(blocked.reason, "limit_wc"))


class UserService:
    """Creation and update of users (CLI, tenant file, admin API)."""

    def __init__(self, session: AsyncSession, hasher: PasswordHasher, clock: Clock | None = None) -> None:
        self.session = session
        self.hasher = hasher
        self.clock = clock or SystemClock()

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
        given_name: str | None = None,
        family_name: str | None = None,
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
        password = await self._check_password(password, email=email, username=username, name=name)
        if user_id is not None and not _USER_ID.match(user_id):
            raise InvalidUserData("a user_id has 1 to 50 letters, digits or _ . - (no prefix)")
        now = now_utc(self.clock)
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
            given_name=given_name,
            family_name=family_name,
            nickname=nickname or (email.split("@")[0] if email else username),
            picture=picture,
            app_metadata=dict(app_metadata or {}),
            user_metadata=dict(user_metadata or {}),
            created_at=now,
            updated_at=now,
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
        if not (await self.hasher.verify(existing.password_hash, normalize(password))).ok:
            await self.set_password(existing, password, name=fields.get("name"))
        for key in ("email_verified", "blocked", "name", "app_metadata", "user_metadata"):
            if fields.get(key) is not None:
                setattr(existing, key, fields[key])
        existing.updated_at = now_utc(self.clock)
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
        ``given_name``, ``family_name``, ``nickname``, ``picture``, and ``app_metadata``/``user_metadata`` (merged key
        by key; a ``None`` value removes the key, as Auth0's PATCH does). A new password or a block ends every session
        of the user.
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
            name = changes.get("name", row.name)
            normal = await self._check_password(password, email=row.email, username=row.username, name=name)
            new_hash = await self.hasher.hash(normal)
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
            await counters.unblock(self.session, user_identifier_hashes(row))  # a new password lifts blocks
        if changes.get("blocked") is not None:
            if changes["blocked"] and not row.blocked:
                end_sessions = end_sessions or "blocked"
            row.blocked = bool(changes["blocked"])
        row.updated_at = now_utc(self.clock)
        self.session.add(row)
        if end_sessions is not None:
            # As the CLI does on a new password: refresh tokens and web sessions end, on every instance.
            await end_user_sessions(self.session, row_id(row), row.user_id, end_sessions, now_utc(self.clock))
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

    async def set_password(self, user: UserRow, password: str, *, name: str | None = None) -> None:
        """Give ``user`` a new password (checked against the policy). Does not commit.

        A new password ends every session (refresh tokens issued under the old one stop working, and so do the
        enrollment pages signed in with it) and lifts every brute-force block of the user's identifiers, as Auth0
        does.
        """
        normal = await self._check_password(password, email=user.email, username=user.username, name=name or user.name)
        user.password_hash = await self.hasher.hash(normal)
        user.updated_at = now_utc(self.clock)
        self.session.add(user)
        await end_user_sessions(self.session, row_id(user), user.user_id, "password_change", now_utc(self.clock))
        await counters.unblock(self.session, user_identifier_hashes(user))

    async def _check_password(self, password: str, *, email: str | None, username: str | None, name: str | None) -> str:
        tenant = await tenant_row(self.session)
        minimum = min_length_for(mfa_policy=tenant.mfa_policy, configured=tenant.password_min_length)
        personal_name = name if name not in {email, username} else None
        return check_password(password, min_length=minimum, email=email, username=username, name=personal_name)

    async def _connection(self, name: str) -> ConnectionRow:
        row = (await self.session.execute(select(ConnectionRow).where(col(ConnectionRow.name) == name))).scalar()
        if row is None:
            raise UnknownConnection(f"no connection named {name!r}")
        return row


def user_identifier_hashes(user: UserRow) -> list[str]:
    """The hashes attack-protection counters of ``user``'s identifiers are stored under."""
    return [counters.identifier_hash(user.connection_id, key) for key in (user.email_key, user.username_key) if key]


def _check_identifiers(email: str | None, username: str | None) -> tuple[str | None, str | None]:
    email = unicodedata.normalize("NFKC", email.strip()) if email else None
    username = unicodedata.normalize("NFKC", username.strip()) if username else None
    if email:
        check_identifier(email, what="email address")
    if username:
        check_identifier(username, what="username")
    if not email and not username:
        raise InvalidUserData("a user needs an email or a username")
    if email and not _EMAIL.match(email):
        raise InvalidUserData("the email address is not valid")
    if username and not _USERNAME.match(username):
        raise InvalidUserData("a username has 1 to 128 letters, digits or _ . + - (no @)")
    return email, username
