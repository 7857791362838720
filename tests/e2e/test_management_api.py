"""The Management API driven by Auth0's own management SDK (auth0-python), against two real servers on one database.

A client gets a management token with ``GetToken.client_credentials`` (the client grant comes from the tenant file's
``[[client_grants]]``), then ``auth0.management.Auth0`` (pointed at ``http://…/api/v2``) provisions, blocks and
resets users and rotates secrets. Every change is made on instance A and checked on instance B: nothing that
matters lives in one process's memory.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pyotp
import pytest
from auth0.authentication import GetToken
from auth0.authentication.exceptions import Auth0Error
from auth0.management import Auth0
from auth0.management.core.api_error import ApiError

from identity.accounts.factors import FactorService
from identity.accounts.passwords import PasswordHasher
from identity.clock import SystemClock
from identity.crypto import SecretBox
from identity.settings import Argon2Params, EncryptionKeys
from identity.store.db import create_engine, create_sessionmaker
from identity.store.models import ConnectionRow, UserRow
from identity.store.tenant import MANAGEMENT_API_SCOPES
from tests.e2e.conftest import (
    API,
    API_SCOPES,
    PUBLIC_CLIENT,
    AppliedTenant,
    IdentityServer,
    apply_tenant_file,
    query,
    serve_spec,
    start_servers,
    stop_and_check,
    verify_access_token,
)

ISSUER = "https://login.mgmt.test/"
MANAGEMENT = ISSUER + "api/v2/"
OPS = "mgmt-ops"
OPS_SECRET = "mgmt-ops-secret-0123456789abcdefghijklmnop"
READER = "mgmt-reader"
READER_SECRET = "mgmt-reader-secret-0123456789abcdefghijklm"
BULK_USERS = 250

MGMT_TOML = f"""\
[[connections]]
name = "bulk"

[[clients]]
client_id = "{OPS}"
name = "Operations pipeline"
client_secret = "{OPS_SECRET}"
grant_types = ["client_credentials"]

[[clients]]
client_id = "{READER}"
name = "Read-only reporting"
client_secret = "{READER_SECRET}"
grant_types = ["client_credentials"]

[[client_grants]]
client_id = "{OPS}"
audience = "##ISSUER##api/v2/"
scope = {json.dumps(list(MANAGEMENT_API_SCOPES))}

[[client_grants]]
client_id = "{OPS}"
audience = "{API}"
scope = {json.dumps(list(API_SCOPES))}

[[client_grants]]
client_id = "{READER}"
audience = "##ISSUER##api/v2/"
scope = ["read:users"]
"""


@pytest.fixture(scope="module")
def instances(
    e2e_env: dict[str, str], applied_tenant: AppliedTenant, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[IdentityServer, IdentityServer]]:
    path = tmp_path_factory.mktemp("mgmt") / "mgmt.toml"
    path.write_text(MGMT_TOML)
    apply_tenant_file(path, {**e2e_env, "IDENTITY_ISSUER": ISSUER})
    specs = [serve_spec(f"mgmt-{name}", e2e_env, issuer=ISSUER) for name in "ab"]
    a, b = start_servers(specs, tmp_path_factory.mktemp("mgmt-logs"))
    try:
        yield a, b
    finally:
        stop_and_check(a)
        stop_and_check(b)


def token(server: IdentityServer, client_id: str = OPS, secret: str = OPS_SECRET, audience: str = MANAGEMENT) -> str:
    response = GetToken(server.domain, client_id, client_secret=secret, protocol="http").client_credentials(audience)
    return str(response["access_token"])


_HTTP_CLIENTS: list[httpx.Client] = []


@pytest.fixture(autouse=True)
def _close_sdk_clients() -> Iterator[None]:
    yield
    while _HTTP_CLIENTS:
        _HTTP_CLIENTS.pop().close()


def sdk(server: IdentityServer, access_token: str | None = None) -> Auth0:
    """auth0-python's management client on ``server`` over http (its connection pool is closed after the test)."""
    http = httpx.Client(timeout=30)
    _HTTP_CLIENTS.append(http)
    return Auth0(
        base_url=f"{server.base_url}/api/v2", token=access_token or token(server), max_retries=0, httpx_client=http
    )


def login(server: IdentityServer, email: str, password: str) -> dict[str, Any]:
    response: dict[str, Any] = GetToken(server.domain, PUBLIC_CLIENT, protocol="http").login(
        email, password, realm="customers", grant_type="http://auth0.com/oauth/grant-type/password-realm"
    )
    return response


def login_error(server: IdentityServer, email: str, password: str) -> Auth0Error:
    with pytest.raises(Auth0Error) as caught:
        login(server, email, password)
    return caught.value


def enroll_totp(database_url: str, encryption_keys: EncryptionKeys, user_id: str) -> None:
    """Enroll and confirm a TOTP factor the way the MFA API does, through the factor service."""

    async def go() -> None:
        engine = create_engine(database_url)
        try:
            async with create_sessionmaker(engine)() as session:
                factors = FactorService(session, SecretBox(encryption_keys), SystemClock())
                enrollment = await factors.enrollment.associate(user_id, issuer="E2E")
                await factors.otp.confirm_enrollment(user_id, pyotp.TOTP(enrollment.secret).now())
        finally:
            await engine.dispose()

    asyncio.run(go())


def seed_users(database_url: str, connection: str, count: int) -> None:
    """Insert many users directly, with one cheap hash: paging needs rows, not 250 full-cost Argon2 runs."""

    async def go() -> None:
        hasher = PasswordHasher(Argon2Params(time_cost=1, memory_kib=8, parallelism=1), workers=1)
        engine = create_engine(database_url)
        try:
            password_hash = await hasher.hash("bulk password 1234")
            async with create_sessionmaker(engine)() as session:
                from sqlmodel import select

                row = (await session.execute(select(ConnectionRow).where(ConnectionRow.name == connection))).scalar()
                assert row is not None and row.id is not None
                session.add_all(
                    UserRow(
                        user_id=f"auth0|bulk{number:05d}",
                        connection_id=row.id,
                        email=f"bulk{number:05d}@mgmt.test",
                        email_key=f"bulk{number:05d}@mgmt.test",
                        password_hash=password_hash,
                        app_metadata={"batch": "odd" if number % 2 else "even"},
                    )
                    for number in range(count)
                )
                await session.commit()
        finally:
            hasher.close()
            await engine.dispose()

    asyncio.run(go())


def test_the_sdk_provisions_finds_resets_and_blocks_a_user(
    instances: tuple[IdentityServer, IdentityServer], database_url: str, encryption_keys: EncryptionKeys
) -> None:
    a, b = instances
    management = sdk(a)
    email, password = "carol@mgmt.test", "the first password of C. 2026"

    created = management.users.create(connection="customers", email=email, password=password, name="Carol")
    assert created.user_id is not None and created.user_id.startswith("auth0|")
    assert created.email == email and created.blocked is False
    (found,) = management.users.list_users_by_email(email=email.upper())
    assert found.user_id == created.user_id
    assert management.users.get(created.user_id).name == "Carol"

    # Her password works on the other instance at once; with a factor enrolled the login asks for it.
    assert verify_access_token(b, login(b, email, password)["access_token"], audience=API, issuer=ISSUER)
    enroll_totp(database_url, encryption_keys, created.user_id)
    assert login_error(b, email, password).error_code == "mfa_required"
    methods = management.users.authentication_methods.list(created.user_id)
    assert [method.type for method in methods] == ["recovery-code", "totp"]
    recovery = management.users.regenerate_recovery_code(created.user_id)
    assert recovery.recovery_code and len(recovery.recovery_code) >= 20

    # One enrollment removed by its Guardian id: the last authenticator takes the recovery code with it.
    (enrollment,) = management.users.enrollments.get(created.user_id)
    assert enrollment.status == "confirmed"
    management.guardian.enrollments.delete(enrollment.id)
    assert list(management.users.authentication_methods.list(created.user_id)) == []
    assert "access_token" in login(b, email, password)

    # MFA reset (lost phone): the factors are gone and the next login needs only the password.
    enroll_totp(database_url, encryption_keys, created.user_id)
    assert login_error(b, email, password).error_code == "mfa_required"
    management.users.authentication_methods.delete_all(created.user_id)
    assert list(management.users.authentication_methods.list(created.user_id)) == []
    assert "access_token" in login(b, email, password)

    # Block: the password grant answers as the contract says for an admin-blocked user.
    assert management.users.update(created.user_id, blocked=True).blocked is True
    error = login_error(b, email, password)
    assert (error.status_code, error.error_code, error.message) == (401, "unauthorized", "user is blocked")
    management.users.update(created.user_id, blocked=False, password="the second password of C. 2026")
    assert login_error(b, email, password).error_code == "invalid_grant"
    assert "access_token" in login(b, email, "the second password of C. 2026")

    management.users.delete(created.user_id)
    with pytest.raises(ApiError) as caught:
        management.users.get(created.user_id)
    assert caught.value.status_code == 404
    assert caught.value.body["errorCode"] == "inexistent_user"


def test_the_sdk_reads_a_factor_forgets_browsers_and_sets_the_mfa_policy(
    instances: tuple[IdentityServer, IdentityServer], database_url: str, encryption_keys: EncryptionKeys
) -> None:
    a, b = instances
    management = sdk(a)
    password = "grace's long password 2026"
    grace = management.users.create(connection="customers", email="grace@mgmt.test", password=password)
    heidi = management.users.create(connection="customers", email="heidi@mgmt.test", password=password)
    assert grace.user_id is not None and heidi.user_id is not None
    enroll_totp(database_url, encryption_keys, grace.user_id)
    (totp,) = [m for m in management.users.authentication_methods.list(grace.user_id) if m.type == "totp"]
    one = management.users.authentication_methods.get(grace.user_id, totp.id)
    assert (one.id, one.type, one.confirmed) == (totp.id, "totp", True)
    # No browser is remembered: accepted, and the next login still asks for the factor.
    management.users.multifactor.invalidate_remember_browser(grace.user_id)
    assert login_error(b, "grace@mgmt.test", password).error_code == "mfa_required"

    assert management.guardian.factors.set("otp", enabled=True).enabled is True
    with pytest.raises(ApiError) as caught:
        management.guardian.factors.set("otp", enabled=False)
    assert caught.value.status_code == 400 and caught.value.body["errorCode"] == "operation_not_supported"

    assert "access_token" in login(b, "heidi@mgmt.test", password)
    try:
        assert management.guardian.policies.set(request=["all-applications"]) == ["all-applications"]
        # Every login needs a second factor now, on the other instance at once.
        assert login_error(b, "heidi@mgmt.test", password).error_code == "mfa_required"
    finally:
        assert management.guardian.policies.set(request=[]) == []
    assert "access_token" in login(b, "heidi@mgmt.test", password)
    for user_id in (grace.user_id, heidi.user_id):
        management.users.delete(user_id)


def eventually(check: Any, timeout: float = 10.0) -> Any:
    """``check()``'s first truthy answer: audit events are stored by a background writer, a moment after the answer."""
    deadline = time.monotonic() + timeout
    while True:
        if result := check():
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s")
        time.sleep(0.1)


def token_error(server: IdentityServer, client_id: str, secret: str) -> Auth0Error | None:
    """The token endpoint's refusal of these client credentials, or ``None`` when it issues a token."""
    try:
        token(server, client_id, secret, audience=API)
    except Auth0Error as error:
        return error
    return None


def test_a_rotated_secret_replaces_the_old_one_on_every_instance(
    instances: tuple[IdentityServer, IdentityServer],
) -> None:
    a, b = instances
    management = sdk(a)
    created = management.clients.create(
        name="Nightly export", grant_types=["client_credentials"], token_endpoint_auth_method="client_secret_post"
    )
    assert created.client_id and created.client_secret
    management.client_grants.create(client_id=created.client_id, audience=API, scope=["read:things"])
    # Each request reads the configuration version with its first statement (identity.store.config): a change
    # committed on A holds on B's next request, with no retry.
    assert token_error(b, created.client_id, created.client_secret) is None
    # The secret is never shown again.
    assert management.clients.get(created.client_id).client_secret is None

    rotated = management.clients.rotate_secret(created.client_id)
    assert rotated.client_secret and rotated.client_secret != created.client_secret
    error = token_error(b, created.client_id, created.client_secret)
    assert error is not None and (error.status_code, error.error_code) == (401, "invalid_client")
    # On the instance that rotated it, at once.
    assert (token_error(a, created.client_id, created.client_secret) or Auth0Error(0, "", "")).status_code == 401
    claims = verify_access_token(
        b, token(b, created.client_id, rotated.client_secret, audience=API), audience=API, issuer=ISSUER
    )
    assert claims["sub"] == f"{created.client_id}@clients" and claims["gty"] == "client-credentials"

    # Disabling the grant type stops the client, on the other instance too.
    management.clients.update(created.client_id, grant_types=[])
    error = token_error(b, created.client_id, rotated.client_secret)
    assert error is not None and (error.status_code, error.error_code) == (403, "unauthorized_client")


def test_the_sdk_pages_through_250_users(instances: tuple[IdentityServer, IdentityServer], database_url: str) -> None:
    a, _ = instances
    seed_users(database_url, "bulk", BULK_USERS)
    management = sdk(a)

    pager = management.users.list(q='identities.connection:"bulk"', per_page=40, sort="email:1", include_totals=True)
    emails = [user.email for user in pager]
    assert emails == [f"bulk{number:05d}@mgmt.test" for number in range(BULK_USERS)]
    first = management.users.list(connection="bulk", per_page=100, include_totals=True)
    assert first.response is not None and first.response.total == BULK_USERS
    odd = management.users.list(q='app_metadata.batch:"odd" AND email:bulk000*', per_page=100)
    assert sorted(user.email for user in odd) == [f"bulk{n:05d}@mgmt.test" for n in range(1, 100, 2)]


def test_a_change_holds_at_once_on_the_other_instance(instances: tuple[IdentityServer, IdentityServer]) -> None:
    a, b = instances
    on_a, on_b = sdk(a), sdk(b)
    on_a.tenants.settings.update(friendly_name="Renamed on A")
    assert on_b.tenants.settings.get().friendly_name == "Renamed on A"
    # A revoked Management API grant ends the client's management tokens at once, everywhere.
    reader_token = token(b, READER, READER_SECRET)
    assert list(sdk(b, reader_token).users.list(per_page=1))
    (grant,) = on_a.client_grants.list(client_id=READER, audience=MANAGEMENT)
    on_a.client_grants.delete(grant.id)
    response = httpx.get(f"{b.base_url}/api/v2/users", headers={"Authorization": f"Bearer {reader_token}"})
    assert response.status_code == 401, response.text
    assert response.json()["statusCode"] == 401


def test_the_sdk_reads_the_logs_of_a_failed_login_and_of_its_own_calls(
    instances: tuple[IdentityServer, IdentityServer],
) -> None:
    a, b = instances
    management = sdk(a)
    email, password = "erin@mgmt.test", "erin's long password 2026"
    user = management.users.create(connection="customers", email=email, password=password)
    assert user.user_id is not None
    assert login_error(b, email, "not erin's password at all").error_code == "invalid_grant"

    def failed() -> list[Any]:
        return [log for log in management.users.logs.list(user.user_id) if log.type in ("f", "fp")]

    (event,) = eventually(failed)
    assert event.user_id == user.user_id and event.connection == "customers" and event.client_id == PUBLIC_CLIENT
    assert event.ip == "127.0.0.1" and event.date is not None
    assert "not erin's password" not in json.dumps(event.model_dump(mode="json"))
    assert management.logs.get(event.log_id).log_id == event.log_id
    searched = management.logs.list(search=f'type:(f OR fp) AND user_id:"{user.user_id}"', per_page=10)
    assert [log.log_id for log in searched] == [event.log_id]

    # The management calls are in the log too, with the client that made them.
    created = eventually(
        lambda: [
            log
            for log in management.logs.list(search=f"type:sapi AND client_id:{OPS}", per_page=100)
            if log.description == "Create a user"
        ]
    )
    assert created[0].details["request"]["method"] == "POST"
    assert "password" not in json.dumps(created[0].details)
    management.users.delete(user.user_id)
    deleted = eventually(lambda: list(management.logs.list(search=f'type:sdu AND user_id:"{user.user_id}"')))
    assert deleted[0].client_id == OPS

    # Checkpoint paging: the events after a log_id, oldest first, without repeats.
    headers = {"Authorization": f"Bearer {token(a)}"}
    first = httpx.get(f"{a.base_url}/api/v2/logs", params={"take": 5}, headers=headers).json()
    after = httpx.get(f"{a.base_url}/api/v2/logs", params={"from": first[-1]["log_id"], "take": 5}, headers=headers)
    assert after.status_code == 200 and after.json()
    assert first[-1]["log_id"] < after.json()[0]["log_id"]
    assert {log["log_id"] for log in first}.isdisjoint(log["log_id"] for log in after.json())
    bad = httpx.get(f"{a.base_url}/api/v2/logs", params={"q": "date:yesterday"}, headers=headers)
    assert bad.status_code == 400 and "date" in bad.json()["message"]


def test_brute_force_blocks_are_listed_and_lifted(instances: tuple[IdentityServer, IdentityServer]) -> None:
    a, b = instances
    management = sdk(a)
    email, password = "frank@mgmt.test", "frank's long password 2026"
    user = management.users.create(connection="customers", email=email, password=password)
    assert user.user_id is not None
    management.attack_protection.brute_force_protection.update(max_attempts=3)
    # The new limit holds at once on the other instance too (the configuration version is read with each request).
    try:
        for _ in range(3):
            login_error(b, email, "wrong password for frank")
        assert login_error(b, email, password).error_code == "too_many_attempts"
        blocks = management.user_blocks.list_by_identifier(identifier=email.upper())
        assert [(x.identifier, x.ip, x.connection) for x in blocks.blocked_for or []] == [
            (email.upper(), "127.0.0.1", "customers")
        ]
        assert [x.ip for x in management.user_blocks.list(user.user_id).blocked_for or []] == ["127.0.0.1"]
        management.user_blocks.delete(user.user_id)
        assert management.user_blocks.list_by_identifier(identifier=email).blocked_for == []
        assert "access_token" in login(a, email, password)
        for _ in range(3):
            login_error(a, email, "wrong password for frank")
        management.user_blocks.delete_by_identifier(identifier=email)
        assert "access_token" in login(a, email, password)
    finally:
        management.attack_protection.brute_force_protection.update(max_attempts=10)


# --- Every endpoint checks its scope and audience ---------------------------------------------------------------

ENDPOINTS = [
    ("GET", "/users", "read:users"),
    ("POST", "/users", "create:users"),
    ("GET", "/users-by-email?email=x@y.test", "read:users"),
    ("GET", "/users/auth0|x", "read:users"),
    ("PATCH", "/users/auth0|x", "update:users"),
    ("DELETE", "/users/auth0|x", "delete:users"),
    ("GET", "/users/auth0|x/authentication-methods", ("read:authentication_methods", "read:users")),
    ("DELETE", "/users/auth0|x/authentication-methods", "delete:authentication_methods"),
    ("DELETE", "/users/auth0|x/authentication-methods/totp|dev_x", "delete:authentication_methods"),
    ("GET", "/users/auth0|x/authentication-methods/totp|dev_x", "read:authentication_methods"),
    ("POST", "/users/auth0|x/multifactor/actions/invalidate-remember-browser", "update:users"),
    ("GET", "/guardian/factors", "read:guardian_factors"),
    ("PUT", "/guardian/factors/otp", "update:guardian_factors"),
    ("GET", "/guardian/policies", "read:mfa_policies"),
    ("PUT", "/guardian/policies", "update:mfa_policies"),
    ("DELETE", "/users/auth0|x/authenticators", "delete:guardian_enrollments"),
    ("DELETE", "/guardian/enrollments/totp|dev_x", "delete:guardian_enrollments"),
    ("GET", "/users/auth0|x/enrollments", "read:users"),
    ("POST", "/users/auth0|x/recovery-code-regeneration", "update:users"),
    ("GET", "/connections", "read:connections"),
    ("POST", "/connections", "create:connections"),
    ("GET", "/connections/con_1", "read:connections"),
    ("GET", "/connections/con_1/clients", "read:connections"),
    ("PATCH", "/connections/con_1/clients", "update:connections"),
    ("PATCH", "/connections/con_1", "update:connections"),
    ("DELETE", "/connections/con_1", "delete:connections"),
    ("GET", "/clients", "read:clients"),
    ("POST", "/clients", "create:clients"),
    ("GET", "/clients/x", "read:clients"),
    ("PATCH", "/clients/x", "update:clients"),
    ("DELETE", "/clients/x", "delete:clients"),
    ("POST", "/clients/x/rotate-secret", "update:clients"),
    ("GET", "/client-grants", "read:client_grants"),
    ("POST", "/client-grants", "create:client_grants"),
    ("PATCH", "/client-grants/cgr_x", "update:client_grants"),
    ("DELETE", "/client-grants/cgr_x", "delete:client_grants"),
    ("GET", "/resource-servers", "read:resource_servers"),
    ("POST", "/resource-servers", "create:resource_servers"),
    ("GET", "/resource-servers/1", "read:resource_servers"),
    ("PATCH", "/resource-servers/1", "update:resource_servers"),
    ("DELETE", "/resource-servers/1", "delete:resource_servers"),
    ("GET", "/tenants/settings", "read:tenant_settings"),
    ("PATCH", "/tenants/settings", "update:tenant_settings"),
    ("GET", "/attack-protection/brute-force-protection", "read:attack_protection"),
    ("PATCH", "/attack-protection/brute-force-protection", "update:attack_protection"),
    ("GET", "/attack-protection/suspicious-ip-throttling", "read:attack_protection"),
    ("PATCH", "/attack-protection/suspicious-ip-throttling", "update:attack_protection"),
    ("GET", "/attack-protection/breached-password-detection", "read:attack_protection"),
    ("PATCH", "/attack-protection/breached-password-detection", "update:attack_protection"),
    ("GET", "/rules", "read:rules"),
    ("PATCH", "/rules/x", "update:rules"),
    ("GET", "/logs", "read:logs"),
    ("GET", "/logs/x", "read:logs"),
    ("GET", "/users/auth0|x/logs", ("read:logs", "read:logs_users")),
    ("GET", "/user-blocks?identifier=x@y.test", "read:users"),
    ("DELETE", "/user-blocks?identifier=x@y.test", "update:users"),
    ("GET", "/user-blocks/auth0|x", "read:users"),
    ("DELETE", "/user-blocks/auth0|x", "update:users"),
]


def test_every_endpoint_refuses_a_token_without_its_scope_or_for_another_audience(
    instances: tuple[IdentityServer, IdentityServer],
) -> None:
    a, _ = instances
    other_audience = token(a, audience=API)
    with httpx.Client(base_url=f"{a.base_url}/api/v2", timeout=10) as client:
        for method, path, scope in ENDPOINTS:
            needed = {scope} if isinstance(scope, str) else set(scope)
            others = " ".join(s for s in MANAGEMENT_API_SCOPES if s not in needed)
            narrow = GetToken(a.domain, OPS, client_secret=OPS_SECRET, protocol="http")
            access_token = narrow.client_credentials(MANAGEMENT, grant_type="client_credentials")["access_token"]
            # The full token passes the guard (whatever the handler then answers); the narrow one does not.
            scoped = httpx.post(
                a.token_url,
                data={
                    "grant_type": "client_credentials",
                    "client_id": OPS,
                    "client_secret": OPS_SECRET,
                    "audience": MANAGEMENT,
                    "scope": others,
                },
            ).json()["access_token"]
            body = {} if method in ("POST", "PATCH") else None
            refused = client.request(method, path, json=body, headers={"Authorization": f"Bearer {scoped}"})
            assert refused.status_code == 403, (method, path, refused.text)
            assert refused.json()["errorCode"] == "insufficient_scope", (method, path)
            wrong = client.request(method, path, json=body, headers={"Authorization": f"Bearer {other_audience}"})
            assert wrong.status_code == 401, (method, path, wrong.text)
            assert set(wrong.json()) == {"statusCode", "error", "message", "errorCode"}
            allowed = client.request(method, path, json=body, headers={"Authorization": f"Bearer {access_token}"})
            assert allowed.status_code not in (401, 403), (method, path, allowed.text)
            assert client.request(method, path, json=body).status_code == 401


def test_the_route_table_is_covered() -> None:
    """Every Management API route of the app is in ENDPOINTS (a new endpoint must join the scope table)."""
    from identity.management import management_router

    routes = {
        (method, route.path.removeprefix("/api/v2"))
        for route in management_router().routes
        for method in getattr(route, "methods", ())
        if method not in ("HEAD", "OPTIONS")
    }
    covered = {
        (route_method, route_path)
        for method, path, _ in ENDPOINTS
        for route_method, route_path in routes
        if route_method == method and _matches(route_path, path.split("?")[0])
    }
    assert len(routes) >= len(ENDPOINTS)
    assert routes - covered == set()


def _matches(route: str, path: str) -> bool:
    route_parts, path_parts = route.strip("/").split("/"), path.strip("/").split("/")
    return len(route_parts) == len(path_parts) and all(
        r.startswith("{") or r == p for r, p in zip(route_parts, path_parts, strict=True)
    )


def test_a_failed_request_changes_nothing(instances: tuple[IdentityServer, IdentityServer], database_url: str) -> None:
    a, _ = instances
    headers = {"Authorization": f"Bearer {token(a)}"}
    with httpx.Client(base_url=f"{a.base_url}/api/v2", timeout=10, headers=headers) as client:
        user = client.post(
            "/users",
            json={"connection": "customers", "email": "dan@mgmt.test", "password": "a password long enough for D."},
        )
        assert user.status_code == 201, user.text
        user_id = user.json()["user_id"]
        before = query(database_url, f"SELECT blocked, password_hash, name FROM users WHERE user_id = '{user_id}'")

        # A good change next to a bad one: nothing is written.
        bad = client.patch(f"/users/{user_id}", json={"blocked": True, "name": "Dan", "password": "short"})
        assert bad.status_code == 400 and "at least 15 characters" in bad.json()["message"], bad.text
        bad = client.patch(f"/users/{user_id}", json={"blocked": True, "email": "not an email"})
        assert bad.status_code == 400 and "email" in bad.json()["message"], bad.text
        bad = client.patch(f"/users/{user_id}", json={"blocked": "yes"})
        assert bad.status_code == 400 and bad.json()["message"].endswith("on property blocked."), bad.text
        assert query(database_url, f"SELECT blocked, password_hash, name FROM users WHERE user_id = '{user_id}'") == (
            before
        )
        duplicate = client.post(
            "/users",
            json={"connection": "customers", "email": "DAN@mgmt.test", "password": "another password for D. 2026"},
        )
        assert duplicate.status_code == 409 and duplicate.json()["errorCode"] == "auth0_idp_error"
        count = query(database_url, "SELECT count(*) FROM users WHERE email_key = 'dan@mgmt.test'")
        assert count == [(1,)]

        clients_before = query(database_url, "SELECT client_id, grant_types, secret_hash FROM client ORDER BY id")
        bad = client.patch(f"/clients/{OPS}", json={"name": "x", "refresh_token": {"leeway": 600}})
        assert bad.status_code == 400 and "leeway" in bad.json()["message"], bad.text
        bad = client.post("/client-grants", json={"client_id": OPS, "audience": API, "scope": ["read:things"]})
        assert bad.status_code == 409, bad.text
        bad = client.post("/client-grants", json={"client_id": READER, "audience": API, "scope": ["fly:things"]})
        assert bad.status_code == 400 and "fly:things" in bad.json()["message"], bad.text
        assert query(database_url, "SELECT client_id, grant_types, secret_hash FROM client ORDER BY id") == (
            clients_before
        )
        bad = client.patch("/tenants/settings", json={"default_directory": "nowhere", "friendly_name": "Nope"})
        assert bad.status_code == 400 and "nowhere" in bad.json()["message"], bad.text
        assert client.get("/tenants/settings").json()["friendly_name"] != "Nope"
        bad = client.post("/resource-servers", json={"identifier": "https://x.test/", "token_lifetime": 1})
        assert bad.status_code == 400 and "token_lifetime" in bad.json()["message"], bad.text
        assert client.get("/resource-servers/https:%2F%2Fx.test%2F").status_code == 404


def test_bad_bodies_get_a_400_naming_the_field(instances: tuple[IdentityServer, IdentityServer]) -> None:
    a, _ = instances
    headers = {"Authorization": f"Bearer {token(a)}"}
    cases = [
        ("POST", "/users", {"email": "e@mgmt.test", "password": "p" * 10}, "connection"),
        ("POST", "/users", {"connection": "customers", "email": "e@mgmt.test"}, "password"),
        ("POST", "/users", {"connection": "customers", "email": 7, "password": "p" * 10}, "email"),
        ("POST", "/users", {"connection": "customers", "emial": "e@mgmt.test", "password": "p" * 10}, "emial"),
        ("POST", "/users", {"connection": "nowhere", "email": "e@mgmt.test", "password": "p" * 10}, "connection"),
        ("PATCH", f"/clients/{OPS}", {"grant_types": "client_credentials"}, "grant_types"),
        ("POST", "/clients", {"grant_types": []}, "name"),
        ("POST", "/client-grants", {"client_id": OPS, "audience": API}, "scope"),
        ("PATCH", "/tenants/settings", {"mfa_policy": "sometimes"}, "mfa_policy"),
        ("PATCH", "/attack-protection/brute-force-protection", {"max_attempts": 0}, "max_attempts"),
        ("GET", "/users?per_page=1000", None, "per_page"),
        ("GET", "/users?q=email%3Ax%20OR%20name%3Ay", None, "q"),
        ("GET", "/users?q=password%3Ax", None, "q"),
        ("GET", "/users?sort=password:1", None, "sort"),
    ]
    with httpx.Client(base_url=f"{a.base_url}/api/v2", timeout=10, headers=headers) as client:
        for method, path, body, field in cases:
            response = client.request(method, path, json=body)
            assert response.status_code == 400, (path, body, response.text)
            answer = response.json()
            assert answer["statusCode"] == 400 and answer["error"] == "Bad Request", answer
            assert answer["errorCode"] in ("invalid_body", "invalid_query_string", "inexistent_connection"), answer
            assert field in answer["message"] or answer["errorCode"] == "inexistent_connection", (path, answer)
        not_json = client.post("/users", content=b"{not json", headers={"Content-Type": "application/json"})
        assert not_json.status_code == 400 and not_json.json()["errorCode"] == "invalid_body"
