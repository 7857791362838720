"""WebAuthn through the in-process app: what a key's attestation proves (``hwk`` vs ``swk``), hostile responses,
Okta's passkey shape without ``auth_session``, and the settings' defaults.

The over-HTTP flows against the real server are in ``tests/e2e/test_webauthn_e2e.py`` and the browser test; this
module builds authenticator responses by hand with ``cryptography`` (a ``packed`` attestation with a certificate
chain is something soft-webauthn cannot make), and py_webauthn in the app verifies them.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from typing import Any

import jwt
import pytest
from litestar import Litestar
from litestar.testing import TestClient

from identity.app import create_app
from identity.settings import Argon2Params, EncryptionKeys, Settings
from tests.api.mfa_support import ALICE_EMAIL, DEFAULT_PASSWORDS, Db, empty_database, mfa_tenant
from tests.api.webauthn_support import (
    INVALID,
    MFA_WEBAUTHN,
    WEBAUTHN,
    HandKey,
    VendorCA,
    b64url,
    unb64url,
)
from tests.conftest import ISSUER, apply

VENDOR = VendorCA()


@pytest.fixture(scope="module")
def app_client(database_url: str, encryption_keys: EncryptionKeys) -> Iterator[TestClient[Litestar]]:
    settings = Settings(
        database_url=database_url,
        issuer=ISSUER,
        encryption_keys=encryption_keys,
        hash_workers=2,
        argon2=Argon2Params(time_cost=1, memory_kib=64, parallelism=1),
        webauthn_attestation_roots=(VENDOR.pem(),),
    )
    db = Db(settings.database_url)
    try:
        empty_database(db)
        tenant = mfa_tenant("always")
        for client in tenant["clients"]:
            if client["client_id"] == "public-app":
                client["grant_types"] = [*client["grant_types"], MFA_WEBAUTHN, WEBAUTHN]
        tenant["clients"].append(
            {
                "client_id": "keys-only-app",
                "name": "security keys only",
                "token_endpoint_auth_method": "none",
                "grant_types": ["password", MFA_WEBAUTHN],
                "connections": ["customers"],
            }
        )
        apply(settings, tenant)
        with TestClient(create_app(settings), base_url="https://identity.test") as test_client:
            yield test_client
    finally:
        db.close()


def mfa_token(client: TestClient[Litestar], username: str = ALICE_EMAIL, **params: Any) -> str:
    response = client.post(
        "/oauth/token",
        data={"grant_type": "password", "client_id": "public-app", "username": username,
              "password": DEFAULT_PASSWORDS["customers"], **params},
    )  # fmt: skip
    assert response.status_code == 403 and response.json()["error"] == "mfa_required", response.text
    token: str = response.json()["mfa_token"]
    return token


def grant(client: TestClient[Litestar], **body: Any) -> Any:
    return client.post("/oauth/token", json={"client_id": "public-app", **body})


def amr(response: Any) -> list[str]:
    assert response.status_code == 200, response.text
    claims = jwt.decode(response.json()["access_token"], options={"verify_signature": False})
    return list(claims["amr"])


def test_attested_hardware_key_is_hwk_and_self_attestation_is_swk(app_client: TestClient[Litestar]) -> None:
    token = mfa_token(app_client)
    options = app_client.post(
        "/mfa/associate", json={"authenticator_types": ["webauthn"]}, headers={"Authorization": f"Bearer {token}"}
    ).json()["publicKey"]
    hardware = HandKey(VENDOR)
    enrolled = grant(app_client, grant_type=MFA_WEBAUTHN, mfa_token=token, authn_response=hardware.create(options))
    assert amr(enrolled) == ["pwd", "mfa", "hwk"]  # the batch certificate chains to the configured root
    token = mfa_token(app_client)
    challenge = app_client.post(
        "/mfa/challenge", data={"client_id": "public-app", "mfa_token": token, "challenge_type": "webauthn"}
    ).json()["publicKey"]
    assert amr(grant(app_client, grant_type=MFA_WEBAUTHN, mfa_token=token,
                     authn_response=hardware.get(challenge))) == ["pwd", "mfa", "hwk"]  # fmt: skip
    # A second key, self-attested, added through the passkey API: it proves nothing about hardware.
    access = mfa_token(app_client, audience=ISSUER + "mfa/", scope="enroll")
    challenge = app_client.post(
        "/mfa/challenge", data={"client_id": "public-app", "mfa_token": access, "challenge_type": "webauthn"}
    ).json()["publicKey"]
    enroll_token = grant(app_client, grant_type=MFA_WEBAUTHN, mfa_token=access, authn_response=hardware.get(challenge))
    registration = app_client.post(
        "/passkey/register",
        json={"client_id": "public-app"},
        headers={"Authorization": f"Bearer {enroll_token.json()['access_token']}"},
    ).json()
    software = HandKey(None)
    created = software.create(registration["authn_params_public_key"], flags=0x45)
    signed_in = grant(
        app_client, grant_type=WEBAUTHN, auth_session=registration["auth_session"], authn_response=created
    )
    assert amr(signed_in) == ["swk", "mfa"]
    # Two factors in one (user verification): the multi-factor acr of step-up (RFC 9470), as after mfa-webauthn.
    passkey_claims = jwt.decode(signed_in.json()["access_token"], options={"verify_signature": False})
    assert passkey_claims["acr"] == "http://schemas.openid.net/pape/policies/2007/06/multi-factor"
    assert isinstance(passkey_claims["auth_time"], int)
    # Okta's shape for the passkey grant: no auth_session, the challenge names the ceremony.
    started = app_client.post(
        "/oauth/primary-authenticate", data={"client_id": "public-app", "challenge_hint": WEBAUTHN}
    ).json()
    assert started["challenge_type"] == WEBAUTHN
    user_handle = registration["authn_params_public_key"]["user"]["id"]
    form = software.get(started["publicKey"], user_handle=user_handle)["response"]
    okta = app_client.post("/oauth/token", data={"client_id": "public-app", "grant_type": WEBAUTHN, **form})
    assert amr(okta) == ["swk", "mfa"]


@pytest.mark.parametrize(
    "authn_response",
    [
        "not json",
        "[]",
        '{"response": "x"}',
        '{"response": {"clientDataJSON": 5}}',
        '{"response": {}}',
        json.dumps({"response": {"clientDataJSON": "%%%", "authenticatorData": "%%%", "signature": "%%%"}}),
        json.dumps({"response": {"clientDataJSON": b64url(b"{}"), "authenticatorData": "", "signature": ""}}),
        json.dumps({"response": {"clientDataJSON": b64url(b'{"challenge": 5}'), "authenticatorData": "AA"}}),
        json.dumps({"id": "%%", "response": {"clientDataJSON": b64url(b"[1]"), "attestationObject": "AAAA"}}),
        "[" * 5000 + "]" * 5000,
    ],
)
def test_hostile_responses_get_the_catalogue_json(app_client: TestClient[Litestar], authn_response: str) -> None:
    token = mfa_token(app_client)
    for grant_type, extra in ((MFA_WEBAUTHN, {"mfa_token": token}), (WEBAUTHN, {"auth_session": "x" * 43})):
        response = app_client.post(
            "/oauth/token",
            data={"client_id": "public-app", "grant_type": grant_type, "authn_response": authn_response, **extra},
        )
        assert response.status_code in (400, 403), response.text
        assert response.json()["error"] in ("invalid_request", "invalid_grant"), response.text


def test_a_deeply_nested_json_object_is_refused(app_client: TestClient[Litestar]) -> None:
    for depth in (900, 3000):
        nested = '{"a":' * depth + "{}" + "}" * depth
        body = f'{{"client_id":"public-app","grant_type":"{WEBAUTHN}","auth_session":"x","authn_response":{nested}}}'
        response = app_client.post("/oauth/token", content=body, headers={"content-type": "application/json"})
        assert response.status_code in (400, 403) and response.json()["error"] in ("invalid_request", "invalid_grant")


def test_settings_default_to_the_issuer_and_localhost_for_loopback() -> None:
    assert Settings(issuer="http://127.0.0.1:8000/").rp_id == "localhost"
    assert Settings(issuer="http://127.0.0.1:8000/").origins == ("http://localhost:8000",)
    assert Settings(issuer="http://[::1]:9000/").origins == ("http://localhost:9000",)
    assert Settings(issuer="https://login.example.com/").rp_id == "login.example.com"
    assert Settings(issuer="https://login.example.com/").origins == ("https://login.example.com",)
    configured = Settings.from_env(
        {"IDENTITY_WEBAUTHN_RP_ID": "example.com",
         "IDENTITY_WEBAUTHN_ORIGINS": "https://example.com, https://app.example.com",
         "IDENTITY_ENCRYPTION_KEYS": EncryptionKeys.generate().dump().strip()}
    )  # fmt: skip
    assert configured.rp_id == "example.com"
    assert configured.origins == ("https://example.com", "https://app.example.com")
    with pytest.raises(ValueError, match="IDENTITY_WEBAUTHN_ORIGINS"):
        Settings(webauthn_origins=("login.example.com",))


def test_expired_ceremonies_are_purged(app_client: TestClient[Litestar], database_url: str) -> None:
    import asyncio

    from sqlalchemy.ext.asyncio import AsyncSession

    from identity.store.db import create_engine
    from identity.store.mfa import purge_webauthn_challenges

    assert app_client.post("/passkey/challenge", data={"client_id": "public-app"}).status_code == 200

    async def purge(before: dt.datetime) -> int:
        engine = create_engine(Settings(database_url=database_url).database_url)
        try:
            async with AsyncSession(engine) as session:
                removed = await purge_webauthn_challenges(session, before)
                await session.commit()
                return removed
        finally:
            await engine.dispose()

    now = dt.datetime.now(dt.UTC)
    assert asyncio.run(purge(now - dt.timedelta(hours=1))) == 0  # nothing expired an hour ago
    assert asyncio.run(purge(now + dt.timedelta(hours=1))) >= 1  # the challenge just made expires within minutes


def test_a_client_with_only_the_webauthn_mfa_grant_may_ask_for_challenges(app_client: TestClient[Litestar]) -> None:
    response = app_client.post(
        "/oauth/token",
        data={"grant_type": "password", "client_id": "keys-only-app", "username": ALICE_EMAIL,
              "password": DEFAULT_PASSWORDS["customers"]},
    )  # fmt: skip
    assert response.json()["error"] == "mfa_required", response.text
    token = response.json()["mfa_token"]
    challenge = app_client.post(
        "/mfa/challenge", data={"client_id": "keys-only-app", "mfa_token": token, "challenge_type": "webauthn"}
    )
    assert challenge.status_code == 200, challenge.text
    assert challenge.json()["challenge_type"] == "webauthn"


def test_a_bad_signature_is_refused_and_failures_empty_the_attempt_bucket(app_client: TestClient[Litestar]) -> None:
    """Alice (employees) enrolls a key; forged assertions cost attempts until the bucket of 10 is empty (last test:
    the bucket stays empty)."""
    login = {"grant_type": "http://auth0.com/oauth/grant-type/password-realm", "client_id": "public-app",
             "realm": "employees", "username": ALICE_EMAIL, "password": DEFAULT_PASSWORDS["employees"]}  # fmt: skip
    token = app_client.post("/oauth/token", data=login).json()["mfa_token"]
    creation = app_client.post(
        "/mfa/associate", json={"authenticator_types": ["webauthn"]}, headers={"Authorization": f"Bearer {token}"}
    ).json()["publicKey"]
    key = HandKey(None)
    assert (
        grant(app_client, grant_type=MFA_WEBAUTHN, mfa_token=token, authn_response=key.create(creation)).status_code
        == 200
    )
    token = app_client.post("/oauth/token", data=login).json()["mfa_token"]
    request = app_client.post(
        "/mfa/challenge", data={"client_id": "public-app", "mfa_token": token, "challenge_type": "webauthn"}
    ).json()["publicKey"]
    for _ in range(10):
        forged = key.get(request)
        signature = bytearray(unb64url(forged["response"]["signature"]))
        signature[-1] ^= 0x01  # one bit of the DER signature
        forged["response"]["signature"] = b64url(bytes(signature))
        refused = grant(app_client, grant_type=MFA_WEBAUTHN, mfa_token=token, authn_response=forged)
        assert (refused.status_code, refused.json()) == (403, INVALID), refused.text
    emptied = grant(app_client, grant_type=MFA_WEBAUTHN, mfa_token=token, authn_response=key.get(request))
    assert emptied.status_code == 429 and emptied.json()["error"] == "too_many_attempts"
