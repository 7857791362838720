"""Attack protection for password logins (API.md §4): the tenant's policy and the reservation made before a hash.

A login reserves, before its password is hashed, one token of its address's bucket (suspicious-IP throttling) and
one failure of its identifier's count (brute-force protection), each with one atomic statement. Whatever fails to
reserve refuses the login without hashing; so a burst of N concurrent guesses gets at most ``max_attempts`` hashes,
and the rest are refused, the right password included. After the hash a success resets the count and returns the
token; a failure keeps both.

Passkey challenges and passkey sign-ins reserve the address's token alone (`reserve_address`): there is no secret to
guess per identifier, but each challenge is a stored row and each assertion a signature check, free to anyone.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from identity import tenant_defaults as defaults
from identity.network import Networks, counting_key
from identity.oauth2.interfaces import LoginBlocked
from identity.store import attack as counters
from identity.store.models import TenantRow

__all__ = [
    "ACCOUNT_LOCKOUT",
    "PER_IDENTIFIER_AND_IP",
    "PWD_LEAK_LOG_SECONDS",
    "SUSPICIOUS_IP_DEFAULTS",
    "AttemptReservation",
    "ProtectionPolicy",
    "first_leak_report",
    "reserve_address",
    "reserve_attempt",
    "suspicious_ip_settings",
    "unblock_identifier",
    "user_blocks",
]

PER_IDENTIFIER_AND_IP = "count_per_identifier_and_ip"
ACCOUNT_LOCKOUT = "count_per_identifier"
BRUTE_FORCE_MODES = (PER_IDENTIFIER_AND_IP, ACCOUNT_LOCKOUT)
SUSPICIOUS_IP_DEFAULTS: dict[str, Any] = {
    "enabled": defaults.SUSPICIOUS_IP_ENABLED,
    "shields": list(defaults.SUSPICIOUS_IP_SHIELDS),
    "allowlist": [],
    "stage": {"pre-login": {"max_attempts": defaults.SUSPICIOUS_IP_MAX_ATTEMPTS, "rate": defaults.SUSPICIOUS_IP_RATE}},
}
"""Auth0's defaults: 100 failed logins per address, one more allowed every 864000 ms (14.4 minutes)."""
PWD_LEAK_LOG_SECONDS = 3600
"""A ``pwd_leak`` event is logged at most once per this many seconds per address (Auth0: once an hour per IP)."""
PWD_LEAK = "pwd_leak"
"""The counter kind that spaces ``pwd_leak`` events (one row per address, never a block)."""


def suspicious_ip_settings(stored: Mapping[str, Any]) -> dict[str, Any]:
    """The tenant's ``suspicious_ip_throttling`` object with Auth0's defaults for what it leaves out."""
    stage = {**SUSPICIOUS_IP_DEFAULTS["stage"]["pre-login"], **stored.get("stage", {}).get("pre-login", {})}
    merged = {**SUSPICIOUS_IP_DEFAULTS, **{key: value for key, value in stored.items() if key != "stage"}}
    merged["stage"] = {**stored.get("stage", {}), "pre-login": stage}
    return merged


@dataclass(frozen=True)
class ProtectionPolicy:
    """What the tenant asks of attack protection, read once per login."""

    brute_force: bool = defaults.BRUTE_FORCE_ENABLED
    mode: str = defaults.BRUTE_FORCE_MODE
    max_attempts: int = defaults.BRUTE_FORCE_MAX_ATTEMPTS
    block_seconds: int = defaults.BRUTE_FORCE_BLOCK_SECONDS
    allowlist: Networks = field(default_factory=Networks)
    ip_throttling: bool = defaults.SUSPICIOUS_IP_ENABLED
    ip_allowlist: Networks = field(default_factory=Networks)
    ip_max_attempts: int = defaults.SUSPICIOUS_IP_MAX_ATTEMPTS
    ip_seconds_per_token: float = defaults.SUSPICIOUS_IP_RATE / 1000
    breached_passwords: bool = defaults.BREACHED_PASSWORD_ENABLED
    """Breached password detection (API.md §4.6): refuse a correct password that the breached lists contain."""

    @classmethod
    def from_tenant(cls, row: TenantRow) -> ProtectionPolicy:
        """The policy of the tenant row."""
        throttling = suspicious_ip_settings(row.suspicious_ip_throttling or {})
        stage = throttling["stage"]["pre-login"]
        return cls(
            brute_force=row.brute_force_enabled,
            mode=row.brute_force_mode,
            max_attempts=row.brute_force_max_attempts,
            block_seconds=row.brute_force_block_seconds,
            allowlist=Networks.parse(row.brute_force_allowlist or []),
            ip_throttling=bool(throttling["enabled"]) and "block" in throttling["shields"],
            ip_allowlist=Networks.parse(throttling.get("allowlist") or []),
            ip_max_attempts=int(stage["max_attempts"]),
            ip_seconds_per_token=float(stage["rate"]) / 1000,
            breached_passwords=bool(
                (row.breached_password_detection or {}).get("enabled", defaults.BREACHED_PASSWORD_ENABLED)
            ),
        )


@dataclass
class AttemptReservation:
    """What one login reserved; settle it after the hash with `succeeded`, `failed` or `cancel`."""

    identifier: str | None
    """The hashed (directory, identifier) of a password login; ``None`` for an address-only reservation."""
    ip: str | None
    kind: str | None = None
    """The counter of the identifier that was reserved (``None``: not counted, e.g. an allow-listed address)."""
    bucket: bool = False
    tokens: int = 1
    """How many of the address's tokens a success gives back: a passkey sign-in returns its challenge's too."""

    async def succeeded(self, session: AsyncSession) -> None:
        """The password was right: forget the count and give the address its token back. Does not commit.

        Rows are touched in the order `reserve_attempt` locks them (the address's bucket, then the identifier's
        counter): the other order deadlocks on PostgreSQL against a concurrent login of the same user.
        """
        await self._refund_bucket(session)
        if self.kind is not None:
            await counters.reset(session, kind=self.kind, identifier=self.identifier, ip=self._counter_ip)

    async def cancel(self, session: AsyncSession) -> None:
        """The password was never checked (the login was shed): give back what was reserved. Commits."""
        await self._refund_bucket(session)  # the lock order of `succeeded`
        if self.kind is not None:
            await counters.refund(session, kind=self.kind, identifier=self.identifier, ip=self._counter_ip)
        await session.commit()

    async def _refund_bucket(self, session: AsyncSession) -> None:
        if self.bucket and self.ip is not None:
            for _ in range(self.tokens):  # each statement stops at an empty count: never more than was taken
                await counters.bucket_refund(session, ip=self.ip)

    @property
    def _counter_ip(self) -> str | None:
        return None if self.kind == counters.IDENTIFIER else self.ip


async def reserve_attempt(
    session: AsyncSession,
    policy: ProtectionPolicy,
    *,
    connection_id: int,
    connection: str,
    login_key: str,
    ip: str | None,
    now: float,
) -> AttemptReservation:
    """Reserve a failed attempt for this login before its hash; `LoginBlocked` when a limit is reached.

    The address's bucket is reserved first: a throttled address costs nothing further. A refused identifier gives
    the bucket token back (a blocked request is not a failed login: it was never checked): the transaction is
    rolled back. Otherwise it stays open, and the caller commits it with its read of the user (one transaction
    before the hash, never one held across it).
    """
    reservation = await reserve_address(session, policy, ip=ip, now=now)
    reservation.identifier = counters.identifier_hash(connection_id, login_key)
    if policy.brute_force and ip not in policy.allowlist:
        lockout = policy.mode == ACCOUNT_LOCKOUT
        kind = counters.IDENTIFIER if lockout else counters.IDENTIFIER_IP
        reserved = await counters.reserve(
            session,
            kind=kind,
            identifier=reservation.identifier,
            connection=connection,
            ip=None if lockout else reservation.ip,
            max_count=policy.max_attempts,
            wait=policy.block_seconds,
            now=now,
            grow=lockout,
        )
        if not reserved:
            await session.rollback()  # the bucket's token too: a refused login was never checked
            raise LoginBlocked(LoginBlocked.ACCOUNT_LOCKOUT if lockout else LoginBlocked.BRUTE_FORCE)
        reservation.kind = kind
    return reservation


async def reserve_address(
    session: AsyncSession, policy: ProtectionPolicy, *, ip: str | None, now: float
) -> AttemptReservation:
    """Take a token of the address's bucket (suspicious-IP throttling); `LoginBlocked` when it is empty.

    Nothing is taken when throttling is off, for an allow-listed address, or without an address. Does not commit:
    the caller's next write or read shares the transaction. A refusal rolls the transaction back.
    """
    group = counting_key(ip)
    reservation = AttemptReservation(identifier=None, ip=group)
    if not policy.ip_throttling or group is None or ip in policy.ip_allowlist:
        return reservation
    reserved = await counters.bucket_reserve(
        session, ip=group, capacity=policy.ip_max_attempts, seconds_per_token=policy.ip_seconds_per_token, now=now
    )
    if not reserved:
        retry = await counters.bucket_retry_after(session, ip=group, capacity=policy.ip_max_attempts, now=now)
        await session.rollback()
        raise LoginBlocked(LoginBlocked.SUSPICIOUS_IP, retry_after=retry)
    reservation.bucket = True
    return reservation


async def first_leak_report(session: AsyncSession, *, ip: str | None, now: float) -> bool:
    """Whether this breached-password login is the first from its address this hour (then it is logged). Commits.

    One conditional statement on the counter table decides, so concurrent logins from one address log one event.
    """
    first = await counters.reserve(
        session,
        kind=PWD_LEAK,
        identifier=None,
        connection=None,
        ip=counting_key(ip),
        max_count=1,
        wait=PWD_LEAK_LOG_SECONDS,
        now=now,
    )
    await session.commit()
    return first


async def _identifier_hashes(session: AsyncSession, identifier: str, connection: str | None) -> dict[str, str]:
    """``identifier``'s counter hash in each directory (or in the one named), with that directory's name."""
    from sqlmodel import col, select

    from identity.store.models import ConnectionRow
    from identity.store.users import login_key

    query = select(ConnectionRow)
    if connection is not None:
        query = query.where(col(ConnectionRow.name) == connection)
    rows = (await session.execute(query)).scalars().all()
    key = login_key(identifier)
    return {counters.identifier_hash(row.id, key): row.name for row in rows if row.id is not None}


async def user_blocks(
    session: AsyncSession, identifier: str, *, now: float, connection: str | None = None
) -> list[dict[str, Any]]:
    """The brute-force blocks in force on ``identifier`` (Auth0's ``blocked_for`` items, plus when each ends).

    Blocks are kept for unknown identifiers too, so this answers the same whether or not the account exists.
    """
    hashes = await _identifier_hashes(session, identifier, connection)
    tenant = await session.get(TenantRow, 1) or TenantRow(id=1)
    found = await counters.blocks(session, hashes, max_count=tenant.brute_force_max_attempts, now=now)
    await session.commit()
    return [
        {
            "identifier": identifier,
            "ip": block.ip,
            "connection": block.connection,
            "mode": ACCOUNT_LOCKOUT if block.kind == counters.IDENTIFIER else PER_IDENTIFIER_AND_IP,
            "failures": block.failures,
            "expires_at": block.expires_at,
        }
        for block in found
    ]


async def unblock_identifier(session: AsyncSession, identifier: str, *, connection: str | None = None) -> int:
    """Lift every block (and forget every count) of ``identifier``, in every directory or the one named. Commits."""
    hashes = await _identifier_hashes(session, identifier, connection)
    removed = await counters.unblock(session, list(hashes))
    await session.commit()
    return removed
