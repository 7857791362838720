"""One table pinning every status, ``error`` and ``error_description`` the MFA grants and the MFA API answer with
(``shared/API.md`` §1.3-1.6, §1.9, §2, §8). Clients match on these strings: a change here is a breaking change.

Each row is run against the app (TestClient, FrozenClock) in a world where Alice (customers) has an active
authenticator and the public client holds a fresh mfa_token for her.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import httpx
import pytest

from identity.oauth2.grants import mfa as mfa_grants
from identity.settings import EncryptionKeys
from tests.api.mfa_support import (
    MFA_AUDIENCE,
    MFA_OTP,
    MFA_RECOVERY_CODE,
    Enrolled,
    Mfa,
    open_mfa,
    reset,
)
from tests.conftest import API

MFA_OOB = "http://auth0.com/oauth/grant-type/mfa-oob"


@dataclass
class World:
    mfa: Mfa
    alice: Enrolled

    @cached_property
    def mfa_token(self) -> str:
        """A fresh mfa_token of the public client for Alice (customers), who is enrolled."""
        return self.mfa.mfa_token()

    def code(self) -> str:
        return self.mfa.code(self.alice.secret)

    def wrong_code(self) -> str:
        return f"{(int(self.code()) + 1) % 1_000_000:06d}"

    def unenrolled_token(self) -> str:
        """Policy ``always``: an mfa_token for Alice (employees), who has no authenticator."""
        self.mfa.set_policy("always")
        return self.mfa.mfa_token(realm="employees")

    def spent_token(self) -> str:
        self.mfa.finish(self.mfa_token, self.alice.secret)
        return self.mfa_token

    def expired_token(self) -> str:
        token = self.mfa_token
        self.mfa.clock.advance(600)
        return token

    def mfa_api_token(self) -> str:
        token: str = self.mfa.finish(self.mfa.mfa_token(audience=MFA_AUDIENCE), self.alice.secret)["access_token"]
        return token

    def expired_mfa_api_token(self) -> str:
        token = self.mfa_api_token()
        self.mfa.clock.advance(600)
        return token

    def alice_code_spent(self) -> str:
        """The current code, after it was accepted once (with another mfa_token)."""
        code = self.code()
        assert self.mfa.otp(self.mfa.mfa_token(), code).status_code == 200
        return code

    def api_token(self) -> str:
        token: str = self.mfa.finish(self.mfa_token, self.alice.secret)["access_token"]
        return token

    def empty_bucket(self) -> str:
        for _ in range(10):
            self.mfa.otp(self.mfa_token, self.wrong_code())
        return self.mfa_token

    def realm_only_token(self) -> str:
        """An mfa_token of ``realm-only-app``, which lacks the MFA grants (Alice, employees, enrolled)."""
        self.mfa.enroll(realm="employees")
        return self.mfa.mfa_token(realm="employees", client_id="realm-only-app")

    # Requests --------------------------------------------------------------------------------------------------

    def post_json(self, path: str, body: dict[str, Any], bearer: str | None = None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {bearer}"} if bearer is not None else {}
        return self.mfa.client.post(path, json=body, headers=headers)


@dataclass(frozen=True)
class Row:
    name: str
    status: int
    error: str | None
    description: str | None
    send: Callable[[World], httpx.Response]


OTP = {"authenticator_types": ["otp"]}
NOT_AN_ARRAY = "authenticator_types must be a non-empty array of strings"
NO_CHALLENGE = "User does not have any authenticator of the requested challenge type"

# fmt: off
TABLE = [
    # --- the password step ----------------------------------------------------------------------------------------
    Row("password: mfa_required", 403, "mfa_required", "Multifactor authentication required",
        lambda w: w.mfa.login()),
    Row("password-realm: mfa_required", 403, "mfa_required", "Multifactor authentication required",
        lambda w: w.mfa.login(realm="customers")),
    Row("password, MFA audience: mfa_required", 403, "mfa_required", "Multifactor authentication required",
        lambda w: w.mfa.login(audience=MFA_AUDIENCE)),
    # --- mfa-otp ----------------------------------------------------------------------------------------------------
    Row("mfa-otp: tokens", 200, None, None,
        lambda w: w.mfa.otp(w.mfa_token, w.code())),
    Row("mfa-otp: wrong code", 403, "invalid_grant", "Invalid otp_code.",
        lambda w: w.mfa.otp(w.mfa_token, w.wrong_code())),
    Row("mfa-otp: replayed code", 403, "invalid_grant", "Invalid otp_code.",
        lambda w: w.mfa.otp(w.mfa.mfa_token(), w.alice_code_spent())),
    Row("mfa-otp: no authenticator", 403, "invalid_grant", "Invalid otp_code.",
        lambda w: w.mfa.otp(w.unenrolled_token(), "123456")),
    Row("mfa-otp: unknown mfa_token", 403, "invalid_grant", "Malformed mfa_token",
        lambda w: w.mfa.otp("unknown-token", w.code())),
    Row("mfa-otp: spent mfa_token", 403, "invalid_grant", "Malformed mfa_token",
        lambda w: w.mfa.otp(w.spent_token(), w.code())),
    Row("mfa-otp: expired mfa_token", 403, "expired_token", "mfa_token is expired",
        lambda w: w.mfa.otp(w.expired_token(), w.code())),
    Row("mfa-otp: another client's mfa_token", 400, "invalid_request", "mfa_token not issued to this client",
        lambda w: w.mfa.otp(w.mfa_token, w.code(), client_id="confidential-app")),
    Row("mfa-otp: missing mfa_token", 400, "invalid_request", "missing mfa_token parameter",
        lambda w: w.mfa.token(grant_type=MFA_OTP, otp=w.code())),
    Row("mfa-otp: missing otp", 400, "invalid_request", "missing otp parameter",
        lambda w: w.mfa.token(grant_type=MFA_OTP, mfa_token=w.mfa_token)),
    Row("mfa-otp: grant not allowed", 403, "unauthorized_client",
        "Grant type 'http://auth0.com/oauth/grant-type/mfa-otp' not allowed for the client.",
        lambda w: w.mfa.otp(w.realm_only_token(), w.code(), client_id="realm-only-app")),
    Row("mfa-otp: empty bucket", 429, "too_many_attempts", "Too many failed attempts. Please try again later.",
        lambda w: w.mfa.otp(w.empty_bucket(), w.code())),
    Row("mfa-otp: wrong client secret", 401, "invalid_client", "Client authentication failed",
        lambda w: w.mfa.token("confidential-app", grant_type=MFA_OTP, mfa_token=w.mfa_token, otp=w.code(),
                              client_secret="a-wrong-secret-0123456789abcdefghijklmn")),
    # --- mfa-recovery-code ------------------------------------------------------------------------------------------
    Row("mfa-recovery-code: tokens", 200, None, None,
        lambda w: w.mfa.recover(w.mfa_token, w.alice.recovery_code)),
    Row("mfa-recovery-code: wrong code", 403, "invalid_grant", "Invalid recovery_code.",
        lambda w: w.mfa.recover(w.mfa_token, "ABCDEFGHJKLMNPQRSTUVWXYZ")),
    Row("mfa-recovery-code: unknown mfa_token", 403, "invalid_grant", "Malformed mfa_token",
        lambda w: w.mfa.recover("unknown-token", w.alice.recovery_code)),
    Row("mfa-recovery-code: expired mfa_token", 403, "expired_token", "mfa_token is expired",
        lambda w: w.mfa.recover(w.expired_token(), w.alice.recovery_code)),
    Row("mfa-recovery-code: another client's mfa_token", 400, "invalid_request",
        "mfa_token not issued to this client",
        lambda w: w.mfa.recover(w.mfa_token, w.alice.recovery_code, client_id="basic-app")),
    Row("mfa-recovery-code: missing recovery_code", 400, "invalid_request", "missing recovery_code parameter",
        lambda w: w.mfa.token(grant_type=MFA_RECOVERY_CODE, mfa_token=w.mfa_token)),
    Row("mfa-recovery-code: grant not allowed", 403, "unauthorized_client",
        "Grant type 'http://auth0.com/oauth/grant-type/mfa-recovery-code' not allowed for the client.",
        lambda w: w.mfa.recover(w.realm_only_token(), w.alice.recovery_code, client_id="realm-only-app")),
    Row("mfa-recovery-code: empty bucket", 429, "too_many_attempts",
        "Too many failed attempts. Please try again later.",
        lambda w: w.mfa.recover(w.empty_bucket(), w.alice.recovery_code)),
    # --- mfa-oob (emailed codes: tests/api/test_email_codes.py has the rest) --------------------------------------
    Row("mfa-oob: no binding_code", 400, "invalid_request", "binding_code is required",
        lambda w: w.mfa.token(grant_type=MFA_OOB, mfa_token=w.mfa_token, oob_code="x")),
    Row("mfa-oob: unknown oob_code", 403, "invalid_grant", "Invalid oob_code.",
        lambda w: w.mfa.token(grant_type=MFA_OOB, mfa_token=w.mfa_token, oob_code="x", binding_code="123456")),
    # --- POST /mfa/challenge ----------------------------------------------------------------------------------------
    Row("challenge: otp", 200, None, None,
        lambda w: w.mfa.challenge(w.mfa_token, challenge_type="otp")),
    Row("challenge: oob only", 400, "unsupported_challenge_type", NO_CHALLENGE,
        lambda w: w.mfa.challenge(w.mfa_token, challenge_type="oob")),
    Row("challenge: no authenticator", 400, "unsupported_challenge_type", NO_CHALLENGE,
        lambda w: w.mfa.challenge(w.unenrolled_token(), challenge_type="otp")),
    Row("challenge: another client's mfa_token", 400, "invalid_request", "mfa_token not issued to this client",
        lambda w: w.mfa.challenge(w.mfa_token, client_id="confidential-app")),
    Row("challenge: unknown mfa_token", 403, "invalid_grant", "Malformed mfa_token",
        lambda w: w.mfa.challenge("unknown-token")),
    Row("challenge: expired mfa_token", 403, "expired_token", "mfa_token is expired",
        lambda w: w.mfa.challenge(w.expired_token())),
    Row("challenge: missing mfa_token", 400, "invalid_request", "missing mfa_token parameter",
        lambda w: w.post_json("/mfa/challenge", {"client_id": "public-app", "challenge_type": "otp"})),
    Row("challenge: wrong client secret", 401, "invalid_client", "Client authentication failed",
        lambda w: w.mfa.challenge(w.mfa_token, client_id="confidential-app",
                                  client_secret="a-wrong-secret-0123456789abcdefghijklmn")),
    # --- POST /mfa/associate ----------------------------------------------------------------------------------------
    Row("associate: otp", 200, None, None,
        lambda w: w.mfa.associate(w.unenrolled_token())),
    Row("associate: already enrolled", 403, "access_denied", "User is already enrolled",
        lambda w: w.mfa.associate(w.mfa_token)),
    Row("associate: oob sms", 400, "invalid_request",
        "oob_channels must be ['email']: email is the only out-of-band channel",
        lambda w: w.mfa.associate(w.unenrolled_token(), {"authenticator_types": ["oob"], "oob_channels": ["sms"]})),
    Row("associate: oob email without a mail server", 400, "invalid_request",
        "Email codes are not enabled for this application",
        lambda w: w.mfa.associate(w.unenrolled_token(), {"authenticator_types": ["oob"], "oob_channels": ["email"]})),
    Row("associate: no types", 400, "invalid_request", NOT_AN_ARRAY,
        lambda w: w.mfa.associate(w.unenrolled_token(), {})),
    Row("associate: another client's mfa_token", 400, "invalid_request", "mfa_token not issued to this client",
        lambda w: w.mfa.associate(w.unenrolled_token(), {**OTP, "client_id": "confidential-app"})),
    Row("associate: unknown mfa_token", 401, "invalid_token", "Malformed mfa_token",
        lambda w: w.mfa.associate("unknown-token")),
    Row("associate: expired mfa_token", 401, "invalid_token", "mfa_token is expired",
        lambda w: w.mfa.associate(w.expired_token())),
    Row("associate: access token", 401, "invalid_token", "enrollment needs the mfa_token of a login",
        lambda w: w.mfa.associate(w.mfa_api_token())),
    Row("associate: no bearer", 401, "invalid_token", "missing bearer token",
        lambda w: w.post_json("/mfa/associate", OTP)),
    # --- GET /mfa/authenticators ------------------------------------------------------------------------------------
    Row("authenticators: mfa_token", 200, None, None,
        lambda w: w.mfa.authenticators(w.mfa_token)),
    Row("authenticators: MFA API token", 200, None, None,
        lambda w: w.mfa.authenticators(w.mfa_api_token())),
    Row("authenticators: no bearer", 401, "invalid_token", "missing bearer token",
        lambda w: w.mfa.client.get("/mfa/authenticators")),
    Row("authenticators: unknown mfa_token", 401, "invalid_token", "Malformed mfa_token",
        lambda w: w.mfa.authenticators("unknown-token")),
    Row("authenticators: expired mfa_token", 401, "invalid_token", "mfa_token is expired",
        lambda w: w.mfa.authenticators(w.expired_token())),
    Row("authenticators: spent mfa_token", 401, "invalid_token", "Malformed mfa_token",
        lambda w: w.mfa.authenticators(w.spent_token())),
    Row("authenticators: token of another API", 401, "invalid_token", "invalid token",
        lambda w: w.mfa.authenticators(w.api_token())),
    # --- DELETE /mfa/authenticators/{id} ----------------------------------------------------------------------------
    Row("delete: MFA API token", 204, None, None,
        lambda w: w.mfa.delete(w.mfa_api_token(), w.alice.authenticator_id)),
    Row("delete: unknown id", 404, "not_found", "Authenticator not found",
        lambda w: w.mfa.delete(w.mfa_api_token(), "totp|dev_unknown")),
    Row("delete: mfa_token", 401, "invalid_token", "an access token for the MFA API is required",
        lambda w: w.mfa.delete(w.mfa_token, w.alice.authenticator_id)),
    Row("delete: token of another API", 401, "invalid_token", "invalid token",
        lambda w: w.mfa.delete(w.api_token(), w.alice.authenticator_id)),
    Row("delete: expired MFA API token", 401, "invalid_token", "token expired",
        lambda w: w.mfa.delete(w.expired_mfa_api_token(), w.alice.authenticator_id)),
    Row("delete: no bearer", 401, "invalid_token", "missing bearer token",
        lambda w: w.mfa.client.delete(f"/mfa/authenticators/{w.alice.authenticator_id}")),
]
# fmt: on


@pytest.fixture(scope="module")
def module_mfa(database_url: str, encryption_keys: EncryptionKeys) -> Iterator[Mfa]:
    with open_mfa(database_url, encryption_keys) as driver:
        yield driver


@pytest.fixture
def world(module_mfa: Mfa) -> World:
    mfa = reset(module_mfa)
    alice = mfa.enroll()
    return World(mfa, alice)


def test_every_row_has_a_unique_name() -> None:
    assert len({row.name for row in TABLE}) == len(TABLE)


@pytest.mark.parametrize("row", TABLE, ids=[row.name for row in TABLE])
def test_wire_strings(world: World, row: Row) -> None:
    response = row.send(world)

    assert response.status_code == row.status, response.text
    assert response.headers["cache-control"] == "no-store"
    if row.status == 204:
        assert response.content == b""
        return
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    if row.error is None:
        assert "error" not in body
        return
    assert body["error"] == row.error
    assert body["error_description"] == row.description
    extra = set(body) - {"error", "error_description"}
    assert extra == ({"mfa_token"} if row.error == "mfa_required" else set())
    if row.status == 401 and row.error == "invalid_token":
        challenge = response.headers["www-authenticate"]
        assert challenge.startswith("Bearer ")
        assert 'error="invalid_token"' in challenge


def test_success_bodies(world: World) -> None:
    """The members of each successful answer (API.md §1.4, §1.6, §2.2, §2.3, §2.5)."""
    mfa = world.mfa
    tokens = mfa.otp(world.mfa_token, world.code()).json()
    assert set(tokens) == {"access_token", "token_type", "expires_in", "scope"}
    assert tokens["token_type"] == "Bearer"
    recovered = mfa.recover(mfa.mfa_token(), world.alice.recovery_code).json()
    assert set(recovered) == {"access_token", "token_type", "expires_in", "scope", "recovery_code"}
    listed = mfa.authenticators(mfa.mfa_token()).json()
    assert [set(a) >= {"id", "authenticator_type", "active"} for a in listed] == [True, True]
    assert {a["authenticator_type"] for a in listed} == {"otp", "recovery-code"}
    assert mfa.challenge(mfa.mfa_token()).json() == {"challenge_type": "otp"}
    associated = mfa.associate(world.unenrolled_token()).json()
    assert set(associated) == {"authenticator_type", "secret", "barcode_uri", "recovery_codes"}
    assert associated["authenticator_type"] == "otp"
    assert associated["barcode_uri"].startswith("otpauth://totp/")
    assert associated["barcode_uri"].endswith("&algorithm=SHA1&digits=6&period=30")


def test_amr_values(world: World) -> None:
    """RFC 8176 method names (a documented divergence: Auth0 leaves amr out of MFA-API logins)."""
    mfa = world.mfa
    otp = mfa.finish(world.mfa_token, world.alice.secret)
    recovered = mfa.recover(mfa.mfa_token(), world.alice.recovery_code).json()

    assert mfa.claims(otp["access_token"], audience=API)["amr"] == ["pwd", "mfa", "otp"]
    assert mfa.claims(recovered["access_token"], audience=API)["amr"] == ["pwd", "mfa"]


def test_mfa_api_audience_scopes_and_lifetime(world: World) -> None:
    tokens = world.mfa.finish(world.mfa.mfa_token(audience=MFA_AUDIENCE), world.alice.secret)

    assert MFA_AUDIENCE == "https://identity.test/mfa/"
    assert tokens["scope"] == "enroll read:authenticators remove:authenticators"
    assert tokens["expires_in"] == 600


def test_grant_type_uris_and_discovery(module_mfa: Mfa) -> None:
    assert (MFA_OTP, MFA_RECOVERY_CODE) == (
        "http://auth0.com/oauth/grant-type/mfa-otp",
        "http://auth0.com/oauth/grant-type/mfa-recovery-code",
    )
    metadata = module_mfa.client.get("/.well-known/openid-configuration").json()
    assert {MFA_OTP, MFA_RECOVERY_CODE} <= set(metadata["grant_types_supported"])
    assert metadata["mfa_challenge_endpoint"] == "https://identity.test/mfa/challenge"


def test_the_grants_constants_are_the_table_strings() -> None:
    assert mfa_grants.MALFORMED_MFA_TOKEN == "Malformed mfa_token"
    assert mfa_grants.EXPIRED_MFA_TOKEN == "mfa_token is expired"
    assert mfa_grants.OTHER_CLIENT == "mfa_token not issued to this client"
    assert mfa_grants.INVALID_OTP == "Invalid otp_code."
    assert mfa_grants.INVALID_RECOVERY_CODE == "Invalid recovery_code."
    assert mfa_grants.TOO_MANY_ATTEMPTS == "Too many failed attempts. Please try again later."
    assert mfa_grants.MfaOtpGrant.GRANT_TYPE == MFA_OTP
    assert mfa_grants.MfaRecoveryCodeGrant.GRANT_TYPE == MFA_RECOVERY_CODE
