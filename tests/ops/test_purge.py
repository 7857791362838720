"""Housekeeping: expired rows go, anything still usable (or still needed to refuse a replay) stays."""

from __future__ import annotations

import asyncio
import json
import subprocess
from datetime import timedelta
from typing import Any

import pytest
from litestar.testing import TestClient
from sqlalchemy import func, text
from sqlmodel import SQLModel, select

from identity.app import create_app
from identity.housekeeping import purge, purge_once
from identity.settings import OpsSettings, Settings
from identity.store.db import create_engine, create_sessionmaker
from identity.store.models import (
    AttackCounterRow,
    AuthenticatorRow,
    MfaTransactionRow,
    RecoveryCodeRow,
    RefreshTokenRow,
    UserinfoClaimsRow,
    WebAuthnChallengeRow,
    WebSessionRow,
    utcnow,
)
from tests.conftest import run_db
from tests.e2e.conftest import database_environ, identity_command

NOW = utcnow()
OLD = NOW - timedelta(days=3)
SOON = NOW + timedelta(hours=6)  # far enough that a slow suite reaching this module late still sees it ahead


def _refresh(family: str, user_pk: int, n: int, *, used: bool = False, revoked: bool = False, **times: Any) -> Any:
    return RefreshTokenRow(
        token_hash=f"{family}-{n}".ljust(64, "0"),
        family_id=family,
        client_id="public-app",
        user_pk=user_pk,
        connection="customers",
        used_at=OLD if used else None,
        revoked_at=OLD if revoked else None,
        **times,
    )


def seed(settings: Settings) -> None:
    async def work(session: Any, _: Any) -> None:
        alice, other = (await session.execute(text("SELECT id FROM users ORDER BY id LIMIT 2"))).scalars().all()
        for name, expires in (("old", OLD), ("fresh", SOON)):
            session.add(
                MfaTransactionRow(
                    token_hash=name.ljust(64, "m"),
                    client_id="public-app",
                    user_pk=alice,
                    connection="customers",
                    grant_type="password",
                    expires_at=expires,
                )
            )
            session.add(WebSessionRow(key_hash=name.ljust(64, "w"), data=b"{}", expires_at=expires))
            session.add(UserinfoClaimsRow(jti=name, user_pk=alice, claims={}, expires_at=expires))
            session.add(WebAuthnChallengeRow(challenge_hash=name.ljust(64, "c"), purpose="passkey-assert",
                                             expires_at=expires))  # fmt: skip
        session.add(AuthenticatorRow(public_id="totp|dev_stale", user_pk=alice, secret="x", created_at=OLD))
        session.add(AuthenticatorRow(public_id="totp|dev_new", user_pk=other, secret="x", created_at=NOW))
        session.add(RecoveryCodeRow(public_id="rc|stale", user_pk=alice, code_hash="0" * 64, created_at=OLD))
        # A live family (its rotated tokens are what detects a replay), a dead one, a dead but recent one.
        session.add(_refresh("live", alice, 1, used=True, created_at=OLD))
        session.add(_refresh("live", alice, 2, created_at=OLD, expires_at=SOON))
        session.add(_refresh("dead", alice, 1, used=True, created_at=OLD))
        session.add(_refresh("dead", alice, 2, created_at=OLD, expires_at=OLD))
        session.add(_refresh("revoked", alice, 1, revoked=True, created_at=OLD))
        session.add(_refresh("idle", alice, 1, created_at=OLD, idle_expires_at=OLD))
        # Recent by the wall clock at seeding, not at import: the CLI and the server purge with the real time, and a
        # slow suite can reach this module more than the ten minutes a dead family is kept after the import.
        session.add(_refresh("just-revoked", alice, 1, revoked=True, created_at=utcnow()))
        # Attack-protection counters: an old count (expired), a block in force, an IP bucket that refilled.
        for key, kind, count, at in (("old", "identifier_ip", 9, OLD), ("blocked", "identifier_ip", 10, utcnow())):
            row = AttackCounterRow(key_hash=key.ljust(64, "f"), kind=kind, count=count, updated_at=at.timestamp())
            session.add(row)
        bucket = AttackCounterRow(key_hash="bucket".ljust(64, "f"), kind="ip", count=3, updated_at=OLD.timestamp())
        session.add(bucket)
        await session.commit()

    run_db(settings, work)


def remaining(settings: Settings) -> dict[str, Any]:
    async def work(session: Any, _: Any) -> dict[str, Any]:
        return {
            "mfa": set((await session.execute(select(MfaTransactionRow.token_hash))).scalars()),
            "web": set((await session.execute(select(WebSessionRow.key_hash))).scalars()),
            "claims": set((await session.execute(select(UserinfoClaimsRow.jti))).scalars()),
            "authenticators": set((await session.execute(select(AuthenticatorRow.public_id))).scalars()),
            "recovery": set((await session.execute(select(RecoveryCodeRow.public_id))).scalars()),
            "families": set((await session.execute(select(RefreshTokenRow.family_id))).scalars()),
            "refresh_rows": (await session.execute(select(func.count()).select_from(RefreshTokenRow))).scalar(),
            "failures": set((await session.execute(select(AttackCounterRow.key_hash))).scalars()),
            "ceremonies": set((await session.execute(select(WebAuthnChallengeRow.challenge_hash))).scalars()),
        }

    result: dict[str, Any] = run_db(settings, work)
    return result


def test_purge_removes_what_expired_and_keeps_what_still_counts(settings: Settings, tenant: Any) -> None:
    seed(settings)
    counts = run_db(settings, lambda session, _: purge(session, now=NOW))
    assert counts["mfa_transactions"] == counts["web_sessions"] == counts["userinfo_claims"] == 1
    assert counts["pending_authenticators"] == counts["pending_recovery_codes"] == 1
    assert counts["refresh_tokens"] == 4  # dead (2 rows), revoked, idle
    assert counts["attack_counters"] == 2
    assert counts["webauthn_challenges"] == 1
    left = remaining(settings)
    assert left["mfa"] == {"fresh".ljust(64, "m")}
    assert left["web"] == {"fresh".ljust(64, "w")}
    assert left["claims"] == {"fresh"}
    assert left["authenticators"] == {"totp|dev_new"}
    assert left["recovery"] == set()
    assert left["families"] == {"live", "just-revoked"}
    assert left["refresh_rows"] == 3
    assert left["failures"] == {"blocked".ljust(64, "f")}
    assert left["ceremonies"] == {"fresh".ljust(64, "c")}
    # Nothing left to do: a second run removes nothing.
    assert sum(run_db(settings, lambda session, _: purge(session, now=NOW)).values()) == 0


def test_identity_purge_command(settings: Settings, tenant: Any, encryption_keys: Any) -> None:
    seed(settings)
    result = subprocess.run(
        [*identity_command(), "purge"],
        env=database_environ(settings.database_url, encryption_keys),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    report = json.loads(result.stdout)
    assert report["skipped"] is False
    assert report["purged"]["mfa_transactions"] == 1
    assert remaining(settings)["families"] == {"live", "just-revoked"}


def test_the_server_purges_periodically(settings: Settings, tenant: Any) -> None:
    seed(settings)
    periodic = Settings(
        database_url=settings.database_url,
        issuer=settings.issuer,
        encryption_keys=settings.encryption_keys,
        hash_workers=2,
        ops=OpsSettings(purge_interval=0.2),
    )
    import time

    with TestClient(create_app(periodic)):
        deadline = time.monotonic() + 10
        while remaining(settings)["mfa"] != {"fresh".ljust(64, "m")} and time.monotonic() < deadline:
            time.sleep(0.1)
    assert remaining(settings)["families"] == {"live", "just-revoked"}
    assert remaining(settings)["mfa"] == {"fresh".ljust(64, "m")}


def test_one_instance_purges_at_a_time(settings: Settings, tenant: Any) -> None:
    """PostgreSQL: an instance that cannot take the purge lock skips its turn. SQLite: concurrent purges are safe."""
    seed(settings)
    postgres = settings.database_url.startswith("postgresql")

    async def go() -> tuple[Any, Any]:
        engine = create_engine(settings.database_url)
        sessions = create_sessionmaker(engine)
        try:
            async with sessions() as holder, sessions() as other:
                if postgres:
                    # Another instance is purging: it holds the purge lock in its transaction.
                    await holder.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": 0x1D37E57})
                    skipped = await purge_once(other, now=NOW)
                    await holder.rollback()
                    return skipped, await purge_once(other, now=NOW)
                return await asyncio.gather(purge_once(holder, now=NOW), purge_once(other, now=NOW))
        finally:
            await engine.dispose()

    first, second = asyncio.run(go())
    if postgres:
        assert first is None
        assert second is not None and second["mfa_transactions"] == 1
    else:
        assert first["mfa_transactions"] + second["mfa_transactions"] == 1
        assert first["refresh_tokens"] + second["refresh_tokens"] == 4
    assert remaining(settings)["families"] == {"live", "just-revoked"}


def test_the_purge_lock_is_held_through_every_step(settings: Settings, tenant: Any) -> None:
    """PostgreSQL: while one instance purges, another never gets in, at any step, even after the purge's commits.

    The purge commits more than once (the audit purge commits its own steps). Instance A purges with every statement
    and every commit of its session intercepted: before each statement, and right after each commit, instance B (its
    own engine, as another process would have) runs `purge_once`, and must skip its turn every time. Once A is done,
    B gets the lock at once. A transaction-scoped lock fails this: A's first commit released it.
    """
    if not settings.database_url.startswith("postgresql"):
        pytest.skip("the purge lock is PostgreSQL's (SQLite serialises writers itself)")
    seed(settings)

    async def go() -> tuple[Any, list[tuple[str, Any]], Any]:
        engine_a, engine_b = create_engine(settings.database_url), create_engine(settings.database_url)
        attempts: list[tuple[str, Any]] = []

        async def instance_b(step: str) -> None:
            async with create_sessionmaker(engine_b)() as other:
                # Bounded: were B let in while A holds row locks, it could wait for A, which waits for B.
                attempts.append((step, await asyncio.wait_for(purge_once(other, now=NOW), 20)))

        try:
            async with create_sessionmaker(engine_a)() as purging:
                execute, commit = purging.execute, purging.commit

                async def intercepted_execute(*args: Any, **kwargs: Any) -> Any:
                    await instance_b(f"before statement {len(attempts) + 1}")
                    return await execute(*args, **kwargs)

                async def intercepted_commit() -> None:
                    await commit()
                    await instance_b(f"after commit {len(attempts) + 1}")

                purging.execute = intercepted_execute  # type: ignore[method-assign]
                purging.commit = intercepted_commit  # type: ignore[method-assign]
                counts = await purge_once(purging, now=NOW)
            async with create_sessionmaker(engine_b)() as other:
                after = await purge_once(other, now=NOW)
        finally:
            await engine_a.dispose()
            await engine_b.dispose()
        return counts, attempts, after

    counts, attempts, after = asyncio.run(go())
    steps = [step for step, _ in attempts]
    assert len(attempts) >= 10, steps  # every delete, and the commits between them
    assert sum(step.startswith("after commit") for step in steps) >= 2, steps  # the commits a xact lock would lose
    assert [step for step, result in attempts if result is not None] == [], "instance B purged while A held the lock"
    assert counts is not None and counts["mfa_transactions"] == 1 and counts["attack_counters"] == 2
    assert after is not None and sum(after.values()) == 0  # released: B purges at once, and finds nothing left


def test_every_table_is_covered_or_deliberately_kept() -> None:
    """A new table that grows with logins needs a purge rule (or a reason here why it needs none)."""
    purged = {"mfa_transaction", "web_session", "authenticator", "recovery_code", "refresh_token", "userinfo_claims"}
    purged |= {"attack_counter", "log_event", "oob_code"}
    kept = {
        # Configuration and accounts: deleted by the operator, never by age.
        "tenant", "connection", "api", "client", "client_connection", "users", "rule", "client_grant",
        # Keys: retired ones stay listed (identity keys list), a few rows a year.
        "signing_key",
        # Bounded by users: one row per user.
        "mfa_attempt", "mfa_send",
        # One row: the tenant configuration's version counter.
        "config_version",
    }  # fmt: skip
    tables = set(SQLModel.metadata.tables)
    unknown = tables - purged - kept
    # Tables of modules not written here are purged by their own module (identity.audit.purge).
    unknown -= {name for name in unknown if name.startswith(("audit", "attack", "log_event", "webauthn"))}
    assert not unknown, f"tables with no purge rule: {sorted(unknown)}"
