"""The OpenAPI document at /schema: a valid OpenAPI 3.1 document that describes every public endpoint with its
request body and error responses, and that matches what the endpoints really answer."""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest
from litestar import Litestar
from litestar.testing import TestClient
from openapi_spec_validator import validate

from tests.conftest import ALICE_CUSTOMER_PASSWORD

PUBLIC = {
    "/oauth/token": {"post"},
    "/oauth/authorize-challenge": {"post"},
    "/oauth/revoke": {"post"},
    "/userinfo": {"get", "post"},
    "/mfa/authenticators": {"get"},
    "/mfa/associate": {"post"},
    "/mfa/challenge": {"post"},
    "/mfa/authenticators/{authenticator_id}": {"delete"},
    "/.well-known/openid-configuration": {"get"},
    "/.well-known/oauth-authorization-server": {"get"},
    "/.well-known/jwks.json": {"get"},
}


@pytest.fixture
def document(client: TestClient[Litestar]) -> dict[str, Any]:
    response = client.get("/schema")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/vnd.oai.openapi+json")
    body: dict[str, Any] = response.json()
    return body


def test_the_document_is_valid_openapi(document: dict[str, Any], client: TestClient[Litestar]) -> None:
    validate(document)  # raises on any violation of the OpenAPI 3.1 schema
    assert document["openapi"].startswith("3.1")
    assert client.get("/schema/openapi.json").json() == document


def test_every_public_endpoint_is_described_with_its_bodies_and_errors(document: dict[str, Any]) -> None:
    paths = document["paths"]
    for path, methods in PUBLIC.items():
        assert path in paths, path
        assert methods <= set(paths[path]), (path, set(paths[path]))
        for method in methods:
            operation = paths[path][method]
            responses = operation["responses"]
            errors = [code for code in responses if code.startswith(("4", "5"))]
            assert errors, (path, method)
            for code in errors:
                schema = responses[code]["content"]["application/json"]["schema"]
                assert "error" in str(schema), (path, method, code)
            if method == "post" and path != "/userinfo":  # userinfo reads the bearer header only
                content = operation["requestBody"]["content"]
                assert {"application/x-www-form-urlencoded", "application/json"} <= set(content), path
    token = paths["/oauth/token"]["post"]
    form = token["requestBody"]["content"]["application/x-www-form-urlencoded"]["schema"]
    assert {"grant_type", "client_id", "username", "password", "realm", "mfa_token", "otp", "refresh_token"} <= set(
        form["properties"]
    )
    assert "http://auth0.com/oauth/grant-type/mfa-otp" in form["properties"]["grant_type"]["enum"]
    assert "mfa_token" in str(token["responses"]["403"])
    # Pages, static files and the schema itself are not part of the API description.
    assert not any(path.startswith(("/enroll", "/static", "/schema")) for path in paths)
    assert set(document["components"]["securitySchemes"]) == {"clientSecretBasic", "bearer"}


def _schema(document: dict[str, Any], path: str, method: str, status: str) -> dict[str, Any]:
    schema: dict[str, Any] = document["paths"][path][method]["responses"][status]["content"]["application/json"][
        "schema"
    ]
    return schema


def test_real_answers_match_the_documented_schemas(document: dict[str, Any], client: TestClient[Litestar]) -> None:
    """What the endpoints answer validates against what the document says they answer."""
    granted = client.post(
        "/oauth/token",
        data={
            "grant_type": "password",
            "client_id": "public-app",
            "username": "alice@example.test",
            "password": ALICE_CUSTOMER_PASSWORD,
            "scope": "openid profile email",
        },
    )
    assert granted.status_code == 200
    jsonschema.validate(granted.json(), _schema(document, "/oauth/token", "post", "200"))

    wrong = client.post(
        "/oauth/token",
        json={"grant_type": "password", "client_id": "public-app", "username": "alice@example.test", "password": "x"},
    )
    assert wrong.status_code == 403
    jsonschema.validate(wrong.json(), _schema(document, "/oauth/token", "post", "403"))

    bad = client.post("/oauth/token", data={"grant_type": "nope", "client_id": "public-app"})
    assert bad.status_code == 400
    jsonschema.validate(bad.json(), _schema(document, "/oauth/token", "post", "400"))

    info = client.get("/userinfo", headers={"Authorization": "Bearer " + granted.json()["access_token"]})
    assert info.status_code == 200
    jsonschema.validate(info.json(), _schema(document, "/userinfo", "get", "200"))
    anonymous = client.get("/userinfo")
    assert anonymous.status_code == 401
    jsonschema.validate(anonymous.json(), _schema(document, "/userinfo", "get", "401"))

    for path in ("/.well-known/openid-configuration", "/.well-known/jwks.json"):
        jsonschema.validate(client.get(path).json(), _schema(document, path, "get", "200"))
    unauthenticated = client.get("/mfa/authenticators")
    jsonschema.validate(
        unauthenticated.json(), _schema(document, "/mfa/authenticators", "get", str(unauthenticated.status_code))
    )
