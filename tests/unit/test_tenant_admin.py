"""`TenantAdmin`'s refusals and lookups on a real, migrated SQLite database of each test's own.

The Management API tests drive the happy paths; these pin what is refused, and that a refused change writes nothing.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlmodel import col, select

from identity.store.models import ClientGrantRow, ConnectionRow, RuleRow, UserRow
from identity.tenant_admin import ConfigConflict, ConfigNotFound, TenantAdmin
from identity.tenant_file import ISSUER_KEYWORD
from identity.tenant_schema import TenantFileError

ISSUER = "https://id.unit.test/"
API = "https://api.unit.test/orders/"


@pytest.fixture
async def admin(db_sessions: async_sessionmaker[AsyncSession]) -> AsyncIterator[TenantAdmin]:
    async with db_sessions() as session:
        yield TenantAdmin(session, issuer=ISSUER)


async def connection_names(sessions: async_sessionmaker[AsyncSession]) -> list[str]:
    """The connections as another session sees them (what was committed)."""
    async with sessions() as session:
        return list((await session.execute(select(ConnectionRow.name))).scalars())


# --- connections --------------------------------------------------------------------------------------------


async def test_a_connection_name_is_taken_once(admin: TenantAdmin) -> None:
    await admin.create_connection({"name": "customers"}, [])
    with pytest.raises(ConfigConflict, match="same name already exists: customers"):
        await admin.create_connection({"name": "customers"}, [])


async def test_a_connection_enabled_for_an_unknown_client_is_not_created(
    admin: TenantAdmin, db_sessions: async_sessionmaker[AsyncSession]
) -> None:
    with pytest.raises(TenantFileError, match=re.escape("unknown client(s) nobody")):
        await admin.create_connection({"name": "staff"}, ["nobody"])
    await admin.session.rollback()
    assert "staff" not in await connection_names(db_sessions)


@pytest.mark.parametrize("connection_id", ["con_999", "con_x", "999", ""])
async def test_an_unknown_connection_id_is_not_found(admin: TenantAdmin, connection_id: str) -> None:
    with pytest.raises(ConfigNotFound, match="connection does not exist"):
        await admin.connection(connection_id)


async def test_updating_a_connection_without_clients_keeps_its_clients(admin: TenantAdmin) -> None:
    await admin.create_client({"client_id": "web", "token_endpoint_auth_method": "none"})
    created = await admin.create_connection({"name": "customers"}, ["web", "web"])
    assert created["enabled_clients"] == ["web"]
    assert (await admin.update_connection(created["id"], None))["enabled_clients"] == ["web"]
    assert (await admin.update_connection(created["id"], []))["enabled_clients"] == []


async def test_a_connection_with_users_or_named_as_default_directory_is_not_deleted(admin: TenantAdmin) -> None:
    busy = await admin.create_connection({"name": "busy"}, [])
    default = await admin.create_connection({"name": "default"}, [])
    empty = await admin.create_connection({"name": "empty"}, [])
    number = int(busy["id"].removeprefix("con_"))
    admin.session.add(
        UserRow(
            user_id="auth0|u1", connection_id=number, email="u@unit.test", email_key="u@unit.test",
            password_hash="not a hash: this user never signs in",
        )
    )  # fmt: skip
    await admin.session.commit()
    await admin.update_settings({"default_directory": "default"})

    with pytest.raises(ConfigConflict, match="still has users"):
        await admin.delete_connection(busy["id"])
    with pytest.raises(ConfigConflict, match="default_directory"):
        await admin.delete_connection(default["id"])
    await admin.delete_connection(empty["id"])

    assert [entry["name"] for entry in await admin.connections()] == ["busy", "default"]
    with pytest.raises(ConfigNotFound):
        await admin.connection(empty["id"])


# --- settings -----------------------------------------------------------------------------------------------


async def test_settings_refuse_a_missing_default_and_clear_one_with_none(admin: TenantAdmin) -> None:
    with pytest.raises(TenantFileError, match="default_directory: no connection named 'nowhere'"):
        await admin.update_settings({"default_directory": "nowhere"})
    await admin.session.rollback()
    await admin.create_api({"identifier": API})
    assert (await admin.update_settings({"default_audience": API}))["default_audience"] == API
    assert (await admin.update_settings({"default_audience": None}))["default_audience"] is None


# --- APIs ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("identifier", [ISSUER + "api/v2/", ISSUER + "mfa/"])
async def test_a_system_api_identifier_cannot_be_taken(admin: TenantAdmin, identifier: str) -> None:
    with pytest.raises(ConfigConflict, match="system API"):
        await admin.create_api({"identifier": identifier})
    assert await admin.apis() == []


async def test_an_api_identifier_is_taken_once(admin: TenantAdmin) -> None:
    await admin.create_api({"identifier": API, "scopes": ["read:orders"]})
    with pytest.raises(ConfigConflict, match="same identifier already exists"):
        await admin.create_api({"identifier": API})


async def test_an_api_is_found_by_identifier_id_or_its_url_path_form(admin: TenantAdmin) -> None:
    created = await admin.create_api({"identifier": API})
    assert (await admin.api(str(created.id))).identifier == API
    # As a URL path segment delivers it: "//" merged, the trailing "/" gone.
    assert (await admin.api("https:/api.unit.test/orders")).identifier == API
    for unknown in ("https:/api.unit.test/other", "12345", "orders"):
        with pytest.raises(ConfigNotFound, match="resource server does not exist"):
            await admin.api(unknown)


async def test_an_api_identifier_cannot_change(admin: TenantAdmin) -> None:
    await admin.create_api({"identifier": API, "token_lifetime": 600})
    with pytest.raises(TenantFileError, match="cannot change"):
        await admin.update_api(API, {"identifier": "https://api.unit.test/other/"})
    with pytest.raises(TenantFileError, match="token_lifetime must be between"):
        await admin.update_api(API, {"token_lifetime": 1})
    await admin.session.rollback()
    assert (await admin.update_api(API, {"token_lifetime": 900})).token_lifetime == 900


async def test_deleting_an_api_deletes_its_grants_unless_it_is_the_default_audience(admin: TenantAdmin) -> None:
    await admin.create_api({"identifier": API, "scopes": ["read:orders"]})
    await admin.create_client({"client_id": "svc", "grant_types": ["client_credentials"]})
    await admin.create_client_grant({"client_id": "svc", "audience": API, "scope": ["read:orders"]})
    await admin.update_settings({"default_audience": API})
    with pytest.raises(ConfigConflict, match="default_audience"):
        await admin.delete_api(API)

    await admin.update_settings({"default_audience": None})
    await admin.delete_api(API)
    assert await admin.client_grants() == []
    assert (await admin.session.execute(select(ClientGrantRow))).first() is None


# --- clients ------------------------------------------------------------------------------------------------


async def test_a_public_client_stays_public_and_has_no_secret_to_rotate(admin: TenantAdmin) -> None:
    created = await admin.create_client({"client_id": "spa", "token_endpoint_auth_method": "none"})
    assert created.client_secret is None
    with pytest.raises(ConfigConflict, match="cannot become confidential"):
        await admin.update_client("spa", {"token_endpoint_auth_method": "client_secret_post"})
    with pytest.raises(ConfigConflict, match="has no secret"):
        await admin.rotate_secret("spa")
    assert (await admin.client("spa"))["token_endpoint_auth_method"] == "none"


async def test_rotating_a_secret_returns_a_new_one(admin: TenantAdmin) -> None:
    created = await admin.create_client({"client_id": "svc"})
    rotated = await admin.rotate_secret("svc")
    assert created.client_secret and rotated.client_secret
    assert rotated.client_secret != created.client_secret
    assert "client_secret" not in rotated.entry


@pytest.mark.parametrize("call", ["client", "rotate_secret", "delete_client"])
async def test_an_unknown_client_is_not_found(admin: TenantAdmin, call: str) -> None:
    with pytest.raises(ConfigNotFound, match="client does not exist"):
        await getattr(admin, call)("nobody")


# --- client grants ------------------------------------------------------------------------------------------


async def test_a_client_grant_needs_a_known_audience_and_its_scopes(admin: TenantAdmin) -> None:
    await admin.create_api({"identifier": API, "scopes": ["read:orders"]})
    await admin.create_client({"client_id": "svc", "grant_types": ["client_credentials"]})
    with pytest.raises(TenantFileError, match="no resource server with identifier https://nowhere"):
        await admin.create_client_grant({"client_id": "svc", "audience": "https://nowhere.test/", "scope": []})
    with pytest.raises(TenantFileError, match=re.escape("no scope(s) write:orders, delete:orders")):
        await admin.create_client_grant(
            {"client_id": "svc", "audience": API, "scope": ["read:orders", "write:orders", "delete:orders"]}
        )
    with pytest.raises(ConfigNotFound, match="client does not exist"):
        await admin.create_client_grant({"client_id": "nobody", "audience": API, "scope": []})
    assert await admin.client_grants() == []


async def test_one_client_grant_per_client_and_audience(admin: TenantAdmin) -> None:
    await admin.create_api({"identifier": API, "scopes": ["read:orders", "write:orders"]})
    await admin.create_client({"client_id": "svc", "grant_types": ["client_credentials"]})
    grant = await admin.create_client_grant({"client_id": "svc", "audience": API, "scope": ["read:orders"]})
    with pytest.raises(ConfigConflict, match="already exists"):
        await admin.create_client_grant({"client_id": "svc", "audience": API, "scope": ["write:orders"]})

    updated = await admin.update_client_grant(grant["id"], ["write:orders", "read:orders", "write:orders"])
    assert updated["scope"] == ["write:orders", "read:orders"]
    with pytest.raises(TenantFileError, match=re.escape("no scope(s) admin")):
        await admin.update_client_grant(grant["id"], ["admin"])


async def test_client_grants_filter_by_audience_and_client(admin: TenantAdmin) -> None:
    await admin.create_api({"identifier": API, "scopes": ["read:orders"]})
    for client_id in ("a", "b"):
        await admin.create_client({"client_id": client_id, "grant_types": ["client_credentials"]})
        await admin.create_client_grant({"client_id": client_id, "audience": API, "scope": ["read:orders"]})
    await admin.create_client_grant({"client_id": "a", "audience": ISSUER + "api/v2/", "scope": ["read:users"]})

    assert [g["client_id"] for g in await admin.client_grants(audience=API)] == ["a", "b"]
    assert [g["audience"] for g in await admin.client_grants(client_id="a")] == [API, ISSUER + "api/v2/"]
    assert await admin.client_grants(audience=API, client_id="nobody") == []
    # The export names the Management API by the issuer keyword, so it applies on another deployment.
    exported = (await admin.export())["client_grants"]
    assert {g["audience"] for g in exported} == {API, ISSUER_KEYWORD + "api/v2/"}


@pytest.mark.parametrize("call", ["update", "delete"])
async def test_an_unknown_client_grant_is_not_found(admin: TenantAdmin, call: str) -> None:
    with pytest.raises(ConfigNotFound, match="client grant does not exist"):
        if call == "update":
            await admin.update_client_grant("cgr_nothing", [])
        else:
            await admin.delete_client_grant("cgr_nothing")


# --- rules --------------------------------------------------------------------------------------------------


async def test_a_rule_is_switched_by_name_or_id(admin: TenantAdmin) -> None:
    admin.session.add(RuleRow(name="audit", handler="tests.rule_handlers:noop"))
    await admin.session.commit()
    rule_id = (await admin.session.execute(select(RuleRow.id).where(col(RuleRow.name) == "audit"))).scalar_one()

    assert (await admin.set_rule_enabled("audit", False)).enabled is False
    assert (await admin.set_rule_enabled(str(rule_id), True)).enabled is True
    assert [(row.name, row.enabled) for row in await admin.rules()] == [("audit", True)]
    for unknown in ("nothing", "999"):
        with pytest.raises(ConfigNotFound, match="rule does not exist"):
            await admin.set_rule_enabled(unknown, True)
