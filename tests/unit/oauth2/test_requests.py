import base64

import pytest

from identity.oauth2.errors import InvalidClient, InvalidRequest, InvalidScope
from identity.oauth2.requests import BasicCredentials, TokenRequest, parse_basic_authorization

REALM = "https://identity.test/"


def basic(value: str) -> str:
    return "Basic " + base64.b64encode(value.encode()).decode()


# -- form bodies ----------------------------------------------------------------------------------------------------


def test_form_pairs_become_parameters():
    request = TokenRequest.from_form([("grant_type", "password"), ("username", "a@b.test")])
    assert request.params == {"grant_type": "password", "username": "a@b.test"}


def test_form_parameter_without_value_counts_as_omitted():
    request = TokenRequest.from_form([("grant_type", "password"), ("scope", ""), ("audience", "")])
    assert request.get("scope") is None
    assert request.get("audience") is None
    assert request.scopes is None


@pytest.mark.parametrize(
    "pairs",
    [
        [("username", "a"), ("username", "a")],
        [("username", "a"), ("username", "b")],
        [("username", ""), ("username", "b")],
        [("username", "a"), ("username", "")],
    ],
)
def test_form_parameter_repeated_is_invalid_request(pairs):
    with pytest.raises(InvalidRequest) as caught:
        TokenRequest.from_form(pairs)
    assert caught.value.description == "username parameter must not be included more than once"
    assert caught.value.status_code == 400


def test_form_value_longer_than_limit_is_refused():
    TokenRequest.from_form([("username", "x" * 4096)])  # at the limit: fine
    with pytest.raises(InvalidRequest, match="username parameter is too long"):
        TokenRequest.from_form([("username", "x" * 4097)])


def test_form_value_with_nul_is_refused():
    with pytest.raises(InvalidRequest, match="password parameter is malformed"):
        TokenRequest.from_form([("password", "abc\x00def")])


def test_transport_details_are_kept():
    credentials = BasicCredentials("app", "secret")
    request = TokenRequest.from_form([], basic=credentials, client_ip="10.0.0.1", user_agent="ua/1")
    assert request.basic == credentials
    assert request.client_ip == "10.0.0.1"
    assert request.user_agent == "ua/1"


# -- JSON bodies ----------------------------------------------------------------------------------------------------


def test_json_with_explicit_nulls_as_auth0_python_sdk_posts():
    body = {
        "client_id": "app",
        "client_secret": None,
        "username": "a@b.test",
        "password": "pw",
        "realm": None,
        "audience": None,
        "scope": None,
        "grant_type": "password",
        "forwarded_for": None,
    }
    request = TokenRequest.from_json(body)
    assert request.params == {"client_id": "app", "username": "a@b.test", "password": "pw", "grant_type": "password"}


def test_json_empty_string_counts_as_omitted():
    assert TokenRequest.from_json({"realm": "", "grant_type": "password"}).params == {"grant_type": "password"}


def test_json_scope_array_is_joined_with_spaces():
    request = TokenRequest.from_json({"scope": ["openid", "read:a", "read:a"]})
    assert request.get("scope") == "openid read:a read:a"
    assert request.scopes == ("openid", "read:a")


def test_json_empty_scope_array_counts_as_omitted():
    assert TokenRequest.from_json({"scope": []}).scopes is None


@pytest.mark.parametrize("scope", [42, 1.5, True, {"a": "b"}, ["openid", 3], [None], [["nested"]]])
def test_json_scope_of_wrong_type_is_invalid_scope(scope):
    with pytest.raises(InvalidScope) as caught:
        TokenRequest.from_json({"scope": scope})
    assert caught.value.description == "Scope must be an array or a string"
    assert caught.value.error == "invalid_scope"
    assert caught.value.status_code == 400


@pytest.mark.parametrize("value", [42, 0, 1.5, True, False, ["a"], {"a": "b"}])
@pytest.mark.parametrize("name", ["username", "password", "client_id", "grant_type", "realm", "audience"])
def test_json_non_string_parameter_is_invalid_request(name, value):
    with pytest.raises(InvalidRequest) as caught:
        TokenRequest.from_json({name: value})
    assert caught.value.description == f"{name} parameter must be a string"


@pytest.mark.parametrize("body", [[], ["grant_type", "password"], "grant_type=password", 42, None, True])
def test_json_body_must_be_an_object(body):
    with pytest.raises(InvalidRequest, match="request body must be a JSON object"):
        TokenRequest.from_json(body)


def test_json_value_longer_than_limit_is_refused():
    with pytest.raises(InvalidRequest, match="audience parameter is too long"):
        TokenRequest.from_json({"audience": "x" * 5000})


def test_json_scope_array_longer_than_limit_is_refused():
    with pytest.raises(InvalidRequest, match="scope parameter is too long"):
        TokenRequest.from_json({"scope": ["read:things"] * 400})


def test_json_value_with_nul_is_refused():
    with pytest.raises(InvalidRequest, match="username parameter is malformed"):
        TokenRequest.from_json({"username": "a\x00"})


@pytest.mark.parametrize("value", ["\ud800", "alice\udfff@example.test", ["openid", "\ud83d"]])
def test_json_lone_surrogate_is_malformed(value):
    # json.loads turns "\\ud800" into a lone surrogate: not text, no UTF-8 form, unusable by the database or Argon2.
    name = "scope" if isinstance(value, list) else "username"
    with pytest.raises(InvalidRequest, match=f"{name} parameter is malformed"):
        TokenRequest.from_json({name: value})


def test_form_lone_surrogate_is_malformed():
    with pytest.raises(InvalidRequest, match="password parameter is malformed"):
        TokenRequest.from_form([("password", "\udcff")])


def test_json_astral_characters_are_fine():
    assert TokenRequest.from_json({"password": "p\U0001f600ssword"}).get("password") == "p\U0001f600ssword"


# -- accessors ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["username", "password", "client_id", "realm", "grant_type"])
def test_require_missing_parameter_names_it(name):
    with pytest.raises(InvalidRequest) as caught:
        TokenRequest({}).require(name)
    assert caught.value.description == f"missing {name} parameter"
    assert caught.value.to_body() == {"error": "invalid_request", "error_description": f"missing {name} parameter"}


def test_require_returns_present_value():
    assert TokenRequest({"realm": "employees"}).require("realm") == "employees"


def test_grant_type_is_required():
    with pytest.raises(InvalidRequest, match="missing grant_type parameter"):
        _ = TokenRequest({}).grant_type
    assert TokenRequest({"grant_type": "password"}).grant_type == "password"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("read:a", ("read:a",)),
        ("openid  read:a\tread:b\n", ("openid", "read:a", "read:b")),
        ("b a b a", ("b", "a")),
        ("   ", ()),
    ],
)
def test_scopes_split_on_whitespace_keep_order_and_drop_duplicates(raw, expected):
    assert TokenRequest({"scope": raw}).scopes == expected


# -- HTTP Basic -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("header", [None, "", "Bearer abc", "Digest username=x", "Negotiate abc"])
def test_no_basic_header_means_no_basic_credentials(header):
    assert parse_basic_authorization(header, challenge_realm=REALM) is None


def test_basic_header_is_decoded():
    assert parse_basic_authorization(basic("my-app:my-secret"), challenge_realm=REALM) == BasicCredentials(
        "my-app", "my-secret"
    )


def test_basic_scheme_is_case_insensitive():
    header = "bAsIc " + base64.b64encode(b"app:s").decode()
    assert parse_basic_authorization(header, challenge_realm=REALM) == BasicCredentials("app", "s")


def test_basic_secret_may_contain_colons():
    assert parse_basic_authorization(basic("app:a:b:c"), challenge_realm=REALM) == BasicCredentials("app", "a:b:c")


def test_basic_parts_are_form_url_decoded():
    # RFC 6749 §2.3.1: client_id and secret are form-urlencoded before being joined with ":".
    parsed = parse_basic_authorization(basic("my%3Aapp:se%2Bcret+with%20space"), challenge_realm=REALM)
    assert parsed == BasicCredentials("my:app", "se+cret with space")


@pytest.mark.parametrize(
    "header",
    [
        "Basic !!!not-base64!!!",
        "Basic " + base64.b64encode(b"no-colon").decode(),
        "Basic " + base64.b64encode(b":secret-without-id").decode(),
        "Basic " + base64.b64encode(b"\xff\xfe:\xff").decode(),
        "Basic",
        "Basic ",
        "Basic \u00e9t\u00e9",
        "Basic " + base64.b64encode(b"app:secret").decode() + "\u00e9",
    ],
)
def test_malformed_basic_header_is_invalid_client_with_challenge(header):
    with pytest.raises(InvalidClient) as caught:
        parse_basic_authorization(header, challenge_realm=REALM)
    assert caught.value.status_code == 401
    assert caught.value.to_body() == {"error": "invalid_client", "error_description": "Client authentication failed"}
    assert caught.value.headers() == {"WWW-Authenticate": f'Basic realm="{REALM}", charset="UTF-8"'}


def test_basic_credentials_repr_hides_the_secret():
    assert "hunter2" not in repr(BasicCredentials("app", "hunter2"))
