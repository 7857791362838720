"""``create_app(settings)``: the one place where the service is wired together."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from litestar import Litestar, MediaType, Response, get
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.exceptions import HTTPException
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.response import Template
from litestar.static_files import create_static_files_router
from litestar.template.config import TemplateConfig
from sqlalchemy.ext.asyncio import AsyncSession

from identity import __version__
from identity.accounts.passwords import PasswordHasher
from identity.audit import AuditLog
from identity.clock import Clock, SystemClock, now_utc
from identity.crypto import SecretBox
from identity.mail import Mailer
from identity.management import management_router
from identity.management.errors import management_paths
from identity.oauth2.errors import OAuthError
from identity.observability.metrics import Metrics, metrics_handler, start_metrics_server
from identity.observability.requests import RequestObserver, trusted_client_ip
from identity.resources import resource
from identity.rules.loader import load_rules
from identity.settings import Settings
from identity.store.config import ConfigCache, TenantConfig
from identity.store.db import create_engine, create_sessionmaker, script_heads, script_revisions, write_gate
from identity.tokens.keys import ensure_signing_keys
from identity.web import openapi
from identity.web.challenge import authorize_challenge
from identity.web.deps import Services, provide_session
from identity.web.enroll import enroll_router
from identity.web.enroll.sessions import STORE_NAME, SqlSessionStore
from identity.web.errors import handle_http_exception, handle_oauth_error, handle_unexpected, response_headers
from identity.web.health import readyz, watch_for_shutdown
from identity.web.mfa import associate, challenge, list_authenticators, remove_authenticator
from identity.web.oauth import revoke, token
from identity.web.userinfo import userinfo
from identity.web.webauthn import passkey_challenge, passkey_register, primary_authenticate
from identity.web.wellknown import jwks, oauth_authorization_server, openid_configuration

__all__ = ["create_app"]

logger = logging.getLogger("identity")


@get("/", include_in_schema=False)
async def index(services: NamedDependency[Services]) -> Template:
    """A small page that says what this service is and where its endpoints are."""
    return Template("index.html", context={"issuer": services.settings.issuer})


@get("/healthz", operation_class=openapi.HEALTH_OPERATION, tags=["operations"])
async def healthz(services: NamedDependency[Services]) -> Response[dict[str, str]]:
    """Liveness and database reachability."""
    from sqlalchemy import text

    async with services.engine.connect() as connection:
        await connection.execute(text("SELECT 1"))
    return Response({"status": "ok"}, media_type=MediaType.JSON, headers={"Cache-Control": "no-store"})


def _security_headers(settings: Settings) -> Callable[[Response[object]], Awaitable[Response[object]]]:
    headers = response_headers(settings)

    async def add(response: Response[object]) -> Response[object]:
        for name, value in headers.items():
            response.headers.setdefault(name, value)
        return response

    return add


_STOP_SECONDS = 10.0
"""How long shutdown waits for a background task to finish its current piece of work."""


async def _every(seconds: float, work: Callable[[], Awaitable[object]], name: str, stopping: asyncio.Event) -> None:
    """Run ``work`` every ``seconds`` until ``stopping`` is set (or the task is cancelled); failures are retried.

    ``stopping`` is checked at every tick because a cancellation can be lost inside ``work``: on Python 3.11,
    ``asyncio.wait_for`` swallows a cancel that arrives as its inner awaitable completes, and the task then slept
    on, so a shutdown that only cancelled it waited forever (seen in the test suite).
    """
    while not stopping.is_set():
        await asyncio.sleep(seconds)
        if stopping.is_set():
            return
        try:
            await work()
        except Exception:
            logger.exception("%s failed; retrying in %s s", name, seconds)


async def _stop(background: list[asyncio.Task[None]], stopping: asyncio.Event) -> None:
    """Stop the background tasks: ask, then cancel (again, should a cancel be lost) for a bounded time."""
    stopping.set()
    pending = set(background)
    for _ in range(int(_STOP_SECONDS)):
        if not pending:
            return
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=1.0)
    for task in pending:
        logger.warning("background task %r did not stop within %s s", task.get_name(), _STOP_SECONDS)


def create_app(settings: Settings, *, clock: Clock | None = None) -> Litestar:
    """Build the ASGI application for ``settings``. The database must be migrated (``identity db upgrade``)."""
    engine = create_engine(settings.database_url, sqlite_synchronous=settings.sqlite_synchronous)
    sessions = create_sessionmaker(engine)
    services = Services(
        settings=settings,
        engine=engine,
        sessions=sessions,
        hasher=PasswordHasher(
            settings.argon2, workers=settings.hash_workers, queue=settings.hash_queue, wait_ms=settings.hash_wait_ms
        ),
        box=SecretBox(settings.encryption_keys),
        clock=clock or SystemClock(),
        audit=AuditLog(sessions),
        gate=write_gate(engine),
        mailer=Mailer(settings.smtp) if settings.smtp is not None else None,
    )
    metrics = Metrics() if settings.ops.metrics else None
    if metrics is not None:
        metrics.watch(lambda: services.hasher.pending, lambda: engine.pool)
        services.hasher.on_wait = metrics.hash_wait.observe

    async def reload(session: AsyncSession, _: TenantConfig) -> None:
        # With each new configuration, the rules (the signing keys follow their own table: refresh_keys).
        await services.reload_rules(session)

    trust = settings.config_cache_seconds
    config = services.config = ConfigCache(
        services.sessions, on_reload=reload, check_interval=trust, max_age=60.0 if trust > 0 else 0.0
    )

    @asynccontextmanager
    async def lifespan(_: Litestar) -> AsyncIterator[None]:
        async with services.sessions() as session:
            await ensure_signing_keys(session, services.box)
            services.rules = await load_rules(session)
        await services.refresh_keys()
        await config.get()
        services.migration_heads = frozenset(await asyncio.to_thread(script_heads))
        services.known_revisions = frozenset(await asyncio.to_thread(script_revisions))
        watch_for_shutdown(services, delay_seconds=settings.ops.shutdown_delay)
        stop_metrics = (
            start_metrics_server(metrics, settings.ops.metrics_host, settings.ops.metrics_port)
            if metrics is not None and settings.ops.metrics_port is not None
            else lambda: None
        )
        stopping = asyncio.Event()
        background = [
            asyncio.create_task(
                _every(settings.ops.keys_refresh, services.refresh_keys, "key refresh", stopping), name="key refresh"
            )
        ]
        if settings.ops.purge_interval > 0:
            background.append(
                asyncio.create_task(_every(settings.ops.purge_interval, purge_now, "purge", stopping), name="purge")
            )
        await services.audit.start()
        try:
            yield
        finally:
            services.draining = True
            await _stop(background, stopping)
            stop_metrics()
            if metrics is not None:
                metrics.process_exited()
            await services.audit.close()
            services.hasher.close()
            await engine.dispose()

    async def purge_now() -> None:
        from identity.housekeeping import purge_once

        async with services.sessions() as session:
            retention = getattr(settings, "log_retention_days", 30)
            await purge_once(session, now=now_utc(services.clock), log_retention_days=retention)

    async def provide_services() -> Services:
        return services

    public_metrics = [metrics_handler(metrics)] if metrics is not None and settings.ops.metrics_port is None else []
    app = Litestar(
        route_handlers=[
            *public_metrics,
            index,
            healthz,
            readyz,
            token,
            authorize_challenge,
            revoke,
            userinfo,
            jwks,
            openid_configuration,
            oauth_authorization_server,
            list_authenticators,
            associate,
            challenge,
            remove_authenticator,
            primary_authenticate,
            passkey_challenge,
            passkey_register,
            enroll_router(settings),
            management_router(),
            create_static_files_router(path="/static", directories=[resource("static")], include_in_schema=False),
        ],
        stores={STORE_NAME: SqlSessionStore(services.sessions, services.clock)},
        dependencies={
            "services": Provide(provide_services, use_cache=True),
            "db": Provide(provide_session),
        },
        exception_handlers={
            OAuthError: handle_oauth_error,
            # Under /api/v2 (an unknown route or method there too), Auth0's error shape.
            HTTPException: management_paths(handle_http_exception),
            Exception: management_paths(handle_unexpected),
        },
        after_request=_security_headers(settings),
        template_config=TemplateConfig(directory=resource("templates"), engine=JinjaTemplateEngine),
        lifespan=[lifespan],
        state=State({"services": services}),
        openapi_config=openapi.openapi_config(__version__),
        logging_config=None,
    )
    # Outside the exception handlers, so that every answer (404s and 500s included) is logged and counted.
    app.asgi_handler = RequestObserver(app.asgi_handler, metrics=metrics, client_ip=trusted_client_ip(settings.proxies))
    return app
