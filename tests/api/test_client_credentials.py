"""``grant_type=client_credentials`` through client grants (API.md §1.8), over the app and its database."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import TestClient

from identity.app import create_app
from identity.oauth2.errors import AccessDenied
from identity.oauth2.grants.client_credentials import CredentialsExchange
from identity.settings import Settings
from identity.tenant_file import TenantFileError, validate
from tests import rule_handlers
from tests.api.support import assert_error, assert_token, basic, verify
from tests.conftest import ALICE_CUSTOMER_PASSWORD, API, ISSUER, REPORTS_API, apply, standard_tenant

M2M = "m2m-app"
M2M_SECRET = "m2m-secret-0123456789abcdefghijklmnopqrstu"
BASIC_M2M = "m2m-basic"
NO_GRANT = "m2m-without-grant"
MANAGEMENT = ISSUER + "api/v2/"


def m2m_tenant() -> dict[str, Any]:
    data = standard_tenant()
    data["clients"] += [
        {"client_id": M2M, "client_secret": M2M_SECRET, "grant_types": ["client_credentials"]},
        {
            "client_id": BASIC_M2M,
            "client_secret": M2M_SECRET,
            "token_endpoint_auth_method": "client_secret_basic",
            "grant_types": ["client_credentials"],
        },
        {"client_id": NO_GRANT, "client_secret": M2M_SECRET, "grant_types": ["client_credentials"]},
    ]
    data["client_grants"] = [
        {"client_id": M2M, "audience": API, "scope": ["read:things", "write:things"]},
        {"client_id": M2M, "audience": "##ISSUER##api/v2/", "scope": ["read:users", "update:users"]},
        {"client_id": BASIC_M2M, "audience": REPORTS_API, "scope": ["read:reports"]},
        # The confidential password client has a grant but not the grant type: the grant alone is not enough.
        {"client_id": "confidential-app", "audience": API, "scope": ["read:things"]},
    ]
    data["rules"] = [{"name": "deny everything", "handler": "tests.rule_handlers:deny"}]
    return data


@pytest.fixture
def m2m(settings: Settings) -> Iterator[TestClient[Litestar]]:
    apply(settings, m2m_tenant())
    with TestClient(create_app(settings), base_url="https://identity.test") as test_client:
        yield test_client


def cc(client: TestClient[Litestar], **params: str) -> Any:
    body = {"grant_type": "client_credentials", "client_id": M2M, "client_secret": M2M_SECRET, **params}
    return client.post("/oauth/token", data={k: v for k, v in body.items() if v != ""})


def test_a_client_gets_every_granted_scope_and_no_user(m2m: TestClient[Litestar]) -> None:
    body = assert_token(cc(m2m, audience=API))

    assert set(body) == {"access_token", "token_type", "expires_in", "scope"}  # no id_token, no refresh_token
    assert body["scope"] == "read:things write:things"
    header, claims = verify(m2m, body["access_token"], API)
    assert header["alg"] == "RS256"
    assert claims["sub"] == f"{M2M}@clients"
    assert claims["gty"] == "client-credentials"
    assert claims["azp"] == M2M
    assert claims["aud"] == API
    assert claims["scope"] == "read:things write:things"
    assert claims["exp"] - claims["iat"] == body["expires_in"] == 86_400


def test_rules_do_not_run_for_client_credentials(m2m: TestClient[Litestar]) -> None:
    rule_handlers.SEEN.clear()
    assert_token(cc(m2m, audience=API, scope="read:things"))
    # The same tenant's password grant is denied by the rule: it is loaded and runs for users.
    denied = m2m.post(
        "/oauth/token",
        data={
            "grant_type": "password",
            "client_id": "public-app",
            "username": "alice@example.test",
            "password": ALICE_CUSTOMER_PASSWORD,
        },
    )
    assert denied.status_code in (401, 403), denied.text


def test_asked_scopes_narrow_the_grant(m2m: TestClient[Litestar]) -> None:
    body = assert_token(cc(m2m, audience=API, scope="write:things"))
    assert body["scope"] == "write:things"
    assert verify(m2m, body["access_token"], API)[1]["scope"] == "write:things"


def test_scopes_beyond_the_grant_are_refused(m2m: TestClient[Litestar]) -> None:
    assert_error(
        cc(m2m, audience=API, scope="read:things delete:things openid"),
        403,
        "access_denied",
        "Client has not been granted scopes: delete:things openid",
    )


def test_the_management_api_is_an_audience(m2m: TestClient[Litestar]) -> None:
    body = assert_token(cc(m2m, audience=MANAGEMENT))
    claims = verify(m2m, body["access_token"], MANAGEMENT)[1]
    assert claims["scope"] == "read:users update:users"
    assert claims["sub"] == f"{M2M}@clients"


def test_basic_authentication_and_an_es256_api(m2m: TestClient[Litestar]) -> None:
    body = assert_token(
        m2m.post(
            "/oauth/token",
            data={"grant_type": "client_credentials", "audience": REPORTS_API},
            headers=basic(BASIC_M2M, M2M_SECRET),
        )
    )
    header, claims = verify(m2m, body["access_token"], REPORTS_API)
    assert header["alg"] == "ES256"
    assert claims["sub"] == f"{BASIC_M2M}@clients"
    assert body["expires_in"] == 600


def test_without_a_client_grant_the_client_is_refused(m2m: TestClient[Litestar]) -> None:
    assert_error(
        cc(m2m, client_id=NO_GRANT, audience=API),
        403,
        "access_denied",
        f"Client '{NO_GRANT}' is not authorized to access resource server '{API}'. "
        "You need to create a 'client-grant' associated to this API.",
    )
    # A grant for one API does not open another.
    assert_error(cc(m2m, audience=REPORTS_API), 403, "access_denied")


def test_unknown_and_missing_audience(m2m: TestClient[Litestar]) -> None:
    assert_error(cc(m2m, audience="https://nope.test/"), 403, "access_denied", "Service not found: https://nope.test/")
    # The tenant's default audience does not apply to client credentials.
    assert_error(cc(m2m), 400, "invalid_request", "missing audience parameter")
    # The MFA API is not for clients.
    assert_error(cc(m2m, audience=ISSUER + "mfa/"), 403, "access_denied", f"Service not found: {ISSUER}mfa/")


def test_the_grant_type_must_be_enabled_and_the_secret_right(m2m: TestClient[Litestar]) -> None:
    from tests.conftest import CONFIDENTIAL_SECRET

    assert_error(
        cc(m2m, client_id="confidential-app", client_secret=CONFIDENTIAL_SECRET, audience=API),
        403,
        "unauthorized_client",
        "Grant type 'client_credentials' not allowed for the client.",
    )
    assert_error(cc(m2m, client_secret="wrong" * 8, audience=API), 401, "invalid_client")
    public = m2m.post("/oauth/token", data={"grant_type": "client_credentials", "client_id": "public-app"})
    assert_error(public, 403, "unauthorized_client")


def test_users_cannot_get_management_tokens(m2m: TestClient[Litestar]) -> None:
    response = m2m.post(
        "/oauth/token",
        data={
            "grant_type": "password",
            "client_id": "public-app",
            "username": "alice@example.test",
            "password": ALICE_CUSTOMER_PASSWORD,
            "audience": MANAGEMENT,
        },
    )
    assert_error(response, 403, "access_denied", f"Only client credentials can get tokens for {MANAGEMENT}")


def test_a_credentials_exchange_hook_adds_claims_or_denies(settings: Settings) -> None:
    apply(settings, m2m_tenant())
    seen: list[CredentialsExchange] = []

    async def hook(event: CredentialsExchange) -> dict[str, Any]:
        seen.append(event)
        if event.api.identifier == REPORTS_API:
            raise AccessDenied("reports are closed")
        return {"https://example.test/tier": "gold", "sub": "forged"}

    app = create_app(settings)
    app.state.services.credentials_hooks = (hook,)
    with TestClient(app, base_url="https://identity.test") as client:
        body = assert_token(cc(client, audience=API))
        claims = verify(client, body["access_token"], API)[1]
        assert claims["https://example.test/tier"] == "gold"
        assert claims["sub"] == f"{M2M}@clients"  # a hook cannot replace a standard claim
        assert (seen[0].client.client_id, seen[0].scopes) == (M2M, ("read:things", "write:things"))
        denied = client.post(
            "/oauth/token",
            data={"grant_type": "client_credentials", "audience": REPORTS_API},
            headers=basic(BASIC_M2M, M2M_SECRET),
        )
        assert_error(denied, 403, "access_denied", "reports are closed")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d["client_grants"].append({"client_id": M2M, "audience": API, "scope": []}), "second grant"),
        (lambda d: d["client_grants"].append({"client_id": M2M, "audience": API}), r"missing key\(s\) scope"),
        (lambda d: d["client_grants"].append({"client_id": M2M, "audience": API, "scope": "x"}), "list of strings"),
        (
            lambda d: d["clients"][0].update(grant_types=["password", "client_credentials"]),
            "public client cannot use the client_credentials grant",
        ),
    ],
)
def test_the_tenant_file_checks_client_grants(change: Any, message: str) -> None:
    data = m2m_tenant()
    change(data)
    with pytest.raises(TenantFileError, match=message):
        validate(data)


@pytest.mark.parametrize(
    ("grant", "message"),
    [
        ({"client_id": "ghost", "audience": API, "scope": []}, "no client 'ghost'"),
        ({"client_id": M2M, "audience": "https://nope.test/", "scope": []}, "no API with identifier"),
        ({"client_id": M2M, "audience": REPORTS_API, "scope": ["write:reports"]}, "has no scope"),
        ({"client_id": M2M, "audience": MANAGEMENT, "scope": ["read:everything"]}, "has no scope"),
    ],
)
def test_applying_checks_grants_against_the_tenant(settings: Settings, grant: dict[str, Any], message: str) -> None:
    data = m2m_tenant()
    data["client_grants"] = [grant]
    with pytest.raises(TenantFileError, match=message):
        apply(settings, data)
