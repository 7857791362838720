"""Helpers for the token endpoint tests: requests, error assertions, JWT verification against the served JWKS."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import httpx
import jwt
from sqlmodel import SQLModel

import identity.store.models  # noqa: F401  (registers the tables in SQLModel.metadata)
from identity.settings import Settings
from identity.store.db import create_engine
from tests.conftest import ALICE_CUSTOMER_PASSWORD, ISSUER

TOKEN_PATH = "/oauth/token"
PASSWORD_REALM = "http://auth0.com/oauth/grant-type/password-realm"
FORM = "application/x-www-form-urlencoded"
ALICE = "alice@example.test"


def alice_params(**overrides: str | None) -> dict[str, str]:
    """A valid password grant for Alice (customers, the default directory) by the public client."""
    params: dict[str, str | None] = {
        "grant_type": "password",
        "client_id": "public-app",
        "username": ALICE,
        "password": ALICE_CUSTOMER_PASSWORD,
    }
    params.update(overrides)
    return {name: value for name, value in params.items() if value is not None}


def post_form(client: Any, params: dict[str, str], **kwargs: Any) -> httpx.Response:
    return client.post(TOKEN_PATH, data=params, **kwargs)


def post_raw(client: Any, body: bytes | str, content_type: str | None = FORM, **headers: str) -> httpx.Response:
    if content_type is not None:
        headers = {"Content-Type": content_type, **headers}
    return client.post(TOKEN_PATH, content=body, headers=headers)


def basic(client_id: str, secret: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()}


def assert_no_store(response: httpx.Response) -> None:
    assert response.headers.get("cache-control") == "no-store", response.headers
    assert response.headers.get("pragma") == "no-cache", response.headers


def assert_error(response: httpx.Response, status: int, error: str, description: str | None = None) -> dict[str, Any]:
    """The response is a token-endpoint error of this status and code (and exact description, when given)."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["error"] == error, body
    if description is not None:
        assert body.get("error_description") == description, body
    assert set(body) <= {"error", "error_description", "error_uri"}, body
    assert_no_store(response)
    return body


def assert_token(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert isinstance(body["access_token"], str)
    assert isinstance(body["expires_in"], int)
    assert_no_store(response)
    return body


def jwks(client: Any) -> jwt.PyJWKSet:
    response = client.get("/.well-known/jwks.json")
    assert response.status_code == 200
    return jwt.PyJWKSet.from_dict(response.json())


def verify(client: Any, token: str, audience: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Header and claims of ``token``, verified with PyJWT against the served JWKS (signature, iss, aud, exp, iat)."""
    header = jwt.get_unverified_header(token)
    key = jwks(client)[header["kid"]]
    claims = jwt.decode(
        token,
        key.key,
        algorithms=[header["alg"]],
        audience=audience,
        issuer=ISSUER,
        options={"require": ["iss", "sub", "aud", "exp", "iat"]},
    )
    return header, claims


KEPT_TABLES = {"signing_key"}


def empty_database(settings: Settings) -> None:
    """Delete every row of every table but the signing keys (children first)."""

    async def go() -> None:
        engine = create_engine(settings.database_url)
        try:
            async with engine.begin() as connection:
                for table in reversed(SQLModel.metadata.sorted_tables):
                    if table.name not in KEPT_TABLES:
                        await connection.execute(table.delete())
        finally:
            await engine.dispose()

    asyncio.run(go())
