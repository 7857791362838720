"""MFA administration added to the Management API: one authentication method, invalidate-remember-browser (a
no-op: no browser is remembered), the factors (their state in force only) and the policy (Auth0's list form of
``mfa_policy``)."""

from __future__ import annotations

from collections.abc import Iterator

import pyotp
import pytest
from litestar import Litestar
from litestar.testing import TestClient

from identity.accounts.factors import FactorService
from identity.clock import SystemClock
from identity.crypto import SecretBox
from identity.settings import Settings
from tests.api.management_support import login, open_management
from tests.conftest import run_db


@pytest.fixture
def api(settings: Settings) -> Iterator[TestClient[Litestar]]:
    with open_management(settings) as client:
        yield client


def alice(api: TestClient[Litestar]) -> str:
    (user,) = api.get("/api/v2/users", params={"q": 'email:"alice@example.test"', "connection": "customers"}).json()
    return str(user["user_id"])


def enroll_totp(settings: Settings, user_id: str) -> None:
    async def go(session: object, _: object) -> None:
        factors = FactorService(session, SecretBox(settings.encryption_keys), SystemClock())  # type: ignore[arg-type]
        enrollment = await factors.enrollment.associate(user_id, issuer="test")
        await factors.otp.confirm_enrollment(user_id, pyotp.TOTP(enrollment.secret).now())

    run_db(settings, go)


def test_one_authentication_method_by_its_id(api: TestClient[Litestar], settings: Settings) -> None:
    user_id = alice(api)
    enroll_totp(settings, user_id)
    listed = api.get(f"/api/v2/users/{user_id}/authentication-methods").json()
    assert sorted(method["type"] for method in listed) == ["recovery-code", "totp"]
    for method in listed:
        one = api.get(f"/api/v2/users/{user_id}/authentication-methods/{method['id']}")
        assert one.status_code == 200 and one.json() == method
    missing = api.get(f"/api/v2/users/{user_id}/authentication-methods/totp|dev_nothing")
    assert missing.status_code == 404 and missing.json()["errorCode"] == "inexistent_authentication_method"
    nobody = api.get("/api/v2/users/auth0|nobody/authentication-methods/totp|dev_nothing")
    assert nobody.status_code == 404 and nobody.json()["errorCode"] == "inexistent_user"


def test_invalidate_remember_browser_is_done_at_once(api: TestClient[Litestar], settings: Settings) -> None:
    user_id = alice(api)
    enroll_totp(settings, user_id)
    path = f"/api/v2/users/{user_id}/multifactor/actions/invalidate-remember-browser"
    assert api.post(path).status_code == 204
    # Nothing was remembered: the next login asks for the second factor, as before.
    assert login(api).json()["error"] == "mfa_required"
    unknown = api.post("/api/v2/users/auth0|nobody/multifactor/actions/invalidate-remember-browser")
    assert unknown.status_code == 404 and unknown.json()["errorCode"] == "inexistent_user"


def test_factors_accept_their_state_in_force_and_refuse_a_change(api: TestClient[Litestar]) -> None:
    factors = {factor["name"]: factor["enabled"] for factor in api.get("/api/v2/guardian/factors").json()}
    assert factors == {
        "otp": True,
        "webauthn-roaming": True,
        "webauthn-platform": True,
        "recovery-code": True,
        "sms": False,
        "push-notification": False,
        "email": False,
        "duo": False,
    }
    assert api.put("/api/v2/guardian/factors/otp", json={"enabled": True}).json() == {"enabled": True}
    assert api.put("/api/v2/guardian/factors/sms", json={"enabled": False}).json() == {"enabled": False}
    off = api.put("/api/v2/guardian/factors/otp", json={"enabled": False})
    assert off.status_code == 400 and off.json()["errorCode"] == "operation_not_supported", off.text
    assert "not supported" in off.json()["message"] and "mfa_policy" in off.json()["message"]
    on = api.put("/api/v2/guardian/factors/email", json={"enabled": True})  # no mail server in these tests
    assert on.status_code == 400 and "IDENTITY_SMTP_URL" in on.json()["message"], on.text
    on = api.put("/api/v2/guardian/factors/sms", json={"enabled": True})
    assert on.status_code == 400 and "no such factor" in on.json()["message"], on.text
    unknown = api.put("/api/v2/guardian/factors/carrier-pigeon", json={"enabled": True})
    assert unknown.status_code == 400 and unknown.json()["errorCode"] == "invalid_uri"
    assert api.put("/api/v2/guardian/factors/otp", json={"enabled": "yes"}).status_code == 400
    assert api.put("/api/v2/guardian/factors/otp", json={"enabled": True, "x": 1}).status_code == 400


def test_the_policy_maps_onto_mfa_policy_and_never_turns_mfa_off(api: TestClient[Litestar]) -> None:
    def mfa_policy() -> str:
        return str(api.get("/api/v2/tenants/settings").json()["mfa_policy"])

    assert (api.get("/api/v2/guardian/policies").json(), mfa_policy()) == ([], "if-enrolled")
    assert api.put("/api/v2/guardian/policies", json=["all-applications"]).json() == ["all-applications"]
    assert mfa_policy() == "always" and login(api).json()["error"] == "mfa_required"
    assert api.get("/api/v2/guardian/policies").json() == ["all-applications"]
    assert api.put("/api/v2/guardian/policies", json=[]).json() == []
    assert mfa_policy() == "if-enrolled" and login(api).status_code == 200
    # [] also describes "never", and leaves it: it only ever drops "always".
    assert api.patch("/api/v2/tenants/settings", json={"mfa_policy": "never"}).status_code == 200
    assert api.put("/api/v2/guardian/policies", json=[]).json() == [] and mfa_policy() == "never"
    adaptive = api.put("/api/v2/guardian/policies", json=["confidence-score"])
    assert adaptive.status_code == 400 and adaptive.json()["errorCode"] == "operation_not_supported"
    assert api.put("/api/v2/guardian/policies", json=["sometimes"]).status_code == 400
    assert api.put("/api/v2/guardian/policies", json={"policies": []}).status_code == 400
    assert mfa_policy() == "never"
