"""ASGI entry point for external servers: ``uvicorn identity.asgi:app`` (settings from the environment)."""

import os

from identity.app import create_app
from identity.observability.logging import configure_logging
from identity.settings import Settings

_settings = Settings.from_env(os.environ)
configure_logging(_settings.ops.log_level, _settings.ops.log_format)  # each worker process logs as the parent does
app = create_app(_settings)
