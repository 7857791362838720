"""The ``/enroll`` router: the pages, their session and CSRF middleware, the visitor's guard, the error pages."""

from __future__ import annotations

from litestar import Router
from litestar.datastructures import CacheControlHeader
from litestar.di import Provide
from litestar.exceptions import HTTPException

from identity.settings import Settings
from identity.web.enroll.email import EMAIL_ROUTES
from identity.web.enroll.errors import error_page
from identity.web.enroll.keys import KEY_ROUTES
from identity.web.enroll.manage import manage, remove
from identity.web.enroll.pages import START
from identity.web.enroll.sessions import csrf_middleware, session_config
from identity.web.enroll.setup import setup, setup_form
from identity.web.enroll.sign_in import sign_in, sign_out, start
from identity.web.enroll.verify import verify, verify_form
from identity.web.enroll.visitor import Elsewhere, elsewhere_response, place_visitor, provide_visitor

__all__ = ["enroll_router"]

_MAX_BODY = 16 * 1024


def enroll_router(settings: Settings) -> Router:
    """The pages, with their session and CSRF middleware (mounted here only: API clients never meet them)."""
    return Router(
        path=START,
        route_handlers=[
            start,
            sign_in,
            sign_out,
            verify_form,
            verify,
            setup_form,
            setup,
            manage,
            remove,
            *KEY_ROUTES,
            *EMAIL_ROUTES,
        ],
        middleware=[session_config(settings).middleware, csrf_middleware(settings)],
        guards=[place_visitor],
        dependencies={"visitor": Provide(provide_visitor)},
        exception_handlers={Elsewhere: elsewhere_response(settings), HTTPException: error_page, Exception: error_page},
        cache_control=CacheControlHeader(no_store=True),
        request_max_body_size=_MAX_BODY,
        include_in_schema=False,
    )
