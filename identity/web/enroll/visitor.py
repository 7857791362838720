"""Who is visiting the pages, and where they belong: a guard for every page, a dependency for its handler.

The session says who signed in, in which directory, when, and whether the second factor passed (never a secret). The
database says whether that still holds (the user exists, is not blocked, is in that directory) and which page fits:

    nobody signed in (or the session ended)   → the sign-in form (``?notice=expired`` when a session cookie came)
    a user with no active factor              → setup
    a user with one, second factor not passed → verify
    a user who passed it                      → manage

Each page handler names the pages it serves (``opt=for_pages(...)``); `place_visitor` (the router's guard) sends a
visitor who belongs elsewhere there, and keeps the `Visitor` for the `visitor` dependency.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from litestar import MediaType, Response
from litestar.connection import ASGIConnection
from litestar.handlers import BaseRouteHandler
from litestar.response import Redirect
from sqlalchemy.ext.asyncio import AsyncSession

from identity.settings import Settings
from identity.store import users as user_queries
from identity.web.addresses import request_trail
from identity.web.deps import Services, build_factors
from identity.web.enroll.pages import MANAGE, SETUP, START, VERIFY, AnyRequest
from identity.web.enroll.sessions import end_session, start_session
from identity.web.errors import response_headers

__all__ = [
    "MAX_SESSION_SECONDS",
    "Elsewhere",
    "Visitor",
    "audit",
    "elsewhere_response",
    "for_pages",
    "place_visitor",
    "provide_visitor",
    "sign_in_visitor",
]

MAX_SESSION_SECONDS = 60 * 60
"""A session ends an hour after sign-in however active it is (it also ends after 15 idle minutes)."""
_PAGES = "enroll_pages"
_AS_JSON = "enroll_refuse_as_json"
_STATE = "enroll_visitor"


@dataclass(frozen=True)
class Visitor:
    """A signed-in visitor, as the session and the database say now."""

    user_id: str
    connection: str
    label: str
    """The email (or username) the user signs in with."""
    passed_mfa: bool
    page: str
    """Where the visitor belongs now: `VERIFY`, `SETUP` or `MANAGE`."""


class Elsewhere(Exception):
    """The visitor belongs on another page (``where``); raised by the guard, answered by `elsewhere_response`."""

    def __init__(self, where: str, *, as_json: bool = False) -> None:
        super().__init__(where)
        self.where = where
        self.as_json = as_json


def for_pages(*pages: str, refuse_as_json: bool = False) -> dict[str, Any]:
    """A handler's ``opt``: the pages it serves (`START` serves the signed-out); others are sent on.

    ``refuse_as_json``: a script's endpoint answers 403 ``{"error":"not_allowed"}`` instead of redirecting.
    """
    return {_PAGES: frozenset(pages), _AS_JSON: refuse_as_json}


async def place_visitor(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
    """Guard: let the request through only to a page the visitor belongs on (handlers without `for_pages` all)."""
    pages: frozenset[str] | None = handler.opt.get(_PAGES)
    if pages is None:
        return
    services: Services = connection.app.state.services
    async with services.sessions() as db:
        visitor = await _signed_in(connection, services, db)
        if visitor is not None and not await build_factors(services, db).authenticators.has_active(visitor.user_id):
            visitor = Visitor(visitor.user_id, visitor.connection, visitor.label, visitor.passed_mfa, SETUP)
    if visitor is None:
        had_session = any(name.endswith("identity-session") for name in connection.cookies)
        where = START + "?notice=expired" if had_session else START
    else:
        where = visitor.page
    if where.partition("?")[0] not in pages:
        raise Elsewhere(where, as_json=bool(handler.opt.get(_AS_JSON)))
    connection.state[_STATE] = visitor


async def provide_visitor(request: AnyRequest) -> Visitor:
    """The visitor `place_visitor` let through (a page for the signed-in only)."""
    visitor = request.state.get(_STATE)
    if not isinstance(visitor, Visitor):
        raise TypeError("the visitor dependency is for handlers of signed-in pages (for_pages without START)")
    return visitor


async def _signed_in(
    connection: ASGIConnection[Any, Any, Any, Any], services: Services, db: AsyncSession
) -> Visitor | None:
    """The session's visitor if it still holds; a session that no longer does is ended."""
    data = connection.session
    user_id, since = data.get("user_id"), data.get("since")
    if not isinstance(user_id, str) or not isinstance(since, int | float):
        return None
    found = await user_queries.by_user_id(db, user_id)
    await db.commit()
    expired = services.clock.now() - since > MAX_SESSION_SECONDS
    if found is None or found[0].blocked or found[1] != data.get("connection") or expired:
        end_session(connection)
        return None
    row, passed_mfa = found[0], bool(data.get("mfa"))
    return Visitor(
        user_id, found[1], row.email or row.username or user_id, passed_mfa, MANAGE if passed_mfa else VERIFY
    )


def sign_in_visitor(request: AnyRequest, services: Services, user_id: str, connection: str, *, mfa: bool) -> None:
    """A new session for the user (a new id): signed in, or (``mfa``) past the second factor since the same sign-in."""
    since = request.session.get("since") if mfa else None
    start_session(
        request,
        {"user_id": user_id, "connection": connection, "mfa": mfa, "since": since or services.clock.now()},
    )


def audit(request: AnyRequest, services: Services, visitor: Visitor, event_type: str) -> None:
    """One audit event of the signed-in visitor (never a code)."""
    trail = request_trail(request, services.settings)
    trail.user_id, trail.connection = visitor.user_id, visitor.connection
    services.audit.emit(trail.event(event_type))


def elsewhere_response(settings: Settings) -> Any:
    """The router's handler of `Elsewhere`: a 303 to where the visitor belongs, or a script's 403.

    An exception's response skips the ``after_request`` hook and the router's ``Cache-Control``: it carries the
    headers every page response does itself.
    """
    headers = {"Cache-Control": "no-store", **response_headers(settings)}

    def answer(_: AnyRequest, exc: Elsewhere) -> Response[Any]:
        if exc.as_json:
            return Response({"error": "not_allowed"}, status_code=403, media_type=MediaType.JSON, headers=headers)
        return Redirect(path=exc.where, status_code=303, headers=headers)

    return answer
