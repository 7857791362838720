"""The enrollment pages under ``/enroll``: sign in, pass the second factor, add an authenticator, manage it.

Server-rendered (Jinja; JavaScript only for security keys). Each page belongs to one state of the visitor, and the
router's guard sends the visitor where they belong (`visitor`):

    sign_in.py    GET /enroll, POST /enroll/sign-in, POST /enroll/sign-out
    verify.py     GET/POST /enroll/verify: the second factor first, for a user who has one
    setup.py      GET/POST /enroll/setup: a pending authenticator app, activated by a valid code
    manage.py     GET /enroll/manage, POST /enroll/remove
    keys.py       POST /enroll/keys/*: security keys and passkeys (WebAuthn)
    email.py      POST /enroll/email/*, GET /enroll/email: codes by email (with a mail server only)
    visitor.py    who is visiting and where they belong: the guard and the ``visitor`` dependency
    pages.py      paths, templates, form fields, messages
    sessions.py   server-side sessions and CSRF protection
    errors.py     the error pages
    router.py     the router that mounts it all

The session holds who signed in, in which directory, when, and whether the second factor passed: never a secret.
"""

from identity.web.enroll.pages import ENROLLMENT_CLIENT, ENROLLMENT_PROTOCOL
from identity.web.enroll.router import enroll_router
from identity.web.enroll.visitor import MAX_SESSION_SECONDS

__all__ = ["ENROLLMENT_CLIENT", "ENROLLMENT_PROTOCOL", "MAX_SESSION_SECONDS", "enroll_router"]
