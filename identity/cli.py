"""The ``identity`` command: serve, migrate, apply a tenant file, manage users.

Settings come from the environment (`identity.settings`), read once per invocation.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click
from sqlalchemy.ext.asyncio import AsyncSession

from identity.accounts.errors import AccountError
from identity.accounts.passwords import PasswordHasher
from identity.clock import Clock, SystemClock, now_utc
from identity.settings import Settings
from identity.store.db import create_engine, create_sessionmaker, migrate, pending_migrations
from identity.tenant_file import ApplyReport, TenantFileError, apply_tenant, load_tenant_file

if TYPE_CHECKING:
    from identity.audit import LogEvent
    from identity.management.operations import Record

__all__ = ["main"]

T = TypeVar("T")


def _settings(**overrides: str) -> Settings:
    environ = {**os.environ, **overrides}
    try:
        return Settings.from_env(environ)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc


def _with_session(settings: Settings, work: Callable[[AsyncSession, PasswordHasher], Awaitable[T]]) -> T:
    async def run() -> T:
        engine = create_engine(settings.database_url, sqlite_synchronous=settings.sqlite_synchronous)
        hasher = PasswordHasher(settings.argon2, workers=settings.hash_workers)
        try:
            async with create_sessionmaker(engine)() as session:
                return await work(session, hasher)
        finally:
            hasher.close()
            await engine.dispose()

    return asyncio.run(run())


def _clock() -> Clock:
    """The time every command goes by: the one place the CLI reads the wall clock."""
    return SystemClock()


def _ensure_schema(settings: Settings) -> None:
    """Migrate the embedded database; refuse to start an unmigrated shared one."""
    if settings.is_sqlite:
        migrate(settings.database_url)
    elif pending := pending_migrations(settings.database_url):
        raise click.ClickException(f"the database needs {len(pending)} migration(s): run 'identity db upgrade' first")


@click.group()
@click.version_option(package_name="identity")
def main() -> None:
    """identity: an authorization server for highly trusted clients."""


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=int, help="Port to listen on.")
@click.option("--workers", default=1, show_default=True, type=int, help="Worker processes.")
def serve(host: str, port: int, workers: int) -> None:
    """Serve the HTTP API (migrates the embedded SQLite database first)."""
    settings = _settings()
    _ensure_schema(settings)
    _run_server(settings, host, port, workers)


def _check_rules(settings: Settings) -> None:
    """Fail the start with a clear message when a configured rule does not load."""
    from identity.rules.loader import load_rules
    from identity.rules.pipeline import RuleLoadError

    try:
        _with_session(settings, lambda session, _: load_rules(session))
    except RuleLoadError as exc:
        raise click.ClickException(f"cannot start: {exc}") from exc


def _run_server(settings: Settings, host: str, port: int, workers: int = 1) -> None:
    from identity.observability.logging import configure_logging

    configure_logging(settings.ops.log_level, settings.ops.log_format)
    _check_rules(settings)
    import logging

    logging.getLogger("identity").info(
        "identity listening on http://%s:%s/ (issuer %s)",
        host,
        port,
        settings.issuer,
        extra={"event": {"listen": f"http://{host}:{port}/", "issuer": settings.issuer, "workers": workers}},
    )
    from identity.server import serve as run

    run(settings, host=host, port=port, workers=workers)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option(
    "--tenant-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Tenant file to apply (default: the example tenant shipped with identity).",
)
def demo(host: str, port: int, tenant_file: Path | None) -> None:
    """Start with the example tenant applied, and print how to call it."""
    from identity.resources import resource

    tenant_file = tenant_file or resource("examples", "tenant.toml")
    overrides = {} if "IDENTITY_ISSUER" in os.environ else {"IDENTITY_ISSUER": f"http://{host}:{port}/"}
    settings = _settings(**overrides)
    _ensure_schema(settings)
    data = _load(tenant_file)
    report = _with_session(
        settings, lambda session, hasher: apply_tenant(session, data, hasher, issuer=settings.issuer)
    )
    click.echo(_demo_instructions(settings, data, report, host, port))
    _run_server(settings, host, port)


def _demo_instructions(settings: Settings, data: dict[str, Any], report: ApplyReport, host: str, port: int) -> str:
    base = f"http://{host}:{port}"
    users = data.get("users", [])
    public = next((c for c in data.get("clients", []) if c.get("token_endpoint_auth_method") == "none"), None)
    lines = [
        "",
        f"identity demo tenant applied to {settings.database_url}",
        f"  issuer: {settings.issuer}   JWKS: {base}/.well-known/jwks.json",
        "",
    ]
    if public and users:
        user = users[0]
        lines += [
            "Get a token for a demo user (password grant, default directory):",
            f"  curl -s {base}/oauth/token \\",
            "    -d grant_type=password \\",
            f"    -d client_id={public['client_id']} \\",
            f"    -d username={user.get('email') or user.get('username')} \\",
            f"    -d password='{user['password']}' \\",
            "    -d scope='openid profile email'",
            "",
        ]
        if len(users) > 1:
            other = users[1]
            lines += [
                f"Or in the '{other['connection']}' directory (password-realm grant):",
                f"  curl -s {base}/oauth/token \\",
                "    -d grant_type=http://auth0.com/oauth/grant-type/password-realm \\",
                f"    -d client_id={public['client_id']} -d realm={other['connection']} \\",
                f"    -d username={other.get('email') or other.get('username')} -d password='{other['password']}'",
                "",
            ]
    lines += [f"Enroll an authenticator app in a browser: {base}/enroll", ""]
    lines += _management_instructions(settings, data, base)
    for client_id, secret in report.generated_secrets.items():
        lines.append(f"Generated secret for client {client_id} (shown once): {secret}")
    return "\n".join(lines)


def _apply(settings: Settings, data: dict[str, Any]) -> ApplyReport:
    return _with_session(settings, lambda session, hasher: apply_tenant(session, data, hasher, issuer=settings.issuer))


def _management_instructions(settings: Settings, data: dict[str, Any], base: str) -> list[str]:
    """How to get a Management API token with the example's machine-to-machine client, and use it."""
    from identity.tenant_file import ISSUER_KEYWORD

    audience = settings.issuer + "api/v2/"
    grants = [
        grant
        for grant in data.get("client_grants", [])
        if grant["audience"].replace(ISSUER_KEYWORD, settings.issuer) == audience
    ]
    clients = {client["client_id"]: client for client in data.get("clients", [])}
    for grant in grants:
        client = clients.get(grant["client_id"], {})
        if "client_credentials" in client.get("grant_types", []) and "client_secret" in client:
            return [
                "Get a Management API token (client_credentials) for the automation client:",
                f"  curl -s {base}/oauth/token \\",
                "    -d grant_type=client_credentials \\",
                f"    -d client_id={client['client_id']} \\",
                f"    -d client_secret='{client['client_secret']}' \\",
                f"    -d audience={audience}",
                "",
                "Then call the Management API with it (users, clients, logs, ...):",
                f'  curl -s {base}/api/v2/users -H "Authorization: Bearer ACCESS_TOKEN"',
                "",
            ]
    return []


@main.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
def db_upgrade() -> None:
    """Apply pending migrations."""
    settings = _settings()
    migrate(settings.database_url)
    click.echo("database is up to date", err=True)


@db.command("backup")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
def db_backup(file: Path) -> None:
    """Copy the embedded SQLite database to FILE while the server runs (SQLite's online backup API).

    Restore: stop the server, put the file in place of the database, start. The copy holds no encryption key: keep
    IDENTITY_ENCRYPTION_KEYS (or the key file) safe, and apart from the backups. PostgreSQL: use pg_dump.
    """
    from identity.store.transfer import CopyError, backup_sqlite

    settings = _settings()
    if not settings.is_sqlite:
        raise click.ClickException("db backup is for the embedded SQLite database; back PostgreSQL up with pg_dump")
    try:
        size = backup_sqlite(settings.database_url, file)
    except CopyError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(json.dumps({"backup": str(file), "bytes": size, "integrity_check": "ok"}, indent=2))


@db.command("copy")
@click.option("--to", "target", required=True, help="The target database URL (empty; migrated first).")
def db_copy(target: str) -> None:
    """Copy every row of IDENTITY_DATABASE_URL into the database at --to (e.g. SQLite to PostgreSQL).

    Stop the servers first (or accept that writes made during the copy are not in it), then point
    IDENTITY_DATABASE_URL at the target, with the same IDENTITY_ENCRYPTION_KEYS.
    """
    import asyncio

    from identity.settings import normalize_database_url
    from identity.store.transfer import CopyError, copy_database

    settings = _settings()
    _ensure_schema(settings)
    try:
        report = asyncio.run(copy_database(settings.database_url, normalize_database_url(target)))
    except CopyError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(json.dumps({"copied_rows": report.rows, "total": sum(report.rows.values())}, indent=2))


@main.group()
def tenant() -> None:
    """Tenant configuration."""


def _load(path: Path) -> dict[str, Any]:
    try:
        return load_tenant_file(path)
    except TenantFileError as exc:
        raise click.ClickException(str(exc)) from exc


@tenant.command("apply")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def tenant_apply(path: Path) -> None:
    """Create or update the tenant described by PATH (TOML)."""
    settings = _settings()
    _ensure_schema(settings)
    data = _load(path)
    try:
        report = _with_session(
            settings, lambda session, hasher: apply_tenant(session, data, hasher, issuer=settings.issuer)
        )
    except (TenantFileError, AccountError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(
        json.dumps(
            {
                "created": report.created,
                "updated": report.updated,
                "generated_client_secrets": report.generated_secrets,
                "users": report.users,
            },
            indent=2,
        )
    )


@tenant.command("export")
@click.option(
    "--output", "-o", type=click.Path(dir_okay=False, path_type=Path), default=None, help="Write to this file."
)
def tenant_export(output: Path | None) -> None:
    """Write the running tenant's configuration as a tenant file (TOML): no secrets, no users.

    ``identity tenant apply`` of the export recreates the configuration; confidential clients then keep their
    secret (same database) or get a new one printed once (another database).
    """
    import tomli_w

    from identity.tenant_admin import TenantAdmin

    settings = _settings()
    _ensure_schema(settings)
    data = _with_session(settings, lambda session, _: TenantAdmin(session, issuer=settings.issuer).export())
    text = (
        "# identity tenant export: the configuration of the running tenant, without client secrets or users.\n"
        "# Apply it with: identity tenant apply FILE\n\n" + tomli_w.dumps(data)
    )
    if output is None:
        click.echo(text, nl=False)
    else:
        output.write_text(text)
        click.echo(f"tenant written to {output}", err=True)


@main.group()
def users() -> None:
    """Users of the directories."""


@users.command("create")
@click.option("--connection", required=True, help="The directory (connection) name.")
@click.option("--email", default=None)
@click.option("--username", default=None)
def users_create(connection: str, email: str | None, username: str | None) -> None:
    """Create a user; the password is read from standard input (one line)."""
    from identity.accounts.users import UserService
    from identity.store.users import user_from_row

    password = sys.stdin.readline().rstrip("\r\n")
    settings = _settings()
    _ensure_schema(settings)

    async def create(session: AsyncSession, hasher: PasswordHasher) -> dict[str, Any]:
        row, connection_name = await UserService(session, hasher, _clock()).create(
            connection, password=password, email=email, username=username
        )
        user = user_from_row(row, connection_name)
        return {
            "user_id": user.user_id,
            "connection": user.connection,
            "email": user.email,
            "username": user.username,
            "email_verified": user.email_verified,
            "blocked": user.blocked,
            "created_at": row.created_at.isoformat(),
        }

    try:
        created = _with_session(settings, create)
    except AccountError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(json.dumps(created, indent=2))


def _factors(settings: Settings, work: Callable[[Any], Awaitable[T]]) -> T:
    from identity.accounts.factors import FactorService
    from identity.clock import SystemClock
    from identity.crypto import SecretBox

    box = SecretBox(settings.encryption_keys)
    try:
        return _with_session(settings, lambda session, _: work(FactorService(session, box, SystemClock())))
    except AccountError as exc:
        raise click.ClickException(str(exc)) from exc


def _update_user(user_id: str, changes: dict[str, Any]) -> None:
    from identity.accounts.users import UserService

    settings = _settings()

    async def update(session: AsyncSession, hasher: PasswordHasher) -> dict[str, Any]:
        row, connection = await UserService(session, hasher, _clock()).update(user_id, changes)
        return {"user_id": row.user_id, "connection": connection, "blocked": row.blocked, "email": row.email}

    try:
        click.echo(json.dumps(_with_session(settings, update)))
    except AccountError as exc:
        raise click.ClickException(str(exc)) from exc


@users.command("set-blocked")
@click.argument("user_id")
@click.argument("blocked", type=click.BOOL)
def users_set_blocked(user_id: str, blocked: bool) -> None:
    """Block (true) or unblock (false) USER_ID as an administrator; a block ends the user's sessions.

    Logins of a blocked user answer 401 'user is blocked'. (Brute-force blocks of an identifier are another thing.)
    """
    _update_user(user_id, {"blocked": blocked})


@users.command("set-password")
@click.argument("user_id")
def users_set_password(user_id: str) -> None:
    """Give USER_ID a new password, read from standard input (one line); the user's sessions end."""
    _update_user(user_id, {"password": sys.stdin.readline().rstrip("\r\n")})


@users.command("delete")
@click.argument("user_id")
def users_delete(user_id: str) -> None:
    """Delete USER_ID with its factors and sessions."""
    from identity.accounts.users import UserService
    from identity.management.operations import delete_user

    settings = _settings()
    try:
        _with_session(
            settings,
            lambda session, hasher: delete_user(UserService(session, hasher, _clock()), user_id, _record(session)),
        )
    except AccountError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(json.dumps({"user_id": user_id, "deleted": True}))


@users.command("mfa-reset")
@click.argument("user_id")
def users_mfa_reset(user_id: str) -> None:
    """Remove every second factor of USER_ID (lost device); the user enrolls again at the next login."""
    from identity.management.operations import reset_mfa

    settings = _settings()
    removed = _factors(settings, lambda factors: reset_mfa(factors, user_id, _record(factors.session)))
    click.echo(json.dumps({"user_id": user_id, "removed": removed}))


def _record(session: AsyncSession) -> Record:
    """Where the CLI's audit events go (`identity.management.operations`).

    The table, written at once on ``session``, and the ``identity.audit`` logger as JSON; ``details.source`` says
    the CLI acted.
    """
    from dataclasses import replace

    from identity.audit import AuditLog
    from identity.store import audit

    async def record(event: LogEvent) -> None:
        event = replace(event, details={**event.details, "source": "cli"})
        AuditLog(None).emit(event)  # the JSON line only; the row is written here, synchronously
        await audit.record(session, [event])

    return record


@users.command("recovery-code-regenerate")
@click.argument("user_id")
def users_recovery_code_regenerate(user_id: str) -> None:
    """Give USER_ID a new recovery code, printed once (the old one stops working)."""
    from identity.mfa.recovery import display

    settings = _settings()
    code = _factors(settings, lambda factors: factors.recovery.regenerate(user_id))
    click.echo(json.dumps({"user_id": user_id, "recovery_code": code, "display": display(code)}))


@main.group()
def rules() -> None:
    """Rules that run during the password exchange."""


@rules.command("list")
def rules_list() -> None:
    """The rule pipeline, in order, and whether each handler imports."""
    from identity.rules.pipeline import RuleLoadError, load_handler
    from identity.store.rules import all_rules

    settings = _settings()

    async def listing(session: AsyncSession, _: PasswordHasher) -> list[dict[str, Any]]:
        listed = []
        for row in await all_rules(session):
            try:
                load_handler(row.handler)
                status = "ok"
            except RuleLoadError as exc:
                status = str(exc)
            listed.append(
                {
                    "position": row.position,
                    "name": row.name,
                    "handler": row.handler,
                    "enabled": row.enabled,
                    "timeout_seconds": row.timeout_seconds,
                    "config": row.config,
                    "status": status,
                }
            )
        return listed

    click.echo(json.dumps(_with_session(settings, listing), indent=2))


@users.command("sessions")
@click.argument("user_id")
def users_sessions(user_id: str) -> None:
    """List USER_ID's active refresh-token families (one per signed-in app install)."""
    from identity.tokens.refresh import active_families

    settings = _settings()
    families = _with_session(settings, lambda session, _: active_families(session, user_id, now_utc(_clock())))
    click.echo(json.dumps(families, indent=2))


@users.command("revoke-sessions")
@click.argument("user_id")
def users_revoke_sessions(user_id: str) -> None:
    """Revoke every refresh token of USER_ID and end their enrollment-page sessions."""
    from identity.accounts.sessions import end_user_sessions
    from identity.store.users import by_user_id

    settings = _settings()

    async def revoke(session: AsyncSession, _: PasswordHasher) -> int:
        found = await by_user_id(session, user_id)
        if found is None or found[0].id is None:
            raise click.ClickException(f"no user {user_id!r}")
        revoked = await end_user_sessions(session, found[0].id, user_id, "admin", now_utc(_clock()))
        await session.commit()
        return revoked

    click.echo(json.dumps({"user_id": user_id, "revoked_tokens": _with_session(settings, revoke)}))


@main.group()
def keys() -> None:
    """Token signing keys: list, rotate, revoke; re-encrypt secrets at rest.

    Instances follow a change within IDENTITY_KEYS_REFRESH seconds (default 4). APIs keep a JWKS for its
    Cache-Control max-age (IDENTITY_JWKS_MAX_AGE, default 300 s).
    """


def _keys_work(settings: Settings, work: Callable[[AsyncSession, Any], Awaitable[T]]) -> T:
    from identity.crypto import SecretBox
    from identity.tokens.keys import ensure_signing_keys
    from identity.tokens.rotation import KeyError_

    _ensure_schema(settings)
    box = SecretBox(settings.encryption_keys)

    async def run(session: AsyncSession, _: PasswordHasher) -> T:
        await ensure_signing_keys(session, box)  # the keys a first start would make, so the CLI works before one
        return await work(session, box)

    try:
        return _with_session(settings, run)
    except KeyError_ as exc:
        raise click.ClickException(str(exc)) from exc


@keys.command("list")
def keys_list() -> None:
    """Every signing key: current, next, previous, retired, revoked, with its kid and age."""
    from identity.tokens.rotation import list_keys

    click.echo(json.dumps(_keys_work(_settings(), lambda session, _: list_keys(session)), indent=2))


@keys.command("rotate")
@click.option("--alg", "algs", multiple=True, type=click.Choice(["RS256", "ES256"]), help="Only this algorithm.")
@click.option("--force", is_flag=True, help="Do not wait until every cached JWKS has the next key.")
def keys_rotate(algs: tuple[str, ...], force: bool) -> None:
    """The next key starts signing; the current one stays published until its tokens expire; a new next key.

    Refused while the next key has been published for less than the JWKS max-age plus the instances' refresh
    delay, since an API holding an older JWKS would not know the new key yet.
    """
    from identity.tokens.keys import SUPPORTED_ALGS
    from identity.tokens.rotation import rotate

    settings = _settings()
    done = _keys_work(
        settings,
        lambda session, box: rotate(
            session,
            box,
            algs=algs or SUPPORTED_ALGS,
            id_token_lifetime=settings.id_token_lifetime,
            jwks_max_age=settings.ops.jwks_max_age,
            min_published_seconds=settings.ops.jwks_max_age + settings.ops.keys_refresh,
            force=force,
        ),
    )
    click.echo(
        json.dumps(
            [
                {
                    "alg": rotation.alg,
                    "current": rotation.new_active,
                    "previous": rotation.previous,
                    "previous_unpublished_at": rotation.previous_retires_at.isoformat(),
                    "instances_follow_within_seconds": settings.ops.keys_refresh,
                }
                for rotation in done
            ],
            indent=2,
        )
    )


# A kid is base64url, so it may begin with "-": such an argument is the kid, not an unknown option.
@keys.command("revoke", context_settings={"ignore_unknown_options": True})
@click.argument("kid")
def keys_revoke(kid: str) -> None:
    """Unpublish KID at once and refuse its tokens (a compromised key); a current key is replaced by the next.

    identity's own endpoints refuse its tokens at once; APIs once their cached JWKS expires (IDENTITY_JWKS_MAX_AGE).
    A KID that begins with "-" is taken as it is (``identity keys revoke -- KID`` works too).
    """
    from identity.tokens.rotation import revoke

    click.echo(json.dumps(_keys_work(_settings(), lambda session, box: revoke(session, box, kid)), indent=2))


@keys.command("reencrypt")
def keys_reencrypt() -> None:
    """Seal every secret at rest again under the first key of IDENTITY_ENCRYPTION_KEYS.

    Afterwards the other keys can be removed from IDENTITY_ENCRYPTION_KEYS (restart every instance first with the
    new key listed first, so that nothing new is sealed under an old key).
    """
    from identity.tokens.rotation import reencrypt

    report = _keys_work(_settings(), lambda session, box: reencrypt(session, box))
    click.echo(json.dumps({"sealed_under": report.key_id, "resealed": report.counts}, indent=2))


@main.command()
def purge() -> None:
    """Delete expired rows: mfa transactions, web sessions, pending enrollments, dead refresh-token families, ...

    The server does the same every IDENTITY_PURGE_INTERVAL seconds; with several instances on PostgreSQL one of
    them at a time (an advisory lock).
    """
    from identity.housekeeping import purge_once

    settings = _settings()
    _ensure_schema(settings)
    retention = getattr(settings, "log_retention_days", 30)
    counts = _with_session(
        settings, lambda session, _: purge_once(session, now=now_utc(_clock()), log_retention_days=retention)
    )
    click.echo(json.dumps({"purged": counts, "skipped": counts is None}, indent=2))


@users.command("blocks")
@click.argument("identifier")
@click.option("--connection", default=None, help="Only this directory (default: every directory).")
def users_blocks(identifier: str, connection: str | None) -> None:
    """List the brute-force blocks in force on IDENTIFIER (an email or username), as JSON."""
    from identity.accounts.attack import user_blocks

    settings = _settings()
    blocks = _with_session(
        settings, lambda session, _: user_blocks(session, identifier, now=_clock().now(), connection=connection)
    )
    click.echo(json.dumps({"blocked_for": blocks}, indent=2))


@users.command("unblock")
@click.argument("identifier")
@click.option("--connection", default=None, help="Only this directory (default: every directory).")
def users_unblock(identifier: str, connection: str | None) -> None:
    """Lift the brute-force blocks of IDENTIFIER (an email or username) from every address, and log it."""
    from identity.management.operations import unblock

    settings = _settings()
    removed = _with_session(
        settings, lambda session, _: unblock(session, [identifier], _record(session), connection=connection)
    )
    click.echo(json.dumps({"identifier": identifier, "connection": connection, "removed": removed}))


def _when(text: str | None) -> Any:
    """``2026-12-01T17:00:00Z``, a date, or a duration ago (``30s``, ``15m``, ``2h``, ``7d``)."""
    from datetime import UTC, datetime, timedelta

    if text is None:
        return None
    units = {"s": 1, "m": 60, "h": 3600, "d": 86_400}
    if text[-1:] in units and text[:-1].isdigit():
        return now_utc(_clock()) - timedelta(seconds=int(text[:-1]) * units[text[-1]])
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(f"{text!r}: use an ISO 8601 time or a duration like 15m, 2h, 7d") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@main.command()
@click.option("--user", "user_id", default=None, help="Only events of this user_id.")
@click.option("--type", "types", multiple=True, help="Only events of this type code (repeatable): f, fp, limit_wc...")
@click.option("--ip", default=None, help="Only events from this address.")
@click.option("--client", "client_id", default=None, help="Only events of this client_id.")
@click.option("--since", default=None, help="From this time (ISO 8601) or this long ago (15m, 2h, 7d).")
@click.option("--until", default=None, help="Before this time (ISO 8601) or this long ago.")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10_000), help="Newest events shown.")
@click.option("--follow", "-f", is_flag=True, help="Keep printing new events as they are stored (Ctrl-C stops).")
@click.option("--interval", default=1.0, show_default=True, type=float, help="Seconds between polls with --follow.")
def logs(
    user_id: str | None,
    types: tuple[str, ...],
    ip: str | None,
    client_id: str | None,
    since: str | None,
    until: str | None,
    limit: int,
    follow: bool,
    interval: float,
) -> None:
    """Print audit-log events as JSON lines, oldest first (Auth0's log-event fields and type codes)."""
    from identity.store import audit

    settings = _settings()
    criteria = audit.LogFilter(
        user_id=user_id, types=types, ip=ip, client_id=client_id, since=_when(since), until=_when(until)
    )

    async def run() -> None:
        engine = create_engine(settings.database_url)
        sessions = create_sessionmaker(engine)
        try:
            async with sessions() as session:
                events = list(reversed(await audit.search(session, criteria, per_page=limit)))
            last = events[-1].log_id if events else None
            for event in events:
                click.echo(json.dumps(event.to_dict(), ensure_ascii=False))
            while follow:
                await asyncio.sleep(interval)
                async with sessions() as session:
                    fresh = await audit.after(session, last, criteria, take=1000)
                for event in fresh:
                    click.echo(json.dumps(event.to_dict(), ensure_ascii=False))
                if fresh:
                    last = fresh[-1].log_id
                sys.stdout.flush()
        finally:
            await engine.dispose()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run())
