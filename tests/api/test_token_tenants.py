"""Token endpoint behaviour that needs its own tenant or inspects storage (function-scoped fixtures)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from litestar.testing import TestClient
from sqlmodel import col, select

from identity.app import create_app
from identity.settings import Argon2Params
from identity.store.models import ConnectionRow, UserRow
from tests.api.support import ALICE, PASSWORD_REALM, alice_params, assert_error, assert_token, post_form
from tests.conftest import ALICE_CUSTOMER_PASSWORD, apply, run_db, standard_tenant

BASE_URL = "https://identity.test"


# -- tenant without a default directory -----------------------------------------------------------------------------


def without_default_directory() -> dict[str, Any]:
    data = standard_tenant()
    del data["tenant"]["default_directory"]
    data["users"] = data["users"][:1]
    return data


@pytest.fixture
def no_default_client(settings, app):
    apply(settings, without_default_directory())
    with TestClient(app, base_url=BASE_URL) as test_client:
        yield test_client


def test_no_default_directory_is_a_server_error(no_default_client):
    response = post_form(no_default_client, alice_params())
    assert_error(response, 500, "server_error", "Authorization server not configured with default connection.")


def test_no_default_directory_with_a_wrong_password_is_still_a_server_error(no_default_client):
    response = post_form(no_default_client, alice_params(password="wrong"))
    assert_error(response, 500, "server_error", "Authorization server not configured with default connection.")


def test_no_default_directory_still_allows_a_realm(no_default_client):
    assert_token(post_form(no_default_client, alice_params(realm="customers")))
    assert_token(post_form(no_default_client, alice_params(grant_type=PASSWORD_REALM, realm="customers")))


# -- grant lists ----------------------------------------------------------------------------------------------------


def test_password_realm_grant_not_allowed_for_the_client(client, settings):
    apply(
        settings,
        {
            "clients": [
                {
                    "client_id": "password-only-app",
                    "token_endpoint_auth_method": "none",
                    "grant_types": ["password"],
                    "connections": ["customers"],
                }
            ]
        },
    )
    assert_token(post_form(client, alice_params(client_id="password-only-app")))
    params = alice_params(client_id="password-only-app", grant_type=PASSWORD_REALM, realm="customers")
    response = post_form(client, params)
    assert_error(response, 403, "unauthorized_client", f"Grant type '{PASSWORD_REALM}' not allowed for the client.")


def test_tenant_changes_apply_without_restart(client, settings):
    assert_token(post_form(client, alice_params()))
    changed = standard_tenant()
    changed["clients"][0]["grant_types"] = [PASSWORD_REALM]
    del changed["users"]
    apply(settings, changed)
    response = post_form(client, alice_params())
    assert_error(response, 403, "unauthorized_client", "Grant type 'password' not allowed for the client.")


# -- password storage -----------------------------------------------------------------------------------------------


def stored_hash(settings, email: str, connection: str = "customers") -> str:
    async def work(session, _hasher):
        query = (
            select(UserRow.password_hash)
            .join(ConnectionRow, col(ConnectionRow.id) == UserRow.connection_id)
            .where(col(UserRow.email) == email, col(ConnectionRow.name) == connection)
        )
        return (await session.execute(query)).scalar_one()

    return run_db(settings, work)


def test_password_is_rehashed_on_login_when_argon2_parameters_change(settings):
    old = Argon2Params(time_cost=1, memory_kib=8 * 1024, parallelism=1)
    assert old != settings.argon2
    apply(replace(settings, argon2=old), standard_tenant())
    old_hash = stored_hash(settings, ALICE)
    assert old_hash.startswith("$argon2id$v=19$m=8192,t=1,p=1$")

    current = settings.argon2
    with TestClient(create_app(settings), base_url=BASE_URL) as client:
        assert_token(post_form(client, alice_params()))
        new_hash = stored_hash(settings, ALICE)
        assert new_hash != old_hash
        assert new_hash.startswith(
            f"$argon2id$v=19$m={current.memory_kib},t={current.time_cost},p={current.parallelism}$"
        )

        assert_token(post_form(client, alice_params()))
        assert stored_hash(settings, ALICE) == new_hash, "a hash with current parameters is not rehashed"
        assert_error(
            post_form(client, alice_params(password="wrong")), 403, "invalid_grant", "Wrong email or password."
        )

    # The other users were not touched by Alice's login.
    assert stored_hash(settings, ALICE, "employees").startswith("$argon2id$v=19$m=8192,t=1,p=1$")


def test_wrong_password_does_not_rehash(settings):
    old = Argon2Params(time_cost=1, memory_kib=8 * 1024, parallelism=1)
    apply(replace(settings, argon2=old), standard_tenant())
    old_hash = stored_hash(settings, ALICE)
    with TestClient(create_app(settings), base_url=BASE_URL) as client:
        assert_error(
            post_form(client, alice_params(password="wrong")), 403, "invalid_grant", "Wrong email or password."
        )
    assert stored_hash(settings, ALICE) == old_hash


def test_passwords_are_stored_as_argon2id_never_in_clear(tenant, settings):
    stored = stored_hash(settings, ALICE)
    assert stored.startswith("$argon2id$")
    assert ALICE_CUSTOMER_PASSWORD not in stored
