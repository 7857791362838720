"""Module-scoped fixtures for read-only API tests: one app and one standard tenant per test module.

Building the app and applying the standard tenant costs about half a second (Argon2 hashes, key loading); tests that
only read the tenant share them per module instead. A module that uses these fixtures must not also use the
function-scoped ``settings``/``tenant``/``client`` fixtures of ``tests/conftest.py``: those empty the database.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import TestClient

from identity.app import create_app
from identity.settings import EncryptionKeys, Settings
from tests.api.support import empty_database
from tests.conftest import ISSUER, apply, standard_tenant


@pytest.fixture(scope="module")
def shared_settings(database_url: str, encryption_keys: EncryptionKeys) -> Settings:
    settings = Settings(
        database_url=database_url,
        issuer=ISSUER,
        encryption_keys=encryption_keys,
        hash_workers=2,
    )
    empty_database(settings)
    return settings


@pytest.fixture(scope="module")
def shared_tenant(shared_settings: Settings) -> Any:
    """The standard tenant, applied once for the module (the apply report, with the users' ids)."""
    return apply(shared_settings, standard_tenant())


@pytest.fixture(scope="module")
def shared_client(shared_settings: Settings, shared_tenant: Any) -> Iterator[TestClient[Litestar]]:
    with TestClient(create_app(shared_settings), base_url="https://identity.test") as test_client:
        yield test_client
