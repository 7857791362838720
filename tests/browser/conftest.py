"""Browser fixtures: Playwright driving Debian's Chromium against a real ``identity serve`` (tests/e2e fixtures).

The tests need ``/usr/bin/chromium`` (Debian ``chromium``), ``zbarimg`` (``zbar-tools``), ``oathtool`` and the
``playwright`` package. Playwright's own browser download is never used. Without these tools the tests skip with the
reason, except when ``CI`` is set: there a missing tool fails the run.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from identity.oauth2.grants import MFA_OTP, MFA_RECOVERY_CODE, MFA_WEBAUTHN, PASSWORD, PASSWORD_REALM
from tests.e2e.conftest import (  # noqa: F401  (fixtures and the failure-report hook, reused as they are)
    TENANT_TOML,
    applied_tenant,
    e2e_env,
    pytest_runtest_makereport,
    server,
)

CHROMIUM = Path("/usr/bin/chromium")
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# Each run writes its screenshots to artifacts/screenshots (ignored by git; a CI artifact). To refresh the ones
# kept in the repository: IDENTITY_SCREENSHOTS_DIR=docs/screenshots ./scripts/test tests/browser
SCREENSHOTS = Path(
    os.environ.get("IDENTITY_SCREENSHOTS_DIR") or Path(__file__).resolve().parents[2] / "artifacts" / "screenshots"
)
MFA_CLIENT = "browser-mfa"
"""A public client of the e2e tenant that may also use the MFA grants."""


def missing_tools() -> list[str]:
    """What the browser tests need and this machine lacks."""
    missing = []
    if not CHROMIUM.exists():
        missing.append(f"{CHROMIUM} (apt-get install chromium)")
    for tool, package in (("zbarimg", "zbar-tools"), ("oathtool", "oathtool")):
        if shutil.which(tool) is None:
            missing.append(f"{tool} (apt-get install {package})")
    if importlib.util.find_spec("playwright") is None:
        missing.append("the playwright package (pip install -e '.[test]')")
    return missing


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """A headless Chromium; the module skips (fails under CI) when a tool is missing."""
    if missing := missing_tools():
        reason = "browser tests need " + ", ".join(missing)
        if os.environ.get("CI"):
            pytest.fail(reason + " (CI is set, so this fails instead of skipping)")
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=LAUNCH_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture(scope="package")  # the scope of the e2e fixtures that use it
def tenant_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The e2e tenant plus `MFA_CLIENT` (overrides the e2e fixture of the same name)."""
    grants = json.dumps([PASSWORD, PASSWORD_REALM, MFA_OTP, MFA_RECOVERY_CODE, MFA_WEBAUTHN])
    path = tmp_path_factory.mktemp("tenant") / "tenant.toml"
    path.write_text(
        TENANT_TOML
        + f"""
[[clients]]
client_id = "{MFA_CLIENT}"
name = "Browser test client"
token_endpoint_auth_method = "none"
grant_types = {grants}
connections = ["customers", "employees"]
"""
    )
    return path


@pytest.fixture(scope="module")
def screenshots() -> Path:
    """Where the screenshots of each step go (see SCREENSHOTS)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS
