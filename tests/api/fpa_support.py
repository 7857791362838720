"""Helpers for the in-process tests of the first-party apps endpoint: its tenant, app and a small driver.

The tenant is the MFA tenant (`tests.api.mfa_support.mfa_tenant`) whose clients also list ``authorization_code`` and
``refresh_token`` (all but ``realm-only-app``), plus ``other-app``, a second public client of the endpoint.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
from litestar.testing import TestClient

from identity.settings import EncryptionKeys, SmtpSettings
from tests.api.mfa_support import ALICE_EMAIL, DEFAULT_PASSWORDS, SECRETS, Mfa, mfa_tenant, open_mfa, reset

CHALLENGE_PATH = "/oauth/authorize-challenge"
AUTHORIZATION_CODE = "authorization_code"
MULTI_FACTOR = "http://schemas.openid.net/pape/policies/2007/06/multi-factor"
OTHER_APP = "other-app"


def pkce() -> tuple[str, str]:
    """A fresh (verifier, S256 challenge) pair, as an app makes one per authorization request."""
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def fpa_tenant() -> dict[str, Any]:
    data = mfa_tenant()
    for client in data["clients"]:
        if client["client_id"] != "realm-only-app":
            client["grant_types"] = [*client["grant_types"], AUTHORIZATION_CODE, "refresh_token"]
    data["clients"].append(
        {
            "client_id": OTHER_APP,
            "name": "Other first-party app",
            "token_endpoint_auth_method": "none",
            "grant_types": [AUTHORIZATION_CODE],
            "connections": ["customers"],
        }
    )
    return data


@dataclass
class Fpa:
    """Drives the challenge endpoint and the authorization_code grant; `mfa` does the rest (enrollment, codes)."""

    mfa: Mfa

    @property
    def client(self) -> TestClient[Any]:
        return self.mfa.client

    def post(self, client_id: str | None = "public-app", *, json: bool = False, **params: Any) -> httpx.Response:
        """POST the challenge endpoint as ``client_id`` (its secret as the token endpoint wants it)."""
        data = {name: value for name, value in params.items() if value is not None}
        auth = None
        if client_id is not None:
            data["client_id"] = client_id
            secret = SECRETS.get(client_id)
            if client_id == "basic-app":
                data.pop("client_id")
                auth = (client_id, secret or "")
            elif secret is not None:
                data.setdefault("client_secret", secret)
        if json:
            return self.client.post(CHALLENGE_PATH, json=data, auth=auth)
        return self.client.post(CHALLENGE_PATH, data=data, auth=auth)

    def start(
        self,
        challenge: str,
        *,
        username: str = ALICE_EMAIL,
        password: str | None = None,
        client_id: str = "public-app",
        **params: Any,
    ) -> httpx.Response:
        """An initial request: response_type=code, PKCE, username and password."""
        return self.post(
            client_id,
            response_type="code",
            code_challenge=challenge,
            code_challenge_method="S256",
            username=username,
            password=password if password is not None else DEFAULT_PASSWORDS["customers"],
            **params,
        )

    def redeem(
        self, code: str, verifier: str | None, *, client_id: str = "public-app", **params: Any
    ) -> httpx.Response:
        """The token request for a code."""
        return self.mfa.token(client_id, grant_type=AUTHORIZATION_CODE, code=code, code_verifier=verifier, **params)

    def code(self, response: httpx.Response) -> tuple[str, str]:
        """(authorization_code, auth_session) of a 200 answer."""
        assert response.status_code == 200, response.text
        body = response.json()
        assert set(body) <= {"authorization_code", "auth_session", "recovery_code"}, body
        assert response.headers["cache-control"] == "no-store"
        return body["authorization_code"], body["auth_session"]

    def asked(self, response: httpx.Response) -> dict[str, Any]:
        """The body of a 401 insufficient_authorization."""
        assert response.status_code == 401, response.text
        body: dict[str, Any] = response.json()
        assert body["error"] == "insufficient_authorization", body
        assert response.headers["cache-control"] == "no-store"
        return body

    def login_with_otp(self, secret: str, **params: Any) -> tuple[str, str, str]:
        """Password, then the app's code: (authorization_code, auth_session, verifier)."""
        verifier, challenge = pkce()
        session = self.asked(self.start(challenge, **params))["auth_session"]
        code, again = self.code(self.post(auth_session=session, otp=self.mfa.code(secret)))
        assert again == session
        self.mfa.next_step()
        return code, session, verifier


@contextmanager
def open_fpa(database_url: str, encryption_keys: EncryptionKeys, *, smtp: SmtpSettings | None = None) -> Iterator[Fpa]:
    """For one test module: an emptied database with `fpa_tenant`, the app on a frozen clock, and the driver.

    ``smtp``: the mail server of emailed codes (`tests.smtp_support.SmtpSink.settings`); none by default.
    """
    with open_mfa(database_url, encryption_keys, fpa_tenant(), smtp=smtp) as mfa:
        yield Fpa(mfa)


def reset_fpa(fpa: Fpa) -> Fpa:
    """As `reset`, with no refresh token or attack-protection counter left from an earlier test, Alice unblocked."""
    reset(fpa.mfa)
    fpa.mfa.db.sql(
        "DELETE FROM refresh_token",
        "DELETE FROM attack_counter",
        "DELETE FROM webauthn_challenge",
        "UPDATE users SET blocked = false WHERE email = 'alice@example.test'",
    )
    return fpa
