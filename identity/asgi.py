"""ASGI entry point for external servers: ``uvicorn identity.asgi:app`` (settings from the environment)."""

import importlib.util
import os

from identity.app import create_app
from identity.observability.logging import configure_logging
from identity.settings import Settings

_settings = Settings.from_env(os.environ)
configure_logging(_settings.ops.log_level, _settings.ops.log_format)  # each worker process logs as the parent does
app = create_app(_settings)
if importlib.util.find_spec("httptools") is not None:  # the limits of identity serve's protocol, in each worker
    from identity.http_limits import configure

    configure(_settings.http)
