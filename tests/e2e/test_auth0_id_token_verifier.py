"""Auth0's own ID token verifier (auth0-python ``TokenVerifier``) on identity's ID tokens and JWKS.

Auth0 signs tokens with RSA (or HMAC) only, never EC (``shared/API.md`` §3.3), and its Python SDK relies on that: its
JWKS fetcher converts every published key with ``RSAAlgorithm.from_jwk``. A tenant that, like every Auth0 tenant, uses
only RS256 must therefore be verifiable by that SDK. This module runs such a tenant on its own embedded database (the
shared e2e tenant has an ES256 API on purpose), so it is the same on the SQLite and the PostgreSQL legs.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from auth0.authentication import GetToken
from auth0.authentication.token_verifier import AsymmetricSignatureVerifier, TokenVerifier

from identity.settings import EncryptionKeys
from tests.e2e.conftest import (
    PASSWORD_REALM,
    IdentityServer,
    apply_tenant_file,
    clean_environ,
    serve_spec,
    start_servers,
    stop_and_check,
)

API = "https://rs256-only.e2e.test/"
CLIENT = "rs256-only-app"
EMAIL = "erin@rs256-only.e2e.test"
PASSWORD = "the password of E. 2026"  # not her name: the password policy refuses that

TENANT_TOML = f"""\
[tenant]
default_directory = "people"
default_audience = "{API}"

[[connections]]
name = "people"

[[apis]]
identifier = "{API}"
scopes = ["read:stuff"]
signing_alg = "RS256"

[[clients]]
client_id = "{CLIENT}"
token_endpoint_auth_method = "none"
grant_types = ["password", "{PASSWORD_REALM}"]
connections = ["people"]

[[users]]
connection = "people"
email = "{EMAIL}"
password = "{PASSWORD}"
name = "Erin"
email_verified = true
"""


@pytest.fixture(scope="module")
def rs256_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IdentityServer]:
    workdir = tmp_path_factory.mktemp("rs256-only")
    env = clean_environ(
        IDENTITY_DATABASE_URL=f"sqlite:///{workdir / 'identity.db'}",
        IDENTITY_ENCRYPTION_KEYS=EncryptionKeys.generate("e2e").dump().strip(),
    )
    tenant = workdir / "tenant.toml"
    tenant.write_text(TENANT_TOML)
    apply_tenant_file(tenant, env)
    (server,) = start_servers([serve_spec("rs256-only", env)], workdir)
    try:
        yield server
    finally:
        stop_and_check(server)


def test_auth0_token_verifier_accepts_the_id_token(rs256_server: IdentityServer) -> None:
    response = GetToken(rs256_server.domain, CLIENT, protocol="http").login(
        EMAIL, PASSWORD, realm="people", scope="openid profile email", grant_type=PASSWORD_REALM
    )
    verifier = TokenVerifier(
        signature_verifier=AsymmetricSignatureVerifier(rs256_server.jwks_url),
        issuer=rs256_server.issuer,
        audience=CLIENT,
    )

    claims = verifier.verify(response["id_token"])

    assert claims["email"] == EMAIL
    assert claims["name"] == "Erin"
