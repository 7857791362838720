"""Helpers for the first-party apps end-to-end tests: this module's tenant, its server, and an app's side of the
draft (PKCE pairs, the challenge endpoint, the code's redemption).

The user's authenticator app is Debian's ``oathtool`` (`tests.e2e.mfa_support.Phone`), their security key
soft-webauthn (`tests.e2e.webauthn_support.SoftKey`). The tenant only adds its own directory, API, clients and users
to the shared e2e database; its one tenant-wide setting (suspicious-IP throttling off, as the e2e tenant has it)
is what every e2e module needs anyway, since all their requests come from 127.0.0.1.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.e2e.conftest import IdentityServer, apply_tenant_file, serve_spec, start_servers, stop_and_check
from tests.e2e.mfa_support import Phone, age_mfa_token
from tests.e2e.webauthn_support import SoftKey

PASSWORD_REALM = "http://auth0.com/oauth/grant-type/password-realm"
MFA_OTP = "http://auth0.com/oauth/grant-type/mfa-otp"
MFA_WEBAUTHN = "urn:okta:params:oauth:grant-type:mfa-webauthn"
AUTHORIZATION_CODE = "authorization_code"
MULTI_FACTOR = "http://schemas.openid.net/pape/policies/2007/06/multi-factor"
CHALLENGE_PATH = "/oauth/authorize-challenge"

API = "https://api.fpa.e2e.test/"
CONNECTION = "fpa-customers"
PUBLIC = "fpa-public"
POST = "fpa-post"
POST_SECRET = "fpa-post-secret-0123456789abcdefghijklmno"
OTHER = "fpa-other"
LEGACY = "fpa-password-only"
SECRETS: dict[str, str | None] = {PUBLIC: None, POST: POST_SECRET, OTHER: None, LEGACY: None}
PEOPLE = {
    "ana": "ana's password (first-party)",  # password → OTP, the step-up
    "kai": "kai's password (first-party)",  # password → WebAuthn
    "lou": "lou's password (first-party)",  # no second factor; the refusals; the code race
    "rae": "rae's password (first-party)",  # the OTP race
    "max": "max's password (first-party)",  # blocked
    "zoe": "zoe's password (first-party)",  # brute force
}


def email(name: str) -> str:
    return f"{name}@fpa.e2e.test"


def pkce() -> tuple[str, str]:
    """(code_verifier, S256 code_challenge), as an app makes one per authorization request (RFC 7636 §4.1-4.2)."""
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def tenant_toml() -> str:
    sign_in = ["password", PASSWORD_REALM, MFA_OTP, MFA_WEBAUTHN, AUTHORIZATION_CODE, "refresh_token"]
    text = f"""\
[tenant.suspicious_ip_throttling]
enabled = false

[[connections]]
name = "{CONNECTION}"

[[apis]]
identifier = "{API}"
name = "First-party e2e API"
scopes = ["read:things", "write:things"]
allow_offline_access = true

[[clients]]
client_id = "{PUBLIC}"
name = "First-party e2e app"
token_endpoint_auth_method = "none"
grant_types = {json.dumps(sign_in)}
connections = ["{CONNECTION}"]

[[clients]]
client_id = "{POST}"
name = "First-party e2e confidential app"
client_secret = "{POST_SECRET}"
token_endpoint_auth_method = "client_secret_post"
grant_types = {json.dumps(sign_in)}
connections = ["{CONNECTION}"]

[[clients]]
client_id = "{OTHER}"
name = "First-party e2e second app"
token_endpoint_auth_method = "none"
grant_types = ["{AUTHORIZATION_CODE}"]
connections = ["{CONNECTION}"]

[[clients]]
client_id = "{LEGACY}"
name = "First-party e2e password-only app"
token_endpoint_auth_method = "none"
grant_types = ["{PASSWORD_REALM}"]
connections = ["{CONNECTION}"]
"""
    for name, password in PEOPLE.items():
        blocked = "\nblocked = true" if name == "max" else ""
        text += f'\n[[users]]\nconnection = "{CONNECTION}"\nemail = "{email(name)}"\npassword = "{password}"{blocked}\n'
    return text


@dataclass
class App:
    """A first-party app talking to one server."""

    server: IdentityServer
    database_url: str
    user_ids: dict[str, str]

    @property
    def origin(self) -> str:
        """What a WebAuthn client at this server puts in clientDataJSON (localhost: the RP id of a loopback issuer)."""
        return f"http://localhost:{self.server.port}"

    @property
    def challenge_url(self) -> str:
        return self.server.base_url + CHALLENGE_PATH

    def form(self, client_id: str | None, **params: Any) -> dict[str, str]:
        body = {name: str(value) for name, value in params.items() if value is not None}
        if client_id is not None:
            body["client_id"] = client_id
            if (secret := SECRETS.get(client_id)) is not None:
                body.setdefault("client_secret", secret)
        return body

    def challenge(self, client_id: str | None = PUBLIC, **params: Any) -> httpx.Response:
        return httpx.post(self.challenge_url, data=self.form(client_id, **params), timeout=30)

    def challenge_json(self, body: Mapping[str, Any]) -> httpx.Response:
        return httpx.post(self.challenge_url, json=dict(body), timeout=30)

    def start(self, name: str, challenge: str, client_id: str = PUBLIC, **params: Any) -> httpx.Response:
        """The initial request: the user's email and password, response_type=code, PKCE (S256)."""
        request = {
            "response_type": "code",
            "code_challenge": challenge,
            "code_challenge_method": "S256",
            "realm": CONNECTION,
            "username": email(name),
            "password": PEOPLE[name],
            "audience": API,
            **params,
        }
        return self.challenge(client_id, **request)

    def token(self, client_id: str = PUBLIC, **params: Any) -> httpx.Response:
        return httpx.post(self.server.token_url, data=self.form(client_id, **params), timeout=30)

    def redeem(self, code: str, verifier: str | None, client_id: str = PUBLIC) -> httpx.Response:
        return self.token(client_id, grant_type=AUTHORIZATION_CODE, code=code, code_verifier=verifier)

    def mfa_token(self, name: str) -> str:
        """The Auth0 dialect's password step, asking for the MFA API (which always wants a second factor)."""
        response = self.token(
            grant_type=PASSWORD_REALM,
            realm=CONNECTION,
            username=email(name),
            password=PEOPLE[name],
            audience=self.server.issuer + "mfa/",
            scope="enroll",
        )
        assert response.status_code == 403 and response.json()["error"] == "mfa_required", response.text
        token: str = response.json()["mfa_token"]
        return token

    def enroll_otp(self, name: str) -> Phone:
        """An authenticator app enrolled through the MFA API (the Auth0 dialect), confirmed with oathtool's code."""
        token = self.mfa_token(name)
        associated = httpx.post(
            self.server.base_url + "/mfa/associate",
            json={"authenticator_types": ["otp"]},
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        )
        assert associated.status_code == 200, associated.text
        phone = Phone(associated.json()["secret"])
        confirmed = self.token(grant_type=MFA_OTP, mfa_token=token, otp=phone.code())
        assert confirmed.status_code == 200, confirmed.text
        return phone

    def enroll_key(self, name: str) -> SoftKey:
        """A security key enrolled through the MFA API, confirmed with its attestation."""
        key = SoftKey()
        token = self.mfa_token(name)
        associated = httpx.post(
            self.server.base_url + "/mfa/associate",
            json={"authenticator_types": ["webauthn"]},
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        )
        assert associated.status_code == 200, associated.text
        created = key.create(associated.json()["publicKey"], self.origin)
        confirmed = self.token(grant_type=MFA_WEBAUTHN, mfa_token=token, **created["response"])
        assert confirmed.status_code == 200, confirmed.text
        return key

    def age(self, value: str, seconds: float) -> None:
        """Move the stored expiry of an auth_session or a code ``seconds`` into the past (the same store)."""
        age_mfa_token(self.database_url, value, seconds)


def error_of(response: httpx.Response) -> tuple[int, str | None, str | None]:
    body = response.json()
    return response.status_code, body.get("error"), body.get("error_description")


@contextmanager
def first_party_server(env: dict[str, str], database_url: str, workdir: Path) -> Iterator[App]:
    """Apply this module's tenant and start one ``identity serve``; stop it (checking its log) afterwards."""
    env = {**env, "IDENTITY_ARGON2_TIME_COST": "1", "IDENTITY_ARGON2_MEMORY_KIB": "1024"}
    path = workdir / "first-party-tenant.toml"
    path.write_text(tenant_toml())
    report = apply_tenant_file(path, env)
    user_ids = {u["email"].split("@")[0]: u["user_id"] for u in report["users"] if u["connection"] == CONNECTION}
    (server,) = start_servers([serve_spec("first-party", env)], workdir)
    try:
        yield App(server, database_url, user_ids)
    finally:
        stop_and_check(server)
