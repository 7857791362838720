"""Forged and mangled JWTs against every endpoint that takes a bearer token, on the real server.

For each endpoint a control row first: a token made the legitimate way (or signed with the server's own key and the
right claims) must be accepted, so the table cannot pass by refusing everything. Then every forgery must get a 401
(the endpoint's own error body, ``invalid_token``), never a 200 and never a 5xx.

The test process signs with the server's private key (loaded from the database with the encryption keys, as an
instance does) to make tokens that are well signed and wrong in one claim: expired, not yet valid, another audience,
another issuer, no ``exp``. The attacker's forgeries use a key of their own.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from identity.crypto import SecretBox
from identity.settings import EncryptionKeys
from identity.store.db import create_engine, create_sessionmaker
from identity.tokens.keys import KeyRing, load_key_ring
from tests.adversarial.conftest import MANAGER, MFA_OTP, PASSKEYS, REPORTS_API, Target, db
from tests.e2e.conftest import run_identity

ATTACKER = rsa.generate_private_key(public_exponent=65537, key_size=2048)
ATTACKER_JWK = RSAAlgorithm.to_jwk(ATTACKER.public_key(), as_dict=True)
WRITER = "adv-manager-writer"
"""A Management API client with ``update:users`` alone, for the write row (the fuzz's manager only reads)."""


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def raw_jwt(header: dict[str, Any], claims: dict[str, Any], sign: Callable[[bytes], bytes] | None) -> str:
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    signature = sign(signing_input.encode()) if sign is not None else b""
    return f"{signing_input}.{b64(signature)}"


def server_ring(database_url: str, encryption_keys: EncryptionKeys) -> KeyRing:
    async def go() -> KeyRing:
        engine = create_engine(database_url)
        try:
            async with create_sessionmaker(engine)() as session:
                return await load_key_ring(session, SecretBox(encryption_keys))
        finally:
            await engine.dispose()

    return asyncio.run(go())


@dataclass(frozen=True)
class Endpoint:
    """A bearer endpoint, the claims a token for it carries, and how it says "invalid token"."""

    name: str
    method: str
    path: str
    claims: dict[str, Any]
    management: bool = False
    json_body: dict[str, Any] | None = None
    form: dict[str, str] | None = None
    mfa_token_only: bool = False
    """The endpoint's credential is an mfa_token: every JWT, however well signed, is refused."""

    def call(self, target: Target, token: str) -> httpx.Response:
        return httpx.request(
            self.method,
            f"{target.base_url}{self.path}",
            headers={"Authorization": f"Bearer {token}"},
            json=self.json_body,
            data=self.form,
            timeout=30,
        )


@dataclass
class Table:
    target: Target
    ring: KeyRing
    endpoints: list[Endpoint]
    legit: dict[str, str]
    """A token obtained the legitimate way, per endpoint."""
    id_token: str
    api_token: str
    reports_token: str
    refresh_token: str
    mfa_token: str
    spent_mfa_token: str

    @property
    def kid(self) -> str:
        return next(key.kid for key in self.ring.keys if key.active and key.alg == "RS256")

    def signed(self, claims: dict[str, Any], **header: Any) -> str:
        """Signed with the server's current RS256 key."""
        key = next(key for key in self.ring.keys if key.kid == self.kid)
        return jwt.encode(claims, key.private_key, algorithm="RS256", headers={"kid": self.kid, **header})


@pytest.fixture(scope="module")
def table(target: Target, encryption_keys: EncryptionKeys, tmp_path_factory: pytest.TempPathFactory) -> Table:
    enrolled = target.enroll("forged")
    target.forget_used_steps("forged")
    spent_mfa_token = target.mfa_token("forged", audience=target.issuer + "mfa/")
    mfa_api = target.token(grant_type=MFA_OTP, mfa_token=spent_mfa_token, otp=enrolled.code())
    assert mfa_api.status_code == 200, mfa_api.text
    target.forget_used_steps("forged")
    enroll = target.token(
        PASSKEYS,
        grant_type=MFA_OTP,
        mfa_token=target.mfa_token("forged", client_id=PASSKEYS, audience=target.issuer + "mfa/", scope="enroll"),
        otp=enrolled.code(),
    )
    assert enroll.status_code == 200 and enroll.json()["scope"] == "enroll", enroll.text
    target.forget_used_steps("forged")
    userinfo = target.token(
        grant_type=MFA_OTP, mfa_token=target.mfa_token("forged", scope="openid profile"), otp=enrolled.code()
    )
    assert userinfo.status_code == 200, userinfo.text
    target.forget_used_steps("forged")
    refresh = target.token(
        grant_type=MFA_OTP,
        mfa_token=target.mfa_token("forged", scope="offline_access read:things"),
        otp=enrolled.code(),
    )
    target.forget_used_steps("forged")
    reports = target.token(
        grant_type=MFA_OTP, mfa_token=target.mfa_token("forged", audience=REPORTS_API), otp=enrolled.code()
    )
    target.forget_used_steps("forged")
    manager = target.management_token()
    writer = target.management_token(WRITER, ["update:users"])
    now = int(time.time())
    user = enrolled.user_id
    management = {"gty": "client-credentials", "aud": target.issuer + "api/v2/"}
    mfa_api_claims = {"aud": target.issuer + "mfa/", "amr": ["pwd", "mfa", "otp"]}
    base = {"iss": target.issuer, "sub": user, "iat": now, "exp": now + 600, "azp": "adv-public", "jti": "x"}
    endpoints = [
        Endpoint("userinfo GET", "GET", "/userinfo", {**base, "aud": target.issuer + "userinfo", "scope": "openid"}),
        Endpoint("userinfo POST", "POST", "/userinfo", {**base, "aud": target.issuer + "userinfo", "scope": "openid"}),
        Endpoint(
            "mfa authenticators",
            "GET",
            "/mfa/authenticators",
            {**base, "aud": target.issuer + "mfa/", "scope": "read:authenticators", "amr": ["pwd", "mfa", "otp"]},
        ),
        Endpoint(
            "mfa delete",
            "DELETE",
            "/mfa/authenticators/totp|dev_nonexistent",
            {**base, "aud": target.issuer + "mfa/", "scope": "remove:authenticators", "amr": ["pwd", "mfa", "otp"]},
        ),
        Endpoint(
            "management users",
            "GET",
            "/api/v2/users",
            {
                **base,
                "sub": f"{MANAGER}@clients",
                "azp": MANAGER,
                "gty": "client-credentials",
                "aud": target.issuer + "api/v2/",
                "scope": "read:users read:clients",
            },
            management=True,
        ),
        Endpoint(
            "mfa associate",
            "POST",
            "/mfa/associate",
            {**base, **mfa_api_claims, "scope": "enroll"},
            json_body={"authenticator_types": ["otp"]},
            mfa_token_only=True,
        ),
        Endpoint(
            "passkey register",
            "POST",
            "/passkey/register",
            {**base, **mfa_api_claims, "scope": "enroll", "azp": PASSKEYS},
            form={"client_id": PASSKEYS},
        ),
        Endpoint(
            "management clients",
            "GET",
            "/api/v2/clients",
            {**base, **management, "sub": f"{MANAGER}@clients", "azp": MANAGER, "scope": "read:users read:clients"},
            management=True,
        ),
        Endpoint(
            "management user update",
            "PATCH",
            f"/api/v2/users/{user}",
            {**base, **management, "sub": f"{WRITER}@clients", "azp": WRITER, "scope": "update:users"},
            management=True,
            json_body={"user_metadata": {"adversarial": "forged tokens"}},
        ),
    ]
    legit = {
        "userinfo GET": userinfo.json()["access_token"],
        "userinfo POST": userinfo.json()["access_token"],
        "mfa authenticators": mfa_api.json()["access_token"],
        "mfa delete": mfa_api.json()["access_token"],
        "management users": manager,
        # Of a user without an active factor: an mfa_token for a user who has one starts no enrollment (403).
        "mfa associate": target.mfa_token("associating", audience=target.issuer + "mfa/"),
        "passkey register": enroll.json()["access_token"],
        "management clients": manager,
        "management user update": writer,
    }
    return Table(
        target=target,
        ring=server_ring(target.database_url, encryption_keys),
        endpoints=endpoints,
        legit=legit,
        id_token=userinfo.json()["id_token"],
        api_token=refresh.json()["access_token"],
        reports_token=reports.json()["access_token"],
        refresh_token=refresh.json()["refresh_token"],
        mfa_token=target.mfa_token("forged"),
        spent_mfa_token=spent_mfa_token,
    )


def accepted(response: httpx.Response) -> bool:
    return response.status_code in (200, 204, 404)  # 404: the authenticator to delete does not exist


def assert_refused(endpoint: Endpoint, response: httpx.Response, forgery: str) -> None:
    label = f"{endpoint.name} / {forgery}"
    assert response.status_code == 401, f"{label}: {response.status_code} {response.text[:300]}"
    assert response.headers.get("content-type", "").startswith("application/json"), label
    body = response.json()
    if endpoint.management:
        assert body.get("errorCode") == "invalid_token" or body.get("error") == "Unauthorized", f"{label}: {body}"
    else:
        assert body.get("error") == "invalid_token", f"{label}: {body}"
        assert 'error="invalid_token"' in response.headers.get("www-authenticate", ""), label


def hs256_with(secret: bytes) -> Callable[[bytes], bytes]:
    return lambda data: hmac.new(secret, data, hashlib.sha256).digest()


def attacker_rs256(data: bytes) -> bytes:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    return ATTACKER.sign(data, padding.PKCS1v15(), hashes.SHA256())


def forgeries(table: Table, endpoint: Endpoint) -> Iterator[tuple[str, str]]:
    """(name, token) of every forgery for ``endpoint``."""
    claims = endpoint.claims
    kid = table.kid
    public = next(key for key in table.ring.keys if key.kid == kid).private_key.public_key()
    pem = public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    now = int(time.time())
    good = table.signed(claims)
    head, payload, signature = good.split(".")

    yield "alg none", raw_jwt({"alg": "none", "kid": kid, "typ": "JWT"}, claims, None)
    yield "alg None, no signature part", ".".join(raw_jwt({"alg": "None", "kid": kid}, claims, None).split(".")[:2])
    yield "HS256 keyed with the public key (PEM)", raw_jwt({"alg": "HS256", "kid": kid}, claims, hs256_with(pem))
    jwk_json = json.dumps(next(k for k in table.ring.jwks()["keys"] if k["kid"] == kid)).encode()
    yield "HS256 keyed with the public JWK", raw_jwt({"alg": "HS256", "kid": kid}, claims, hs256_with(jwk_json))
    yield (
        "foreign jku",
        raw_jwt({"alg": "RS256", "kid": "attacker", "jku": "http://127.0.0.1:9/jwks.json"}, claims, attacker_rs256),
    )
    yield (
        "foreign jku with the real kid",
        raw_jwt({"alg": "RS256", "kid": kid, "jku": "http://127.0.0.1:9/jwks.json"}, claims, attacker_rs256),
    )
    yield "embedded jwk", raw_jwt({"alg": "RS256", "kid": kid, "jwk": ATTACKER_JWK}, claims, attacker_rs256)
    yield (
        "foreign x5u",
        raw_jwt({"alg": "RS256", "kid": kid, "x5u": "http://127.0.0.1:9/cert.pem"}, claims, attacker_rs256),
    )
    yield "unknown kid, attacker's key", raw_jwt({"alg": "RS256", "kid": "k-unknown"}, claims, attacker_rs256)
    yield "wrong kid on a good signature", table.signed(claims, kid="k-unknown")
    yield "no kid", raw_jwt({"alg": "RS256"}, claims, attacker_rs256)
    yield "kid injection", raw_jwt({"alg": "RS256", "kid": "' OR '1'='1"}, claims, attacker_rs256)
    yield "kid path traversal", raw_jwt({"alg": "RS256", "kid": "../../../../dev/null"}, claims, attacker_rs256)
    yield "ES256 header on an RSA key", raw_jwt({"alg": "ES256", "kid": kid}, claims, attacker_rs256)
    yield "expired", table.signed({**claims, "exp": now - 5, "iat": now - 700})
    yield "not yet valid (nbf)", table.signed({**claims, "nbf": now + 3600})
    yield "wrong aud", table.signed({**claims, "aud": "https://someone-else.test/"})
    yield "wrong iss", table.signed({**claims, "iss": "https://evil.test/"})
    yield "no exp", table.signed({key: value for key, value in claims.items() if key != "exp"})
    yield "no sub", table.signed({key: value for key, value in claims.items() if key != "sub"})
    yield "other key, real kid (unknown signing key)", raw_jwt({"alg": "RS256", "kid": kid}, claims, attacker_rs256)
    yield "truncated signature", f"{head}.{payload}.{signature[:-12]}"
    yield "signature of another token", f"{head}.{payload}.{table.api_token.split('.')[2]}"
    yield (
        "claims swapped under a good signature",
        f"{head}.{b64(json.dumps({**claims, 'sub': 'x'}).encode())}.{signature}",
    )
    yield "huge header (8 KiB kid)", raw_jwt({"alg": "RS256", "kid": "k" * 8192}, claims, attacker_rs256)
    yield "five parts (JWE shape)", f"{good}.AAAA.BBBB"
    yield "not base64", "!!!.???.***"
    yield "empty parts", ".."
    yield "ID token as access token", table.id_token
    yield "access token of another API", table.api_token
    yield "ES256 access token of another API", table.reports_token
    yield "refresh token as bearer", table.refresh_token
    if endpoint.mfa_token_only:
        yield "spent mfa_token", table.spent_mfa_token
        yield "unknown opaque token", "x" * 43
        yield "well-signed MFA-API access token instead of an mfa_token", table.signed(claims)
    else:
        yield "mfa_token as bearer (JWT endpoints)", table.mfa_token if endpoint.path != "/mfa/authenticators" else "x"
    if not endpoint.management:
        yield "management token elsewhere", table.legit["management users"]
    else:
        yield "user's MFA-API token at the Management API", table.legit["mfa authenticators"]
        yield "user token claiming client-credentials", table.signed({**claims, "gty": "password"})


def test_forged_tokens_are_refused_everywhere(table: Table) -> None:
    target = table.target
    counted = 0
    for endpoint in table.endpoints:
        control = endpoint.call(target, table.legit[endpoint.name])
        assert accepted(control), f"{endpoint.name}: the legitimate token was refused: {control.text}"
        control_signed = endpoint.call(target, table.signed(endpoint.claims))
        # A management token's claims must match a grant (same claims); an mfa_token endpoint refuses any JWT.
        if not endpoint.management and not endpoint.mfa_token_only:
            assert accepted(control_signed), (
                f"{endpoint.name}: the well-signed control was refused: {control_signed.text}"
            )
        for name, token in forgeries(table, endpoint):
            assert_refused(endpoint, endpoint.call(target, token), name)
            counted += 1
    print("forged:", json.dumps({"endpoints": len(table.endpoints), "forgeries_refused": counted}))
    target.assert_clean_log()


def test_tokens_of_a_revoked_signing_key_are_refused_at_once(table: Table) -> None:
    """``identity keys revoke KID``: identity's own endpoints refuse the key's tokens from the next request on."""
    target = table.target
    for endpoint in table.endpoints:
        assert accepted(endpoint.call(target, table.legit[endpoint.name])), endpoint.name
    kids = {jwt.get_unverified_header(token)["kid"] for token in table.legit.values() if token.count(".") == 2}
    (kid,) = kids
    run_identity(["keys", "revoke", kid], target.env)
    ((status,),) = db(target.database_url, "SELECT status FROM signing_key WHERE kid = :k", k=kid)
    assert status == "revoked"
    for endpoint in table.endpoints:
        # An endpoint taking an mfa_token is shown the MFA-API token the revoked key signed for passkey register.
        revoked = table.legit["passkey register" if endpoint.mfa_token_only else endpoint.name]
        assert_refused(endpoint, endpoint.call(target, revoked), "revoked signing key")
    # The server signs with the next key now, and those tokens work.
    # The server signs with the next key once it reloads its ring (IDENTITY_KEYS_REFRESH, 1 s here); those work.
    deadline = time.monotonic() + 30
    while True:
        fresh = target.login("plain", audience=None, scope="openid")
        assert fresh.status_code == 200, fresh.text
        if jwt.get_unverified_header(fresh.json()["access_token"])["kid"] != kid:
            break
        assert time.monotonic() < deadline, "the server still signs with the revoked key"
        time.sleep(0.5)
    bearer = {"Authorization": f"Bearer {fresh.json()['access_token']}"}
    assert httpx.get(f"{target.base_url}/userinfo", headers=bearer, timeout=30).status_code == 200
    target.assert_clean_log()
