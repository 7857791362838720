"""Passkey sign-in as an attacker sees it: challenges and forged assertions are paid from the address's bucket.

``/passkey/challenge`` needs only a public client_id and stores a challenge per call, and a forged passkey
assertion no longer counts against the key's owner (so that nobody can lock the owner out). Both take a token of
the address's suspicious-IP bucket, the one failed password logins draw from; an empty bucket answers the password
grant's 429. The bursts run over TCP (`tests.api.serving`) on the real database, with 127.0.0.1 as a trusted proxy
so that each request names its end user in ``X-Forwarded-For``; keys are `HandKey`s whose signatures py_webauthn
in the app verifies. The app runs on a frozen clock: the bucket never refills during a test.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections import Counter
from typing import Any

import httpx
import pytest
from litestar.testing import TestClient
from sqlalchemy import func, select
from sqlmodel import col

from identity.app import create_app
from identity.clock import FrozenClock
from identity.oauth2.grants.password import SUSPICIOUS
from identity.settings import Argon2Params, Settings
from identity.store.models import AttackCounterRow, WebAuthnChallengeRow
from tests.api.mfa_support import T0
from tests.api.serving import serving
from tests.api.test_webauthn_attacks import MFA_AUDIENCE, access_token, enroll, grant, register, tenant
from tests.api.webauthn_support import INVALID, WEBAUTHN, HandKey
from tests.conftest import apply, run_db

BUCKET = 6
ATTACKER, OWNER = "203.0.113.66", "198.51.100.20"
THROTTLED = {"error": "too_many_attempts", "error_description": SUSPICIOUS}
ONE_PER_HOUR = 3_600_000  # ms per token regained


def throttling(**extra: Any) -> dict[str, Any]:
    return {"enabled": True, "stage": {"pre-login": {"max_attempts": BUCKET, "rate": ONE_PER_HOUR}}, **extra}


def configured(settings: Settings, ip_throttling: dict[str, Any]) -> Settings:
    """`tenant` with this ``suspicious_ip_throttling``; cheap hashes; 127.0.0.1 trusted to name the end user."""
    data = tenant()
    data["tenant"]["suspicious_ip_throttling"] = ip_throttling
    proxied = dataclasses.replace(
        settings,
        argon2=Argon2Params(time_cost=1, memory_kib=64, parallelism=1),
        trusted_proxies=("127.0.0.1",),
    )
    apply(proxied, data)
    return proxied


def alices_passkey(settings: Settings, clock: FrozenClock) -> tuple[HandKey, str]:
    """Alice enrolls a security key, then registers a passkey with the passkey API (in process, not throttled
    here: those calls come from the test transport's own address). Her passkey and her user handle."""
    with TestClient(create_app(settings, clock=clock), base_url="https://identity.test") as web:
        security_key, passkey = HandKey(None), HandKey(None)
        enroll(web, security_key)
        registration = register(web, access_token(web, security_key, audience=MFA_AUDIENCE, scope="enroll")).json()
        created = passkey.create(registration["authn_params_public_key"], flags=0x45)
        answer = grant(web, grant_type=WEBAUTHN, auth_session=registration["auth_session"], authn_response=created)
        assert answer.status_code == 200, answer.text
    return passkey, registration["authn_params_public_key"]["user"]["id"]


def forged_by(passkey: HandKey) -> HandKey:
    """Another private key claiming to be ``passkey`` (its credential id is no secret)."""
    forger = HandKey(None)
    forger.credential_id = passkey.credential_id
    return forger


async def challenge(client: httpx.AsyncClient, address: str) -> httpx.Response:
    return await client.post(
        "/passkey/challenge", data={"client_id": "public-app"}, headers={"x-forwarded-for": address}
    )


async def answer(client: httpx.AsyncClient, address: str, started: dict[str, Any], response: Any) -> httpx.Response:
    body = {"client_id": "public-app", "grant_type": WEBAUTHN, "auth_session": started["auth_session"],
            "authn_response": response}  # fmt: skip
    return await client.post("/oauth/token", json=body, headers={"x-forwarded-for": address})


def outcome(response: httpx.Response) -> str:
    if response.status_code == 429:
        assert response.json() == THROTTLED, response.text
        assert int(response.headers["retry-after"]) == ONE_PER_HOUR // 1000
        return "throttled"
    if response.status_code == 403 and response.json() == INVALID:
        return "refused"
    if response.status_code == 200:
        return "ok"
    return f"{response.status_code} {response.text}"


def count(settings: Settings, query: Any) -> int:
    async def work(session: Any, _: Any) -> int:
        return int((await session.execute(query)).scalar_one())

    return run_db(settings, work)


def passkey_challenges(settings: Settings) -> int:
    query = select(func.count()).select_from(WebAuthnChallengeRow)
    return count(settings, query.where(col(WebAuthnChallengeRow.purpose) == "passkey-assert"))


def spent(settings: Settings, address: str) -> float:
    """Tokens of ``address``'s bucket in use (0 when it has no bucket row)."""

    async def work(session: Any, _: Any) -> float:
        query = select(AttackCounterRow.count).where(
            col(AttackCounterRow.kind) == "ip", col(AttackCounterRow.ip) == address
        )
        return float((await session.execute(query)).scalar() or 0.0)

    return run_db(settings, work)


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(T0)


async def test_a_burst_of_passkey_challenges_stores_no_more_than_the_bucket(
    settings: Settings, clock: FrozenClock
) -> None:
    """Thirty challenges at once from one address: six answered (and stored), the rest 429 with nothing stored;
    Okta's primary-authenticate, which starts the same ceremony, is refused too; another address is not."""
    proxied = await asyncio.to_thread(configured, settings, throttling())
    async with serving(create_app(proxied, clock=clock)) as client:
        answers = await asyncio.gather(*(challenge(client, ATTACKER) for _ in range(30)))
        okta = await client.post(
            "/oauth/primary-authenticate",
            data={"client_id": "public-app", "challenge_hint": WEBAUTHN},
            headers={"x-forwarded-for": ATTACKER},
        )
        elsewhere = await challenge(client, OWNER)

    assert Counter(outcome(response) for response in answers) == {"ok": BUCKET, "throttled": 30 - BUCKET}
    assert outcome(okta) == "throttled"
    assert outcome(elsewhere) == "ok"
    assert await asyncio.to_thread(passkey_challenges, proxied) == BUCKET + 1  # run_db has its own event loop


async def test_forged_assertions_empty_the_attackers_bucket_and_the_owner_still_signs_in(
    settings: Settings, clock: FrozenClock
) -> None:
    """The attacker takes one challenge (a token) and sends twenty forged responses to it at once: five are
    checked and refused, fifteen are 429 without a check, and so is the next challenge. Alice, from her own address,
    signs in with her passkey, and her sign-in gives back both tokens it took."""
    proxied = await asyncio.to_thread(configured, settings, throttling())
    passkey, handle = await asyncio.to_thread(alices_passkey, proxied, clock)
    forger = forged_by(passkey)
    async with serving(create_app(proxied, clock=clock)) as client:
        started = (await challenge(client, ATTACKER)).json()
        options = started["authn_params_public_key"]
        forged = await asyncio.gather(
            *(answer(client, ATTACKER, started, forger.get(options, user_handle=handle)) for _ in range(20))
        )
        again = await challenge(client, ATTACKER)

        owners = await challenge(client, OWNER)
        assert owners.status_code == 200, owners.text
        signed_in = await answer(
            client, OWNER, owners.json(), passkey.get(owners.json()["authn_params_public_key"], user_handle=handle)
        )

    assert Counter(outcome(response) for response in forged) == {"refused": BUCKET - 1, "throttled": 20 - BUCKET + 1}
    assert outcome(again) == "throttled"
    assert signed_in.status_code == 200, signed_in.text
    assert await asyncio.to_thread(spent, proxied, ATTACKER) == BUCKET
    assert await asyncio.to_thread(spent, proxied, OWNER) == 0  # the challenge's token and the sign-in's came back


@pytest.mark.parametrize(
    "ip_throttling",
    [throttling(allowlist=["203.0.113.0/24"]), {**throttling(), "enabled": False}],
    ids=["allow-listed", "disabled"],
)
async def test_unthrottled_addresses_are_not_limited(
    settings: Settings, clock: FrozenClock, ip_throttling: dict[str, Any]
) -> None:
    """An allow-listed address, or any address when suspicious-IP throttling is off: challenges and forged
    responses far past the bucket are answered and refused one by one (as before), and nothing is counted."""
    proxied = await asyncio.to_thread(configured, settings, ip_throttling)
    passkey, handle = await asyncio.to_thread(alices_passkey, proxied, clock)
    forger = forged_by(passkey)
    async with serving(create_app(proxied, clock=clock)) as client:
        challenges = await asyncio.gather(*(challenge(client, ATTACKER) for _ in range(3 * BUCKET)))
        options = [response.json() for response in challenges if response.status_code == 200]
        forged = await asyncio.gather(
            *(
                answer(client, ATTACKER, started, forger.get(started["authn_params_public_key"], user_handle=handle))
                for started in options
            )
        )

    assert Counter(outcome(response) for response in challenges) == {"ok": 3 * BUCKET}
    assert Counter(outcome(response) for response in forged) == {"refused": 3 * BUCKET}
    assert await asyncio.to_thread(spent, proxied, ATTACKER) == 0
