"""The adversarial suite's target: the real ``identity serve`` on the test session's database, over HTTP.

One server for the package (a module that kills or restarts servers starts its own). The tenant is applied with the
CLI. Passwords are hashed with cheap Argon2 parameters: these tests log in thousands of times, and hashing has its
own tests and benchmark. Every test that reaches the server checks at the end that the server log holds no
traceback (`Target.assert_clean_log`).

Sizes can be raised for a long run (docs/security.md):

- ``IDENTITY_FUZZ_CASES``: generated requests per fuzz run (default 2,000; 20,000 for the long run);
- ``IDENTITY_RACE_ROUNDS``: rounds per single-use value (default in `tests.adversarial.races.DEFAULT_ROUNDS`);
- ``IDENTITY_RACE_CONCURRENCY``: concurrent requests per round (default 64).
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pyotp
import pytest
from sqlalchemy import text

from identity.settings import EncryptionKeys
from identity.store.db import create_engine
from identity.store.tenant import MANAGEMENT_API_SCOPES
from tests.e2e.conftest import (
    IdentityServer,
    apply_tenant_file,
    database_environ,
    empty_database,
    serve_spec,
    start_servers,
    stop_and_check,
)

API = "https://api.adversarial.test/"
API_SCOPES = ("read:things", "write:things")
REPORTS_API = "https://reports.adversarial.test/"
PASSWORD_REALM = "http://auth0.com/oauth/grant-type/password-realm"
MFA_OTP = "http://auth0.com/oauth/grant-type/mfa-otp"
MFA_RECOVERY_CODE = "http://auth0.com/oauth/grant-type/mfa-recovery-code"
MFA_WEBAUTHN = "urn:okta:params:oauth:grant-type:mfa-webauthn"
ALL_GRANTS = ["password", PASSWORD_REALM, MFA_OTP, MFA_RECOVERY_CODE, MFA_WEBAUTHN, "refresh_token"]
ALL_GRANTS += ["authorization_code"]  # and the first-party apps endpoint (issue 15)

PUBLIC = "adv-public"
POST = "adv-post"
POST_SECRET = "adv-post-secret-0123456789abcdefghijklmnop"
BASIC = "adv-basic"
BASIC_SECRET = "adv-basic-secret-0123456789abcdefghijklmno"
NO_MFA = "adv-no-mfa"
CLIENT_SECRETS: dict[str, str | None] = {PUBLIC: None, POST: POST_SECRET, BASIC: BASIC_SECRET, NO_MFA: None}
PASSKEYS = "adv-passkeys"
"""A public client with the passkey grant, for ``/passkey/register`` in the forged-token table (not the fuzz's)."""
PASSKEY_GRANTS = ["password", MFA_OTP, "urn:okta:params:oauth:grant-type:webauthn"]

PASSWORD = "adversarial password 1234"
BLOCKED_EMAIL = "blocked@adv.test"
FUZZ_EMAIL = "fuzz@adv.test"
EMPLOYEE = "employee"
# One user per race row (their attempt buckets and factors must not meet), plus spares for other modules.
RACE_USERS = (
    *("otp", "recovery", "mfa-token", "enroll-api", "enroll-page", "session", "refresh", "brute", "crash"),
    *("code", "fpa-step"),  # the first-party apps endpoint: its authorization code, its auth_session's OTP step
)
OTHER_USERS = ("fuzz", "alice", "forged", "associating", "plain", "slow", "webauthn")

FUZZ_ROUNDS_DEFAULT = 2_000
MANAGER = "adv-manager"
MANAGEMENT_READ_SCOPES = [scope for scope in MANAGEMENT_API_SCOPES if scope.startswith("read:")]


def email(name: str) -> str:
    return f"{name}@adv.test"


def tenant_toml() -> str:
    users = "".join(
        f'\n[[users]]\nconnection = "customers"\nemail = "{email(name)}"\npassword = "{PASSWORD}"\n'
        for name in (*RACE_USERS, *OTHER_USERS)
    )
    return f"""\
[tenant]
friendly_name = "Adversarial"
default_directory = "customers"
default_audience = "{API}"
mfa_policy = "if-enrolled"

[[connections]]
name = "customers"

[[connections]]
name = "employees"

[[apis]]
identifier = "{API}"
name = "Adversarial API"
scopes = {json.dumps(list(API_SCOPES))}
allow_offline_access = true

[[apis]]
identifier = "{REPORTS_API}"
name = "Reports"
scopes = ["read:reports"]
signing_alg = "ES256"

[[clients]]
client_id = "{PUBLIC}"
name = "public"
token_endpoint_auth_method = "none"
grant_types = {json.dumps(ALL_GRANTS)}
connections = ["customers", "employees"]

[[clients]]
client_id = "{POST}"
name = "post"
client_secret = "{POST_SECRET}"
token_endpoint_auth_method = "client_secret_post"
grant_types = {json.dumps(ALL_GRANTS)}
connections = ["customers", "employees"]

[[clients]]
client_id = "{BASIC}"
name = "basic"
client_secret = "{BASIC_SECRET}"
token_endpoint_auth_method = "client_secret_basic"
grant_types = {json.dumps(ALL_GRANTS)}
connections = ["customers"]

[[clients]]
client_id = "{PASSKEYS}"
name = "passkeys"
token_endpoint_auth_method = "none"
grant_types = {json.dumps(PASSKEY_GRANTS)}
connections = ["customers"]

[[clients]]
client_id = "{NO_MFA}"
name = "no mfa grants"
token_endpoint_auth_method = "none"
grant_types = ["password"]
connections = ["customers"]

[[users]]
connection = "customers"
email = "{BLOCKED_EMAIL}"
password = "{PASSWORD}"
blocked = true

[[users]]
connection = "employees"
email = "employee@adv.test"
username = "{EMPLOYEE}"
password = "{PASSWORD}"
{users}"""


def cheap_hashing_env(env: Mapping[str, str]) -> dict[str, str]:
    return {
        **env,
        "IDENTITY_ARGON2_TIME_COST": "1",
        "IDENTITY_ARGON2_MEMORY_KIB": "1024",
        "IDENTITY_HASH_WORKERS": "2",
        "IDENTITY_KEYS_REFRESH": "1",
    }


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value else default


# --- database access of the tests themselves -------------------------------------------------------------------


def db_run(database_url: str, statements: list[tuple[str, Mapping[str, Any]]]) -> list[list[tuple[Any, ...]]]:
    """Run statements in one transaction; the rows of each (empty for those that return none)."""

    async def go() -> list[list[tuple[Any, ...]]]:
        engine = create_engine(database_url)
        try:
            async with engine.begin() as conn:
                results = []
                for statement, params in statements:
                    result = await conn.execute(text(statement), dict(params))
                    results.append([tuple(row) for row in result.all()] if result.returns_rows else [])
                return results
        finally:
            await engine.dispose()

    return asyncio.run(go())


def db(database_url: str, statement: str, **params: Any) -> list[tuple[Any, ...]]:
    return db_run(database_url, [(statement, params)])[0]


# --- the target ------------------------------------------------------------------------------------------------


@dataclass
class Enrolled:
    """A user with a confirmed authenticator app."""

    email: str
    secret: str
    recovery_code: str
    user_id: str

    def code(self) -> str:
        return str(pyotp.TOTP(self.secret).now())


@dataclass
class Target:
    server: IdentityServer
    database_url: str
    env: dict[str, str]
    enrolled: dict[str, Enrolled] = field(default_factory=dict)
    _management_tokens: dict[str, str] = field(default_factory=dict)

    @property
    def base_url(self) -> str:
        return self.server.base_url

    @property
    def issuer(self) -> str:
        return self.server.issuer

    def token_form(
        self, client_id: str = PUBLIC, **params: str | None
    ) -> tuple[dict[str, str], tuple[str, str] | None]:
        data = {name: value for name, value in params.items() if value is not None}
        secret = CLIENT_SECRETS.get(client_id)
        if client_id == BASIC:
            return data, (BASIC, BASIC_SECRET)
        data["client_id"] = client_id
        if secret is not None:
            data["client_secret"] = secret
        return data, None

    def token(self, client_id: str = PUBLIC, **params: str | None) -> httpx.Response:
        data, auth = self.token_form(client_id, **params)
        return httpx.post(f"{self.base_url}/oauth/token", data=data, auth=auth, timeout=30)

    def login(self, who: str, **params: str | None) -> httpx.Response:
        return self.token(grant_type="password", username=email(who), password=PASSWORD, **params)

    def mfa_token(self, who: str, **params: str | None) -> str:
        response = self.login(who, **params)
        assert response.status_code == 403 and response.json()["error"] == "mfa_required", response.text
        return str(response.json()["mfa_token"])

    def enroll(self, who: str) -> Enrolled:
        """Enroll an authenticator for ``who`` through the MFA API (once per package)."""
        if who in self.enrolled:
            return self.enrolled[who]
        mfa_token = self.mfa_token(who, audience=self.issuer + "mfa/")
        associated = httpx.post(
            f"{self.base_url}/mfa/associate",
            json={"authenticator_types": ["otp"]},
            headers={"Authorization": f"Bearer {mfa_token}"},
            timeout=30,
        )
        assert associated.status_code == 200, associated.text
        body = associated.json()
        confirmed = self.token(grant_type=MFA_OTP, mfa_token=mfa_token, otp=pyotp.TOTP(body["secret"]).now())
        assert confirmed.status_code == 200, confirmed.text
        ((user_id,),) = db(self.database_url, "SELECT user_id FROM users WHERE email = :e", e=email(who))
        self.enrolled[who] = Enrolled(email(who), body["secret"], body["recovery_codes"][0], user_id)
        return self.enrolled[who]

    def user_pk(self, who: str) -> int:
        ((pk,),) = db(self.database_url, "SELECT id FROM users WHERE email = :e", e=email(who))
        return int(pk)

    def forget_used_steps(self, who: str) -> None:
        """Let the current TOTP code count again (as if the last accepted step were long ago), refill the bucket."""
        pk = self.user_pk(who)
        db_run(
            self.database_url,
            [
                ("UPDATE authenticator SET last_step = 0 WHERE user_pk = :pk", {"pk": pk}),
                ("DELETE FROM mfa_attempt WHERE user_pk = :pk", {"pk": pk}),
            ],
        )

    def refill_attempts(self, who: str) -> None:
        db(self.database_url, "DELETE FROM mfa_attempt WHERE user_pk = :pk", pk=self.user_pk(who))

    def management_token(self, client_id: str = MANAGER, scopes: Sequence[str] = MANAGEMENT_READ_SCOPES) -> str:
        """A client_credentials token for the Management API; the client and its grant are made once per id.

        The default client holds every read scope (the fuzz's); another with write scopes stays out of its hands.
        """
        if client_id not in self._management_tokens:
            secret = f"{client_id}-secret-0123456789abcdefghijklm"
            path = Path(tempfile.mkdtemp()) / "manager.toml"
            path.write_text(
                f'[[clients]]\nclient_id = "{client_id}"\nname = "{client_id}"\nclient_secret = "{secret}"\n'
                f'grant_types = ["client_credentials"]\n\n[[client_grants]]\nclient_id = "{client_id}"\n'
                f'audience = "{self.issuer}api/v2/"\nscope = {json.dumps(list(scopes))}\n'
            )
            apply_tenant_file(path, {**self.env, "IDENTITY_ISSUER": self.issuer})
            response = httpx.post(
                f"{self.base_url}/oauth/token",
                data={
                    "grant_type": "client_credentials",
                    "client_id": client_id,
                    "client_secret": secret,
                    "audience": f"{self.issuer}api/v2/",
                },
                timeout=30,
            )
            assert response.status_code == 200, response.text
            self._management_tokens[client_id] = str(response.json()["access_token"])
        return self._management_tokens[client_id]

    def log(self) -> str:
        return self.server.process.stderr() + self.server.process.stdout()

    def assert_clean_log(self) -> None:
        log = self.log()
        assert "Traceback" not in log and "unhandled error" not in log, log[-5000:]


def start_target(
    database_url: str, encryption_keys: EncryptionKeys, log_dir: Path, *, name: str = "adversarial", **env: str
) -> tuple[IdentityServer, dict[str, str]]:
    environ = cheap_hashing_env(database_environ(database_url, encryption_keys, **env))
    (server,) = start_servers([serve_spec(name, environ)], log_dir)
    return server, environ


@pytest.fixture(scope="package")
def adversarial_tenant(
    database_url: str, encryption_keys: EncryptionKeys, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, str]:
    """An emptied database with the adversarial tenant; the environment of its processes."""
    empty_database(database_url)
    environ = cheap_hashing_env(database_environ(database_url, encryption_keys))
    path = tmp_path_factory.mktemp("adversarial") / "tenant.toml"
    path.write_text(tenant_toml())
    apply_tenant_file(path, environ)
    return environ


@pytest.fixture(scope="package")
def target(
    database_url: str,
    encryption_keys: EncryptionKeys,
    adversarial_tenant: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Target]:
    server, environ = start_target(database_url, encryption_keys, tmp_path_factory.mktemp("adversarial-logs"))
    found = Target(server, database_url, environ)
    try:
        yield found
    finally:
        stop_and_check(server)
