"""One paging rule for every Management API list (Auth0's).

Offset paging: ``page`` (0-based) and ``per_page`` (default 50, at most 100: Auth0 returns at most 50 when no page
is asked for); ``include_totals=true`` wraps the page as ``{"start", "limit", "length", "total", <items>}``.
Checkpoint paging, where Auth0 offers it (connections, client grants; the logs have their own): ``take`` (default
50, at most 100) items after the checkpoint ``from``, as ``{<items>, "next"}``; ``next`` is absent on the last page.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Annotated, Any, TypeVar

from litestar.params import QueryParameter

from identity.management.errors import bad_request

__all__ = ["DEFAULT_PER_PAGE", "MAX_PER_PAGE", "Page", "PerPage", "Take", "checkpoint", "one_page"]

T = TypeVar("T")

DEFAULT_PER_PAGE = 50
MAX_PER_PAGE = 100

Page = Annotated[int, QueryParameter(ge=0, le=10_000, description="The page, from 0.")]
PerPage = Annotated[
    int, QueryParameter(ge=1, le=MAX_PER_PAGE, description=f"Items per page (default {DEFAULT_PER_PAGE}).")
]
Take = Annotated[int | None, QueryParameter(ge=1, le=MAX_PER_PAGE, description="Items after the checkpoint.")]


def one_page(key: str, items: Sequence[T], page: int, per_page: int, include_totals: bool) -> list[T] | dict[str, Any]:
    """Page ``page`` of ``items``; with the totals, Auth0's wrapper naming the items ``key``."""
    start = page * per_page
    shown = list(items[start : start + per_page])
    if include_totals:
        return {"start": start, "limit": per_page, "length": len(shown), "total": len(items), key: shown}
    return shown


def checkpoint(
    key: str, items: Sequence[T], after: str | None, take: int | None, id_of: Callable[[T], str]
) -> dict[str, Any]:
    """The ``take`` items after the one whose id is ``after`` (from the first without it), and the next checkpoint.

    The checkpoint is the id of the last item returned: items created meanwhile come later, in creation order.
    """
    ids = [id_of(item) for item in items]
    if after is not None and after not in ids:
        raise bad_request(
            "Query validation error: 'from: no item has that id (start again without from)' on property from.",
            "invalid_query_string",
        )
    start = ids.index(after) + 1 if after is not None else 0
    size = take or DEFAULT_PER_PAGE
    shown = list(items[start : start + size])
    answer: dict[str, Any] = {key: shown}
    if start + size < len(items):
        answer["next"] = ids[start + size - 1]
    return answer
