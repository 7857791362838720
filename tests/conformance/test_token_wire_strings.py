"""Every status code and exact error/error_description of API.md §1.9 that the token endpoint answers today.

Clients (Auth0's SDKs, apps written against Auth0) match on these strings: one table, one row per wire string.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from litestar.testing import TestClient
from sqlalchemy import update
from sqlmodel import col

from identity.app import create_app
from identity.settings import EncryptionKeys, Settings
from identity.store.models import ConnectionRow, TenantRow
from tests.api.support import empty_database
from tests.conftest import (
    ALICE_CUSTOMER_PASSWORD,
    BASIC_SECRET,
    BOB_PASSWORD,
    CONFIDENTIAL_SECRET,
    ISSUER,
    apply,
    run_db,
    standard_tenant,
)

PASSWORD_REALM = "http://auth0.com/oauth/grant-type/password-realm"
ALICE = "alice@example.test"
BASIC_CHALLENGE = 'Basic realm="https://identity.test/", charset="UTF-8"'


def params(**overrides: str | None) -> dict[str, str]:
    values: dict[str, str | None] = {
        "grant_type": "password",
        "client_id": "public-app",
        "username": ALICE,
        "password": ALICE_CUSTOMER_PASSWORD,
    }
    values.update(overrides)
    return {name: value for name, value in values.items() if value is not None}


def basic(client_id: str, secret: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()}


@contextmanager
def no_default_directory(settings: Settings) -> Iterator[None]:
    def set_directory(value: str | None) -> Callable[..., Any]:
        async def work(session, _hasher):
            await session.execute(update(TenantRow).values(default_directory=value))
            await session.commit()

        return work

    run_db(settings, set_directory(None))
    try:
        yield
    finally:
        run_db(settings, set_directory("customers"))


@contextmanager
def employees_without_password_support(settings: Settings) -> Iterator[None]:
    """The tenant file only creates database connections; make one look like a social connection."""

    def set_strategy(value: str) -> Callable[..., Any]:
        async def work(session, _hasher):
            await session.execute(
                update(ConnectionRow).where(col(ConnectionRow.name) == "employees").values(strategy=value)
            )
            await session.commit()

        return work

    run_db(settings, set_strategy("google-oauth2"))
    try:
        yield
    finally:
        run_db(settings, set_strategy("auth0"))


@contextmanager
def as_is(_settings: Settings) -> Iterator[None]:
    yield


@dataclass(frozen=True)
class Row:
    status: int
    error: str
    description: str
    form: dict[str, str] | None = None
    json: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    tenant: Callable[[Settings], Any] = as_is
    challenge: bool = False


TABLE = {
    # 400 invalid_request: malformed request [OLD-ERR-RO]
    "missing username": Row(400, "invalid_request", "missing username parameter", form=params(username=None)),
    "missing password": Row(400, "invalid_request", "missing password parameter", form=params(password=None)),
    "missing client_id": Row(400, "invalid_request", "missing client_id parameter", form=params(client_id=None)),
    "missing grant_type": Row(400, "invalid_request", "missing grant_type parameter", form=params(grant_type=None)),
    "missing realm": Row(400, "invalid_request", "missing realm parameter", form=params(grant_type=PASSWORD_REALM)),
    # 400 invalid_request: realm problems [OLD-ERR-RO]
    "connection not found": Row(
        400, "invalid_request", "the connection was not found", form=params(grant_type=PASSWORD_REALM, realm="nope")
    ),
    "connection disabled": Row(
        400, "invalid_request", "the connection was disabled", form=params(grant_type=PASSWORD_REALM, realm="partners")
    ),
    "strategy without passwords": Row(
        400,
        "invalid_request",
        "specified strategy does not support requested operation",
        form=params(grant_type=PASSWORD_REALM, realm="employees"),
        tenant=employees_without_password_support,
    ),
    # 400 unsupported_grant_type [AUTH-OAS]
    "unknown grant": Row(400, "unsupported_grant_type", "Grant type not supported", form=params(grant_type="bogus")),
    # 400 invalid_scope [OLD-ERR]
    "scope of wrong type": Row(
        400, "invalid_scope", "Scope must be an array or a string", json={**params(), "scope": 7}
    ),
    # 401 invalid_client [AUTH-OAS]; WWW-Authenticate when Basic was used (API.md §8)
    "wrong client secret": Row(
        401,
        "invalid_client",
        "Client authentication failed",
        form=params(client_id="confidential-app", client_secret=CONFIDENTIAL_SECRET + "x"),
    ),
    "unknown client": Row(401, "invalid_client", "Client authentication failed", form=params(client_id="no-such-app")),
    "wrong basic secret": Row(
        401,
        "invalid_client",
        "Client authentication failed",
        form=params(client_id=None),
        headers=basic("basic-app", BASIC_SECRET + "x"),
        challenge=True,
    ),
    # 403 unauthorized_client [OBS; auth0.net#501]
    "password grant not allowed": Row(
        403,
        "unauthorized_client",
        "Grant type 'password' not allowed for the client.",
        form=params(client_id="realm-only-app"),
    ),
    "password-realm grant not allowed": Row(
        403,
        "unauthorized_client",
        "Grant type 'http://auth0.com/oauth/grant-type/password-realm' not allowed for the client.",
        form=params(client_id="password-only-app", grant_type=PASSWORD_REALM, realm="customers"),
    ),
    # 403 invalid_grant: bad credentials and unknown user alike [OBS; SDK ANDROID]
    "wrong password": Row(403, "invalid_grant", "Wrong email or password.", form=params(password="wrong password")),
    "unknown user": Row(403, "invalid_grant", "Wrong email or password.", form=params(username="nobody@example.test")),
    # 403 mfa_required [DOC MFA-ROPG]: the MFA API audience always demands a second factor (more in
    # test_mfa_wire_strings.py)
    "mfa required": Row(
        403, "mfa_required", "Multifactor authentication required", form=params(audience=ISSUER + "mfa/")
    ),
    # 403 unmet_authentication_requirements [RFC 9470 §6; API.md §7.3]: never a weaker token (more in
    # tests/api/test_step_up.py)
    "unknown acr value": Row(
        403,
        "unmet_authentication_requirements",
        "acr_values: the supported value is http://schemas.openid.net/pape/policies/2007/06/multi-factor",
        form=params(acr_values="urn:example:gold"),
    ),
    "mfa asked, no mfa grant": Row(
        403,
        "unmet_authentication_requirements",
        "acr_values asks for a second factor and the client has no MFA grant type to finish it with",
        form=params(acr_values="http://schemas.openid.net/pape/policies/2007/06/multi-factor"),
    ),
    # 403 access_denied [COMM-DENIED]
    "unknown audience": Row(
        403,
        "access_denied",
        "Service not found: https://nope.example.test/",
        form=params(audience="https://nope.example.test/"),
    ),
    # 401 unauthorized: admin-blocked user [COMM-DENIED; OLD-ERR-RO]
    "blocked user": Row(
        401, "unauthorized", "user is blocked", form=params(username="bob@example.test", password=BOB_PASSWORD)
    ),
    # 500 server_error: password grant without Default Directory [OBS]
    "no default directory": Row(
        500,
        "server_error",
        "Authorization server not configured with default connection.",
        form=params(),
        tenant=no_default_directory,
    ),
}


@pytest.fixture(scope="module")
def wire(database_url: str, encryption_keys: EncryptionKeys) -> Iterator[tuple[Settings, TestClient[Any]]]:
    settings = Settings(database_url=database_url, issuer=ISSUER, encryption_keys=encryption_keys, hash_workers=2)
    empty_database(settings)
    data = standard_tenant()
    data["clients"].append(
        {
            "client_id": "password-only-app",
            "token_endpoint_auth_method": "none",
            "grant_types": ["password"],
            "connections": ["customers"],
        }
    )
    apply(settings, data)
    with TestClient(create_app(settings), base_url="https://identity.test") as client:
        yield settings, client


@pytest.mark.parametrize(
    "row",
    [pytest.param(row, id=name) for name, row in TABLE.items()],
)
def test_token_endpoint_wire_strings(wire, row: Row):
    settings, client = wire
    with row.tenant(settings):
        if row.json is not None:
            response = client.post("/oauth/token", json=row.json, headers=row.headers)
        else:
            response = client.post("/oauth/token", data=row.form, headers=row.headers)
    assert response.status_code == row.status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    if row.error == "mfa_required":
        # The one member beyond RFC 6749 §5.2 (API.md §1.3): opaque, at least 128 bits.
        assert len(body.pop("mfa_token")) >= 22
    assert body == {"error": row.error, "error_description": row.description}
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["pragma"] == "no-cache"
    if row.challenge:
        assert response.headers["www-authenticate"] == BASIC_CHALLENGE
    else:
        assert "www-authenticate" not in response.headers
