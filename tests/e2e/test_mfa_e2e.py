"""The MFA chain end to end (issue 3): ``identity serve`` as a subprocess on the shared e2e database, the tenant
applied with ``identity tenant apply``, Auth0's Python SDK and Authlib as the apps, and Debian's ``oathtool`` as the
user's authenticator app (an implementation independent of the server's pyotp).

The tests of this module build on each other in file order, like one user's story: enroll under ``always``, log in
again under ``if-enrolled``, replay, recovery code, the other directory.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import httpx
import pytest
from auth0.authentication import GetToken
from authlib.integrations.base_client import OAuthError
from authlib.integrations.requests_client import OAuth2Session

from tests.e2e.conftest import query, verify_access_token, verify_id_token
from tests.e2e.mfa_support import (
    ALICE_CUSTOMER,
    ALICE_EMPLOYEE,
    API,
    API_SCOPES,
    BASIC,
    BASIC_SECRET,
    CUSTOMERS,
    FRANK,
    GRACE,
    MFA_OTP,
    MFA_RECOVERY_CODE,
    NO_MFA,
    POST,
    POST_SECRET,
    PUBLIC,
    MfaSetup,
    Phone,
    age_mfa_token,
    associate,
    authenticators,
    bearer,
    enroll,
    error_of,
    mfa_setup,
    mfa_token,
    oathtool,
    oathtool_path,
    otp,
    password_login,
    recover,
)

try:  # auth0-python 4.x
    from auth0.exceptions import Auth0Error  # type: ignore[import-not-found,unused-ignore]
except ImportError:  # auth0-python 5.x and later
    from auth0.authentication.exceptions import Auth0Error  # type: ignore[import-not-found,no-redef,unused-ignore]

MFA_REQUIRED = "Multifactor authentication required"
INVALID_OTP = (403, "invalid_grant", "Invalid otp_code.")
INVALID_RECOVERY_CODE = (403, "invalid_grant", "Invalid recovery_code.")
MALFORMED = (403, "invalid_grant", "Malformed mfa_token")


@pytest.fixture(scope="module")
def mfa(e2e_env: dict[str, str], database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[MfaSetup]:
    oathtool_path()
    with mfa_setup(e2e_env, database_url, tmp_path_factory.mktemp("mfa-e2e"), policy="always") as setup:
        yield setup


def sdk(mfa: MfaSetup, client_id: str = POST, secret: str | None = POST_SECRET) -> GetToken:
    return GetToken(mfa.server.domain, client_id, client_secret=secret, protocol="http")


def sdk_grant(get_token: GetToken, **data: Any) -> Any:
    """An MFA grant through the SDK's own client-authenticated POST (it has no method for them)."""
    url = f"{get_token.protocol}://{get_token.domain}/oauth/token"
    return get_token.authenticated_post(url, data={"client_id": get_token.client_id, **data})


@dataclass
class SdkEnrollment:
    """Every answer of Alice's (customers) enrollment, made with the Auth0 SDK and the MFA API under ``always``."""

    mfa_required: Any
    listed_before: httpx.Response
    associated: httpx.Response
    listed_pending: httpx.Response
    scanned: dict[str, list[str]]
    tokens: dict[str, Any]
    phone: Phone
    recovery_code: str
    """Her current recovery code (each recovery hands back the next one)."""


@pytest.fixture(scope="module")
def alice(mfa: MfaSetup) -> SdkEnrollment:
    mfa.set_policy("always")
    get_token = sdk(mfa)
    with pytest.raises(Auth0Error) as caught:
        get_token.login(
            ALICE_CUSTOMER.email, ALICE_CUSTOMER.password, realm=CUSTOMERS, audience=API, scope="openid profile"
        )
    token = caught.value.content["mfa_token"]
    listed_before = authenticators(mfa.server, token)
    associated = associate(mfa.server, token)
    listed_pending = authenticators(mfa.server, token)
    # The phone scans the QR code: the secret comes from the barcode_uri, not from the JSON.
    scanned = parse_qs(urlsplit(associated.json()["barcode_uri"]).query)
    phone = Phone(scanned["secret"][0])
    tokens = sdk_grant(get_token, grant_type=MFA_OTP, mfa_token=token, otp=phone.code())
    code = associated.json()["recovery_codes"][0]
    return SdkEnrollment(caught.value, listed_before, associated, listed_pending, scanned, tokens, phone, code)


def test_oathtool_plays_the_phone() -> None:
    secret = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
    assert oathtool(secret, at=1_767_225_615) == oathtool(secret, at=1_767_225_600)  # 2026-01-01 00:00:15 UTC
    for _ in range(3):
        if not 0.5 < time.time() % 30 < 29.5:  # oathtool reads time(2), a coarse clock: keep away from a boundary
            time.sleep(1)
        before = int(time.time() // 30)
        now_code = oathtool(secret)  # `oathtool --totp -b SECRET`, the app's current code
        if int(time.time() // 30) == before:
            assert now_code == oathtool(secret, at=before * 30 + 15)
            return
    pytest.fail("the time step changed during three tries")


def test_enroll_under_always_with_the_auth0_sdk(mfa: MfaSetup, alice: SdkEnrollment) -> None:
    error = alice.mfa_required
    assert (error.status_code, error.error_code, error.message) == (403, "mfa_required", MFA_REQUIRED)
    assert set(error.content) == {"error", "error_description", "mfa_token"}
    assert alice.listed_before.status_code == 200
    assert alice.listed_before.json() == []
    assert alice.associated.status_code == 200, alice.associated.text
    body = alice.associated.json()
    assert body["authenticator_type"] == "otp"
    assert alice.scanned["secret"] == [body["secret"]]
    assert alice.scanned["algorithm"] == ["SHA1"]
    assert alice.scanned["digits"] == ["6"]
    assert alice.scanned["period"] == ["30"]
    label = unquote(urlsplit(body["barcode_uri"]).path.lstrip("/"))
    assert label.endswith(":" + ALICE_CUSTOMER.email)
    assert alice.scanned["issuer"] == [label.split(":", 1)[0]]
    assert len(body["recovery_codes"]) == 1
    (pending,) = alice.listed_pending.json()
    assert (pending["authenticator_type"], pending["active"]) == ("otp", False)

    tokens = alice.tokens
    assert tokens["token_type"] == "Bearer"
    assert tokens["scope"] == "openid profile read:things write:things"  # no API scope asked: all of them
    claims = verify_access_token(mfa.server, tokens["access_token"], audience=API)
    assert claims["aud"] == [API, mfa.server.issuer + "userinfo"]
    assert claims["sub"] == mfa.user_id(ALICE_CUSTOMER)
    assert claims["azp"] == POST
    assert claims["amr"] == ["pwd", "mfa", "otp"]
    id_claims = verify_id_token(mfa.server, tokens["id_token"], client_id=POST)
    assert id_claims["sub"] == claims["sub"]
    assert id_claims["amr"] == ["pwd", "mfa", "otp"]


def test_the_authenticator_is_active_and_the_recovery_code_listed(mfa: MfaSetup, alice: SdkEnrollment) -> None:
    token = mfa_token(mfa.server, ALICE_CUSTOMER)

    listed = authenticators(mfa.server, token).json()

    assert [(a["authenticator_type"], a["active"]) for a in listed] == [("recovery-code", True), ("otp", True)]
    assert listed[1]["id"] == alice.listed_pending.json()[0]["id"]
    assert error_of(associate(mfa.server, token)) == (403, "access_denied", "User is already enrolled")


def authlib_session(client_id: str, secret: str | None, method: str) -> tuple[OAuth2Session, dict[str, Any]]:
    """Authlib drops an error body's extra members; a compliance hook keeps the mfa_token of ``mfa_required``."""
    session = OAuth2Session(client_id, secret, token_endpoint_auth_method=method)
    seen: dict[str, Any] = {}

    def keep_error_body(response: Any) -> Any:
        if response.status_code >= 400:
            seen.clear()
            seen.update(response.json())
        return response

    session.register_compliance_hook("access_token_response", keep_error_body)
    return session, seen


def test_login_again_under_if_enrolled_with_authlib(mfa: MfaSetup, alice: SdkEnrollment) -> None:
    mfa.set_policy("if-enrolled")
    session, seen = authlib_session(BASIC, BASIC_SECRET, "client_secret_basic")
    with session:
        with pytest.raises(OAuthError) as caught:
            session.fetch_token(
                mfa.server.token_url,
                grant_type="http://auth0.com/oauth/grant-type/password-realm",
                username=ALICE_CUSTOMER.email,
                password=ALICE_CUSTOMER.password,
                realm=CUSTOMERS,
                audience=API,
            )
        assert (caught.value.error, caught.value.description) == ("mfa_required", MFA_REQUIRED)

        token = session.fetch_token(
            mfa.server.token_url, grant_type=MFA_OTP, mfa_token=seen["mfa_token"], otp=alice.phone.code()
        )

    assert token["token_type"] == "Bearer"
    assert token["scope"] == " ".join(API_SCOPES)
    claims = verify_access_token(mfa.server, token["access_token"], audience=API)
    assert claims["sub"] == mfa.user_id(ALICE_CUSTOMER)
    assert claims["azp"] == BASIC
    assert claims["amr"] == ["pwd", "mfa", "otp"]
    assert claims["scope"] == " ".join(API_SCOPES)


def test_a_replayed_code_is_refused_and_the_next_step_accepted(mfa: MfaSetup, alice: SdkEnrollment) -> None:
    used = alice.phone.codes[-1]

    replay = otp(mfa.server, mfa_token(mfa.server, ALICE_CUSTOMER), used)

    assert error_of(replay) == INVALID_OTP
    response = otp(mfa.server, mfa_token(mfa.server, ALICE_CUSTOMER), alice.phone.code())
    assert response.status_code == 200, response.text


def test_the_mfa_token_works_once(mfa: MfaSetup, alice: SdkEnrollment) -> None:
    token = mfa_token(mfa.server, ALICE_CUSTOMER)
    recovered = recover(mfa.server, token, alice.recovery_code)
    assert recovered.status_code == 200, recovered.text
    alice.recovery_code = recovered.json()["recovery_code"]

    again = otp(mfa.server, token, alice.phone.wrong_code())

    assert error_of(again) == MALFORMED


def test_recovery_code_works_once_and_is_replaced(mfa: MfaSetup, alice: SdkEnrollment) -> None:
    get_token = sdk(mfa, PUBLIC, None)
    current = alice.recovery_code

    answer = sdk_grant(
        get_token, grant_type=MFA_RECOVERY_CODE, mfa_token=mfa_token(mfa.server, ALICE_CUSTOMER), recovery_code=current
    )

    alice.recovery_code = answer["recovery_code"]
    assert alice.recovery_code != current
    assert answer["token_type"] == "Bearer"
    claims = verify_access_token(mfa.server, answer["access_token"], audience=API)
    assert claims["amr"] == ["pwd", "mfa"]
    assert claims["sub"] == mfa.user_id(ALICE_CUSTOMER)
    with pytest.raises(Auth0Error) as caught:
        sdk_grant(
            get_token,
            grant_type=MFA_RECOVERY_CODE,
            mfa_token=mfa_token(mfa.server, ALICE_CUSTOMER),
            recovery_code=current,
        )
    assert (caught.value.status_code, caught.value.error_code, caught.value.message) == INVALID_RECOVERY_CODE
    # The new one works, typed in groups of four and in lower case.
    grouped = "-".join(alice.recovery_code[i : i + 4] for i in range(0, 24, 4)).lower()
    again = recover(mfa.server, mfa_token(mfa.server, ALICE_CUSTOMER), grouped)
    assert again.status_code == 200, again.text
    alice.recovery_code = again.json()["recovery_code"]


def test_users_in_two_directories(mfa: MfaSetup, alice: SdkEnrollment) -> None:
    mfa.set_policy("if-enrolled")
    # Same email, other directory, not enrolled: no second factor asked.
    plain = password_login(mfa.server, ALICE_EMPLOYEE)
    assert plain.status_code == 200, plain.text
    # Asking for the MFA API forces MFA; from there she enrolls her own phone.
    employee = enroll(mfa.server, ALICE_EMPLOYEE, audience=mfa.server.issuer + "mfa/")
    assert employee.secret != alice.phone.secret

    token = mfa_token(mfa.server, ALICE_EMPLOYEE)

    # The customer's phone and recovery code do not open the employee's account.
    assert error_of(otp(mfa.server, token, oathtool(alice.phone.secret))) == INVALID_OTP
    assert error_of(recover(mfa.server, token, alice.recovery_code)) == INVALID_RECOVERY_CODE
    response = otp(mfa.server, token, employee.phone.code())
    assert response.status_code == 200, response.text
    employee_sub = verify_access_token(mfa.server, response.json()["access_token"], audience=API)["sub"]
    assert employee_sub == mfa.user_id(ALICE_EMPLOYEE)
    assert employee_sub != mfa.user_id(ALICE_CUSTOMER)
    # And the employee's recovery code does not open the customer's.
    customer_token = mfa_token(mfa.server, ALICE_CUSTOMER)
    assert error_of(recover(mfa.server, customer_token, employee.recovery_code)) == INVALID_RECOVERY_CODE


def test_expired_tampered_and_other_client_mfa_tokens(mfa: MfaSetup, alice: SdkEnrollment, database_url: str) -> None:
    code = alice.phone.wrong_code()  # never reaches the code check: nothing is spent
    token = mfa_token(mfa.server, ALICE_CUSTOMER)

    assert error_of(otp(mfa.server, token, code, client_id=POST)) == (
        400,
        "invalid_request",
        "mfa_token not issued to this client",
    )
    tampered = token[:-1] + ("A" if token[-1] != "A" else "B")
    assert error_of(otp(mfa.server, tampered, code)) == MALFORMED
    assert error_of(otp(mfa.server, "Fe26.2**forged", code)) == MALFORMED
    age_mfa_token(database_url, token, 1)
    assert error_of(otp(mfa.server, token, code)) == (403, "expired_token", "mfa_token is expired")
    # As a Bearer credential: RFC 6750's 401 invalid_token (issue 12).
    assert error_of(authenticators(mfa.server, token)) == (401, "invalid_token", "mfa_token is expired")


def test_a_client_without_the_mfa_grants(mfa: MfaSetup, alice: SdkEnrollment) -> None:
    token = mfa_token(mfa.server, ALICE_CUSTOMER, client_id=NO_MFA)

    response = otp(mfa.server, token, alice.phone.wrong_code(), client_id=NO_MFA)

    assert error_of(response) == (403, "unauthorized_client", f"Grant type '{MFA_OTP}' not allowed for the client.")


def test_the_attempt_bucket(mfa: MfaSetup) -> None:
    frank = enroll(mfa.server, FRANK, audience=mfa.server.issuer + "mfa/")
    token = mfa_token(mfa.server, FRANK)
    wrong = frank.phone.wrong_code()

    for attempt in range(10):
        assert error_of(otp(mfa.server, token, wrong)) == INVALID_OTP, attempt

    too_many = (429, "too_many_attempts", "Too many failed attempts. Please try again later.")
    right = frank.phone.code()
    assert error_of(otp(mfa.server, token, right)) == too_many
    assert error_of(otp(mfa.server, mfa_token(mfa.server, FRANK), right)) == too_many  # a new mfa_token: still empty
    assert error_of(recover(mfa.server, mfa_token(mfa.server, FRANK), frank.recovery_code)) == too_many


def test_remove_the_authenticator_with_an_mfa_api_token(mfa: MfaSetup) -> None:
    mfa.set_policy("if-enrolled")
    grace = enroll(mfa.server, GRACE, audience=mfa.server.issuer + "mfa/")
    access_token = grace.tokens["access_token"]
    claims = verify_access_token(mfa.server, access_token, audience=mfa.server.issuer + "mfa/")
    assert claims["scope"] == "enroll read:authenticators remove:authenticators"
    assert grace.tokens["expires_in"] == 600
    listed = httpx.get(f"{mfa.server.base_url}/mfa/authenticators", headers=bearer(access_token)).json()
    (authenticator_id,) = [a["id"] for a in listed if a["authenticator_type"] == "otp"]
    url = f"{mfa.server.base_url}/mfa/authenticators/{authenticator_id}"

    with_mfa_token = httpx.delete(url, headers=bearer(mfa_token(mfa.server, GRACE)))
    unknown = httpx.delete(f"{mfa.server.base_url}/mfa/authenticators/totp|dev_unknown", headers=bearer(access_token))
    removed = httpx.delete(url, headers=bearer(access_token))

    assert with_mfa_token.status_code == 401
    assert with_mfa_token.json()["error"] == "invalid_token"
    assert unknown.status_code == 404
    assert removed.status_code == 204
    after = password_login(mfa.server, GRACE)
    assert after.status_code == 200, after.text
    assert "amr" not in verify_access_token(mfa.server, after.json()["access_token"], audience=API)


def test_secrets_at_rest(mfa: MfaSetup, alice: SdkEnrollment, database_url: str) -> None:
    token = mfa_token(mfa.server, ALICE_CUSTOMER)
    secret = alice.phone.secret

    sealed = [row[0] for row in query(database_url, "SELECT secret FROM authenticator WHERE kind = 'totp'")]
    codes = [row[0] for row in query(database_url, "SELECT code_hash FROM recovery_code")]
    token_hashes = [row[0] for row in query(database_url, "SELECT token_hash FROM mfa_transaction")]

    assert sealed
    assert all(value.startswith("v1.") for value in sealed)
    assert not any(secret in value or secret.lower() in value for value in sealed)
    first, current = alice.associated.json()["recovery_codes"][0], alice.recovery_code
    assert first not in codes
    assert current not in codes
    assert hashlib.sha256(f"recovery-code:{current}".encode()).hexdigest() in codes  # stored hashed
    if first != current:
        assert hashlib.sha256(f"recovery-code:{first}".encode()).hexdigest() not in codes  # rotated away
    assert token not in token_hashes
    assert hashlib.sha256(token.encode()).hexdigest() in token_hashes
