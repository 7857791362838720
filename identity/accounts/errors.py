"""Domain errors of accounts; the CLI and the admin API translate them."""

from __future__ import annotations

__all__ = [
    "AccountError",
    "AlreadyEnrolled",
    "InvalidUserData",
    "NotEnrolled",
    "UnknownConnection",
    "UnknownUser",
    "UserExists",
]


class AccountError(Exception):
    """Base of account errors; the message is safe to show to an operator."""


class UnknownConnection(AccountError):
    """No connection has that name."""


class UserExists(AccountError):
    """A user with that email or username already exists in the connection."""


class InvalidUserData(AccountError):
    """An email, username or password does not meet the rules."""


class UnknownUser(AccountError):
    """No user has that ``user_id``."""


class AlreadyEnrolled(AccountError):
    """The user has an active factor: enrolling another needs a completed MFA first."""


class NotEnrolled(AccountError):
    """The user has no active factor."""
