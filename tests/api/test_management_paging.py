"""Every Management API list pages by one rule (``identity.management.paging``): ``page``/``per_page`` (default 50,
at most 100) with ``include_totals``; connections and client grants also by checkpoint (``from``/``take``), which is
how auth0-python 5.5 to 6.1 list them."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from litestar import Litestar
from litestar.testing import TestClient

from identity.settings import Settings
from tests.api.management_support import MANAGEMENT, OPS, open_management
from tests.conftest import API


@pytest.fixture
def api(settings: Settings) -> Iterator[TestClient[Litestar]]:
    with open_management(settings) as client:
        yield client


def test_rules_page_like_the_other_lists(api: TestClient[Litestar]) -> None:
    assert api.get("/api/v2/rules", params={"per_page": 1, "page": 5}).json() == []
    page = api.get("/api/v2/rules", params={"per_page": 1, "page": 0, "include_totals": "true"}).json()
    assert page["total"] == 1 and page["limit"] == 1 and [r["name"] for r in page["rules"]] == ["deny all"]
    assert api.get("/api/v2/rules", params={"per_page": 101}).status_code == 400
    assert api.get("/api/v2/rules", params={"enabled": "true"}).json() == []


def test_every_list_defaults_to_50_per_page(api: TestClient[Litestar]) -> None:
    for number in range(55):
        body = {"name": f"Worker {number}", "grant_types": ["client_credentials"]}
        assert api.post("/api/v2/clients", json=body).status_code == 201
    first = api.get("/api/v2/clients", params={"include_totals": "true"}).json()
    assert (first["start"], first["limit"], first["length"], first["total"]) == (0, 50, 50, 60)
    assert len(api.get("/api/v2/clients").json()) == 50
    assert len(api.get("/api/v2/clients", params={"page": 1}).json()) == 10
    described = api.get("/schema/openapi.json").json()["paths"]
    for path in ("/api/v2/users", "/api/v2/clients", "/api/v2/rules", "/api/v2/logs", "/api/v2/connections"):
        (per_page,) = [p for p in described[path]["get"]["parameters"] if p["name"] == "per_page"]
        assert per_page["schema"].get("default") == 50 and per_page["schema"]["maximum"] == 100, (path, per_page)


def test_connections_and_client_grants_page_by_checkpoint(api: TestClient[Litestar]) -> None:
    for name in ("paged-a", "paged-b", "paged-c"):
        assert api.post("/api/v2/connections", json={"name": name}).status_code == 201
    every = [c["id"] for c in api.get("/api/v2/connections").json()]
    assert len(every) == 6
    seen: list[str] = []
    answer = api.get("/api/v2/connections", params={"take": 2}).json()
    while True:
        seen += [c["id"] for c in answer["connections"]]
        if "next" not in answer:
            break
        answer = api.get("/api/v2/connections", params={"take": 2, "from": answer["next"]}).json()
    assert seen == every
    gone = api.get("/api/v2/connections", params={"take": 2, "from": "con_999"})
    assert gone.status_code == 400 and "from" in gone.json()["message"]

    grants = api.get("/api/v2/client-grants", params={"take": 1}).json()
    assert [g["client_id"] for g in grants["client_grants"]] == [OPS] and "next" not in grants
    assert api.get("/api/v2/client-grants", params={"take": 1, "audience": API}).json() == {"client_grants": []}
    assert api.get("/api/v2/client-grants", params={"audience": MANAGEMENT}).json()[0]["client_id"] == OPS
