"""Several instances on one database: they share the signing keys, so any instance verifies any instance's tokens.

On PostgreSQL this is how identity scales out behind a load balancer (one public issuer, separate from each
instance's listen address); on SQLite it also holds for processes on one machine. The signing keys are deleted first,
so the instances start together on a database without keys and race to generate them: the first insert must win and
every instance must end up with the winner's keys.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from auth0.authentication import GetToken

from tests.e2e.conftest import (
    ALICE_CUSTOMER_PASSWORD,
    ALICE_EMAIL,
    ALICE_EMPLOYEE_PASSWORD,
    API,
    PASSWORD_REALM,
    PUBLIC_CLIENT,
    REPORTS_API,
    AppliedTenant,
    IdentityServer,
    empty_database,
    query,
    serve_spec,
    start_servers,
    stop_and_check,
    verify_access_token,
    verify_id_token,
)

PUBLIC_ISSUER = "https://login.e2e.test/"
INSTANCES = ("a", "b")


@pytest.fixture(scope="module")
def instances(
    database_url: str,
    e2e_env: dict[str, str],
    applied_tenant: AppliedTenant,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, IdentityServer]]:
    empty_database(database_url, ["signing_key"])
    specs = [serve_spec(f"instance-{name}", e2e_env, issuer=PUBLIC_ISSUER) for name in INSTANCES]
    servers = start_servers(specs, tmp_path_factory.mktemp("instance-logs"))
    try:
        yield dict(zip(INSTANCES, servers, strict=True))
    finally:
        for started in servers:
            stop_and_check(started)


def test_instances_publish_the_same_keys_generated_once(
    database_url: str, instances: dict[str, IdentityServer]
) -> None:
    jwks = {name: httpx.get(server.jwks_url).json()["keys"] for name, server in instances.items()}

    assert jwks["a"] == jwks["b"]
    # Per algorithm the current key and the next one (published before it signs: identity keys rotate).
    assert sorted(key["alg"] for key in jwks["a"]) == ["ES256", "ES256", "RS256", "RS256"]
    rows = query(database_url, "SELECT kid, alg, private_key, status FROM signing_key ORDER BY alg")
    assert {(kid, alg) for kid, alg, _, _ in rows} == {(key["kid"], key["alg"]) for key in jwks["a"]}
    assert sorted((alg, status) for _, alg, _, status in rows) == [
        ("ES256", "active"),
        ("ES256", "next"),
        ("RS256", "active"),
        ("RS256", "next"),
    ]
    for _, _, sealed, _ in rows:
        assert sealed.startswith("v1.")
        assert "PRIVATE KEY" not in sealed


def test_instances_advertise_the_public_issuer(instances: dict[str, IdentityServer]) -> None:
    for server in instances.values():
        metadata = httpx.get(f"{server.base_url}/.well-known/openid-configuration").json()
        assert metadata["issuer"] == PUBLIC_ISSUER
        assert metadata["token_endpoint"] == PUBLIC_ISSUER + "oauth/token"


@pytest.mark.parametrize(("audience", "alg"), [(API, "RS256"), (REPORTS_API, "ES256")])
@pytest.mark.parametrize("issuing", INSTANCES)
def test_tokens_verify_against_either_instance(
    instances: dict[str, IdentityServer], applied_tenant: AppliedTenant, issuing: str, audience: str, alg: str
) -> None:
    get_token = GetToken(instances[issuing].domain, PUBLIC_CLIENT, protocol="http")
    response = get_token.login(
        ALICE_EMAIL, ALICE_CUSTOMER_PASSWORD, scope="openid email", audience=audience, grant_type="password"
    )

    for verifying in instances.values():
        claims = verify_access_token(
            verifying, response["access_token"], audience=audience, alg=alg, issuer=PUBLIC_ISSUER
        )
        assert claims["iss"] == PUBLIC_ISSUER
        assert claims["sub"] == applied_tenant.user_ids[("customers", ALICE_EMAIL)]
        id_claims = verify_id_token(verifying, response["id_token"], client_id=PUBLIC_CLIENT, issuer=PUBLIC_ISSUER)
        assert id_claims["sub"] == claims["sub"]


def test_both_instances_serve_the_same_tenant(
    instances: dict[str, IdentityServer], applied_tenant: AppliedTenant
) -> None:
    employee = applied_tenant.user_ids[("employees", ALICE_EMAIL)]
    for server in instances.values():
        response = GetToken(server.domain, PUBLIC_CLIENT, protocol="http").login(
            ALICE_EMAIL, ALICE_EMPLOYEE_PASSWORD, realm="employees", grant_type=PASSWORD_REALM
        )
        other = instances["b" if server is instances["a"] else "a"]
        claims = verify_access_token(other, response["access_token"], audience=API, issuer=PUBLIC_ISSUER)
        assert claims["sub"] == employee
