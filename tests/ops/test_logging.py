"""Structured logs: the request log line, audit events rendered as fields, secrets never written, text format."""

from __future__ import annotations

import base64
import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import TestClient

from identity.observability.logging import JsonFormatter, TextFormatter, configure_logging
from tests.conftest import ALICE_CUSTOMER_PASSWORD, BASIC_SECRET


@pytest.fixture
def log() -> Iterator[io.StringIO]:
    """What the service logs during the test, formatted as in production (JSON lines)."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    identity = logging.getLogger("identity")
    previous = identity.level
    identity.addHandler(handler)
    identity.setLevel(logging.DEBUG)
    try:
        yield stream
    finally:
        identity.removeHandler(handler)
        identity.setLevel(previous)


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


def test_one_json_line_per_request_with_the_fields_an_operator_needs(
    client: TestClient[Litestar], log: io.StringIO
) -> None:
    basic = base64.b64encode(f"basic-app:{BASIC_SECRET}".encode()).decode()
    response = client.post(
        "/oauth/token",
        data={"grant_type": "password", "username": "alice@example.test", "password": ALICE_CUSTOMER_PASSWORD},
        headers={"Authorization": f"Basic {basic}", "X-Request-Id": "req-123.abc"},
    )
    assert response.status_code == 200
    assert response.headers["x-request-id"] == "req-123.abc"
    client.get("/no/such/page", headers={"X-Request-Id": "bad id with spaces"})
    failed = client.post("/oauth/token", data={"grant_type": "password", "client_id": "public-app"})
    assert failed.status_code == 400

    requests = [line for line in lines(log) if line["logger"] == "identity.request"]
    assert len(requests) == 3, requests
    granted, missing, refused = requests
    assert granted["level"] == "INFO"
    assert granted["method"] == "POST"
    assert granted["route"] == "/oauth/token"
    assert granted["status"] == 200
    assert granted["client_id"] == "basic-app"
    assert granted["grant_type"] == "password"
    assert granted["request_id"] == "req-123.abc"
    assert granted["client_ip"] == "testclient"
    assert isinstance(granted["duration_ms"], float)
    assert granted["ts"].endswith("Z")
    assert missing["status"] == 404
    assert missing["route"] == "<unmatched>"
    assert missing["request_id"] != "bad id with spaces"
    assert len(missing["request_id"]) == 24
    assert refused["error"] == "invalid_request"
    text = log.getvalue()
    for secret in (ALICE_CUSTOMER_PASSWORD, BASIC_SECRET, basic, response.json()["access_token"]):
        assert secret not in text


def test_event_dicts_become_fields_and_secret_members_are_redacted(log: io.StringIO) -> None:
    token = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"
    logging.getLogger("identity.audit").warning(
        "login failed",
        extra={
            "event": {
                "type": "fp",
                "client_id": "public-app",
                "user_name": "alice@example.test",
                "password": "hunter2",
                "details": {"refresh_token": "rt-value", "note": f"saw {token}", "otp": "123456"},
                "message": "reserved names are kept apart",
            }
        },
    )
    logging.getLogger("identity.web").error("header was Authorization: Bearer abcdefghijklmnop and %s", token)
    audit, error = lines(log)
    assert audit["logger"] == "identity.audit"
    assert audit["message"] == "login failed"
    assert audit["type"] == "fp"
    assert audit["client_id"] == "public-app"
    assert audit["password"] == "[redacted]"
    assert audit["details"] == {"refresh_token": "[redacted]", "note": "saw [redacted]", "otp": "[redacted]"}
    assert audit["event_message"] == "reserved names are kept apart"
    assert error["message"] == "header was Authorization: Bearer [redacted] and [redacted]"
    for secret in ("hunter2", "rt-value", "123456", token, "abcdefghijklmnop"):
        assert secret not in log.getvalue()


def test_a_traceback_stays_on_its_json_line() -> None:
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        record = logging.LogRecord(
            "identity", logging.ERROR, __file__, 1, "failed", None, exc_info=__import__("sys").exc_info()
        )
    line = json.loads(JsonFormatter().format(record))
    assert "Traceback" in line["exc"]
    assert "RuntimeError: boom" in line["exc"]


def test_text_format_for_a_terminal() -> None:
    record = logging.LogRecord("identity.request", logging.INFO, __file__, 1, "GET %s 200", ("/healthz",), None)
    record.event = {"status": 200, "password": "x"}
    text = TextFormatter().format(record)
    assert ' INFO    identity.request GET /healthz 200 status=200 password="[redacted]"' in text


def test_configure_logging_sets_level_and_format() -> None:
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    stream = io.StringIO()
    try:
        configure_logging("WARNING", "text", stream)
        configure_logging("WARNING", "text", stream)  # idempotent: one handler
        assert sum(handler.get_name() == "identity" for handler in root.handlers) == 1
        logging.getLogger("identity.x").info("hidden")
        logging.getLogger("identity.x").warning("shown")
        assert logging.getLogger("sqlalchemy").level == logging.WARNING
    finally:
        for handler in list(root.handlers):
            if handler not in handlers:
                root.removeHandler(handler)
        root.setLevel(level)
    assert "hidden" not in stream.getvalue()
    assert "WARNING identity.x shown" in stream.getvalue()


def test_the_logged_client_ip_follows_the_trusted_proxy_rule() -> None:
    from identity.network import Networks
    from identity.observability.requests import trusted_client_ip

    decide = trusted_client_ip(Networks.parse(["10.0.0.0/8"]))
    forwarded = [(b"x-forwarded-for", b"198.51.100.1, 203.0.113.9, 10.0.0.7")]
    behind_proxy: Any = {"type": "http", "client": ("10.0.0.5", 4711), "headers": forwarded}
    direct: Any = {"type": "http", "client": ("192.0.2.44", 4711), "headers": forwarded}
    assert decide(behind_proxy) == "203.0.113.9"  # the right-most hop no trusted proxy added
    assert decide(direct) == "192.0.2.44"  # a client cannot claim another address
