"""ASGI entry point for external servers: ``uvicorn identity.asgi:app`` (settings from the environment)."""

import os

from identity.app import create_app
from identity.settings import Settings

app = create_app(Settings.from_env(os.environ))
