"""The log of a whole test run, scanned for every secret the tests used (issue 13: never log a secret).

`tests/conftest.py` sends every ``identity.*`` record of the run (in-process apps, at DEBUG) to one JSON-lines file
with the production formatter, and the e2e servers' standard error (their logs) is added to the scan. The secrets are
the fixed ones of the test tenants, plus every credential that went over HTTP during the run: passwords, client
secrets, recovery codes in requests; access, ID, refresh and mfa tokens, TOTP secrets and recovery codes in
responses (recorded by wrapping httpx, which Litestar's TestClient and the e2e clients use), the ``oob_code`` of
emailed codes both ways; values that reach the server another way (Auth0's SDK posts with ``requests``, an email
factor's address sits in a request only once) are added with `remember`. Anything shaped like a JWT in the log is a
leak too. Values shorter than 12 characters (six-digit OTP codes) are left out: they would match
digits of timestamps by chance; the formatter redacts the fields that carry them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

__all__ = ["SECRETS", "find_leaks", "record_request", "record_response", "remember"]

SECRETS: set[str] = set()
_MIN_LENGTH = 12
_REQUEST_FIELDS = ("password", "client_secret", "recovery_code", "refresh_token", "mfa_token", "token", "oob_code")
_RESPONSE_FIELDS = (
    *("access_token", "id_token", "refresh_token", "mfa_token", "recovery_code", "recovery_codes", "secret"),
    *("barcode_uri", "oob_code"),
)
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{8,}")


def _add(value: Any) -> None:
    if isinstance(value, str) and len(value) >= _MIN_LENGTH:
        SECRETS.add(value)
    elif isinstance(value, list):
        for item in value:
            _add(item)


def remember(*values: str) -> None:
    """Add secrets the httpx wrapper cannot see (sent with another client, or never in a JSON field it reads)."""
    for value in values:
        _add(value)


def record_request(content: bytes, content_type: str) -> None:
    """Remember the credentials in a request body (form or JSON)."""
    from urllib.parse import parse_qsl

    try:
        text = content.decode()
        if "json" in content_type:
            body = json.loads(text)
            pairs = list(body.items()) if isinstance(body, dict) else []
        else:
            pairs = parse_qsl(text)
    except (UnicodeDecodeError, ValueError, RecursionError):
        return
    for name, value in pairs:
        if name in _REQUEST_FIELDS:
            _add(value)


def record_response(content: bytes) -> None:
    """Remember the credentials in a JSON response body."""
    try:
        body = json.loads(content)
    except (UnicodeDecodeError, ValueError, RecursionError):
        return
    if isinstance(body, dict):
        for name in _RESPONSE_FIELDS:
            _add(body.get(name))


def find_leaks(texts: Iterable[tuple[str, str]], secrets: Iterable[str]) -> list[str]:
    """Every (source, secret or JWT) found in the logs; ``texts`` are (name, content) pairs."""
    wanted = sorted({secret for secret in secrets if len(secret) >= _MIN_LENGTH}, key=len, reverse=True)
    leaks = []
    for name, text in texts:
        leaks += [f"{name}: JWT {match[:24]}..." for match in _JWT.findall(text)]
        leaks += [f"{name}: secret {secret[:6]}... ({len(secret)} chars)" for secret in wanted if secret in text]
    return leaks


def read_logs(paths: Iterable[Path]) -> list[tuple[str, str]]:
    """The contents of the log files that still exist."""
    return [(str(path), path.read_text(errors="replace")) for path in paths if path.is_file()]
