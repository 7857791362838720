"""Garbage in, a catalogue error out: no input reaches a 500 or a traceback."""

from __future__ import annotations

import base64
import json
from urllib.parse import quote

import pytest

from tests.api.support import PASSWORD_REALM, alice_params, assert_error, assert_no_store, post_raw
from tests.conftest import ALICE_CUSTOMER_PASSWORD, BASIC_SECRET

FORM = "application/x-www-form-urlencoded"
JSON = "application/json"
ALICE = "alice@example.test"


@pytest.fixture
def client(shared_client):
    """Read-only tests: one app and one standard tenant for the module (tests/api/conftest.py)."""
    return shared_client


def form(**overrides) -> str:
    return "&".join(f"{name}={quote(value, safe='')}" for name, value in alice_params(**overrides).items())


def as_json(**overrides) -> str:
    return json.dumps(alice_params(**overrides))


def json_with(name: str, raw_value: str) -> str:
    """Alice's request as JSON with one member replaced by a raw JSON text."""
    members = {key: json.dumps(value) for key, value in alice_params().items()}
    members[name] = raw_value
    return "{" + ",".join(f"{json.dumps(key)}:{value}" for key, value in members.items()) + "}"


def b64(value: bytes) -> str:
    return "Basic " + base64.b64encode(value).decode()


# (id, body, content type, extra headers, expected status, expected error)
CASES = [
    # sizes
    ("form huge username", form(username="a" * 5000 + "@example.test"), FORM, {}, 400, "invalid_request"),
    ("form huge password", form(password="p" * 5000), FORM, {}, 400, "invalid_request"),
    ("form huge realm", form(realm="r" * 4097), FORM, {}, 400, "invalid_request"),
    ("form long realm", form(realm="r" * 4000), FORM, {}, 400, "invalid_request"),
    ("form long audience", form(audience="https://" + "a" * 3000), FORM, {}, 403, "access_denied"),
    ("form long client_id", form(client_id="c" * 4000), FORM, {}, 401, "invalid_client"),
    ("form long username", form(username="u" * 4000), FORM, {}, 403, "invalid_grant"),
    ("form long scope", form(scope=" ".join(["read:things"] * 300)), FORM, {}, 200, None),
    ("form body over 64 KiB", form(password="p" * 70_000), FORM, {}, 413, None),
    ("json body over 64 KiB", as_json(password="p" * 70_000), JSON, {}, 413, None),
    ("many fields", "&".join(f"f{i}=1" for i in range(8000)), FORM, {}, 400, "invalid_request"),
    ("huge field name", "x" * 60_000 + "=1&" + form(), FORM, {}, 200, None),
    # NUL bytes and encodings
    ("form percent-encoded NUL", form(username="alice\x00@example.test"), FORM, {}, 400, "invalid_request"),
    (
        "form raw NUL",
        form().replace("grant_type=password", "grant_type=pass\x00word"),
        FORM,
        {},
        400,
        "invalid_request",
    ),
    ("form NUL in name", "user\x00name=x&" + form(), FORM, {}, 200, None),
    ("json NUL", as_json(realm="cust\x00omers"), JSON, {}, 400, "invalid_request"),
    ("form not UTF-8", b"grant_type=password&username=\xff\xfe", FORM, {}, 400, "invalid_request"),
    ("form percent-encoded not UTF-8", form() + "&realm=%FF%FE", FORM, {}, 400, "invalid_request"),
    ("json not UTF-8", b'{"grant_type": "password", "username": "\xff"}', JSON, {}, 400, "invalid_request"),
    ("json UTF-16", as_json().encode("utf-16"), JSON, {}, 400, "invalid_request"),
    ("json UTF-8 BOM", "\ufeff" + as_json(), JSON, {}, 400, "invalid_request"),
    # A lone surrogate is not text (it has no UTF-8 form): malformed, like a NUL.
    ("json lone surrogate username", json_with("username", '"\\ud800@example.test"'), JSON, {}, 400, "invalid_request"),
    ("json lone surrogate password", json_with("password", '"\\udfff"'), JSON, {}, 400, "invalid_request"),
    ("json lone surrogate realm", json_with("realm", '"\\ud800"'), JSON, {}, 400, "invalid_request"),
    ("json lone surrogate audience", json_with("audience", '"\\ud800"'), JSON, {}, 400, "invalid_request"),
    ("json lone surrogate client_id", json_with("client_id", '"\\ud800"'), JSON, {}, 400, "invalid_request"),
    ("json lone surrogate grant_type", json_with("grant_type", '"\\ud800"'), JSON, {}, 400, "invalid_request"),
    ("json lone surrogate in scope array", json_with("scope", '["\\ud800"]'), JSON, {}, 400, "invalid_request"),
    ("unicode username", form(username="ålice@exämple.test"), FORM, {}, 403, "invalid_grant"),
    # JSON shapes
    ("json array body", "[]", JSON, {}, 400, "invalid_request"),
    ("json string body", '"grant_type=password"', JSON, {}, 400, "invalid_request"),
    ("json number body", "42", JSON, {}, 400, "invalid_request"),
    ("json null body", "null", JSON, {}, 400, "invalid_request"),
    ("json username number", json_with("username", "42"), JSON, {}, 400, "invalid_request"),
    ("json password true", json_with("password", "true"), JSON, {}, 400, "invalid_request"),
    ("json client_id object", json_with("client_id", '{"id": "public-app"}'), JSON, {}, 400, "invalid_request"),
    ("json grant_type array", json_with("grant_type", '["password"]'), JSON, {}, 400, "invalid_request"),
    ("json password NaN", json_with("password", "NaN"), JSON, {}, 400, "invalid_request"),
    ("json huge integer", json_with("username", "1" * 10_000), JSON, {}, 400, "invalid_request"),
    ("json scope object", json_with("scope", '{"openid": true}'), JSON, {}, 400, "invalid_scope"),
    ("json scope number", json_with("scope", "3"), JSON, {}, 400, "invalid_scope"),
    ("json scope array of numbers", json_with("scope", "[1, 2]"), JSON, {}, 400, "invalid_scope"),
    ("json deeply nested body", "[" * 30_000 + "]" * 30_000, JSON, {}, 400, "invalid_request"),
    ("json deeply nested value", json_with("scope", "[" * 25_000 + "]" * 25_000), JSON, {}, 400, None),
    ("json truncated", as_json()[:-5], JSON, {}, 400, "invalid_request"),
    # injection-looking values are only data
    ("sql-looking username", form(username="' OR '1'='1' --"), FORM, {}, 403, "invalid_grant"),
    ("like-wildcard username", form(username="%@example.test"), FORM, {}, 403, "invalid_grant"),
    ("like-wildcard realm", form(realm="cust%"), FORM, {}, 400, "invalid_request"),
    ("like-wildcard client", form(client_id="public-%"), FORM, {}, 401, "invalid_client"),
    # Authorization header
    ("basic not base64", form(client_id=""), FORM, {"Authorization": "Basic %%%"}, 401, "invalid_client"),
    ("basic not UTF-8", form(client_id=""), FORM, {"Authorization": b64(b"\xff:\xfe")}, 401, "invalid_client"),
    ("basic NUL in id", form(client_id=""), FORM, {"Authorization": b64(b"basic\x00app:x")}, 401, "invalid_client"),
    (
        "basic encoded NUL in id",
        form(client_id=""),
        FORM,
        {"Authorization": b64(f"basic-app%00:{BASIC_SECRET}".encode())},
        401,
        "invalid_client",
    ),
    (
        "basic NUL in secret",
        form(client_id=""),
        FORM,
        {"Authorization": b64(f"basic-app:{BASIC_SECRET}\x00".encode())},
        401,
        "invalid_client",
    ),
    ("basic huge id", form(client_id=""), FORM, {"Authorization": b64(b"c" * 6000 + b":x")}, 401, "invalid_client"),
    ("basic non-ASCII header", form(client_id=""), FORM, {"Authorization": b"Basic \xe9t\xe9"}, 401, "invalid_client"),
    ("bearer header ignored", form(), FORM, {"Authorization": "Bearer abc"}, 200, None),
    # content types
    ("form charset utf-16 label", form(), FORM + "; charset=utf-16", {}, 200, None),
    ("json posted as form", as_json(), FORM, {}, 400, "invalid_request"),
    ("form posted as json", form(), JSON, {}, 400, "invalid_request"),
    ("garbage content type", form(), "\x01\x02", {}, 400, "invalid_request"),
    ("realm grant with every hostile realm", form(grant_type=PASSWORD_REALM, realm="../../etc"), FORM, {}, 400, None),
]


@pytest.mark.parametrize(
    ("body", "content_type", "headers", "status", "error"),
    [pytest.param(*case[1:], id=case[0]) for case in CASES],
)
def test_hostile_input_gets_a_catalogue_answer(client, body, content_type, headers, status, error):
    response = post_raw(client, body, content_type=content_type, **headers)
    assert response.status_code < 500, f"{response.status_code}: {response.text}"
    assert response.status_code == status, response.text
    assert_no_store(response)
    if status == 200:
        assert response.json()["access_token"]
        return
    body = response.json()
    assert isinstance(body.get("error"), str), body
    assert isinstance(body.get("error_description", ""), str), body
    if error is not None:
        assert_error(response, status, error)
    assert "Traceback" not in response.text


def test_hostile_inputs_do_not_break_the_next_request(client):
    for case in CASES:
        post_raw(client, case[1], content_type=case[2], **case[3])
    response = post_raw(client, form(), content_type=FORM)
    assert response.status_code == 200, response.text
    assert response.json()["access_token"]


def test_error_description_never_echoes_control_characters(client):
    response = post_raw(client, form(audience='https://x.test/\x1b[31m"quoted"\\'), content_type=FORM)
    body = assert_error(response, 403, "access_denied")
    description = body["error_description"]
    assert description.startswith("Service not found: https://x.test/")
    assert all(0x20 <= ord(char) <= 0x7E and char not in '"\\' for char in description), description


def test_password_with_form_special_characters(client):
    # '+' and '%2B' are different characters in a form body: '+' is a space.
    raw = form(password=ALICE_CUSTOMER_PASSWORD)
    assert "+" not in raw
    response = post_raw(client, raw.replace("%20", "+"), content_type=FORM)
    assert response.status_code == 200, response.text
