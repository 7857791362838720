"""WebAuthn as an attacker sees it (issue 14 follow-ups): lockouts, foreign tokens, enrollment refusals and races.

Each test is an attack through the real app on the real database (SQLite or PostgreSQL): keys are `HandKey`s whose
responses py_webauthn in the app verifies, nothing on the server side is mocked, and the races run over TCP
(`tests.api.serving`). The app runs on a frozen clock so that a ceremony can be let expire.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import os
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from litestar import Litestar
from litestar.testing import TestClient
from sqlalchemy import func, select
from sqlmodel import col

from identity.app import create_app
from identity.clock import FrozenClock
from identity.settings import Argon2Params, Settings
from identity.store.models import AuthenticatorRow, UserRow, WebAuthnChallengeRow, WebAuthnCredentialRow
from tests.api.mfa_support import ALICE_EMAIL, DEFAULT_PASSWORDS, PASSWORD_REALM, T0, mfa_tenant
from tests.api.serving import serving
from tests.api.webauthn_support import INVALID, MFA_WEBAUTHN, WEBAUTHN, HandKey, b64url
from tests.conftest import API, ISSUER, apply, run_db

MFA_AUDIENCE = ISSUER + "mfa/"
OTHER_APP = "other-app"
CAROL, DAVE = "carol@example.test", "dave@example.test"
PASSWORDS = {CAROL: "carol's long password", DAVE: "dave's long password"}
MALFORMED = {"error": "invalid_grant", "error_description": "Malformed mfa_token"}
TOO_MANY = "too_many_attempts"


def tenant() -> dict[str, Any]:
    """`mfa_tenant` (policy ``always``) with the WebAuthn grants on public-app and on a second public client."""
    data = copy.deepcopy(mfa_tenant("always"))
    for client in data["clients"]:
        if client["client_id"] == "public-app":
            client["grant_types"] = [*client["grant_types"], MFA_WEBAUTHN, WEBAUTHN]
    data["clients"].append(
        {
            "client_id": OTHER_APP,
            "name": "Another public app",
            "token_endpoint_auth_method": "none",
            "grant_types": ["password", PASSWORD_REALM, MFA_WEBAUTHN, WEBAUTHN],
            "connections": ["customers", "employees"],
        }
    )
    data["users"] += [{"connection": "customers", "email": email, "password": pw} for email, pw in PASSWORDS.items()]
    return data


@pytest.fixture
def cheap(settings: Settings) -> Settings:
    """The emptied database with `tenant`, passwords hashed cheaply (these tests log in a lot)."""
    cheap = dataclasses.replace(settings, argon2=Argon2Params(time_cost=1, memory_kib=64, parallelism=1))
    apply(cheap, tenant())
    return cheap


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(T0)


@pytest.fixture
def web(cheap: Settings, clock: FrozenClock) -> Iterator[TestClient[Litestar]]:
    with TestClient(create_app(cheap, clock=clock), base_url="https://identity.test") as test_client:
        yield test_client


# --- the steps of the flows ---------------------------------------------------------------------------------------


def mfa_token(
    web: TestClient[Litestar], username: str = ALICE_EMAIL, client_id: str = "public-app", **extra: Any
) -> str:
    password = PASSWORDS.get(username, DEFAULT_PASSWORDS["customers"])
    form = {"grant_type": "password", "client_id": client_id, "username": username, "password": password, **extra}
    response = web.post("/oauth/token", data=form)
    assert response.status_code == 403 and response.json()["error"] == "mfa_required", response.text
    return str(response.json()["mfa_token"])


def associate(web: TestClient[Litestar], token: str) -> dict[str, Any]:
    """``/mfa/associate`` for a security key: the creation options bound to the mfa_token."""
    response = web.post(
        "/mfa/associate", json={"authenticator_types": ["webauthn"]}, headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 200, response.text
    options: dict[str, Any] = response.json()["publicKey"]
    return options


def grant(web: TestClient[Litestar], client_id: str = "public-app", **body: Any) -> httpx.Response:
    return web.post("/oauth/token", json={"client_id": client_id, **body})


def enroll(web: TestClient[Litestar], key: HandKey, username: str = ALICE_EMAIL) -> None:
    token = mfa_token(web, username)
    confirmed = grant(web, grant_type=MFA_WEBAUTHN, mfa_token=token, authn_response=key.create(associate(web, token)))
    assert confirmed.status_code == 200, confirmed.text


def key_challenge(web: TestClient[Litestar], token: str, client_id: str = "public-app", **extra: str) -> Any:
    form = {"client_id": client_id, "mfa_token": token, "challenge_type": "webauthn", **extra}
    return web.post("/mfa/challenge", data=form)


def second_factor(web: TestClient[Litestar], key: HandKey, client_id: str = "public-app", **login: Any) -> Any:
    """Password then the key: the token response (200) or the refusal."""
    token = mfa_token(web, client_id=client_id, **login)
    options = key_challenge(web, token, client_id).json()["publicKey"]
    return grant(web, client_id, grant_type=MFA_WEBAUTHN, mfa_token=token, authn_response=key.get(options))


def access_token(web: TestClient[Litestar], key: HandKey, client_id: str = "public-app", **login: Any) -> str:
    signed_in = second_factor(web, key, client_id, **login)
    assert signed_in.status_code == 200, signed_in.text
    return str(signed_in.json()["access_token"])


def register(web: TestClient[Litestar], bearer: str, client_id: str = "public-app") -> Any:
    return web.post("/passkey/register", json={"client_id": client_id}, headers={"Authorization": f"Bearer {bearer}"})


def passkey_sign_in(
    web: TestClient[Litestar], key: HandKey, user_handle: str | None = None, *, with_id: bool = True
) -> Any:
    started = web.post("/passkey/challenge", data={"client_id": "public-app"}).json()
    answer = key.get(started["authn_params_public_key"], user_handle=user_handle)
    if not with_id:  # the key is then found by the user handle alone
        del answer["id"], answer["rawId"]
    return grant(web, grant_type=WEBAUTHN, auth_session=started["auth_session"], authn_response=answer)


def count(settings: Settings, query: Any) -> int:
    async def work(session: Any, _: Any) -> int:
        return int((await session.execute(query)).scalar_one())

    return run_db(settings, work)


def keys_of(settings: Settings, email: str) -> int:
    """How many WebAuthn keys (active authenticators of kind webauthn, and credential rows) the user has."""
    user = select(UserRow.id).where(col(UserRow.email) == email)
    authenticators = count(
        settings,
        select(func.count())
        .select_from(AuthenticatorRow)
        .where(col(AuthenticatorRow.user_pk).in_(user), col(AuthenticatorRow.kind) == "webauthn"),
    )
    credentials = count(
        settings,
        select(func.count()).select_from(WebAuthnCredentialRow).where(col(WebAuthnCredentialRow.user_pk).in_(user)),
    )
    assert authenticators == credentials
    return credentials


# --- 1. nobody without a credential can lock the owner of a passkey out -------------------------------------------


def test_forged_passkey_responses_do_not_lock_the_owner_out(web: TestClient[Litestar]) -> None:
    """Alice has a passkey (registered with the passkey API, so a discoverable one with her user handle). An attacker
    who has no credential but knows its id (not a secret: it is sent in the clear with every assertion) or Alice's
    user handle sends forged responses, many more than the bucket of 10: they are refused one by one and count
    against nobody; Alice then signs in with her passkey, and her security key still works as a second factor."""
    security_key, passkey = HandKey(None), HandKey(None)
    enroll(web, security_key)
    bearer = access_token(web, security_key, audience=MFA_AUDIENCE, scope="enroll")
    registration = register(web, bearer).json()
    handle = registration["authn_params_public_key"]["user"]["id"]
    created = passkey.create(registration["authn_params_public_key"], flags=0x45)
    assert (
        grant(web, grant_type=WEBAUTHN, auth_session=registration["auth_session"], authn_response=created).status_code
        == 200
    )

    forger = HandKey(None)  # another private key, claiming to be Alice's passkey
    forger.credential_id = passkey.credential_id
    for attempt in range(15):
        by_id = attempt % 2 == 0
        refused = passkey_sign_in(web, forger, user_handle=None if by_id else handle, with_id=by_id)
        assert (refused.status_code, refused.json()) == (403, INVALID), refused.text

    assert passkey_sign_in(web, passkey, user_handle=handle).status_code == 200
    assert second_factor(web, security_key).status_code == 200  # the OTP/key bucket was not touched either


# --- 2. /passkey/register takes only an enroll token of the MFA API, issued to the client it names -------------------


def test_passkey_register_refuses_a_token_of_another_client_api_or_scope(
    web: TestClient[Litestar], cheap: Settings
) -> None:
    """A passkey registered through client B's ceremony signs in to B: a token of client A must not start one, nor
    a token for another API, nor an MFA-API token without ``enroll``. Every refusal is 401 ``invalid_token`` and
    leaves no ceremony behind."""
    key = HandKey(None)
    enroll(web, key)
    others = access_token(web, key, OTHER_APP, audience=MFA_AUDIENCE, scope="enroll")
    api_token = access_token(web, key, audience=API)
    no_enroll = access_token(web, key, audience=MFA_AUDIENCE, scope="read:authenticators")
    for bearer in (others, api_token, no_enroll):
        refused = register(web, bearer, "public-app")
        assert refused.status_code == 401 and refused.json()["error"] == "invalid_token", refused.text
        assert "enroll" in refused.headers["www-authenticate"]
    ceremonies = select(func.count()).select_from(WebAuthnChallengeRow)
    assert count(cheap, ceremonies.where(col(WebAuthnChallengeRow.purpose) == "passkey-register")) == 0

    own = register(web, others, OTHER_APP)  # the same token, at the client it was issued to
    assert own.status_code == 200, own.text
    passkey = HandKey(None)
    created = passkey.create(own.json()["authn_params_public_key"], flags=0x45)
    assert grant(web, OTHER_APP, grant_type=WEBAUTHN, auth_session=own.json()["auth_session"],
                 authn_response=created).status_code == 200  # fmt: skip


# --- 3. confirming an enrollment: every refusal is the contract's error and changes nothing -----------------------


def test_refused_enrollment_confirmations_change_nothing(web: TestClient[Litestar], cheap: Settings) -> None:
    """A wrong challenge, another user's pending enrollment (both ways), then the owners confirm their own."""
    alice = mfa_token(web)
    alice_options = associate(web, alice)
    employee = mfa_token(web, grant_type=PASSWORD_REALM, realm="employees", password=DEFAULT_PASSWORDS["employees"])
    employee_options = associate(web, employee)
    alice_key, employee_key = HandKey(None), HandKey(None)

    forged = alice_key.create({**alice_options, "challenge": b64url(os.urandom(32))})
    crossed = [
        (alice, forged),
        (alice, alice_key.create(employee_options)),
        (employee, employee_key.create(alice_options)),
    ]
    for token, attestation in crossed:
        refused = grant(web, grant_type=MFA_WEBAUTHN, mfa_token=token, authn_response=attestation)
        assert (refused.status_code, refused.json()) == (403, INVALID), refused.text
    assert keys_of(cheap, ALICE_EMAIL) == 0
    answered = (
        select(func.count()).select_from(WebAuthnChallengeRow).where(col(WebAuthnChallengeRow.consumed_at).isnot(None))
    )
    assert count(cheap, answered) == 0

    for token, key, options in ((alice, alice_key, alice_options), (employee, employee_key, employee_options)):
        confirmed = grant(web, grant_type=MFA_WEBAUTHN, mfa_token=token, authn_response=key.create(options))
        assert confirmed.status_code == 200, confirmed.text
    assert keys_of(cheap, ALICE_EMAIL) == 2  # one key for each of the two users called alice@example.test


def test_a_replayed_or_expired_enrollment_is_refused(
    web: TestClient[Litestar], cheap: Settings, clock: FrozenClock
) -> None:
    token = mfa_token(web)
    key = HandKey(None)
    late = key.create(associate(web, token))
    clock.advance(301)  # the ceremony's five minutes are over; the mfa_token (ten minutes) is still live
    refused = grant(web, grant_type=MFA_WEBAUTHN, mfa_token=token, authn_response=late)
    assert (refused.status_code, refused.json()) == (403, INVALID), refused.text
    assert keys_of(cheap, ALICE_EMAIL) == 0

    attestation = key.create(associate(web, token))  # the same mfa_token asks again, in time
    assert grant(web, grant_type=MFA_WEBAUTHN, mfa_token=token, authn_response=attestation).status_code == 200
    replayed = grant(web, grant_type=MFA_WEBAUTHN, mfa_token=token, authn_response=attestation)
    assert (replayed.status_code, replayed.json()) == (403, MALFORMED), replayed.text
    with_a_new_token = grant(web, grant_type=MFA_WEBAUTHN, mfa_token=mfa_token(web), authn_response=attestation)
    assert (with_a_new_token.status_code, with_a_new_token.json()) == (403, INVALID), with_a_new_token.text
    assert keys_of(cheap, ALICE_EMAIL) == 1


def test_a_second_pending_enrollment_is_refused_once_the_first_is_confirmed(
    web: TestClient[Litestar], cheap: Settings
) -> None:
    """Someone with Carol's password starts an enrollment of their own key while Carol starts hers (both allowed:
    she has no factor yet). Carol confirms first: the other enrollment is moot, and it registers nothing."""
    carols, intruders = mfa_token(web, CAROL), mfa_token(web, CAROL)
    carols_options, intruders_options = associate(web, carols), associate(web, intruders)
    carol_key, intruder_key = HandKey(None), HandKey(None)
    assert grant(web, grant_type=MFA_WEBAUTHN, mfa_token=carols,
                 authn_response=carol_key.create(carols_options)).status_code == 200  # fmt: skip
    refused = grant(
        web, grant_type=MFA_WEBAUTHN, mfa_token=intruders, authn_response=intruder_key.create(intruders_options)
    )
    assert (refused.status_code, refused.json()) == (403, INVALID), refused.text
    assert keys_of(cheap, CAROL) == 1
    assert second_factor(web, carol_key, username=CAROL).status_code == 200


def _outcomes(answers: list[httpx.Response]) -> Counter[str]:
    def outcome(response: httpx.Response) -> str:
        if response.status_code == 200:
            return "confirmed"
        body = response.json()
        assert response.status_code in (403, 429), response.text
        assert body in (INVALID, MALFORMED) or body["error"] == TOO_MANY, body
        return "refused"

    return Counter(outcome(answer) for answer in answers)


async def test_one_attestation_sent_many_times_at_once_confirms_once(cheap: Settings, clock: FrozenClock) -> None:
    app = create_app(cheap, clock=clock)
    async with serving(app) as client:
        form = {"grant_type": "password", "client_id": "public-app", "username": DAVE, "password": PASSWORDS[DAVE]}
        token = (await client.post("/oauth/token", data=form)).json()["mfa_token"]
        associated = await client.post(
            "/mfa/associate", json={"authenticator_types": ["webauthn"]}, headers={"Authorization": f"Bearer {token}"}
        )
        body = {"client_id": "public-app", "grant_type": MFA_WEBAUTHN, "mfa_token": token,
                "authn_response": HandKey(None).create(associated.json()["publicKey"])}  # fmt: skip
        answers = await asyncio.gather(*(client.post("/oauth/token", json=body) for _ in range(20)))
    assert _outcomes(list(answers)) == {"confirmed": 1, "refused": 19}
    assert await asyncio.to_thread(keys_of, cheap, DAVE) == 1  # run_db has its own event loop


async def test_enrollments_of_one_user_confirmed_at_once_register_one_key(cheap: Settings, clock: FrozenClock) -> None:
    """Eight enrollments of Dave (eight mfa_tokens, eight keys) confirmed concurrently: the first factor is one key."""
    app = create_app(cheap, clock=clock)
    async with serving(app) as client:
        form = {"grant_type": "password", "client_id": "public-app", "username": DAVE, "password": PASSWORDS[DAVE]}
        bodies = []
        for _ in range(8):
            token = (await client.post("/oauth/token", data=form)).json()["mfa_token"]
            associated = await client.post(
                "/mfa/associate",
                json={"authenticator_types": ["webauthn"]},
                headers={"Authorization": f"Bearer {token}"},
            )
            bodies.append({"client_id": "public-app", "grant_type": MFA_WEBAUTHN, "mfa_token": token,
                           "authn_response": HandKey(None).create(associated.json()["publicKey"])})  # fmt: skip
        answers = await asyncio.gather(*(client.post("/oauth/token", json=body) for body in bodies))
    assert _outcomes(list(answers)) == {"confirmed": 1, "refused": 7}
    assert await asyncio.to_thread(keys_of, cheap, DAVE) == 1  # run_db has its own event loop


# --- 4. /mfa/challenge for one authenticator names that key alone -------------------------------------------------


def test_a_challenge_for_one_key_allows_that_key_alone(web: TestClient[Litestar]) -> None:
    first, second = HandKey(None), HandKey(None)
    enroll(web, first)
    registration = register(web, access_token(web, first, audience=MFA_AUDIENCE, scope="enroll")).json()
    created = second.create(registration["authn_params_public_key"], flags=0x45)
    assert (
        grant(web, grant_type=WEBAUTHN, auth_session=registration["auth_session"], authn_response=created).status_code
        == 200
    )
    token = mfa_token(web)
    listed = web.get("/mfa/authenticators", headers={"Authorization": f"Bearer {token}"}).json()
    ids = [entry["id"] for entry in listed if entry["authenticator_type"] == "webauthn"]
    assert len(ids) == 2

    def allowed(**extra: str) -> list[str]:
        response = key_challenge(web, token, **extra)
        assert response.status_code == 200, response.text
        return [entry["id"] for entry in response.json()["publicKey"]["allowCredentials"]]

    assert allowed(authenticator_id=ids[0]) == [b64url(first.credential_id)]
    assert allowed(authenticator_id=ids[1]) == [b64url(second.credential_id)]
    assert sorted(allowed()) == sorted([b64url(first.credential_id), b64url(second.credential_id)])
    unknown = key_challenge(web, token, authenticator_id="webauthn|dev_unknown")
    assert unknown.status_code in (400, 403) and unknown.json()["error"] == "unsupported_challenge_type", unknown.text
