"""Structured logs: one JSON object per line (or plain text for a terminal), for requests and service events alike.

Every logger goes through one handler on the root logger, with `JsonFormatter` (``IDENTITY_LOG_FORMAT=json``, the
default) or `TextFormatter` (``text``), at ``IDENTITY_LOG_LEVEL``. A record's fields are ``ts``, ``level``,
``logger``, ``message``, then the members of the ``event`` dict passed as ``logger.info(..., extra={"event": {...}})``
(the request log and the audit log, ``identity.audit``, use it), then ``exc`` with the traceback of an error.

Nothing secret is written: event members whose names say password, secret, token, code, otp, cookie or authorization
are replaced by ``[redacted]`` (ids such as ``client_id`` and ``grant_type`` are not secrets), and anything that looks
like a JWT is cut out of every message and value. The request log itself never reads a body or a header that carries
credentials; this is the second line of defence.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

__all__ = ["JsonFormatter", "TextFormatter", "configure_logging", "redact", "scrub"]

REDACTED = "[redacted]"
_SECRET_NAME = re.compile(r"pass(word)?|secret|token|code|otp|cookie|authori[sz]ation|credential|private", re.I)
_NOT_SECRET = frozenset(
    {"client_id", "grant_type", "token_type", "token_endpoint_auth_method", "status_code", "error_code", "code_type"}
)
# A JWS/JWE in compact form, or an HTTP Basic / Bearer credential inside free text.
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*")
_AUTH_HEADER = re.compile(r"\b(Bearer|Basic)\s+[A-Za-z0-9._~+/=-]{8,}", re.I)
_RESERVED = frozenset({"ts", "level", "logger", "message", "exc"})
_MAX_VALUE = 2000


def scrub(text: str) -> str:
    """``text`` with JWTs and Authorization credentials cut out."""
    return _AUTH_HEADER.sub(lambda m: f"{m.group(1)} {REDACTED}", _JWT.sub(REDACTED, text))


def redact(value: Any, name: str = "") -> Any:
    """A JSON-ready copy of ``value``: secret-named members replaced, strings scrubbed and bounded."""
    if name and name not in _NOT_SECRET and _SECRET_NAME.search(name):
        return REDACTED if value not in (None, "", [], {}) else value
    if isinstance(value, str):
        cleaned = scrub(value)
        return cleaned if len(cleaned) <= _MAX_VALUE else cleaned[:_MAX_VALUE] + "..."
    if isinstance(value, dict):
        return {str(key): redact(item, str(key)) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [redact(item) for item in value]
    if value is None or isinstance(value, bool | int | float):
        return value
    return redact(str(value))


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    event = getattr(record, "event", None)
    if not isinstance(event, dict):
        return {}
    fields: dict[str, Any] = {}
    for key, value in redact(event).items():
        fields[f"event_{key}" if key in _RESERVED else key] = value
    return fields


def _timestamp(record: logging.LogRecord) -> str:
    return datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class JsonFormatter(logging.Formatter):
    """One JSON object per line."""

    def format(self, record: logging.LogRecord) -> str:
        """Render ``record`` as a JSON line."""
        line: dict[str, Any] = {
            "ts": _timestamp(record),
            "level": record.levelname,
            "logger": record.name,
            "message": scrub(record.getMessage()),
            **_fields(record),
        }
        if record.exc_info:
            line["exc"] = scrub(self.formatException(record.exc_info))
        return json.dumps(line, ensure_ascii=False, default=str, separators=(",", ":"))


class TextFormatter(logging.Formatter):
    """``ts LEVEL logger message key=value ...`` for a terminal."""

    def format(self, record: logging.LogRecord) -> str:
        """Render ``record`` as one readable line (plus the traceback of an error)."""
        parts = [_timestamp(record), f"{record.levelname:<7}", record.name, scrub(record.getMessage())]
        parts += [f"{key}={json.dumps(value, default=str)}" for key, value in _fields(record).items()]
        text = " ".join(parts)
        if record.exc_info:
            text += "\n" + scrub(self.formatException(record.exc_info))
        return text


_HANDLER_NAME = "identity"
_QUIET_LIBRARIES = ("sqlalchemy", "aiosqlite", "asyncio", "multipart", "httpx", "httpcore", "alembic")


def configure_logging(level: str = "INFO", log_format: str = "json", stream: TextIO | None = None) -> None:
    """Route every logger through one handler with the chosen format and level (idempotent).

    Logs go to standard error, so that the standard output of commands stays theirs (JSON reports, the demo's
    instructions); a service manager or container runtime collects both.
    """
    root = logging.getLogger()
    for handler in list(root.handlers):
        if handler.get_name() == _HANDLER_NAME:
            root.removeHandler(handler)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.set_name(_HANDLER_NAME)
    handler.setLevel(level)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    root.addHandler(handler)
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        # uvicorn's own loggers propagate to ours instead of printing in their own format.
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
    logging.getLogger("uvicorn.access").disabled = True  # the request log (identity.request) replaces it
    for name in _QUIET_LIBRARIES:
        # SQLAlchemy logs every statement with its parameters at INFO; the others are chatty at DEBUG.
        logging.getLogger(name).setLevel(max(logging.WARNING, logging.getLevelName(level)))
