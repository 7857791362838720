"""`SqlTenantStore` without a cached snapshot reads the database, and answers as the snapshot would.

Requests read the tenant through the per-process snapshot (`identity.store.config`); a session without one (the
CLI, background work) reads the rows directly. Both paths must agree.
"""

from __future__ import annotations

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from identity.store.config import config_version, load_config
from identity.store.tenant import SqlTenantStore
from identity.tenant_admin import TenantAdmin

ISSUER = "https://id.unit.test/"
API = "https://api.unit.test/"


async def configure(session: AsyncSession) -> None:
    admin = TenantAdmin(session, issuer=ISSUER)
    await admin.create_api({"identifier": API, "scopes": ["read:a"], "token_lifetime": 600})
    await admin.create_client({"client_id": "web", "token_endpoint_auth_method": "none", "grant_types": ["password"]})
    await admin.create_client({"client_id": "svc", "grant_types": ["client_credentials"]})
    await admin.create_connection({"name": "staff"}, ["web"])
    await admin.create_connection({"name": "customers"}, ["web", "svc"])
    await admin.update_settings({"default_directory": "customers", "default_audience": API, "mfa_policy": "always"})


async def test_the_database_path_answers_as_the_snapshot(db_sessions: async_sessionmaker[AsyncSession]) -> None:
    async with db_sessions() as session:
        await configure(session)
        snapshot = SqlTenantStore(
            session, issuer=ISSUER, config=await load_config(session, await config_version(session))
        )
        direct = SqlTenantStore(session, issuer=ISSUER)
        assert direct.config is None and snapshot.config is not None

        assert await direct.settings() == await snapshot.settings()
        assert (await direct.settings()).mfa_policy == "always"
        for client_id in ("web", "svc", "nobody"):
            assert await direct.client(client_id) == await snapshot.client(client_id)
        web = await direct.client("web")
        assert web is not None and web.connections == frozenset({"staff", "customers"})
        for name in ("customers", "staff", "Customers", "nowhere"):
            assert await direct.connection(name) == await snapshot.connection(name)
        assert await direct.connection("Customers") is None  # names are exact
        assert [c.name for c in await direct.connections()] == ["customers", "staff"]
        assert await direct.connections() == await snapshot.connections()
        for identifier in (API, "https://nowhere.test/", ISSUER + "api/v2/", ISSUER + "mfa/"):
            assert await direct.api(identifier) == await snapshot.api(identifier)
        api = await direct.api(API)
        assert api is not None and (api.scopes, api.token_lifetime) == (("read:a",), 600)


@pytest.mark.parametrize("identifier", [ISSUER + "api/v2/", ISSUER + "mfa/"])
async def test_built_in_apis_need_no_row(db_sessions: async_sessionmaker[AsyncSession], identifier: str) -> None:
    async with db_sessions() as session:
        api = await SqlTenantStore(session, issuer=ISSUER).api(identifier)
    assert api is not None and api.identifier == identifier
