"""Error pages of the enrollment pages: HTML, never echoing the request (a CSRF failure is a 403 here)."""

from __future__ import annotations

import logging
from typing import Any

from litestar import Response
from litestar.exceptions import HTTPException, PermissionDeniedException
from litestar.response import Template

from identity.web.enroll.pages import AnyRequest
from identity.web.errors import SECURITY_HEADERS

__all__ = ["error_page"]

logger = logging.getLogger("identity.web.enroll")

# Exception responses skip the app's after_request hook, so error pages carry the page headers themselves (the same
# policy, `identity.web.errors.SECURITY_HEADERS`).
_ERROR_HEADERS = {"Cache-Control": "no-store", **SECURITY_HEADERS}
_ERROR_TEXT = {
    403: "This form has expired or did not come from this site. Go back, reload the page, and try again.",
    404: "There is no such page.",
    405: "That is not something this page can do.",
    413: "The form was too large.",
}


def error_page(request: AnyRequest, exc: Exception) -> Response[Any]:
    """The error page for ``exc``: its status (500 for anything but an HTTP error) and a fixed message."""
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    if status >= 500:
        logger.error("enroll page failed", exc_info=exc)
    text = _ERROR_TEXT.get(status, "Something went wrong on our side. Try again in a moment.")
    if isinstance(exc, PermissionDeniedException):
        text = _ERROR_TEXT[403]
    return Template(
        "enroll/error.html",
        context={"status": status, "message": text},
        status_code=status,
        headers=_ERROR_HEADERS,
    )
