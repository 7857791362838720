"""The tenant file's schema: its defaults are valid, and they are the tables' and the engine's defaults."""

from __future__ import annotations

from dataclasses import MISSING, fields, is_dataclass
from typing import Any

import pytest

from identity.oauth2.interfaces import Api, Connection, RefreshTokenPolicy, TenantSettings
from identity.store.models import ApiRow, ClientRow, ConnectionRow, RuleRow, TenantRow
from identity.tenant_schema import (
    TENANT_KEYS,
    ApiTable,
    ClientTable,
    ConnectionTable,
    RefreshTokenTable,
    RuleTable,
    TenantFileError,
    TenantTable,
    check,
)


def defaults_of(schema: type[Any]) -> dict[str, Any]:
    """Every key that has a default, with it (a nested table as an empty table)."""
    found = {}
    for item in fields(schema):
        if item.default is not MISSING:
            found[item.name] = item.default
        elif item.default_factory is not MISSING:
            value = item.default_factory()
            found[item.name] = {} if is_dataclass(value) else value
    return found


@pytest.mark.parametrize(
    ("schema", "required"),
    [
        (TenantTable, {}),
        (ConnectionTable, {"name": "c"}),
        (ApiTable, {"identifier": "https://api.test/"}),
        (ClientTable, {"client_id": "c"}),
        (RefreshTokenTable, {}),
        (RuleTable, {"name": "r", "handler": "identity.rules.builtin:add_roles"}),
    ],
)
def test_a_table_of_every_default_is_valid(schema: type[Any], required: dict[str, Any]) -> None:
    given = {key: value for key, value in defaults_of(schema).items() if value is not None}
    check("t", {**given, **required}, schema)


@pytest.mark.parametrize(
    ("schema", "record", "names"),
    [
        (TenantTable, TenantRow(), {}),
        (ConnectionTable, ConnectionRow(name="c"), {}),
        (ApiTable, ApiRow(identifier="i", name="n"), {}),
        (ClientTable, ClientRow(client_id="c", name="n"), {"metadata": "client_metadata"}),
        (RuleTable, RuleRow(name="r", handler="m:f"), {}),
        (RefreshTokenTable, RefreshTokenPolicy(), {}),
        (ApiTable, Api(identifier="i", name="n", scopes=()), {}),
        (ConnectionTable, Connection(id=1, name="c"), {}),
        (TenantTable, TenantSettings(), {}),
    ],
)
def test_a_key_left_out_means_what_a_new_row_or_record_holds(
    schema: type[Any], record: Any, names: dict[str, str]
) -> None:
    for key, default in defaults_of(schema).items():
        attribute = names.get(key, key)
        if hasattr(type(record), attribute) and default is not None and not isinstance(default, dict):
            assert getattr(record, attribute) == default, key


def test_the_tenant_keys_are_the_tenant_rows_columns() -> None:
    assert set(TENANT_KEYS) == set(TenantRow.model_fields) - {"id", "updated_at"}


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({"token_endpoint_auth_method": "none", "client_secret": "short"}, "a public client"),
        ({"client_secret": None}, "client_secret: wrong type NoneType"),
        ({"refresh_token": {"token_lifetime": 100, "idle_token_lifetime": 101}}, "between 1 and token_lifetime"),
        ({"grant_types": ["client_credentials"], "token_endpoint_auth_method": "none"}, "client_credentials grant"),
    ],
)
def test_limits_that_depend_on_another_key(table: dict[str, Any], message: str) -> None:
    with pytest.raises(TenantFileError, match=message):
        check("[[clients]] #1", {"client_id": "c", **table}, ClientTable)


def test_a_nested_table_is_named_as_the_file_writes_it() -> None:
    stage = {"suspicious_ip_throttling": {"stage": {"pre-login": {"max_attempts": 0}}}}
    with pytest.raises(TenantFileError, match=r"^\[tenant.suspicious_ip_throttling\] stage.pre-login: max_attempts"):
        check("[tenant]", stage, TenantTable)
    with pytest.raises(TenantFileError, match="unknown stage 'post-login'"):
        check("[tenant]", {"suspicious_ip_throttling": {"stage": {"post-login": {}}}}, TenantTable)
    with pytest.raises(TenantFileError, match=r"^\[tenant\] brute_force_allowlist entry 'nowhere' is not an IP"):
        check("[tenant]", {"brute_force_allowlist": ["nowhere"]}, TenantTable)
