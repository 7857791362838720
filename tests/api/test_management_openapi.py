"""The Management API in the app's OpenAPI document (``/schema``), generated from the handlers' types."""

from __future__ import annotations

import re
from typing import Any

from litestar import Litestar
from litestar.testing import TestClient

from identity.management import management_router


def document(client: TestClient[Litestar]) -> dict[str, Any]:
    response = client.get("/schema/openapi.json")
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


def test_every_management_route_is_described_with_bodies_errors_and_security(client: TestClient[Litestar]) -> None:
    doc = document(client)
    schemas = doc["components"]["schemas"]
    routes = [
        (route.path, method.lower())
        for route in management_router().routes
        for method in getattr(route, "methods", ())
        if method not in ("HEAD", "OPTIONS")
    ]
    assert len(routes) >= 38
    for path, method in routes:
        operation = doc["paths"][re.sub(r":\w+}", "}", path)][method]
        assert operation["security"] == [{"bearer": []}], (path, method)
        for status in ("400", "401", "403"):
            error = operation["responses"][status]["content"]["application/json"]["schema"]
            assert error == {"$ref": "#/components/schemas/ManagementErrorBody"}, (path, method)
        bodiless = ("rotate-secret", "regeneration", "invalidate-remember-browser")
        if method in ("post", "patch", "put") and not any(action in path for action in bodiless):
            schema = operation["requestBody"]["content"]["application/json"]["schema"]
            if schema.get("items") == {"type": "string"}:  # PUT /guardian/policies: a list of names
                continue
            ref = schema.get("$ref") or schema["items"]["$ref"]  # a list body: PATCH /connections/{id}/clients
            assert ref.removeprefix("#/components/schemas/") in schemas, (path, method)
    assert set(schemas["ManagementErrorBody"]["required"]) == {"statusCode", "error", "message", "errorCode"}
    assert {"connection", "password", "email", "app_metadata"} <= set(schemas["UserCreate"]["properties"])
    assert schemas["UserCreate"]["required"] == ["connection"]
    users = doc["paths"]["/api/v2/users"]["get"]
    assert {"q", "page", "per_page", "include_totals", "sort", "connection"} <= {p["name"] for p in users["parameters"]}
    assert "client_credentials" in str(doc["paths"]["/oauth/token"]["post"]["requestBody"])


def test_an_error_answer_has_the_documented_shape(client: TestClient[Litestar]) -> None:
    required = document(client)["components"]["schemas"]["ManagementErrorBody"]["required"]
    answer = client.get("/api/v2/users")
    assert answer.status_code == 401
    assert set(answer.json()) == set(required)
