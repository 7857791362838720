"""What one token request costs the database: its statements and its transactions (issue 10, "one unit of work").

A listener on the app's engine records every statement of one request, after a warm-up request has filled the
configuration cache. The password grant may use one transaction before the hash and one after it, never one held
across it; the refresh grant one transaction.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import TestClient
from sqlalchemy import event

from identity.settings import Settings
from tests.api.test_refresh_tokens import tenant_with
from tests.conftest import ALICE_CUSTOMER_PASSWORD, apply


class Statements:
    def __init__(self) -> None:
        self.seen: list[str] = []

    def __call__(self, _conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        self.seen.append(" ".join(statement.split())[:90])

    def clear(self) -> None:
        self.seen.clear()


@pytest.fixture
def recorded(app: Litestar, client: TestClient[Litestar]) -> Iterator[Statements]:
    engine = app.state.services.engine.sync_engine
    statements = Statements()
    event.listen(engine, "before_cursor_execute", statements)
    names = ("begin", "commit", "rollback")
    marks = {name: (lambda *_, name=name: statements.seen.append(name.upper())) for name in names}
    for name, mark in marks.items():
        event.listen(engine, name, mark)
    yield statements
    event.remove(engine, "before_cursor_execute", statements)
    for name, mark in marks.items():
        event.remove(engine, name, mark)


def transactions(seen: list[str]) -> list[list[str]]:
    """The request's statements, one list per transaction; the audit log's batched writes left out."""
    found: list[list[str]] = []
    for entry in seen:
        if entry == "BEGIN":
            found.append([])
        elif entry in ("COMMIT", "ROLLBACK") or "log_event" in entry:
            continue
        elif found:
            found[-1].append(entry)
        else:
            found.append([entry])
    return [statements for statements in found if statements]


def writes(transaction: list[str]) -> bool:
    return any(statement.split()[0] in ("INSERT", "UPDATE", "DELETE") for statement in transaction)


def token(client: TestClient[Litestar], form: dict[str, str]) -> Any:
    response = client.post("/oauth/token", data=form)
    assert response.status_code == 200, response.text
    return response.json()


def password_form(**extra: str) -> dict[str, str]:
    form = {"grant_type": "password", "client_id": "public-app", "username": "alice@example.test"}
    return {**form, "password": ALICE_CUSTOMER_PASSWORD, **extra}


def test_a_password_grant_writes_in_one_transaction_before_the_hash_and_one_after(
    client: TestClient[Litestar], recorded: Statements
) -> None:
    token(client, password_form())  # warm-up: the configuration cache is filled
    recorded.clear()
    token(client, password_form())
    found = transactions(recorded.seen)
    before, after = [t for t in found if writes(t)]
    # Before: the configuration version, the attempt reserved, the user read; after: the count cleared, the login
    # recorded. What remains is the MFA gate's one read (and no statement re-reads the tenant row or the user).
    assert [s.split()[0] for s in before] == ["SELECT", "UPDATE", "SELECT"] and "attack_counter" in before[1]
    assert [s.split()[0] for s in after] == ["UPDATE", "UPDATE"]
    assert sum(len(t) for t in found) == 6, found


def test_a_refresh_grant_is_one_transaction(
    settings: Settings, client: TestClient[Litestar], recorded: Statements
) -> None:
    apply(settings, tenant_with())  # the clients may use refresh tokens
    issued = token(client, password_form(scope="offline_access"))
    recorded.clear()
    rotated = token(
        client, {"grant_type": "refresh_token", "client_id": "public-app", "refresh_token": issued["refresh_token"]}
    )
    assert rotated["refresh_token"] != issued["refresh_token"]
    found = transactions(recorded.seen)
    assert len(found) == 1 and writes(found[0]), found
