"""The audit log (issue 11): one event per authentication outcome, with Auth0's type codes and log-event fields
(API.md §6), in the table and as JSON on the ``identity.audit`` logger; never a password, code, token or secret;
a broken audit store never fails a login; ``identity logs`` filters and follows; old rows are purged."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from click.testing import CliRunner

from identity.audit import purge as housekeeping
from identity.cli import main
from identity.settings import EncryptionKeys
from identity.store import audit
from identity.store.attack import purge_expired
from identity.store.audit import LogEvent
from tests.api.mfa_support import (
    ALICE_EMAIL,
    MFA_AUDIENCE,
    Mfa,
    open_mfa,
    reset,
)
from tests.conftest import ALICE_CUSTOMER_PASSWORD, API, BOB_PASSWORD, CONFIDENTIAL_SECRET, run_db

AUTH0_FIELDS = set(audit.FIELDS)


@pytest.fixture(scope="module")
def module_mfa(database_url: str, encryption_keys: EncryptionKeys) -> Iterator[Mfa]:
    with open_mfa(database_url, encryption_keys) as driver:
        yield driver


@pytest.fixture
def mfa(module_mfa: Mfa) -> Mfa:
    reset(module_mfa)
    module_mfa.db.sql(
        "DELETE FROM log_event",
        "DELETE FROM attack_counter",
        "UPDATE tenant SET brute_force_max_attempts = 10, brute_force_mode = 'count_per_identifier_and_ip'",
    )
    return module_mfa


def stored(mfa: Mfa, *, at_least: int, timeout: float = 20.0) -> list[LogEvent]:
    """The stored events, oldest first, once the background writer has stored ``at_least`` of them."""
    deadline = time.monotonic() + timeout
    while True:
        events = run_db(mfa.settings, lambda session, _: audit.search(session, per_page=1000, newest_first=False))
        if len(events) >= at_least or time.monotonic() > deadline:
            return events
        time.sleep(0.05)


def cli_env(mfa: Mfa) -> dict[str, str]:
    keys = mfa.settings.encryption_keys.dump().strip().replace("\n", ",")
    return {"IDENTITY_DATABASE_URL": mfa.settings.database_url, "IDENTITY_ENCRYPTION_KEYS": keys}


def enable_refresh_tokens(mfa: Mfa) -> None:
    mfa.db.sql(
        'UPDATE client SET grant_types = \'["password", "http://auth0.com/oauth/grant-type/password-realm", '
        '"http://auth0.com/oauth/grant-type/mfa-otp", "http://auth0.com/oauth/grant-type/mfa-recovery-code", '
        "\"refresh_token\"]' WHERE client_id = 'public-app'"
    )


def test_every_event_type_is_logged_with_auth0_fields(mfa: Mfa, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="identity.audit")
    expected: list[str] = []

    def expect(*types: str) -> None:
        expected.extend(types)

    mfa.login("nobody@example.test", "a wrong password")
    expect("fu")
    mfa.login(password="a wrong password")
    expect("fp")
    enable_refresh_tokens(mfa)
    first = mfa.login(scope="openid offline_access")
    assert first.status_code == 200, first.text
    expect("sepft")
    refreshed = mfa.token(grant_type="refresh_token", refresh_token=first.json()["refresh_token"])
    assert refreshed.status_code == 200, refreshed.text
    expect("sertft")
    mfa.token(grant_type="refresh_token", refresh_token="not-a-refresh-token")
    expect("fertft")
    mfa.token(grant_type="refresh_token", refresh_token=first.json()["refresh_token"])  # reuse of a rotated token
    expect("ferrt")
    mfa.login("bob@example.test", BOB_PASSWORD)  # admin-blocked user with the right password
    expect("f")
    mfa.login(audience="https://unknown.example.test/")
    expect("fepft")

    enrolled = mfa.enroll()  # mfa_required, associate, mfa-otp that confirms the enrollment
    expect("mfar", "gd_start_enroll", "seotpft", "gd_enrollment_complete")
    token = mfa.mfa_token()
    expect("mfar")
    mfa.otp(token, "000000" if mfa.code(enrolled.secret) != "000000" else "111111")
    expect("feotpft")
    mfa.finish(token, enrolled.secret)
    expect("seotpft")
    token = mfa.mfa_token()
    mfa.recover(token, "NOT A RECOVERY CODE")
    mfa.recover(token, enrolled.recovery_code)
    expect("mfar", "fercft", "sercft")
    token = mfa.mfa_token()
    expect("mfar")
    mfa.db.sql("DELETE FROM mfa_attempt")  # a full bucket: 10 wrong codes, then the limit
    for _ in range(11):
        mfa.otp(token, "000000" if mfa.code(enrolled.secret) != "000000" else "111111")
    expect(*["feotpft"] * 10, "gd_otp_rate_limit_exceed")
    mfa.db.sql("DELETE FROM mfa_attempt")
    bearer = mfa.finish(mfa.mfa_token(audience=MFA_AUDIENCE), enrolled.secret)["access_token"]
    expect("mfar", "seotpft")
    assert mfa.delete(bearer, enrolled.authenticator_id).status_code == 204
    expect("gd_unenroll")

    mfa.db.sql("UPDATE tenant SET brute_force_max_attempts = 1")
    mfa.login(password="a wrong password")
    mfa.login()
    expect("fp", "limit_wc")
    runner = CliRunner()
    result = runner.invoke(main, ["users", "unblock", ALICE_EMAIL], env=cli_env(mfa), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    expect("ublkdu")
    mfa.db.sql("UPDATE tenant SET brute_force_mode = 'count_per_identifier'")
    mfa.login(password="a wrong password")
    mfa.login()
    expect("fp", "limit_sul")
    mfa.db.sql(
        "UPDATE tenant SET brute_force_mode = 'count_per_identifier_and_ip', brute_force_max_attempts = 10",
        "DELETE FROM attack_counter",
        "UPDATE tenant SET suspicious_ip_throttling = "
        '\'{"enabled": true, "stage": {"pre-login": {"max_attempts": 1, "rate": 60000}}}\'',
    )
    mfa.login("carol@example.test", "a wrong password")
    throttled = mfa.login("dave@example.test", "a wrong password")
    assert throttled.status_code == 429 and int(throttled.headers["retry-after"]) > 0
    expect("fu", "limit_mu")
    mfa.db.sql("UPDATE tenant SET suspicious_ip_throttling = '{\"enabled\": false}'")

    events = stored(mfa, at_least=len(expected))
    assert [event.type for event in events] == expected
    for event in events:
        body = event.to_dict()
        assert set(body) <= AUTH0_FIELDS, body
        assert body["log_id"] and body["date"].endswith("Z") and body["type"] and body["description"], body
        if event.details.get("source") != "cli":
            assert body["ip"] == "testclient" and body["user_agent"] and body["hostname"] == "identity.test", body
    by_type: dict[str, LogEvent] = {}
    for event in events:
        by_type.setdefault(event.type, event)
    for code in ("fp", "sepft", "seotpft", "sercft", "sertft", "mfar", "gd_enrollment_complete", "f"):
        assert by_type[code].user_id == enrolled.user_id or code == "f", (code, by_type[code])
    assert by_type["sepft"].client_id == "public-app" and by_type["sepft"].client_name == "Public App"
    assert by_type["sepft"].connection == "customers" and by_type["sepft"].audience == API
    assert "offline_access" in (by_type["sepft"].scope or "")
    assert by_type["fu"].user_id is None and by_type["fu"].user_name == "nobody@example.test"
    assert by_type["fu"].connection == "customers" and by_type["limit_wc"].connection == "customers"
    assert by_type["fp"].description == "Wrong email or password."
    # The same events went to the identity.audit logger, with the event dict for the JSON formatter.
    logged = [record.event["type"] for record in caplog.records if record.name == "identity.audit"]  # type: ignore[attr-defined]
    assert logged[: len(expected)] == expected[: len(logged)] and set(expected) <= set(logged) | {"ublkdu"}


def test_no_secret_reaches_the_log_table_or_the_log_lines(mfa: Mfa, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="identity.audit")
    enable_refresh_tokens(mfa)
    secrets: list[str] = [ALICE_CUSTOMER_PASSWORD, BOB_PASSWORD, CONFIDENTIAL_SECRET, "a wrong password 77"]
    mfa.login(password="a wrong password 77")
    mfa.login("bob@example.test", BOB_PASSWORD)
    confidential = mfa.login(client_id="confidential-app")
    secrets += [confidential.json()["access_token"]]
    enrolled = mfa.enroll()
    secrets += [enrolled.secret, enrolled.recovery_code, *enrolled.tokens.values()]
    token = mfa.mfa_token(scope="openid offline_access")
    code = mfa.code(enrolled.secret)
    tokens = mfa.finish(token, enrolled.secret)
    secrets += [token, code, tokens["access_token"], tokens["refresh_token"], tokens["id_token"]]
    refreshed = mfa.token(grant_type="refresh_token", refresh_token=tokens["refresh_token"]).json()
    secrets += [refreshed["access_token"], refreshed["refresh_token"]]
    token = mfa.mfa_token()
    answer = mfa.recover(token, enrolled.recovery_code).json()
    secrets += [token, answer["recovery_code"], answer["access_token"], *mfa.seen_secrets]
    secrets = [secret for secret in secrets if isinstance(secret, str) and len(secret) >= 6]

    events = stored(mfa, at_least=8)
    assert len(events) >= 8
    table_text = json.dumps([event.to_dict() for event in events])
    lines = [json.dumps(getattr(record, "event", {})) + record.getMessage() for record in caplog.records]
    for secret in secrets:
        assert secret not in table_text
        assert all(secret not in line for line in lines)


def test_a_broken_audit_store_never_fails_or_slows_a_login(mfa: Mfa) -> None:
    services = mfa.client.app.state.services
    writer = services.audit._writer

    async def broken(*_: Any) -> None:
        raise RuntimeError("the audit table is gone")

    services.audit._writer = broken
    dropped = services.audit.dropped
    try:
        assert mfa.login().status_code == 200
        assert mfa.login(password="a wrong password").status_code == 403
        deadline = time.monotonic() + 10
        while services.audit.dropped < dropped + 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert services.audit.dropped >= dropped + 2
    finally:
        services.audit._writer = writer
    assert mfa.login().status_code == 200
    assert [event.type for event in stored(mfa, at_least=1)] == ["sepft"]


def test_identity_logs_filters_and_follows(mfa: Mfa) -> None:
    mfa.login("nobody@example.test", "a wrong password")
    mfa.login(password="a wrong password")
    assert mfa.login().status_code == 200
    stored(mfa, at_least=3)
    runner = CliRunner()
    env = cli_env(mfa)

    def lines(*args: str) -> list[dict[str, Any]]:
        result = runner.invoke(main, ["logs", *args], env=env, catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return [json.loads(line) for line in result.output.splitlines()]

    assert [event["type"] for event in lines()] == ["fu", "fp", "sepft"]
    assert [event["type"] for event in lines("--type", "fp", "--type", "fu")] == ["fu", "fp"]
    user_id = lines("--type", "sepft")[0]["user_id"]
    assert [event["type"] for event in lines("--user", user_id)] == ["fp", "sepft"]
    assert lines("--ip", "192.0.2.1") == []
    assert len(lines("--ip", "testclient")) == 3
    assert [event["type"] for event in lines("--limit", "1")] == ["sepft"]
    assert len(lines("--since", "10m")) == 3
    assert lines("--until", (datetime.now(UTC) - timedelta(hours=1)).isoformat()) == []

    follower = subprocess.Popen(
        [sys.executable, "-m", "identity", "logs", "--follow", "--interval", "0.1", "--type", "limit_wc"],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(1.5)  # let it print the (empty) backlog and start following
        mfa.db.sql("UPDATE tenant SET brute_force_max_attempts = 1")
        mfa.login("mallory@example.test", "guess one")
        mfa.login("mallory@example.test", "guess two")
        assert follower.stdout is not None
        line = follower.stdout.readline()
        followed = json.loads(line)
        assert followed["type"] == "limit_wc" and followed["user_name"] == "mallory@example.test"
    finally:
        follower.terminate()
        follower.communicate(timeout=10)  # also closes the pipes


def test_old_events_and_expired_counters_are_purged(mfa: Mfa) -> None:
    now = datetime.now(UTC)
    old = LogEvent(type="fp", date=now - timedelta(days=31))
    recent = LogEvent(type="fp", date=now - timedelta(days=1))
    run_db(mfa.settings, lambda session, _: audit.record(session, [old, recent]))
    removed = run_db(mfa.settings, lambda session, _: audit.purge_older_than(session, now - timedelta(days=30)))
    assert removed == 1
    assert [event.log_id for event in stored(mfa, at_least=1)] == [recent.log_id]

    mfa.login(password="a wrong password")
    assert run_db(mfa.settings, lambda session, _: purge_expired(session, now=mfa.clock.now())) == 0
    later = mfa.clock.now() + 901  # the tenant's block time after the last failure: the count means nothing now
    assert run_db(mfa.settings, lambda session, _: purge_expired(session, now=later)) == 1
    # The housekeeping entry point does both.
    mfa.login(password="a wrong password")
    stored(mfa, at_least=2)
    late = datetime.fromtimestamp(later, UTC) + timedelta(days=40)
    removed = run_db(mfa.settings, lambda session, _: housekeeping(session, now=late, retention_days=30))
    assert removed["attack_counters"] == 1 and removed["log_events"] >= 2


def test_the_enrollment_pages_log_their_events(mfa: Mfa) -> None:
    import re

    client = mfa.client

    def sign_in(password: str) -> int:
        page = client.get("/enroll/")
        token = re.search(r'name="_csrf_token" value="([^"]+)"', page.text)
        assert token is not None, page.text
        fields = {"_csrf_token": token.group(1), "username": ALICE_EMAIL, "password": password, "realm": "customers"}
        return client.post("/enroll/sign-in", data=fields, follow_redirects=False).status_code

    assert sign_in("a wrong password") == 401
    assert sign_in(ALICE_CUSTOMER_PASSWORD) == 303
    events = stored(mfa, at_least=2)
    assert [event.type for event in events][:2] == ["fp", "s"]
    assert events[1].user_id is not None and events[1].connection == "customers"
