import copy
from pathlib import Path

import pytest

from identity.tenant_file import TenantFileError, load_tenant_file, validate

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "tenant.toml"
SECRET = "s" * 32

VALID = {
    "tenant": {"friendly_name": "T", "default_directory": "customers", "default_audience": "https://api.test/"},
    "connections": [{"name": "customers"}],
    "apis": [{"identifier": "https://api.test/", "scopes": ["read:a"], "signing_alg": "ES256", "token_lifetime": 60}],
    "clients": [
        {
            "client_id": "c",
            "client_secret": SECRET,
            "token_endpoint_auth_method": "client_secret_basic",
            "grant_types": ["password"],
            "connections": ["customers"],
            "metadata": {"k": "v"},
        }
    ],
    "users": [{"connection": "customers", "email": "a@b.test", "password": "password1"}],
}


def test_the_example_tenant_file_is_valid():
    data = load_tenant_file(EXAMPLE)
    assert data["tenant"]["default_directory"]
    assert data["clients"]


def test_a_complete_description_is_valid():
    validate(VALID)
    validate({})


def changed(path: str, value) -> dict:
    data = copy.deepcopy(VALID)
    *parents, last = path.split(".")
    target = data
    for part in parents:
        target = target[int(part)] if part.isdigit() else target[part]
    if value is KeyError:
        del target[last]
    else:
        target[last] = value
    return data


@pytest.mark.parametrize(
    ("data", "message"),
    [
        pytest.param({**VALID, "colours": []}, "unknown section(s) colours", id="unknown section"),
        pytest.param(changed("tenant.default_dir", "x"), "[tenant]: unknown key(s) default_dir", id="tenant key"),
        pytest.param(changed("connections.0.strategy", "google-oauth2"), "only the 'auth0'", id="strategy"),
        pytest.param(
            changed("connections.0.nmae", "x"), "[[connections]] #1: unknown key(s) nmae", id="connection key"
        ),
        pytest.param(changed("connections.0.name", KeyError), "missing key(s) name", id="connection name"),
        pytest.param(changed("connections.0.name", 3), "wrong type int", id="connection name type"),
        pytest.param(changed("apis.0.identifier", KeyError), "missing key(s) identifier", id="api identifier"),
        pytest.param(changed("apis.0.scope", ["a"]), "[[apis]] #1: unknown key(s) scope", id="api key"),
        pytest.param(changed("apis.0.scopes", "read:a"), "expected a list of strings", id="api scopes str"),
        pytest.param(changed("apis.0.scopes", ["ok", ""]), "expected a list of strings", id="api scopes empty"),
        pytest.param(changed("apis.0.signing_alg", "HS256"), "signing_alg must be one of", id="api alg"),
        pytest.param(changed("apis.0.token_lifetime", 59), "between 60 and 2592000", id="lifetime low"),
        pytest.param(changed("apis.0.token_lifetime", 2_592_001), "between 60 and 2592000", id="lifetime high"),
        pytest.param(changed("apis.0.token_lifetime", True), "wrong type bool", id="lifetime bool"),
        pytest.param(changed("apis.0.allow_offline_access", "yes"), "wrong type str", id="offline type"),
        pytest.param(changed("clients.0.client_id", KeyError), "missing key(s) client_id", id="client id"),
        pytest.param(changed("clients.0.secret", SECRET), "unknown key(s) secret", id="client key"),
        pytest.param(changed("clients.0.token_endpoint_auth_method", "private_key_jwt"), "must be one of", id="method"),
        pytest.param(changed("clients.0.client_secret", "short"), "at least 32 characters", id="short secret"),
        pytest.param(changed("clients.0.token_endpoint_auth_method", "none"), "has no secret", id="public secret"),
        pytest.param(changed("clients.0.grant_types", "password"), "expected a list of strings", id="grants str"),
        pytest.param(changed("clients.0.connections", [1]), "expected a list of strings", id="connections type"),
        pytest.param(changed("clients.0.metadata", ["x"]), "wrong type list", id="metadata type"),
        pytest.param(changed("users.0.password", KeyError), "missing key(s) password", id="user password"),
        pytest.param(changed("users.0.connection", KeyError), "missing key(s) connection", id="user connection"),
        pytest.param(changed("users.0.email", KeyError), "needs an email or a username", id="user login"),
        pytest.param(changed("users.0.mail", "x"), "unknown key(s) mail", id="user key"),
        pytest.param({"tenant": []}, "expected a table", id="tenant not a table"),
    ],
)
def test_invalid_descriptions_are_refused_with_a_message_naming_the_place(data, message):
    with pytest.raises(TenantFileError) as caught:
        validate(data)
    assert message in str(caught.value)


def test_load_reports_toml_syntax_errors_with_the_path(tmp_path):
    path = tmp_path / "broken.toml"
    path.write_text("[tenant\nfriendly_name = 'x'\n")
    with pytest.raises(TenantFileError, match=r"broken\.toml"):
        load_tenant_file(path)


def test_load_reports_a_missing_file(tmp_path):
    with pytest.raises(TenantFileError, match=r"missing\.toml"):
        load_tenant_file(tmp_path / "missing.toml")


def test_load_validates(tmp_path):
    path = tmp_path / "t.toml"
    path.write_text('[[clients]]\nclient_id = "c"\ncolour = "blue"\n')
    with pytest.raises(TenantFileError, match="colour"):
        load_tenant_file(path)
