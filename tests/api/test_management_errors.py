"""Every error of the Management API has Auth0's shape with an ``errorCode`` (the OpenAPI schema requires it): a
500, and the framework's own answers under ``/api/v2`` (an unknown route, a wrong method, a body too large)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from litestar import Litestar
from litestar.testing import TestClient

from identity.management import MAX_BODY_BYTES
from identity.settings import Settings
from tests.api.management_support import open_management
from tests.conftest import run_db

SHAPE = {"statusCode", "error", "message", "errorCode"}


@pytest.fixture
def api(settings: Settings) -> Iterator[TestClient[Litestar]]:
    with open_management(settings) as client:
        yield client


def test_framework_errors_under_the_management_base_have_the_management_shape(api: TestClient[Litestar]) -> None:
    unknown = api.get("/api/v2/no-such-thing")
    assert unknown.status_code == 404 and set(unknown.json()) == SHAPE, unknown.text
    assert unknown.json()["errorCode"] == "not_found"
    assert api.get("/api/v2").json()["errorCode"] == "not_found"
    wrong_method = api.put("/api/v2/users", json={})
    assert wrong_method.status_code == 405 and set(wrong_method.json()) == SHAPE, wrong_method.text
    assert wrong_method.json()["errorCode"] == "method_not_allowed" and "GET" in wrong_method.headers["allow"]
    huge = api.patch(
        "/api/v2/tenants/settings",
        content=b'{"friendly_name": "' + b"x" * MAX_BODY_BYTES + b'"}',
        headers={"Content-Type": "application/json"},
    )
    assert huge.status_code == 413 and set(huge.json()) == SHAPE, huge.text
    assert huge.json()["errorCode"] == "payload_too_large"
    # Outside /api/v2 the contract's OAuth shape stays.
    assert set(api.get("/no-such-thing").json()) == {"error", "error_description"}
    # Every Management error names its case, the ones without a code of their own included.
    for answer in (api.get("/api/v2/users/auth0|nobody"), api.get("/api/v2/users", headers={"Authorization": ""})):
        assert set(answer.json()) == SHAPE and answer.json()["errorCode"], answer.text


def test_an_internal_error_has_the_management_shape_and_no_detail(
    api: TestClient[Litestar], settings: Settings
) -> None:
    (user,) = [u for u in api.get("/api/v2/users", params={"q": "email:alice*"}).json() if u["username"]]
    # A row the code cannot read (metadata that is not an object) makes the handler fail.
    run_db(settings, lambda session, _: _break_metadata(session, user["user_id"]))
    failed = api.get(f"/api/v2/users/{user['user_id']}")
    assert failed.status_code == 500 and set(failed.json()) == SHAPE, failed.text
    assert failed.json()["errorCode"] == "internal_error" and failed.json()["message"] == "Internal error"


async def _break_metadata(session: object, user_id: str) -> None:
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import AsyncSession

    assert isinstance(session, AsyncSession)
    await session.execute(text("UPDATE users SET app_metadata = '[1, 2]' WHERE user_id = :id"), {"id": user_id})
    await session.commit()
