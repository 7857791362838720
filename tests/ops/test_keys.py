"""Signing-key rotation without downtime, revocation, retirement and re-encryption at rest.

Rotation changes which key signs for everybody on a database, so these tests run on a database of their own (a
fresh SQLite file, or a fresh PostgreSQL database on the PostgreSQL leg), never on the session's shared one.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import jwt
import pytest
from litestar import Litestar
from litestar.testing import TestClient
from sqlalchemy import text, update
from sqlmodel import col, select

from identity.app import create_app
from identity.crypto import SecretBox
from identity.settings import EncryptionKeys, OpsSettings, Settings, normalize_database_url
from identity.store.db import create_engine, create_sessionmaker, migrate
from identity.store.models import AuthenticatorRow, SigningKeyRow, utcnow
from identity.tokens.keys import ensure_signing_keys, load_key_ring
from identity.tokens.rotation import KeyError_, list_keys, reencrypt, revoke, rotate
from tests.conftest import ALICE_CUSTOMER_PASSWORD, ISSUER, _empty, _postgres_database, apply, standard_tenant
from tests.e2e.conftest import database_environ, identity_command


@pytest.fixture(scope="module")
def own_database(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A database for this module only (migrating one is slow-ish: once per module)."""
    admin_url = os.environ.get("IDENTITY_TEST_DATABASE_URL")
    if admin_url:
        url, drop = _postgres_database(admin_url)
    else:
        url, drop = f"sqlite:///{tmp_path_factory.mktemp('keys') / 'keys.db'}", lambda: None
    url = normalize_database_url(url)
    migrate(url)
    try:
        yield url
    finally:
        drop()


@pytest.fixture
def own_settings(own_database: str, encryption_keys: EncryptionKeys) -> Settings:
    """Settings on the module's database, emptied, signing keys included."""
    _empty(own_database)

    async def no_keys() -> None:
        engine = create_engine(own_database)
        try:
            async with engine.begin() as conn:
                await conn.execute(text("DELETE FROM signing_key"))
        finally:
            await engine.dispose()

    asyncio.run(no_keys())
    return Settings(
        database_url=own_database,
        issuer=ISSUER,
        encryption_keys=encryption_keys,
        hash_workers=2,
        ops=OpsSettings(keys_refresh=0.2),
    )


def db(settings: Settings, work: Any, box: SecretBox | None = None) -> Any:
    async def go() -> Any:
        engine = create_engine(settings.database_url)
        try:
            async with create_sessionmaker(engine)() as session:
                return await work(session, box or SecretBox(settings.encryption_keys))
        finally:
            await engine.dispose()

    return asyncio.run(go())


def rotate_now(settings: Settings, **options: Any) -> Any:
    options.setdefault("min_published_seconds", 0)
    return db(settings, lambda s, box: rotate(s, box, id_token_lifetime=settings.id_token_lifetime, **options))


def keys_by_status(settings: Settings, alg: str = "RS256") -> dict[str, list[str]]:
    listed = db(settings, lambda s, _: list_keys(s))
    found: dict[str, list[str]] = {}
    for key in listed:
        if key["alg"] == alg:
            found.setdefault(key["status"], []).append(key["kid"])
    return found


def token(client: TestClient[Litestar]) -> str:
    response = client.post(
        "/oauth/token",
        data={
            "grant_type": "password",
            "client_id": "public-app",
            "username": "alice@example.test",
            "password": ALICE_CUSTOMER_PASSWORD,
            "scope": "openid",
        },
    )
    assert response.status_code == 200, response.text
    access: str = response.json()["access_token"]
    return access


def kid(jws: str) -> str:
    return str(jwt.get_unverified_header(jws)["kid"])


def published(client: TestClient[Litestar]) -> list[str]:
    return [key["kid"] for key in client.get("/.well-known/jwks.json").json()["keys"] if key["alg"] == "RS256"]


def wait_for(check: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.05)


@pytest.fixture
def two_instances(own_settings: Settings) -> Iterator[tuple[TestClient[Litestar], TestClient[Litestar]]]:
    apply(own_settings, standard_tenant())
    with (
        TestClient(create_app(own_settings), base_url="https://identity.test") as first,
        TestClient(create_app(own_settings), base_url="https://identity.test") as second,
    ):
        yield first, second


def test_a_first_start_makes_a_current_and_a_next_key_both_published(
    two_instances: tuple[TestClient[Litestar], TestClient[Litestar]], own_settings: Settings
) -> None:
    first, second = two_instances
    statuses = keys_by_status(own_settings)
    assert len(statuses["current"]) == len(statuses["next"]) == 1
    assert set(published(first)) == {statuses["current"][0], statuses["next"][0]}
    assert published(first) == published(second)
    assert kid(token(first)) == kid(token(second)) == statuses["current"][0]


def test_rotation_signs_with_the_published_next_key_and_old_tokens_keep_verifying(
    two_instances: tuple[TestClient[Litestar], TestClient[Litestar]], own_settings: Settings
) -> None:
    first, second = two_instances
    before = keys_by_status(own_settings)
    old_token = token(first)
    next_kid = before["next"][0]
    assert next_kid in published(first)  # published before it signs anything

    (rotation,) = rotate_now(own_settings, algs=("RS256",))
    assert rotation.new_active == next_kid
    assert rotation.previous == before["current"][0]
    # Longest token lifetime of the tenant (86400 s for the example API) plus the JWKS max-age.
    assert rotation.previous_retires_at - utcnow() > timedelta(seconds=86_400)

    # Both instances follow within their refresh delay (0.2 s here): same signing key, same JWKS.
    wait_for(lambda: kid(token(first)) == next_kid and kid(token(second)) == next_kid)
    after = keys_by_status(own_settings)
    assert after["current"] == [next_kid]
    assert after["previous"] == before["current"]
    assert len(after["next"]) == 1 and after["next"] != before["next"]
    assert set(published(first)) == set(published(second)) == {*before["current"], next_kid, *after["next"]}
    # A token signed before the rotation still works at identity's own endpoints.
    assert first.get("/userinfo", headers={"Authorization": f"Bearer {old_token}"}).status_code == 200


def test_rotation_waits_until_every_cached_jwks_can_have_the_next_key(own_settings: Settings) -> None:
    db(own_settings, lambda s, box: ensure_signing_keys(s, box))
    with pytest.raises(KeyError_, match="published for 0 s only"):
        rotate_now(own_settings, algs=("RS256",), min_published_seconds=310)
    assert len(keys_by_status(own_settings)["current"]) == 1
    (rotation,) = rotate_now(own_settings, algs=("RS256",), min_published_seconds=310, force=True)
    assert keys_by_status(own_settings)["current"] == [rotation.new_active]


def test_a_revoked_key_is_refused_at_once_and_unpublished(
    two_instances: tuple[TestClient[Litestar], TestClient[Litestar]], own_settings: Settings
) -> None:
    first, second = two_instances
    compromised = token(first)
    before = keys_by_status(own_settings)
    result = db(own_settings, lambda s, box: revoke(s, box, kid(compromised)))
    assert result["was"] == "current"
    assert result["replaced_by"] == before["next"][0]
    # Refused at once by every instance, before any of them reloaded its keys.
    for client in (first, second):
        refused = client.get("/userinfo", headers={"Authorization": f"Bearer {compromised}"})
        assert refused.status_code == 401
        assert refused.json()["error"] == "invalid_token"
    wait_for(lambda: kid(compromised) not in published(first) and kid(compromised) not in published(second))
    assert kid(token(second)) == before["next"][0]
    assert keys_by_status(own_settings)["revoked"] == [kid(compromised)]
    with pytest.raises(KeyError_, match="no signing key"):
        db(own_settings, lambda s, box: revoke(s, box, "no-such-kid"))


def test_a_previous_key_is_unpublished_once_its_tokens_have_expired(
    two_instances: tuple[TestClient[Litestar], TestClient[Litestar]], own_settings: Settings
) -> None:
    first, _ = two_instances
    old = keys_by_status(own_settings)["current"][0]
    rotate_now(own_settings, algs=("RS256",))
    wait_for(lambda: old in published(first) and kid(token(first)) != old)

    async def expire(session: Any, _: Any) -> None:
        await session.execute(
            update(SigningKeyRow).where(col(SigningKeyRow.kid) == old).values(retire_at=utcnow() - timedelta(seconds=1))
        )
        await session.commit()

    db(own_settings, expire)
    wait_for(lambda: old not in published(first))
    assert keys_by_status(own_settings)["retired"] == [old]


def test_reencrypt_reseals_every_secret_under_the_first_key(own_settings: Settings) -> None:
    old_keys = EncryptionKeys.generate("old")
    new_keys = EncryptionKeys(((("new", EncryptionKeys.generate("new").keys[0][1])), *old_keys.keys))
    old_box, both = SecretBox(old_keys), SecretBox(new_keys)

    db(own_settings, lambda s, box: ensure_signing_keys(s, box), old_box)
    apply(own_settings, standard_tenant())

    async def add_totp(session: Any, box: SecretBox) -> None:
        user_pk = (await session.execute(text("SELECT id FROM users LIMIT 1"))).scalar()
        session.add(
            AuthenticatorRow(
                public_id="totp|dev_reencrypt",
                user_pk=user_pk,
                secret=box.seal(b"JBSWY3DPEHPK3PXP", purpose="totp-secret:totp|dev_reencrypt"),
            )
        )
        await session.commit()

    db(own_settings, add_totp, old_box)
    report = db(own_settings, lambda s, box: reencrypt(s, box), both)
    assert report.key_id == "new"
    assert report.counts["signing_keys"] >= 4
    assert report.counts["totp_secrets"] == 1
    assert db(own_settings, lambda s, box: reencrypt(s, box), both).counts["signing_keys"] == 0  # idempotent

    # The old key can go: everything opens with the new key alone.
    only_new = SecretBox(EncryptionKeys((new_keys.keys[0],)))
    ring = db(own_settings, lambda s, box: load_key_ring(s, box), only_new)
    assert len(ring.keys) >= 4

    async def totp_secret(session: Any, box: SecretBox) -> bytes:
        row = (await session.execute(select(AuthenticatorRow))).scalar_one()
        return box.open(row.secret, purpose="totp-secret:" + row.public_id)

    assert db(own_settings, totp_secret, only_new) == b"JBSWY3DPEHPK3PXP"


def test_the_keys_commands(own_settings: Settings, encryption_keys: EncryptionKeys) -> None:
    env = database_environ(own_settings.database_url.replace("+aiosqlite", ""), encryption_keys)

    def identity(*args: str) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [*identity_command(), "keys", *args], env=env, capture_output=True, text=True, timeout=120, check=False
        )
        assert result.returncode == 0, result.stderr
        return result

    listed = json.loads(identity("list").stdout)  # works before any server ever started: makes the first keys
    assert sorted((key["alg"], key["status"]) for key in listed) == [
        ("ES256", "current"),
        ("ES256", "next"),
        ("RS256", "current"),
        ("RS256", "next"),
    ]
    assert all(key["published"] and key["age_seconds"] >= 0 for key in listed)
    (rotated,) = json.loads(identity("rotate", "--alg", "RS256", "--force").stdout)
    assert rotated["instances_follow_within_seconds"] == 4.0
    revoked = json.loads(identity("revoke", rotated["previous"]).stdout)
    assert revoked == {"kid": rotated["previous"], "alg": "RS256", "was": "previous", "replaced_by": None}
    assert keys_by_status(own_settings)["revoked"] == [rotated["previous"]]
    assert json.loads(identity("reencrypt").stdout)["resealed"]["signing_keys"] == 0  # already under the first key


@pytest.mark.parametrize("kid", ["-M3yGp0Ic0ZLNGqWYVHsXrFg9Pq3S754y8kmHykd9U0", "--M3yGp0Ic0ZLNGqWYVHsXrFg9Pq3S75"])
def test_keys_revoke_takes_a_kid_that_begins_with_a_dash(
    own_settings: Settings, encryption_keys: EncryptionKeys, kid: str
) -> None:
    """A kid is base64url: about one in 32 begins with "-", and must reach the revocation, not the option parser."""
    env = database_environ(own_settings.database_url.replace("+aiosqlite", ""), encryption_keys)
    for args in (["revoke", kid], ["revoke", "--", kid]):
        result = subprocess.run(
            [*identity_command(), "keys", *args], env=env, capture_output=True, text=True, timeout=120, check=False
        )
        assert result.returncode == 1, result.stderr
        assert f"no signing key {kid!r}" in result.stderr
