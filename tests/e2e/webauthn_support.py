"""Helpers for the WebAuthn end-to-end tests: a software authenticator, this module's tenant and its server.

The authenticator is ``soft-webauthn`` 0.1.3 (with ``fido2`` 0.9.3): a P-256 key per device, attestation ``none``,
flags UP only. `SoftKey` adapts it to the JSON (base64url) options the server sends and to the JSON credentials the
grants take; ``user_verified=True`` sets the UV flag on assertions (re-signing soft-webauthn's authenticator data:
soft-webauthn itself never claims UV). Nothing on the server side is mocked: py_webauthn verifies what this signs.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import hashlib
import json
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from fido2 import cbor
from soft_webauthn import SoftWebauthnDevice
from sqlalchemy import update

from identity.store.db import create_engine
from identity.store.models import TenantRow
from tests.e2e.conftest import IdentityServer, apply_tenant_file, serve_spec, start_servers, stop_and_check

PASSWORD_REALM = "http://auth0.com/oauth/grant-type/password-realm"
MFA_OTP = "http://auth0.com/oauth/grant-type/mfa-otp"
MFA_WEBAUTHN = "urn:okta:params:oauth:grant-type:mfa-webauthn"
WEBAUTHN = "urn:okta:params:oauth:grant-type:webauthn"
INVALID = ("invalid_grant", "Invalid WebAuthn response.")
MALFORMED = ("invalid_grant", "Malformed mfa_token")
TOO_MANY = ("too_many_attempts", "Too many failed attempts. Please try again later.")

API = "https://api.webauthn.e2e.test/"
CONNECTION = "wa-customers"
OTHER_CONNECTION = "wa-employees"
PUBLIC = "wa-public"
OTHER_CLIENT = "wa-other"
NO_WEBAUTHN = "wa-password-only"
PROTOCOL_CLAIM = "https://webauthn.e2e.test/protocol"
PEOPLE = {
    "ada": "ada's password (webauthn)",  # enrolls through the MFA API, then the direct flow
    "ben": "ben's password (webauthn)",  # the refusals
    "cleo": "cleo's password (webauthn)",  # the race
    "dora": "dora's password (webauthn)",  # passkeys as the first factor
    "eli": "eli's password (webauthn)",  # user verification required
}

RULE_SOURCE = f'''\
"""An operator's rule: records the protocol it sees (WebAuthn e2e tests)."""


def record_protocol(event, api):
    if not event.client.client_id.startswith("wa-"):
        return  # only this module's clients
    api.access_token.set_custom_claim("{PROTOCOL_CLAIM}", event.transaction.protocol)
'''


def email(name: str) -> str:
    return f"{name}@webauthn.e2e.test"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class SoftKey:
    """A security key in software (soft-webauthn), speaking the JSON shapes of the server's options."""

    def __init__(self, *, user_verified: bool = False) -> None:
        self.device = SoftWebauthnDevice()
        self.user_verified = user_verified

    def clone(self) -> SoftKey:
        """A copy with the same private key and counter: what a cloned authenticator would be."""
        twin = SoftKey(user_verified=self.user_verified)
        twin.device = copy.deepcopy(self.device)
        return twin

    @property
    def credential_id(self) -> str:
        return b64url(self.device.credential_id)

    def create(self, public_key: Mapping[str, Any], origin: str) -> dict[str, Any]:
        """``navigator.credentials.create()``: a registration credential (JSON, base64url)."""
        options = {
            "publicKey": {
                **public_key,
                "challenge": unb64url(public_key["challenge"]),
                "user": {**public_key["user"], "id": unb64url(public_key["user"]["id"])},
            }
        }
        made = self.device.create(options, origin)
        attestation = made["response"]["attestationObject"]
        if self.user_verified:  # attestation "none" signs nothing: the flags byte can simply be set
            decoded = cbor.decode(attestation)
            auth_data = decoded["authData"]
            decoded["authData"] = auth_data[:32] + bytes([auth_data[32] | 0x04]) + auth_data[33:]
            attestation = cbor.encode(decoded)
        return {
            "id": b64url(made["rawId"]),
            "rawId": b64url(made["rawId"]),
            "type": "public-key",
            "response": {
                "clientDataJSON": b64url(made["response"]["clientDataJSON"]),
                "attestationObject": b64url(attestation),
            },
            "clientExtensionResults": {},
        }

    def get(self, public_key: Mapping[str, Any], origin: str, *, rp_id: str | None = None) -> dict[str, Any]:
        """``navigator.credentials.get()``: an assertion (JSON, base64url). ``rp_id`` overrides the options'."""
        options = {"publicKey": {**public_key, "challenge": unb64url(public_key["challenge"])}}
        if rp_id is not None:
            options["publicKey"]["rpId"] = rp_id
        saved = self.device.rp_id
        if rp_id is not None:
            self.device.rp_id = rp_id  # the key signs for another RP id (its hash goes into authenticatorData)
        try:
            made = self.device.get(options, origin)
        finally:
            self.device.rp_id = saved
        authenticator_data = made["response"]["authenticatorData"]
        signature = made["response"]["signature"]
        if self.user_verified:
            authenticator_data = (
                authenticator_data[:32] + bytes([authenticator_data[32] | 0x04]) + authenticator_data[33:]
            )
            client_hash = hashlib.sha256(made["response"]["clientDataJSON"]).digest()
            signature = self.device.private_key.sign(authenticator_data + client_hash, ec.ECDSA(hashes.SHA256()))
        return {
            "id": b64url(made["rawId"]),
            "rawId": b64url(made["rawId"]),
            "type": "public-key",
            "response": {
                "clientDataJSON": b64url(made["response"]["clientDataJSON"]),
                "authenticatorData": b64url(authenticator_data),
                "signature": b64url(signature),
                "userHandle": b64url(made["response"]["userHandle"]),
            },
            "clientExtensionResults": {},
        }


def okta_form(assertion: Mapping[str, Any], *, user_handle: bool = True) -> dict[str, str]:
    """Okta's form fields for an assertion (no credential id)."""
    response = assertion["response"]
    form = {name: response[name] for name in ("clientDataJSON", "authenticatorData", "signature")}
    if user_handle:
        form["userHandle"] = response["userHandle"]
    return form


# --- The tenant and its server ------------------------------------------------------------------------------------


def tenant_toml(rule_file: Path | None) -> str:
    grants = json.dumps(["password", PASSWORD_REALM, MFA_OTP, MFA_WEBAUTHN, WEBAUTHN])
    text = f"""\
[[connections]]
name = "{CONNECTION}"

[[connections]]
name = "{OTHER_CONNECTION}"

[[apis]]
identifier = "{API}"
name = "WebAuthn e2e API"
scopes = ["read:things"]

[[clients]]
client_id = "{PUBLIC}"
name = "WebAuthn e2e public client"
token_endpoint_auth_method = "none"
grant_types = {grants}
connections = ["{CONNECTION}", "{OTHER_CONNECTION}"]

[[clients]]
client_id = "{OTHER_CLIENT}"
name = "WebAuthn e2e other client"
token_endpoint_auth_method = "none"
grant_types = {grants}
connections = ["{CONNECTION}"]

[[clients]]
client_id = "{NO_WEBAUTHN}"
name = "WebAuthn e2e client without the WebAuthn grants"
token_endpoint_auth_method = "none"
grant_types = ["{PASSWORD_REALM}"]
connections = ["{CONNECTION}"]
"""
    for name, password in PEOPLE.items():
        text += f'\n[[users]]\nconnection = "{CONNECTION}"\nemail = "{email(name)}"\npassword = "{password}"\n'
    if rule_file is not None:
        handler = json.dumps(f"{rule_file}:record_protocol")
        text += f'\n[[rules]]\nname = "record protocol (webauthn)"\nhandler = {handler}\n'
    return text


def set_tenant(database_url: str, **values: Any) -> None:
    """Change tenant-wide settings directly (what ``identity tenant apply`` would write)."""

    async def go() -> None:
        engine = create_engine(database_url)
        try:
            async with engine.begin() as conn:
                await conn.execute(update(TenantRow.__table__).values(**values))  # type: ignore[attr-defined]
        finally:
            await engine.dispose()

    asyncio.run(go())


@dataclass
class WebAuthnSetup:
    server: IdentityServer
    env: dict[str, str]
    database_url: str
    user_ids: dict[str, str]

    @property
    def origin(self) -> str:
        """What a browser at this server's pages would put in clientDataJSON (localhost, not the IP)."""
        return f"http://localhost:{self.server.port}"

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return httpx.post(self.server.base_url + path, timeout=30, **kwargs)

    def token(self, client_id: str = PUBLIC, **params: Any) -> httpx.Response:
        return self.post("/oauth/token", data={"client_id": client_id, **params})

    def token_json(self, body: Mapping[str, Any]) -> httpx.Response:
        return self.post("/oauth/token", json=dict(body))

    def login(self, name: str, client_id: str = PUBLIC, **params: Any) -> httpx.Response:
        params.setdefault("audience", API)
        return self.token(
            client_id,
            grant_type=PASSWORD_REALM,
            realm=CONNECTION,
            username=email(name),
            password=PEOPLE[name],
            **params,
        )

    def mfa_token(self, name: str, **params: Any) -> str:
        response = self.login(name, **params)
        assert response.status_code == 403, response.text
        assert response.json()["error"] == "mfa_required", response.text
        token: str = response.json()["mfa_token"]
        return token

    def challenge(self, mfa_token: str, client_id: str = PUBLIC, **params: Any) -> dict[str, Any]:
        response = self.post(
            "/mfa/challenge",
            data={"client_id": client_id, "mfa_token": mfa_token, "challenge_type": "webauthn", **params},
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        assert body["challenge_type"] == "webauthn", body
        return body["publicKey"]  # type: ignore[no-any-return]

    def mfa_webauthn(self, mfa_token: str, form: Mapping[str, str], client_id: str = PUBLIC) -> httpx.Response:
        return self.token(client_id, grant_type=MFA_WEBAUTHN, mfa_token=mfa_token, **form)

    def enroll(self, name: str, key: SoftKey) -> dict[str, Any]:
        """A user without a factor: mfa_required (policy always) → /mfa/associate webauthn → the grant → tokens."""
        token = self.mfa_token(name)
        associated = self.post(
            "/mfa/associate", json={"authenticator_types": ["webauthn"]}, headers={"Authorization": f"Bearer {token}"}
        )
        assert associated.status_code == 200, associated.text
        body = associated.json()
        assert body["authenticator_type"] == "webauthn"
        created = key.create(body["publicKey"], self.origin)
        confirmed = self.mfa_webauthn(token, created["response"])
        assert confirmed.status_code == 200, confirmed.text
        return {"associate": body, "tokens": confirmed.json()}


def error_of(response: httpx.Response) -> tuple[str, str]:
    body = response.json()
    return body.get("error"), body.get("error_description")


async def _post_all(url: str, bodies: Sequence[Mapping[str, str]]) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=len(bodies), max_keepalive_connections=len(bodies))
    async with httpx.AsyncClient(limits=limits, timeout=60) as client:
        return list(await asyncio.gather(*(client.post(url, data=dict(body)) for body in bodies)))


def concurrently(url: str, bodies: Sequence[Mapping[str, str]]) -> list[httpx.Response]:
    return asyncio.run(_post_all(url, bodies))


@contextmanager
def webauthn_server(env: dict[str, str], database_url: str, workdir: Path) -> Iterator[WebAuthnSetup]:
    """Apply this module's tenant with the protocol rule, start one ``identity serve``; afterwards clear the rules
    and put the tenant-wide settings it changes back."""
    env = {**env, "IDENTITY_ARGON2_TIME_COST": "1", "IDENTITY_ARGON2_MEMORY_KIB": "1024"}
    rule_file = workdir / "webauthn_rule.py"
    rule_file.write_text(RULE_SOURCE)
    path = workdir / "webauthn-tenant.toml"
    path.write_text(tenant_toml(rule_file))
    report = apply_tenant_file(path, env)
    user_ids = {u["email"].split("@")[0]: u["user_id"] for u in report["users"] if u["connection"] == CONNECTION}
    set_tenant(database_url, mfa_policy="always")
    server = None
    try:
        # Servers follow the stored rules (they reload them when they change): the rule stays for this module.
        (server,) = start_servers([serve_spec("webauthn", env)], workdir)
        yield WebAuthnSetup(server, env, database_url, user_ids)
    finally:
        try:
            if server is not None:
                stop_and_check(server)
        finally:
            (workdir / "no-rules.toml").write_text("rules = []\n")
            apply_tenant_file(workdir / "no-rules.toml", env)
            set_tenant(database_url, mfa_policy="if-enrolled", webauthn_user_verification="preferred")
