"""The refresh-token tenant of the e2e suite, shared by ``test_refresh_e2e.py`` and ``test_refresh_race.py``.

It adds its own directory, API, clients and users to the shared e2e database and never touches what the other modules
use: there is no ``[tenant]`` table (the default directory and audience stay as the package tenant set them), logins
name the ``refresh-e2e`` realm and the ``https://refresh.e2e.test/`` audience explicitly, and a rule that applies is
removed from the database again as soon as the server that loaded it is up (rules are loaded once, at start).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.e2e.conftest import (
    PASSWORD_REALM,
    IdentityServer,
    apply_tenant_file,
    query,
    serve_spec,
    start_servers,
    stop_and_check,
)

CONNECTION = "refresh-e2e"
RT_API = "https://refresh.e2e.test/"
RT_SCOPES = ("read:notes", "write:notes")
RT_API_LIFETIME = 900
PROTOCOL_CLAIM = "https://refresh.e2e.test/protocol"
UNKNOWN = {"error": "invalid_grant", "error_description": "Unknown or invalid refresh token."}

# client_id -> (token_endpoint_auth_method, secret, refresh_token policy)
PUBLIC = "rt-public"
CONFIDENTIAL = "rt-confidential"
BASIC = "rt-basic"
LEEWAY = "rt-leeway"
LEEWAY_SHORT = "rt-leeway-short"
ABSOLUTE = "rt-absolute"
IDLE = "rt-idle"
FIXED = "rt-fixed"
RACE = "rt-race"
RACE_LEEWAY = "rt-race-leeway"

CONFIDENTIAL_SECRET = "rt-confidential-secret-0123456789abcdefgh"
BASIC_SECRET = "rt-basic-secret-0123456789abcdefghijklmnop"
LEEWAY_SECONDS = 30
LEEWAY_SHORT_SECONDS = 2
ABSOLUTE_LIFETIME = 5
IDLE_LIFETIME = 4

CLIENTS: dict[str, tuple[str, str | None, dict[str, Any]]] = {
    PUBLIC: ("none", None, {}),
    CONFIDENTIAL: ("client_secret_post", CONFIDENTIAL_SECRET, {}),
    BASIC: ("client_secret_basic", BASIC_SECRET, {}),
    LEEWAY: ("none", None, {"leeway": LEEWAY_SECONDS}),
    LEEWAY_SHORT: ("none", None, {"leeway": LEEWAY_SHORT_SECONDS}),
    ABSOLUTE: ("none", None, {"token_lifetime": ABSOLUTE_LIFETIME}),
    IDLE: ("none", None, {"token_lifetime": 600, "idle_token_lifetime": IDLE_LIFETIME}),
    FIXED: ("none", None, {"rotation_type": "non-rotating"}),
    RACE: ("none", None, {"leeway": 0}),
    RACE_LEEWAY: ("none", None, {"leeway": LEEWAY_SECONDS}),
}

# email -> (password, name); one user per concern, so that no test ends another one's sessions.
USERS = {
    "carol@refresh.e2e.test": ("the refresh password of C. 2026", "Carol"),
    "erin@refresh.e2e.test": ("the refresh password of E. 2026", "Erin"),
    "frank@refresh.e2e.test": ("the refresh password of F. 2026", "Frank"),
    "grace@refresh.e2e.test": ("the refresh password of G. 2026", "Grace"),
    "rita@refresh.e2e.test": ("the race password of R. 2026", "Rita"),
}
CAROL, ERIN, FRANK, GRACE, RITA = USERS

RULE_SOURCE = f'''\
"""A rule written by an operator as a plain file: records the protocol it sees (refresh-token e2e tests)."""

CLAIM = "{PROTOCOL_CLAIM}"


def record_protocol(event, api):
    if not event.client.client_id.startswith("rt-"):
        return  # only this module's clients
    api.access_token.set_custom_claim(CLAIM, event.transaction.protocol)
    api.id_token.set_custom_claim(CLAIM, event.transaction.protocol)
'''


def _toml(value: Any) -> str:
    """A TOML value for str, bool, int and flat tables of those (JSON spells them the same way)."""
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{key} = {_toml(item)}" for key, item in value.items()) + " }"
    return json.dumps(value)


def tenant_toml(*, rule_file: Path | None = None, users: Mapping[str, Mapping[str, Any]] | None = None) -> str:
    """This module's part of the tenant; ``users`` overrides fields per email (``blocked``, ``name``)."""
    lines = [
        "[[connections]]",
        f'name = "{CONNECTION}"',
        "",
        "[[apis]]",
        f'identifier = "{RT_API}"',
        'name = "Refresh E2E API"',
        f"scopes = {_toml(list(RT_SCOPES))}",
        'signing_alg = "RS256"',
        f"token_lifetime = {RT_API_LIFETIME}",
        "allow_offline_access = true",
        "",
    ]
    for client_id, (method, secret, policy) in CLIENTS.items():
        lines += [
            "[[clients]]",
            f'client_id = "{client_id}"',
            f'name = "Refresh E2E {client_id}"',
            f'token_endpoint_auth_method = "{method}"',
            *([f'client_secret = "{secret}"'] if secret else []),
            f'grant_types = ["{PASSWORD_REALM}", "refresh_token"]',
            f'connections = ["{CONNECTION}"]',
            *([f"refresh_token = {_toml(policy)}"] if policy else []),
            "",
        ]
    for email, (password, name) in USERS.items():
        fields: dict[str, Any] = {"name": name, "email_verified": True, **(users or {}).get(email, {})}
        lines += ["[[users]]", f'connection = "{CONNECTION}"', f'email = "{email}"', f"password = {_toml(password)}"]
        lines += [f"{key} = {_toml(value)}" for key, value in fields.items()]
        lines.append("")
    if rule_file is not None:
        lines += ["[[rules]]", 'name = "record protocol"', f"handler = {_toml(f'{rule_file}:record_protocol')}", ""]
    return "\n".join(lines)


def apply(env: dict[str, str], path: Path, text: str) -> dict[str, str]:
    """Write and apply a tenant file; the ``user_id`` of each of this module's users, by email."""
    path.write_text(text)
    report = apply_tenant_file(path, env)
    return {user["email"]: user["user_id"] for user in report["users"] if user["connection"] == CONNECTION}


@dataclass(frozen=True)
class RefreshTenant:
    """A server on the refresh tenant."""

    server: IdentityServer
    env: dict[str, str]
    database_url: str
    user_ids: dict[str, str]
    workdir: Path


@contextmanager
def refresh_server(
    name: str,
    env: dict[str, str],
    database_url: str,
    workdir: Path,
    *,
    with_rule: bool,
    server_env: Mapping[str, str] | None = None,
) -> Iterator[RefreshTenant]:
    """Apply the tenant (with the protocol rule when asked), start ONE ``identity serve``; afterwards clear the rules.

    Servers follow the stored rules (they reload them when they change), so the rule stays stored while this module
    runs and is cleared when it ends, before servers of other modules start. ``server_env`` is added to the server's
    environment only (not to the CLI commands').
    """
    rule_file = None
    if with_rule:
        rule_file = workdir / "protocol_rule.py"
        rule_file.write_text(RULE_SOURCE)
    user_ids = apply(env, workdir / "tenant.toml", tenant_toml(rule_file=rule_file))
    server = None
    try:
        (server,) = start_servers([serve_spec(name, {**env, **(server_env or {})})], workdir)
        yield RefreshTenant(server=server, env=env, database_url=database_url, user_ids=user_ids, workdir=workdir)
    finally:
        try:
            if server is not None:
                stop_and_check(server)
        finally:
            if with_rule:
                apply(env, workdir / "no-rules.toml", "rules = []\n")


# --- Requests ---------------------------------------------------------------------------------------------------


def client_form(client_id: str) -> dict[str, str]:
    """``client_id`` (and the secret, in the body) for a form body of this client."""
    method, secret, _ = CLIENTS[client_id]
    form = {"client_id": client_id}
    if method == "client_secret_post" and secret:
        form["client_secret"] = secret
    return form


def client_auth(client_id: str) -> tuple[str, str] | None:
    method, secret, _ = CLIENTS[client_id]
    return (client_id, secret) if method == "client_secret_basic" and secret else None


def login(
    server: IdentityServer,
    email: str,
    *,
    client_id: str = PUBLIC,
    scope: str = "openid profile email offline_access read:notes write:notes",
) -> dict[str, Any]:
    """A password-realm login in the refresh directory for the refresh API; fails the test unless it is a 200."""
    form = {
        "grant_type": PASSWORD_REALM,
        "realm": CONNECTION,
        "audience": RT_API,
        "username": email,
        "password": USERS[email][0],
        "scope": scope,
        **client_form(client_id),
    }
    response = httpx.post(server.token_url, data=form, auth=client_auth(client_id), timeout=30)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def refresh(server: IdentityServer, token: str, *, client_id: str = PUBLIC, **extra: str) -> httpx.Response:
    """``grant_type=refresh_token`` as a plain form post."""
    form = {"grant_type": "refresh_token", "refresh_token": token, **client_form(client_id), **extra}
    return httpx.post(server.token_url, data=form, auth=client_auth(client_id), timeout=30)


# --- The stored rows --------------------------------------------------------------------------------------------

ROW_COLUMNS = "id, parent_id, family_id, token_hash, used_at, revoked_at, revoked_reason, successor"


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def family_rows(database_url: str, token: str) -> list[dict[str, Any]]:
    """Every stored row of the family ``token`` belongs to, oldest first."""
    names = [name.strip() for name in ROW_COLUMNS.split(",")]
    rows = query(
        database_url,
        f"SELECT {ROW_COLUMNS} FROM refresh_token WHERE family_id = "
        f"(SELECT family_id FROM refresh_token WHERE token_hash = '{token_hash(token)}') ORDER BY id",
    )
    return [dict(zip(names, row, strict=True)) for row in rows]


def check_family_shape(rows: list[dict[str, Any]]) -> None:
    """Nothing half-written: one root, every used row has exactly one child, no parent has two children."""
    ids = {row["id"] for row in rows}
    roots = [row for row in rows if row["parent_id"] is None]
    assert len(roots) == 1, rows
    children: dict[int, list[int]] = {}
    for row in rows:
        if row["parent_id"] is not None:
            assert row["parent_id"] in ids, f"row {row['id']} points outside its family: {rows}"
            children.setdefault(row["parent_id"], []).append(row["id"])
    assert all(len(kids) == 1 for kids in children.values()), f"a parent with two children: {children}"
    for row in rows:
        if row["used_at"] is not None:
            assert row["id"] in children, f"used row {row['id']} has no successor row: {rows}"
        else:
            assert row["id"] not in children, f"unused row {row['id']} has a successor row: {rows}"
    assert len({row["token_hash"] for row in rows}) == len(rows)
