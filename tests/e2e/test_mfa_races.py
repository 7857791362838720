"""Races on the one-time things of the MFA chain, over real HTTP against ``identity serve`` on the shared e2e
database (SQLite or PostgreSQL): many concurrent requests carry the same valid code or recovery code, and exactly
one of them may get tokens (issue 3 §2, §4, §5). Codes come from Debian's ``oathtool``.

Every answer is counted: one 200; the others are the catalogue's 4xx (``invalid_grant`` for a code already spent or
an mfa_token already burned, ``too_many_attempts`` once the losers' failures have emptied the user's bucket); never
a 5xx; and the server logs no unhandled error (checked when it stops).
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterator

import httpx
import pytest

from tests.e2e.conftest import query, verify_access_token
from tests.e2e.mfa_support import (
    API,
    BASIC,
    CAROL,
    DAN,
    ERIN,
    FAY,
    HENRY,
    MFA_OTP,
    MFA_RECOVERY_CODE,
    PASSWORD_REALM,
    POST,
    PUBLIC,
    Enrollment,
    MfaSetup,
    Person,
    concurrently,
    enroll,
    mfa_setup,
    oathtool_path,
    token_request,
)

TOO_MANY = ("too_many_attempts", "Too many failed attempts. Please try again later.")
LOSERS = {
    MFA_OTP: {("invalid_grant", "Invalid otp_code."), ("invalid_grant", "Malformed mfa_token"), TOO_MANY},
    MFA_RECOVERY_CODE: {
        ("invalid_grant", "Invalid recovery_code."),
        ("invalid_grant", "Malformed mfa_token"),
        TOO_MANY,
    },
}


@pytest.fixture(scope="module")
def mfa(e2e_env: dict[str, str], database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[MfaSetup]:
    oathtool_path()
    with mfa_setup(e2e_env, database_url, tmp_path_factory.mktemp("mfa-races"), policy="always") as setup:
        yield setup


def fresh_mfa_tokens(mfa: MfaSetup, person: Person, count: int, client_id: str) -> list[str]:
    """``count`` password logins, eight at a time, each answered with its own mfa_token.

    Eight, not all at once: a login in flight holds one of the account's ten brute-force attempts (from this address)
    until its password is checked, so more than ten simultaneous logins of one account are refused, right password
    or not (tests/api/test_attack_burst.py). The race these tests are about is the second factor's, not this one.
    """
    login = token_request(
        client_id,
        grant_type=PASSWORD_REALM,
        realm=person.connection,
        username=person.email,
        password=person.password,
        audience=API,
    )
    responses = []
    for start in range(0, count, 8):
        responses += concurrently(mfa.server.token_url, [login] * min(8, count - start))
    assert {response.status_code for response in responses} == {403}, [r.text for r in responses[:3]]
    tokens = [response.json()["mfa_token"] for response in responses]
    assert len(set(tokens)) == count
    return tokens


def tally(grant_type: str, responses: list[httpx.Response]) -> Counter[tuple[int, str | None, str | None]]:
    """Outcomes by (status, error, error_description); asserts exactly one winner and only catalogue losers."""
    outcomes: Counter[tuple[int, str | None, str | None]] = Counter()
    for response in responses:
        assert response.status_code < 500, response.text
        body = response.json()
        outcomes[(response.status_code, body.get("error"), body.get("error_description"))] += 1
    print(f"\n{grant_type.rsplit('/', 1)[-1]} race, {len(responses)} requests: {dict(outcomes)}")
    assert outcomes[(200, None, None)] == 1, outcomes
    for (status, error, description), _ in outcomes.items():
        if status != 200:
            assert (error, description) in LOSERS[grant_type], (status, error, description)
            assert status == (429 if (error, description) == TOO_MANY else 403)
    return outcomes


def winner(responses: list[httpx.Response]) -> dict[str, object]:
    (won,) = [response for response in responses if response.status_code == 200]
    body: dict[str, object] = won.json()
    return body


def burned(database_url: str, tokens: list[str]) -> int:
    hashes = {hashlib.sha256(token.encode()).hexdigest() for token in tokens}
    rows = query(database_url, "SELECT token_hash, consumed_at FROM mfa_transaction")
    return sum(1 for token_hash, consumed_at in rows if token_hash in hashes and consumed_at is not None)


@pytest.fixture(scope="module")
def enrolled(mfa: MfaSetup) -> dict[str, Enrollment]:
    """Carol, Dan, Erin, Fay and Henry, each with a confirmed authenticator (policy ``always``)."""
    mfa.set_policy("always")
    return {person.email: enroll(mfa.server, person) for person in (CAROL, DAN, ERIN, FAY, HENRY)}


def test_50_mfa_tokens_one_code(mfa: MfaSetup, enrolled: dict[str, Enrollment], database_url: str) -> None:
    phone = enrolled[CAROL.email].phone
    tokens = fresh_mfa_tokens(mfa, CAROL, 50, PUBLIC)
    code = phone.code(valid_for=40)  # the whole burst is answered inside the window

    responses = concurrently(
        mfa.server.token_url, [token_request(PUBLIC, grant_type=MFA_OTP, mfa_token=t, otp=code) for t in tokens]
    )

    tally(MFA_OTP, responses)
    claims = verify_access_token(mfa.server, str(winner(responses)["access_token"]), audience=API)
    assert claims["sub"] == mfa.user_id(CAROL)
    assert claims["amr"] == ["pwd", "mfa", "otp"]
    assert burned(database_url, tokens) == 1


def test_one_mfa_token_one_code_50_times(mfa: MfaSetup, enrolled: dict[str, Enrollment], database_url: str) -> None:
    phone = enrolled[DAN.email].phone
    (token,) = fresh_mfa_tokens(mfa, DAN, 1, POST)
    code = phone.code(valid_for=40)  # the whole burst is answered inside the window

    responses = concurrently(
        mfa.server.token_url, [token_request(POST, grant_type=MFA_OTP, mfa_token=token, otp=code)] * 50
    )

    tally(MFA_OTP, responses)
    assert verify_access_token(mfa.server, str(winner(responses)["access_token"]), audience=API)["azp"] == POST
    assert burned(database_url, [token]) == 1


def test_20_mfa_tokens_one_recovery_code(mfa: MfaSetup, enrolled: dict[str, Enrollment], database_url: str) -> None:
    code = enrolled[ERIN.email].recovery_code
    tokens = fresh_mfa_tokens(mfa, ERIN, 20, BASIC)

    responses = concurrently(
        mfa.server.token_url,
        [token_request(BASIC, grant_type=MFA_RECOVERY_CODE, mfa_token=t, recovery_code=code) for t in tokens],
    )

    tally(MFA_RECOVERY_CODE, responses)
    new_code = winner(responses)["recovery_code"]
    assert isinstance(new_code, str)
    assert new_code != code
    assert burned(database_url, tokens) == 1
    # Exactly one code replaced the old one: the winner's.
    stored = [row[0] for row in query(database_url, "SELECT code_hash FROM recovery_code")]
    assert hashlib.sha256(f"recovery-code:{new_code}".encode()).hexdigest() in stored
    assert hashlib.sha256(f"recovery-code:{code}".encode()).hexdigest() not in stored


def test_one_mfa_token_one_recovery_code_20_times(
    mfa: MfaSetup, enrolled: dict[str, Enrollment], database_url: str
) -> None:
    code = enrolled[FAY.email].recovery_code
    (token,) = fresh_mfa_tokens(mfa, FAY, 1, PUBLIC)

    responses = concurrently(
        mfa.server.token_url,
        [token_request(PUBLIC, grant_type=MFA_RECOVERY_CODE, mfa_token=token, recovery_code=code)] * 20,
    )

    tally(MFA_RECOVERY_CODE, responses)
    assert burned(database_url, [token]) == 1


def test_concurrent_wrong_codes_get_no_more_guesses_than_the_bucket_holds(
    mfa: MfaSetup, enrolled: dict[str, Enrollment]
) -> None:
    """The bucket holds 10 failed attempts: 30 wrong guesses sent at once must not have more than 10 checked.

    A check-then-spend bucket lets every request that reads it before the first failures are written through to
    the code check; the guesses an attacker gets per bucket then grow with the concurrency of the attack.
    """
    phone = enrolled[HENRY.email].phone
    tokens = fresh_mfa_tokens(mfa, HENRY, 30, PUBLIC)
    wrong = phone.wrong_code()

    responses = concurrently(
        mfa.server.token_url, [token_request(PUBLIC, grant_type=MFA_OTP, mfa_token=t, otp=wrong) for t in tokens]
    )

    outcomes = Counter((r.status_code, r.json().get("error")) for r in responses)
    print(f"\n30 concurrent wrong codes: {dict(outcomes)}")
    assert set(outcomes) <= {(403, "invalid_grant"), (429, "too_many_attempts")}
    assert outcomes[(403, "invalid_grant")] <= 10, f"{outcomes[(403, 'invalid_grant')]} guesses were checked"
