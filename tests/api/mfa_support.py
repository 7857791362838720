"""Helpers for the in-process MFA tests (API, conformance, CLI): a tenant whose clients list the MFA grants, an app
on a frozen clock, and a small driver for the login → mfa_required → (associate →) mfa-otp chain.

Codes come from pyotp at the frozen time (the end-to-end tests use Debian's oathtool instead).
"""

from __future__ import annotations

import asyncio
import copy
import threading
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import NoneType
from typing import Any, TypeVar

import httpx
import jwt
import pyotp
from litestar import Litestar
from litestar.testing import TestClient
from sqlalchemy import MetaData, insert, select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from identity.app import create_app
from identity.clock import FrozenClock
from identity.settings import Argon2Params, EncryptionKeys, Settings, SmtpSettings
from identity.store.config import invalidate_all
from identity.store.db import create_engine
from identity.store.models import AuthenticatorRow, RecoveryCodeRow, UserRow
from tests.conftest import (
    ALICE_CUSTOMER_PASSWORD,
    ALICE_EMPLOYEE_PASSWORD,
    BASIC_SECRET,
    CONFIDENTIAL_SECRET,
    ISSUER,
    apply,
    standard_tenant,
)

MFA_OTP = "http://auth0.com/oauth/grant-type/mfa-otp"
MFA_RECOVERY_CODE = "http://auth0.com/oauth/grant-type/mfa-recovery-code"
MFA_OOB = "http://auth0.com/oauth/grant-type/mfa-oob"
PASSWORD_REALM = "http://auth0.com/oauth/grant-type/password-realm"
MFA_GRANTS = [MFA_OTP, MFA_OOB, MFA_RECOVERY_CODE]
MFA_AUDIENCE = ISSUER + "mfa/"
MFA_API_SCOPES = "enroll read:authenticators remove:authenticators"
ALICE_EMAIL = "alice@example.test"
MFA_REQUIRED = "Multifactor authentication required"

# The first second of a 30-second step, plus five: codes computed "now" are never at a step's edge.
T0 = 1_800_000_005.0

# client_id -> secret (None: public client); basic-app authenticates with HTTP Basic.
SECRETS: dict[str, str | None] = {
    "public-app": None,
    "confidential-app": CONFIDENTIAL_SECRET,
    "basic-app": BASIC_SECRET,
    "realm-only-app": None,
}
DEFAULT_PASSWORDS = {"customers": ALICE_CUSTOMER_PASSWORD, "employees": ALICE_EMPLOYEE_PASSWORD}


def mfa_tenant(policy: str | None = "if-enrolled", **tenant_settings: Any) -> dict[str, Any]:
    """The standard tenant, with the MFA grants on every client but ``realm-only-app``."""
    data = copy.deepcopy(standard_tenant())
    if policy is not None:
        data["tenant"]["mfa_policy"] = policy
    data["tenant"].update(tenant_settings)
    for client in data["clients"]:
        if client["client_id"] != "realm-only-app":
            client["grant_types"] = [*client["grant_types"], *MFA_GRANTS]
    return data


@dataclass
class Enrolled:
    """What a user saw while enrolling (the secret their app stored, their recovery code)."""

    secret: str
    recovery_code: str
    authenticator_id: str
    tokens: dict[str, Any]
    user_id: str


@dataclass
class Mfa:
    """Drives the MFA chain through the HTTP API of a TestClient app on a FrozenClock."""

    client: TestClient[Litestar]
    clock: FrozenClock
    settings: Settings
    db: Db
    seen_secrets: list[str] = field(default_factory=list)
    """Every mfa_token, TOTP secret and recovery code handed out, for the at-rest checks."""
    _enrollments: dict[tuple[str, str], tuple[Enrolled, FactorRows]] = field(default_factory=dict)

    def set_tenant(self, **values: Any) -> None:
        """Change tenant settings (a partial tenant file), e.g. ``mfa_policy``."""
        apply(self.settings, {"tenant": values})

    def set_policy(self, policy: str) -> None:
        """Set ``mfa_policy`` in the tenant row (quick; `set_tenant` goes through the tenant file)."""
        assert policy in ("never", "if-enrolled", "always")
        self.db.sql(f"UPDATE tenant SET mfa_policy = '{policy}'")

    # --- raw requests -----------------------------------------------------------------------------------------

    def token(self, client_id: str = "public-app", **params: Any) -> httpx.Response:
        """POST /oauth/token as ``client_id`` (client_secret_post, Basic for basic-app, nothing for public ones)."""
        data = {name: value for name, value in params.items() if value is not None}
        data["client_id"] = client_id
        secret = SECRETS.get(client_id)
        auth = None
        if client_id == "basic-app":
            data.pop("client_id")
            auth = (client_id, secret or "")
        elif secret is not None:
            data.setdefault("client_secret", secret)
        response = self.client.post("/oauth/token", data=data, auth=auth)
        body = response.json() if response.headers.get("content-type", "").startswith("application/json") else {}
        self.seen_secrets += [body[name] for name in ("mfa_token", "recovery_code") if name in body]
        return response

    def login(
        self,
        username: str = ALICE_EMAIL,
        password: str | None = None,
        *,
        realm: str | None = None,
        client_id: str = "public-app",
        grant_type: str | None = None,
        **extra: Any,
    ) -> httpx.Response:
        """The password step (``password``, or ``password-realm`` when a realm is given)."""
        password = password if password is not None else DEFAULT_PASSWORDS[realm or "customers"]
        grant_type = grant_type or (PASSWORD_REALM if realm is not None else "password")
        return self.token(client_id, grant_type=grant_type, username=username, password=password, realm=realm, **extra)

    def mfa_token(self, username: str = ALICE_EMAIL, password: str | None = None, **kwargs: Any) -> str:
        """Log in and expect ``mfa_required``; its mfa_token."""
        response = self.login(username, password, **kwargs)
        assert response.status_code == 403, response.text
        body = response.json()
        assert body["error"] == "mfa_required", body
        token: str = body["mfa_token"]
        return token

    def otp(self, mfa_token: str, code: str, *, client_id: str = "public-app") -> httpx.Response:
        return self.token(client_id, grant_type=MFA_OTP, mfa_token=mfa_token, otp=code)

    def recover(self, mfa_token: str, code: str, *, client_id: str = "public-app") -> httpx.Response:
        return self.token(client_id, grant_type=MFA_RECOVERY_CODE, mfa_token=mfa_token, recovery_code=code)

    def authenticators(self, bearer: str) -> httpx.Response:
        return self.client.get("/mfa/authenticators", headers={"Authorization": f"Bearer {bearer}"})

    def associate(self, bearer: str, body: dict[str, Any] | None = None) -> httpx.Response:
        response = self.client.post(
            "/mfa/associate",
            json=body if body is not None else {"authenticator_types": ["otp"]},
            headers={"Authorization": f"Bearer {bearer}"},
        )
        if response.status_code == 200:
            answer = response.json()
            self.seen_secrets += [answer["secret"], *answer.get("recovery_codes", [])]
        return response

    def challenge(self, mfa_token: str, *, client_id: str = "public-app", **params: Any) -> httpx.Response:
        body = {"client_id": client_id, "mfa_token": mfa_token, **params}
        if (secret := SECRETS.get(client_id)) is not None:
            body.setdefault("client_secret", secret)
        return self.client.post("/mfa/challenge", json=body)

    def delete(self, bearer: str, authenticator_id: str) -> httpx.Response:
        return self.client.delete(
            f"/mfa/authenticators/{authenticator_id}", headers={"Authorization": f"Bearer {bearer}"}
        )

    # --- codes and time ---------------------------------------------------------------------------------------

    def code(self, secret: str, steps: int = 0) -> str:
        """What the user's authenticator app shows now (``steps`` steps later or earlier)."""
        return pyotp.TOTP(secret).at(self.clock.now() + 30 * steps)

    def next_step(self) -> None:
        """Let the phone show its next code (a code's step is accepted once per authenticator)."""
        self.clock.advance(30)

    # --- composite steps --------------------------------------------------------------------------------------

    def enroll(
        self, username: str = ALICE_EMAIL, password: str | None = None, *, fresh: bool = False, **login: Any
    ) -> Enrolled:
        """Enroll an authenticator from a login to the MFA API (which requires MFA under every policy).

        Returns the secret, the recovery code and the tokens of the confirming mfa-otp grant; the clock is then
        moved to the next step so that the caller's next code is fresh.

        The first enrollment of a user in a module goes through HTTP (login, associate, list, mfa-otp); later ones
        (after `reset`) put the same authenticator and recovery code rows back, as confirmed at the current step,
        unless ``fresh`` is given. Tests about enrollment itself drive the API directly.
        """
        key = (username, login.get("realm") or "customers")
        if not fresh and key in self._enrollments:
            enrolled, rows = self._enrollments[key]
            restore_factors(self.db, rows, step=int(self.clock.now() // 30))
            self.next_step()
            return enrolled
        mfa_token = self.mfa_token(username, password, audience=MFA_AUDIENCE, **login)
        associated = self.associate(mfa_token)
        assert associated.status_code == 200, associated.text
        enrollment = associated.json()
        listed = self.authenticators(mfa_token).json()
        (pending,) = [a for a in listed if a["authenticator_type"] == "otp"]
        confirmed = self.otp(mfa_token, self.code(enrollment["secret"]), client_id=login.get("client_id", "public-app"))
        assert confirmed.status_code == 200, confirmed.text
        tokens = confirmed.json()
        user_id = str(jwt.decode(tokens["access_token"], options={"verify_signature": False})["sub"])
        self.next_step()
        enrolled = Enrolled(
            secret=enrollment["secret"],
            recovery_code=enrollment["recovery_codes"][0],
            authenticator_id=pending["id"],
            tokens=tokens,
            user_id=user_id,
        )
        self._enrollments[key] = (enrolled, snapshot_factors(self.db, user_id))
        return enrolled

    def finish(self, mfa_token: str, secret: str, **kwargs: Any) -> dict[str, Any]:
        """mfa-otp with the current code, expecting tokens; then the next step."""
        response = self.otp(mfa_token, self.code(secret), **kwargs)
        assert response.status_code == 200, response.text
        self.next_step()
        tokens: dict[str, Any] = response.json()
        return tokens

    # --- token checks -----------------------------------------------------------------------------------------

    def claims(self, token: str, *, audience: str) -> dict[str, Any]:
        """Verify a JWT against the app's JWKS (expiry against the frozen clock, not the wall clock)."""
        header = jwt.get_unverified_header(token)
        keys = self.client.get("/.well-known/jwks.json").json()["keys"]
        key = next(k for k in keys if k["kid"] == header["kid"])
        claims: dict[str, Any] = jwt.decode(
            token,
            jwt.PyJWK(key).key,
            algorithms=[header["alg"]],
            audience=audience,
            issuer=ISSUER,
            options={"verify_iat": False, "verify_exp": False, "require": ["iss", "sub", "aud", "iat", "exp"]},
        )
        assert claims["iat"] <= self.clock.now() < claims["exp"]
        return claims


authenticator = AuthenticatorRow.__table__  # type: ignore[attr-defined]
recovery_code = RecoveryCodeRow.__table__  # type: ignore[attr-defined]
users = UserRow.__table__  # type: ignore[attr-defined]
MFA_STATE_TABLES = ("oob_code", "mfa_send", "mfa_attempt", "mfa_transaction", "recovery_code", "authenticator")
T = TypeVar("T")


class Db:
    """The tests' own access to the app's database: one engine on a private event loop in a thread, so that
    resetting state between tests costs a few statements, not a new engine and new connections each time."""

    def __init__(self, database_url: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="mfa-test-db", daemon=True)
        self.thread.start()
        self.engine = create_engine(database_url)

    def run(self, work: Callable[[AsyncConnection], Awaitable[T]]) -> T:
        """``work`` in one transaction, committed."""

        async def go() -> T:
            async with self.engine.begin() as conn:
                return await work(conn)

        return asyncio.run_coroutine_threadsafe(go(), self.loop).result(timeout=60)

    def sql(self, *statements: str) -> None:
        async def work(conn: AsyncConnection) -> None:
            for statement in statements:
                await conn.execute(text(statement))

        self.run(work)
        invalidate_all()  # configuration changed behind the app's back: its cache must not keep the old rows

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.engine.dispose(), self.loop).result(timeout=60)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=60)
        self.loop.close()


@dataclass(frozen=True)
class FactorRows:
    """A user's authenticator and recovery code rows, as stored (but their internal ids)."""

    user_pk: int
    authenticators: list[dict[str, Any]]
    recovery_codes: list[dict[str, Any]]


def snapshot_factors(db: Db, user_id: str) -> FactorRows:
    async def work(conn: AsyncConnection) -> FactorRows:
        user_pk = (await conn.execute(select(users.c.id).where(users.c.user_id == user_id))).scalar_one()
        found = [
            [
                {name: value for name, value in row._mapping.items() if name != "id"}
                for row in await conn.execute(select(table).where(table.c.user_pk == user_pk))
            ]
            for table in (authenticator, recovery_code)
        ]
        return FactorRows(user_pk, *found)

    return db.run(work)


def restore_factors(db: Db, rows: FactorRows, *, step: int) -> None:
    """Put a user's factors back as snapshotted, the authenticator's last accepted step being ``step``."""

    async def work(conn: AsyncConnection) -> None:
        for table in (authenticator, recovery_code):
            await conn.execute(table.delete().where(table.c.user_pk == rows.user_pk))
        await conn.execute(insert(authenticator), [{**row, "last_step": step} for row in rows.authenticators])
        if rows.recovery_codes:
            await conn.execute(insert(recovery_code), rows.recovery_codes)

    db.run(work)


def empty_database(db: Db) -> None:
    """Delete every row of every table in the database (reflected), children first; signing keys stay."""

    async def work(conn: AsyncConnection) -> None:
        metadata = MetaData()
        await conn.run_sync(metadata.reflect)
        for table in reversed(metadata.sorted_tables):
            if table.name not in ("signing_key", "alembic_version"):
                await conn.execute(table.delete())

    db.run(work)


@contextmanager
def open_mfa(
    database_url: str,
    encryption_keys: EncryptionKeys,
    tenant: dict[str, Any] | None = None,
    *,
    smtp: SmtpSettings | None = None,
) -> Iterator[Mfa]:
    """For one test module: an emptied database with `mfa_tenant`, the app on a frozen clock, and its driver.

    Building the app and applying the tenant once per module keeps the suite fast; `reset` puts the MFA state back
    before each test. Passwords are hashed with cheap Argon2 parameters: these tests log in a lot, and password
    hashing has tests of its own.
    """
    settings = Settings(
        database_url=database_url,
        issuer=ISSUER,
        encryption_keys=encryption_keys,
        hash_workers=2,
        argon2=Argon2Params(time_cost=1, memory_kib=64, parallelism=1),
        smtp=smtp,
    )
    db = Db(settings.database_url)
    try:
        empty_database(db)
        apply(settings, tenant if tenant is not None else mfa_tenant())
        clock = FrozenClock(T0)
        with TestClient(create_app(settings, clock=clock), base_url="https://identity.test") as test_client:
            yield Mfa(test_client, clock, settings, db)
    finally:
        db.close()


def reset(mfa: Mfa) -> Mfa:
    """No factor, no mfa_token, full buckets, the default MFA settings, and the clock back at T0."""
    mfa.db.sql(
        *(f"DELETE FROM {table}" for table in MFA_STATE_TABLES),
        "UPDATE tenant SET mfa_policy = 'if-enrolled', mfa_token_lifetime = 600",
    )
    mfa.clock.at = T0
    mfa.seen_secrets.clear()
    return mfa


def error_of(response: httpx.Response) -> tuple[int, str, str | None]:
    """(status, error, error_description) of an error response."""
    body = response.json()
    return response.status_code, body.get("error"), body.get("error_description")


def dump_text(db: Db) -> dict[str, list[str]]:
    """Every non-numeric value of every table in the database (reflected, not from the models), by table name."""

    async def work(conn: AsyncConnection) -> dict[str, list[str]]:
        metadata = MetaData()
        await conn.run_sync(metadata.reflect)
        dumped: dict[str, list[str]] = {}
        for table in metadata.sorted_tables:
            values = []
            for row in (await conn.execute(select(table))).all():
                values += [str(value) for value in row if not isinstance(value, int | float | NoneType)]
            dumped[table.name] = values
        return dumped

    return db.run(work)
