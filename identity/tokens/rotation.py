"""Signing-key rotation, revocation and re-encryption at rest (``identity keys ...``), as Auth0 rotates keys.

Per algorithm there is one ``active`` key (it signs), one ``next`` key (published in the JWKS, signs nothing yet) and
any number of ``previous`` keys (published until ``retire_at``, when every token they signed has expired).

- `rotate`: the next key becomes active, the active one previous (``retire_at`` = now + the longest token lifetime +
  the JWKS max-age), and a new next key is generated. The next key must have been published for at least the JWKS
  max-age plus the instances' key refresh delay, so that every verifier that caches the JWKS already has it (``force``
  skips the wait: tokens signed by the new key then fail at verifiers whose cached JWKS predates the next key).
- `revoke`: the key is unpublished and refused at once by identity's own endpoints (`is_revoked`, checked per
  request); an active key is replaced by the next one on the spot. APIs stop accepting its tokens when their JWKS cache
  expires (``Cache-Control: max-age`` of the JWKS).
- `reencrypt`: every sealed value (private signing keys, TOTP secrets, sealed refresh-token successors) is opened
  and sealed again under the first key of ``IDENTITY_ENCRYPTION_KEYS``, so that older encryption keys can be dropped.

Instances notice a change within ``IDENTITY_KEYS_REFRESH`` seconds (`identity.web.deps.Services.refresh_keys`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import jwt
from sqlalchemy import func, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from identity.accounts.factors import TOTP_PURPOSE as _TOTP_PURPOSE
from identity.crypto import SecretBox
from identity.store.models import ApiRow, AuthenticatorRow, RefreshTokenRow, SigningKeyRow, utcnow
from identity.tokens.keys import _PURPOSE as _SIGNING_PURPOSE
from identity.tokens.keys import SUPPORTED_ALGS, generate_key
from identity.tokens.refresh import _SUCCESSOR_PURPOSE

__all__ = [
    "KeyError_",
    "ReencryptReport",
    "Rotation",
    "is_revoked",
    "list_keys",
    "reencrypt",
    "revoke",
    "rotate",
]


class KeyError_(Exception):
    """A rotation or revocation that cannot be done; the message says why and what to do."""


def _status(row: SigningKeyRow, now: datetime) -> str:
    if row.status == "previous" and row.retire_at is not None and row.retire_at <= now:
        return "retired"
    return row.status


def _describe(row: SigningKeyRow, now: datetime) -> dict[str, Any]:
    status = _status(row, now)
    return {
        "kid": row.kid,
        "alg": row.alg,
        "status": {"active": "current"}.get(status, status),
        "published": status in ("next", "active", "previous"),
        "created_at": row.created_at.isoformat(),
        "age_seconds": int((now - row.created_at).total_seconds()),
        "activated_at": row.activated_at.isoformat() if row.activated_at else None,
        "rotated_at": row.rotated_at.isoformat() if row.rotated_at else None,
        "retire_at": row.retire_at.isoformat() if row.retire_at else None,
        "revoked_at": row.revoked_at.isoformat() if row.revoked_at else None,
    }


_ORDER = {"active": 0, "next": 1, "previous": 2, "retired": 3, "revoked": 4}


async def list_keys(session: AsyncSession, *, now: datetime | None = None) -> list[dict[str, Any]]:
    """Every key with its status (current, next, previous, retired, revoked), kid and age."""
    now = now or utcnow()
    rows = (await session.execute(select(SigningKeyRow))).scalars().all()
    ordered = sorted(rows, key=lambda row: (row.alg, _ORDER.get(_status(row, now), 9), -row.created_at.timestamp()))
    await session.commit()
    return [_describe(row, now) for row in ordered]


async def _longest_token_lifetime(session: AsyncSession, id_token_lifetime: int) -> int:
    longest = (await session.execute(select(func.max(ApiRow.token_lifetime)))).scalar()
    return max(int(longest or 0), id_token_lifetime, 86_400 if longest is None else 0)


async def _slot(session: AsyncSession, slot: Any, alg: str) -> SigningKeyRow | None:
    row: SigningKeyRow | None = (
        await session.execute(select(SigningKeyRow).where(col(slot) == alg).with_for_update())
    ).scalar_one_or_none()
    return row


async def _promote_next(session: AsyncSession, box: SecretBox, alg: str, now: datetime, retire_at: datetime) -> str:
    """Make the next key of ``alg`` active (the active one previous), and generate a new next key."""
    current = await _slot(session, SigningKeyRow.active_slot, alg)
    upcoming = await _slot(session, SigningKeyRow.next_slot, alg)
    if upcoming is None:
        raise KeyError_(f"no next {alg} key to promote")
    if current is not None:
        await session.execute(
            update(SigningKeyRow)
            .where(col(SigningKeyRow.kid) == current.kid)
            .values(status="previous", active_slot=None, rotated_at=now, retire_at=retire_at)
        )
    await session.execute(
        update(SigningKeyRow)
        .where(col(SigningKeyRow.kid) == upcoming.kid)
        .values(status="active", next_slot=None, active_slot=alg, activated_at=now)
    )
    session.add(generate_key(alg, box, status="next"))
    await session.flush()
    return upcoming.kid


@dataclass(frozen=True)
class Rotation:
    """What one rotation did for one algorithm."""

    alg: str
    new_active: str
    previous: str | None
    previous_retires_at: datetime


async def rotate(
    session: AsyncSession,
    box: SecretBox,
    *,
    algs: tuple[str, ...] = SUPPORTED_ALGS,
    id_token_lifetime: int,
    jwks_max_age: int = 300,
    min_published_seconds: float,
    force: bool = False,
    now: datetime | None = None,
) -> list[Rotation]:
    """Promote each algorithm's next key (see the module docstring); one transaction."""
    now = now or utcnow()
    lifetime = await _longest_token_lifetime(session, id_token_lifetime)
    retire_at = now + timedelta(seconds=lifetime + jwks_max_age)
    done = []
    for alg in algs:
        upcoming = await _slot(session, SigningKeyRow.next_slot, alg)
        if upcoming is None:
            session.add(generate_key(alg, box, status="next"))
            await session.commit()
            raise KeyError_(
                f"there was no next {alg} key: one is published now; rotate again in {int(min_published_seconds)} s, "
                "once every verifier's cached JWKS has it"
            )
        published_for = (now - upcoming.created_at).total_seconds()
        if published_for < min_published_seconds and not force:
            upcoming_kid = upcoming.kid
            await session.rollback()
            raise KeyError_(
                f"the next {alg} key ({upcoming_kid}) has been published for {int(published_for)} s only; APIs may "
                f"cache the JWKS for {jwks_max_age} s: rotate again in "
                f"{int(min_published_seconds - published_for) + 1} s (or --force, and tokens it signs may fail at APIs "
                "holding an older JWKS until it expires there)"
            )
        current = await _slot(session, SigningKeyRow.active_slot, alg)
        new_active = await _promote_next(session, box, alg, now, retire_at)
        done.append(Rotation(alg, new_active, current.kid if current else None, retire_at))
    await session.commit()
    return done


async def revoke(session: AsyncSession, box: SecretBox, kid: str, *, now: datetime | None = None) -> dict[str, Any]:
    """Unpublish ``kid`` and refuse its tokens at once; an active key is replaced by the next one."""
    now = now or utcnow()
    row = (
        await session.execute(select(SigningKeyRow).where(col(SigningKeyRow.kid) == kid).with_for_update())
    ).scalar_one_or_none()
    if row is None:
        raise KeyError_(f"no signing key {kid!r} (see identity keys list)")
    if row.status == "revoked":
        await session.rollback()
        return {"kid": kid, "revoked": True, "already": True}
    replaced_by = None
    was = row.status
    if was == "active":
        replaced_by = await _promote_next(session, box, row.alg, now, now)
    elif was == "next":
        session.add(generate_key(row.alg, box, status="next"))
    await session.execute(
        update(SigningKeyRow)
        .where(col(SigningKeyRow.kid) == kid)
        .values(status="revoked", active_slot=None, next_slot=None, revoked_at=now)
    )
    await session.commit()
    return {"kid": kid, "alg": row.alg, "was": {"active": "current"}.get(was, was), "replaced_by": replaced_by}


async def is_revoked(session: AsyncSession, token: str) -> bool:
    """Whether ``token`` names a signing key that was revoked (checked per request by identity's own endpoints)."""
    try:
        kid = jwt.get_unverified_header(token).get("kid")
    except jwt.PyJWTError:
        return False  # not a JWT: the verifier refuses it anyway
    if not isinstance(kid, str):
        return False
    status = (await session.execute(select(SigningKeyRow.status).where(col(SigningKeyRow.kid) == kid))).scalar()
    return status in ("revoked", "retired") or status is None


@dataclass
class ReencryptReport:
    """How many sealed values were re-sealed, per kind, and under which key."""

    key_id: str
    counts: dict[str, int]


async def reencrypt(session: AsyncSession, box: SecretBox, *, batch: int = 500) -> ReencryptReport:
    """Open and seal again, under the first encryption key, every value sealed under another one."""
    active = box.active_key_id
    prefix = f"v1.{active}."
    counts: dict[str, int] = {}

    async def redo(model: Any, column: Any, purpose: Callable[[Any], str], kind: str) -> None:
        done = 0
        while True:
            rows = (
                (
                    await session.execute(
                        select(model).where(column.is_not(None)).where(~column.startswith(prefix)).limit(batch)
                    )
                )
                .scalars()
                .all()
            )
            if not rows:
                break
            for row in rows:
                sealed = getattr(row, column.key)
                setattr(row, column.key, box.seal(box.open(sealed, purpose=purpose(row)), purpose=purpose(row)))
                done += 1
            await session.commit()
        counts[kind] = done

    await redo(SigningKeyRow, col(SigningKeyRow.private_key), lambda row: _SIGNING_PURPOSE + row.kid, "signing_keys")
    await redo(
        AuthenticatorRow, col(AuthenticatorRow.secret), lambda row: _TOTP_PURPOSE + row.public_id, "totp_secrets"
    )
    await redo(
        RefreshTokenRow,
        col(RefreshTokenRow.successor),
        lambda row: _SUCCESSOR_PURPOSE + str(row.id),
        "refresh_token_successors",
    )
    return ReencryptReport(key_id=active, counts=counts)
