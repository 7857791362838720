"""``/api/v2/logs``, ``/users/{id}/logs`` and ``/user-blocks`` (API.md §6): the audit log and brute-force blocks.

Both read what attack protection writes (`identity.store.audit`, `identity.accounts.attack`); nothing here keeps a
second copy of those rules.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from litestar import Request, delete, get
from litestar.di import NamedDependency
from litestar.params import FromPath, FromQuery, QueryParameter
from msgspec import Struct
from sqlalchemy.ext.asyncio import AsyncSession

from identity.accounts.attack import user_blocks
from identity.accounts.users import UserService
from identity.management import operations
from identity.management.audit import recorder
from identity.management.errors import ERROR_RESPONSES, ManagementError, bad_request, not_found
from identity.management.paging import DEFAULT_PER_PAGE, Page, PerPage, Take
from identity.store import audit
from identity.web.deps import Services

__all__ = ["LOG_HANDLERS", "parse_log_query"]

_TERM = re.compile(r'\s*(?:(AND|OR)\s+|([a-z_]+):(\[[^\]]*\]|\((?:[^()"]|"[^"]*")*\)|"(?:[^"\\]|\\.)*"|[^\s"()\[\]]+))')
_FIELDS = {"type", "user_id", "client_id", "ip", "connection", "date"}


class LogPage(Struct):
    """A page of log events with the total (``include_totals=true``)."""

    start: int
    limit: int
    length: int
    total: int
    logs: list[dict[str, Any]]


class BlockedFor(Struct):
    """One brute-force block: the identifier is blocked from this IP (or from every IP) in this connection."""

    identifier: str
    ip: str | None
    connection: str | None


class UserBlocks(Struct):
    """The brute-force blocks in force (Auth0's ``blocked_for``)."""

    blocked_for: list[BlockedFor]


def _bad_query(message: str, field: str = "q") -> ManagementError:
    return bad_request(f"Query validation error: '{message}' on property {field}.", "invalid_query_string")


def _moment(text: str, *, end: bool) -> datetime | None:
    """A bound of a date range: ``*``, a date (a whole day) or an ISO 8601 time (UTC unless it says otherwise)."""
    text = text.strip()
    if text == "*":
        return None
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            day = datetime.fromisoformat(text).replace(tzinfo=UTC)
            return day + timedelta(days=1) if end else day
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise _bad_query(f"q: {text!r} is not a date") from None
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return moment + timedelta(microseconds=1) if end else moment


def _unquote(value: str) -> str:
    return re.sub(r"\\(.)", r"\1", value[1:-1]) if value.startswith('"') else value


def parse_log_query(q: str) -> audit.LogFilter:
    """A log filter from a Lucene-style ``q``.

    Terms: ``type:f``, ``type:(fp OR fu)``, ``user_id:"auth0|…"``, ``client_id:``, ``ip:``, ``connection:``,
    ``date:[2026-12-01 TO *]``, joined by spaces or ``AND``; ``OR`` only between ``type`` terms.
    """
    found: dict[str, Any] = {}
    types: list[str] = []
    position, text, saw_or = 0, q.strip(), False
    while position < len(text):
        match = _TERM.match(text, position)
        if match is None or match.end() == position:
            raise _bad_query(f"q: cannot read the query at {text[position:][:40]!r}")
        position = match.end()
        if match.group(1):
            saw_or = saw_or or match.group(1) == "OR"
            continue
        field, value = match.group(2), match.group(3)
        if field not in _FIELDS:
            raise _bad_query(f"q: cannot search on {field}")
        if field == "type":
            inner = value[1:-1] if value.startswith("(") else value
            types += [_unquote(item) for item in re.split(r"\s+OR\s+", inner.strip()) if item]
        elif field == "date":
            bounds = re.fullmatch(r"\[\s*(\S+)\s+TO\s+(\S+)\s*\]", value)
            if bounds is None:
                raise _bad_query("q: a date is a range, date:[FROM TO UNTIL] (either end may be *)")
            found["since"], found["until"] = _moment(bounds.group(1), end=False), _moment(bounds.group(2), end=True)
        else:
            found[field] = _unquote(value)
    if saw_or and found:
        raise _bad_query("q: OR joins type terms only")
    return audit.LogFilter(types=tuple(types), **found)


def _newest_first(sort: str | None) -> bool:
    if sort in (None, "date:-1"):
        return True
    if sort == "date:1":
        return False
    raise _bad_query("sort must be date:1 or date:-1", "sort")


async def _page(
    db: AsyncSession, criteria: audit.LogFilter, page: int, per_page: int, sort: str | None, include_totals: bool
) -> list[dict[str, Any]] | LogPage:
    events = await audit.search(db, criteria, page=page, per_page=per_page, newest_first=_newest_first(sort))
    logs = [event.to_dict() for event in events]
    total = await audit.count(db, criteria) if include_totals else 0
    await db.commit()
    if include_totals:
        return LogPage(start=page * per_page, limit=per_page, length=len(logs), total=total, logs=logs)
    return logs


@get("/logs", opt={"scope": "read:logs"}, responses=ERROR_RESPONSES, summary="Search log events")
async def list_logs(
    db: NamedDependency[AsyncSession],
    q: FromQuery[str | None] = None,
    search: FromQuery[str | None] = None,
    page: Page = 0,
    per_page: PerPage = DEFAULT_PER_PAGE,
    sort: FromQuery[str | None] = None,
    include_totals: FromQuery[bool] = False,
    from_: Annotated[str | None, QueryParameter(name="from")] = None,
    take: Take = None,
    fields: FromQuery[str | None] = None,
    include_fields: FromQuery[bool] = True,
) -> list[dict[str, Any]] | LogPage:
    """Events matching ``q``, newest first, a page at a time; or a checkpoint read with ``from``/``take``.

    With ``from`` (a ``log_id``) and ``take``, the events stored after that one, oldest first: where a SIEM resumes.
    """
    if fields:
        raise _bad_query("fields is not supported", "fields")
    text = q if q is not None else search
    criteria = parse_log_query(text) if text else audit.LogFilter()
    if from_ is not None or take is not None:
        if from_ is not None and await audit.get(db, from_) is None:
            raise _bad_query("from: no log event has that id", "from")
        events = await audit.after(db, from_, criteria, take=take or DEFAULT_PER_PAGE)
        await db.commit()
        return [event.to_dict() for event in events]
    return await _page(db, criteria, page, per_page, sort, include_totals)


@get("/logs/{log_id:str}", opt={"scope": "read:logs"}, responses=ERROR_RESPONSES, summary="Get a log event")
async def get_log(db: NamedDependency[AsyncSession], log_id: FromPath[str]) -> dict[str, Any]:
    """One event by its ``log_id``."""
    event = await audit.get(db, log_id)
    await db.commit()
    if event is None:
        raise not_found("The log event does not exist.", "inexistent_log")
    return event.to_dict()


@get(
    "/users/{user_id:str}/logs",
    opt={"scope": ("read:logs", "read:logs_users")},
    responses=ERROR_RESPONSES,
    summary="A user's log events",
)
async def list_user_logs(
    services: NamedDependency[Services],
    db: NamedDependency[AsyncSession],
    user_id: FromPath[str],
    page: Page = 0,
    per_page: PerPage = DEFAULT_PER_PAGE,
    sort: FromQuery[str | None] = None,
    include_totals: FromQuery[bool] = False,
) -> list[dict[str, Any]] | LogPage:
    """The events of one user, newest first."""
    await UserService(db, services.hasher, services.clock).get(user_id)
    return await _page(db, audit.LogFilter(user_id=user_id), page, per_page, sort, include_totals)


def _blocked_for(found: list[dict[str, Any]]) -> UserBlocks:
    return UserBlocks(
        blocked_for=[BlockedFor(identifier=b["identifier"], ip=b["ip"], connection=b["connection"]) for b in found]
    )


async def _user_identifiers(services: Services, db: AsyncSession, user_id: str) -> tuple[list[str], str]:
    row, connection = await UserService(db, services.hasher, services.clock).get(user_id)
    return [login for login in (row.email, row.username) if login], connection


@get("/user-blocks", opt={"scope": "read:users"}, responses=ERROR_RESPONSES, summary="Blocks of an identifier")
async def list_blocks_by_identifier(
    services: NamedDependency[Services],
    db: NamedDependency[AsyncSession],
    identifier: Annotated[str, QueryParameter(min_length=1, max_length=320)],
    consider_brute_force_enablement: FromQuery[bool] = False,
) -> UserBlocks:
    """The brute-force blocks of an email or username, in every connection (unknown identifiers included)."""
    return _blocked_for(await user_blocks(db, identifier, now=services.clock.now()))


@delete(
    "/user-blocks",
    opt={"scope": "update:users"},
    responses=ERROR_RESPONSES,
    status_code=204,
    summary="Lift the blocks of an identifier",
)
async def delete_blocks_by_identifier(
    request: Request[Any, Any, Any],
    services: NamedDependency[Services],
    db: NamedDependency[AsyncSession],
    identifier: Annotated[str, QueryParameter(min_length=1, max_length=320)],
) -> None:
    """Lift every brute-force block of the identifier, from every address (logged as ``ublkdu``)."""
    await operations.unblock(db, [identifier], recorder(services, request))


@get("/user-blocks/{user_id:str}", opt={"scope": "read:users"}, responses=ERROR_RESPONSES, summary="A user's blocks")
async def list_user_blocks(
    services: NamedDependency[Services],
    db: NamedDependency[AsyncSession],
    user_id: FromPath[str],
    consider_brute_force_enablement: FromQuery[bool] = False,
) -> UserBlocks:
    """The brute-force blocks of the user's email and username in the user's connection."""
    identifiers, connection = await _user_identifiers(services, db, user_id)
    found: list[dict[str, Any]] = []
    for identifier in identifiers:
        found += await user_blocks(db, identifier, now=services.clock.now(), connection=connection)
    return _blocked_for(found)


@delete(
    "/user-blocks/{user_id:str}",
    opt={"scope": "update:users"},
    responses=ERROR_RESPONSES,
    status_code=204,
    summary="Lift a user's blocks",
)
async def delete_user_blocks(
    request: Request[Any, Any, Any],
    services: NamedDependency[Services],
    db: NamedDependency[AsyncSession],
    user_id: FromPath[str],
) -> None:
    """Lift the brute-force blocks of the user's email and username (not an administrator's ``blocked``)."""
    identifiers, connection = await _user_identifiers(services, db, user_id)
    record = recorder(services, request)
    await operations.unblock(db, identifiers, record, connection=connection, user_id=user_id)


LOG_HANDLERS = [
    list_logs,
    get_log,
    list_user_logs,
    list_blocks_by_identifier,
    delete_blocks_by_identifier,
    list_user_blocks,
    delete_user_blocks,
]
