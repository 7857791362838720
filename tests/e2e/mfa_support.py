"""Helpers for the MFA end-to-end and race tests: the MFA tenant file, the user's phone (Debian's ``oathtool``, an
implementation independent of the server's pyotp), and plain-HTTP calls to the MFA API.

The e2e database is shared by the package (``tests/e2e/conftest.py``): this tenant only adds its own directories,
API, clients and users, and the one tenant-wide setting it changes, ``mfa_policy``, is put back to the default
(``if-enrolled``) when a module is done.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import update

from identity.crypto import sha256_hex
from identity.store.db import create_engine
from identity.store.models import MfaTransactionRow, TenantRow
from tests.e2e.conftest import (
    IdentityServer,
    apply_tenant_file,
    query,
    serve_spec,
    start_servers,
    stop_and_check,
)

MFA_OTP = "http://auth0.com/oauth/grant-type/mfa-otp"
MFA_RECOVERY_CODE = "http://auth0.com/oauth/grant-type/mfa-recovery-code"
PASSWORD_REALM = "http://auth0.com/oauth/grant-type/password-realm"

API = "https://api.mfa.e2e.test/"
API_SCOPES = ("read:things", "write:things")
CUSTOMERS = "mfa-customers"
EMPLOYEES = "mfa-employees"

PUBLIC = "mfa-e2e-public"
POST = "mfa-e2e-post"
POST_SECRET = "mfa-e2e-post-secret-0123456789abcdefghijkl"
BASIC = "mfa-e2e-basic"
BASIC_SECRET = "mfa-e2e-basic-secret-0123456789abcdefghijk"
NO_MFA = "mfa-e2e-password-only"
SECRETS = {PUBLIC: None, POST: POST_SECRET, BASIC: BASIC_SECRET, NO_MFA: None}


@dataclass(frozen=True)
class Person:
    connection: str
    email: str
    password: str


ALICE_CUSTOMER = Person(CUSTOMERS, "alice@mfa.e2e.test", "alice customer password (mfa)")
ALICE_EMPLOYEE = Person(EMPLOYEES, "alice@mfa.e2e.test", "alice employee password (mfa)")
GRACE = Person(CUSTOMERS, "grace@mfa.e2e.test", "grace's password")  # removes her authenticator
FRANK = Person(CUSTOMERS, "frank@mfa.e2e.test", "frank's password")  # empties his attempt bucket
CAROL = Person(CUSTOMERS, "carol@mfa.e2e.test", "carol's password")  # race: 50 mfa_tokens, one code
DAN = Person(CUSTOMERS, "dan@mfa.e2e.test", "dan's password")  # race: one mfa_token, one code
ERIN = Person(CUSTOMERS, "erin@mfa.e2e.test", "erin's password")  # race: 20 mfa_tokens, one recovery code
FAY = Person(EMPLOYEES, "fay@mfa.e2e.test", "fay's password")  # race: one mfa_token, one recovery code
HENRY = Person(CUSTOMERS, "henry@mfa.e2e.test", "henry's password")  # race: 50 wrong guesses at once
PEOPLE = [ALICE_CUSTOMER, ALICE_EMPLOYEE, GRACE, FRANK, CAROL, DAN, ERIN, FAY, HENRY]


def tenant_toml(policy: str) -> str:
    """The MFA tenant file, with ``mfa_policy`` = ``policy``."""
    grants = f'["password", "{PASSWORD_REALM}", "{MFA_OTP}", "{MFA_RECOVERY_CODE}"]'
    connections = f'["{CUSTOMERS}", "{EMPLOYEES}"]'
    text = f"""\
[tenant]
mfa_policy = "{policy}"

[[connections]]
name = "{CUSTOMERS}"

[[connections]]
name = "{EMPLOYEES}"

[[apis]]
identifier = "{API}"
name = "MFA e2e API"
scopes = ["read:things", "write:things"]

[[clients]]
client_id = "{PUBLIC}"
name = "MFA e2e public client"
token_endpoint_auth_method = "none"
grant_types = {grants}
connections = {connections}

[[clients]]
client_id = "{POST}"
name = "MFA e2e client_secret_post client"
client_secret = "{POST_SECRET}"
token_endpoint_auth_method = "client_secret_post"
grant_types = {grants}
connections = {connections}

[[clients]]
client_id = "{BASIC}"
name = "MFA e2e client_secret_basic client"
client_secret = "{BASIC_SECRET}"
token_endpoint_auth_method = "client_secret_basic"
grant_types = {grants}
connections = {connections}

[[clients]]
client_id = "{NO_MFA}"
name = "MFA e2e client without the MFA grants"
token_endpoint_auth_method = "none"
grant_types = ["{PASSWORD_REALM}"]
connections = {connections}
"""
    for person in PEOPLE:
        text += f"""
[[users]]
connection = "{person.connection}"
email = "{person.email}"
password = "{person.password}"
"""
    return text


# --- The phone --------------------------------------------------------------------------------------------------


def oathtool_path() -> str:
    """Debian's oathtool: skip without it, but fail on CI, where its absence is a broken setup."""
    path = shutil.which("oathtool")
    if path is None:
        reason = "oathtool is not installed (apt-get install oathtool): it plays the user's authenticator app"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return path


def oathtool(secret: str, at: float | None = None) -> str:
    """``oathtool --totp -b SECRET`` (``--now`` for a given time): the code the user's app shows."""
    args = [oathtool_path(), "--totp", "-b"]
    if at is not None:
        args += ["--now", time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(at))]
    result = subprocess.run([*args, secret], capture_output=True, text=True, check=True, timeout=10)
    return result.stdout.strip()


@dataclass
class Phone:
    """An authenticator app holding one secret. Each code it hands out is for a later time step than the last one
    (the server accepts a step once) and stays inside the server's window of ±1 step for a while."""

    secret: str
    last_step: int | None = None
    codes: list[str] = field(default_factory=list)

    def code(self, *, valid_for: float = 10) -> str:
        """The earliest acceptable code that the server will still take ``valid_for`` seconds from now (waiting
        for the clock when every such step is spent)."""
        while True:
            now = time.time()
            step = int(now // 30)
            target = step - 1 if self.last_step is None else max(self.last_step + 1, step - 1)
            while (target + 2) * 30 - now < valid_for:  # the server's window leaves this step behind too soon
                target += 1
            if target <= step + 1:
                break
            time.sleep((target - 1) * 30 - now + 0.5)  # until the window reaches the step
        self.last_step = target
        code = oathtool(self.secret, at=target * 30 + 15)
        self.codes.append(code)
        return code

    def wrong_code(self) -> str:
        """A code the app never shows around now."""
        now = time.time()
        window = {oathtool(self.secret, at=now + 30 * k) for k in range(-2, 3)}
        candidate = 0
        while f"{candidate:06d}" in window:
            candidate += 1
        return f"{candidate:06d}"


# --- HTTP -------------------------------------------------------------------------------------------------------


def token_request(client_id: str, **params: Any) -> tuple[dict[str, str], tuple[str, str] | None]:
    """Form body and Basic credentials for ``client_id`` (POST puts its secret in the body, BASIC in the header)."""
    body = {name: value for name, value in params.items() if value is not None}
    auth = None
    if client_id == BASIC:
        auth = (BASIC, BASIC_SECRET)
    else:
        body["client_id"] = client_id
        if (secret := SECRETS[client_id]) is not None:
            body["client_secret"] = secret
    return body, auth


def post_token(server: IdentityServer, client_id: str = PUBLIC, **params: Any) -> httpx.Response:
    body, auth = token_request(client_id, **params)
    return httpx.post(server.token_url, data=body, auth=auth, timeout=30)


def password_login(server: IdentityServer, person: Person, client_id: str = PUBLIC, **params: Any) -> httpx.Response:
    params.setdefault("audience", API)
    return post_token(
        server,
        client_id,
        grant_type=PASSWORD_REALM,
        realm=person.connection,
        username=person.email,
        password=person.password,
        **params,
    )


def mfa_token(server: IdentityServer, person: Person, client_id: str = PUBLIC, **params: Any) -> str:
    response = password_login(server, person, client_id, **params)
    assert response.status_code == 403, response.text
    body = response.json()
    assert body["error"] == "mfa_required", body
    token: str = body["mfa_token"]
    return token


def otp(server: IdentityServer, token: str, code: str, client_id: str = PUBLIC) -> httpx.Response:
    return post_token(server, client_id, grant_type=MFA_OTP, mfa_token=token, otp=code)


def recover(server: IdentityServer, token: str, code: str, client_id: str = PUBLIC) -> httpx.Response:
    return post_token(server, client_id, grant_type=MFA_RECOVERY_CODE, mfa_token=token, recovery_code=code)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def authenticators(server: IdentityServer, token: str) -> httpx.Response:
    return httpx.get(f"{server.base_url}/mfa/authenticators", headers=bearer(token), timeout=30)


def associate(server: IdentityServer, token: str) -> httpx.Response:
    return httpx.post(
        f"{server.base_url}/mfa/associate", json={"authenticator_types": ["otp"]}, headers=bearer(token), timeout=30
    )


def error_of(response: httpx.Response) -> tuple[int, str | None, str | None]:
    body = response.json()
    return response.status_code, body.get("error"), body.get("error_description")


@dataclass
class Enrollment:
    secret: str
    barcode_uri: str
    recovery_code: str
    phone: Phone
    tokens: dict[str, Any]


def enroll(server: IdentityServer, person: Person, client_id: str = PUBLIC, **params: Any) -> Enrollment:
    """From mfa_required (the policy is ``always``, or ``audience`` is the MFA API) to a confirmed authenticator."""
    token = mfa_token(server, person, client_id, **params)
    associated = associate(server, token)
    assert associated.status_code == 200, associated.text
    body = associated.json()
    phone = Phone(body["secret"])
    confirmed = otp(server, token, phone.code(), client_id)
    assert confirmed.status_code == 200, confirmed.text
    return Enrollment(body["secret"], body["barcode_uri"], body["recovery_codes"][0], phone, confirmed.json())


async def post_all(url: str, requests: Sequence[tuple[dict[str, str], tuple[str, str] | None]]) -> list[httpx.Response]:
    """POST every (form body, Basic credentials) at once, over as many connections, and wait for every answer."""
    limits = httpx.Limits(max_connections=len(requests), max_keepalive_connections=len(requests))
    async with httpx.AsyncClient(limits=limits, timeout=60) as client:
        return list(await asyncio.gather(*(client.post(url, data=body, auth=auth) for body, auth in requests)))


def concurrently(url: str, requests: Sequence[tuple[dict[str, str], tuple[str, str] | None]]) -> list[httpx.Response]:
    return asyncio.run(post_all(url, requests))


def age_mfa_token(database_url: str, token: str, seconds: float) -> None:
    """Move the stored expiry of ``token`` (kept as its SHA-256) ``seconds`` into the past: waiting ten minutes for
    the server's clock is not an option."""
    table = MfaTransactionRow.__table__  # type: ignore[attr-defined]

    async def go() -> int:
        engine = create_engine(database_url)
        try:
            async with engine.begin() as conn:
                result = await conn.execute(
                    update(table)
                    .where(table.c.token_hash == sha256_hex(token))
                    .values(expires_at=datetime.now(UTC) - timedelta(seconds=seconds))
                )
                return int(result.rowcount)
        finally:
            await engine.dispose()

    assert asyncio.run(go()) == 1


# --- The module's server ----------------------------------------------------------------------------------------


@dataclass
class MfaSetup:
    """A server on the shared e2e database with the MFA tenant applied, and how to change its policy."""

    server: IdentityServer
    env: dict[str, str]
    tenant_path: Path
    user_ids: dict[tuple[str, str], str]
    policy: str

    def set_policy(self, policy: str) -> None:
        """Edit the tenant file's ``mfa_policy`` and ``identity tenant apply`` it again, as an operator would."""
        if policy != self.policy:
            self.tenant_path.write_text(tenant_toml(policy))
            apply_tenant_file(self.tenant_path, self.env)
            self.policy = policy

    def user_id(self, person: Person) -> str:
        return self.user_ids[(person.connection, person.email)]


def _set_policy_in_database(database_url: str, policy: str) -> None:
    async def go() -> None:
        engine = create_engine(database_url)
        try:
            async with engine.begin() as conn:
                await conn.execute(update(TenantRow.__table__).values(mfa_policy=policy))  # type: ignore[attr-defined]
        finally:
            await engine.dispose()

    asyncio.run(go())


def _applied_user_ids(database_url: str) -> dict[tuple[str, str], str]:
    """The ids of this tenant's users if an earlier module applied it, else an empty dict."""
    rows = query(
        database_url,
        "SELECT connection.name, users.email, users.user_id FROM users"
        " JOIN connection ON connection.id = users.connection_id",
    )
    found = {(connection, email): user_id for connection, email, user_id in rows}
    wanted = {(person.connection, person.email) for person in PEOPLE}
    return {key: found[key] for key in wanted} if wanted <= set(found) else {}


@contextmanager
def mfa_setup(env: dict[str, str], database_url: str, tmp: Path, *, policy: str) -> Iterator[MfaSetup]:
    """Apply the MFA tenant with ``policy`` (``identity tenant apply``; a module after the first one finds it
    applied and only sets the policy) and start ``identity serve``. Afterwards, stop the server (failing on any
    unhandled error it logged) and put the tenant-wide policy back to the default for the modules that follow."""
    # Cheap Argon2id for these processes: the MFA tests log in a lot, and password hashing is tested elsewhere.
    env = {**env, "IDENTITY_ARGON2_TIME_COST": "1", "IDENTITY_ARGON2_MEMORY_KIB": "1024"}
    path = tmp / "mfa-tenant.toml"
    path.write_text(tenant_toml(policy))
    user_ids = _applied_user_ids(database_url)
    if user_ids:
        _set_policy_in_database(database_url, policy)
    else:
        report = apply_tenant_file(path, env)
        user_ids = {(user["connection"], user["email"]): user["user_id"] for user in report["users"]}
    (server,) = start_servers([serve_spec("mfa", env)], tmp)
    setup = MfaSetup(server, env, path, user_ids, policy)
    try:
        yield setup
    finally:
        try:
            stop_and_check(server)
        finally:
            _set_policy_in_database(database_url, "if-enrolled")
