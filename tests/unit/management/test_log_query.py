"""``q`` of ``/api/v2/logs`` (`parse_log_query`): Auth0's Lucene-style log search, as far as identity reads it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from identity.management.errors import ManagementError
from identity.management.logs import parse_log_query
from identity.store.audit import LogFilter


def at(year: int, month: int, day: int, hour: int = 0, *, tz: timezone = UTC) -> datetime:
    return datetime(year, month, day, hour, tzinfo=tz)


@pytest.mark.parametrize(
    ("q", "expected"),
    [
        ("type:f", LogFilter(types=("f",))),
        ("type:(fp OR fu) ", LogFilter(types=("fp", "fu"))),
        ('type:fp OR type:"fu"', LogFilter(types=("fp", "fu"))),
        ('user_id:"auth0|a\\"b" AND client_id:app', LogFilter(user_id='auth0|a"b', client_id="app")),
        ("ip:203.0.113.9 connection:customers", LogFilter(ip="203.0.113.9", connection="customers")),
        # A whole day: from its start to the start of the next (the upper bound is exclusive).
        ("date:[2026-12-01 TO 2026-12-02]", LogFilter(since=at(2026, 12, 1), until=at(2026, 12, 3))),
        ("date:[* TO *]", LogFilter(since=None, until=None)),
        # A time: UTC unless it says otherwise; the upper bound includes it.
        (
            "date:[2026-12-01T10:00:00Z TO 2026-12-01T12:00:00+02:00]",
            LogFilter(
                since=at(2026, 12, 1, 10),
                until=at(2026, 12, 1, 12, tz=timezone(timedelta(hours=2))) + timedelta(microseconds=1),
            ),
        ),
        ("date:[2026-12-01T10:00:00 TO *]", LogFilter(since=at(2026, 12, 1, 10), until=None)),
    ],
)
def test_a_query_becomes_a_filter(q: str, expected: LogFilter) -> None:
    assert parse_log_query(q) == expected


@pytest.mark.parametrize(
    ("q", "message"),
    [
        ("type:f )", "cannot read the query at ' )'"),
        ("just words", "cannot read the query"),
        ("password:secret", "cannot search on password"),
        ("date:2026-12-01", "a date is a range"),
        ("date:[2026-13-01 TO *]", "'2026-13-01' is not a date"),
        ("date:[yesterday TO *]", "'yesterday' is not a date"),
        ("type:f OR user_id:x", "OR joins type terms only"),
    ],
)
def test_a_query_identity_cannot_read_is_a_400_that_says_where(q: str, message: str) -> None:
    with pytest.raises(ManagementError) as caught:
        parse_log_query(q)
    assert (caught.value.status_code, caught.value.error_code) == (400, "invalid_query_string")
    assert message in caught.value.message
    assert caught.value.message.endswith("on property q.")
