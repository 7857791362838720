"""WebAuthn's stored state on a real SQLite database: ceremonies (`Ceremonies`), keys (`KeyStore`), and the
refusals of `WebAuthnService` that need no authenticator.

A response is found by the challenge in its ``clientDataJSON``; a challenge answers only its own purpose, binding
and lifetime, and burns once. Keys are found by credential id or user handle, and never across users.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from identity.accounts.errors import AccountError
from identity.accounts.factors import AttemptBucket
from identity.accounts.webauthn.ceremonies import CEREMONY_SECONDS, Ceremonies
from identity.accounts.webauthn.grants import WebAuthnFactors
from identity.accounts.webauthn.keys import KeyStore
from identity.accounts.webauthn.policy import MAX_CREDENTIALS_PER_USER
from identity.accounts.webauthn.records import Pending, Purpose
from identity.accounts.webauthn.service import WebAuthnService
from identity.clock import FrozenClock
from identity.oauth2.interfaces import FactorCheck, MfaTransaction
from identity.settings import Settings
from identity.store.models import (
    AuthenticatorRow,
    ConnectionRow,
    MfaTransactionRow,
    UserRow,
    WebAuthnCredentialRow,
)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def answering(challenge: bytes, **extra: Any) -> dict[str, Any]:
    """A credential whose ``clientDataJSON`` answers ``challenge`` (no signature: enough to find the ceremony)."""
    client_data = {"type": "webauthn.get", "challenge": b64url(challenge), "origin": "https://id.unit.test"}
    return {"response": {"clientDataJSON": b64url(json.dumps(client_data).encode())}, **extra}


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock()


@pytest.fixture
async def session(db_sessions: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    async with db_sessions() as session:
        yield session


async def add_user(session: AsyncSession, name: str) -> int:
    connection = ConnectionRow(name=f"conn-{name}")
    session.add(connection)
    await session.flush()
    user = UserRow(
        user_id=f"auth0|{name}", connection_id=connection.id or 0, email=f"{name}@unit.test",
        email_key=f"{name}@unit.test", password_hash="not a hash: this user never signs in",
    )  # fmt: skip
    session.add(user)
    await session.commit()
    return user.id or 0


async def add_key(session: AsyncSession, user_pk: int, credential_id: bytes, clock: FrozenClock) -> None:
    at = datetime.fromtimestamp(clock.now(), UTC)
    authenticator = AuthenticatorRow(
        public_id=f"webauthn|dev_{credential_id.hex()}", user_pk=user_pk, kind="webauthn", secret="", active=True,
        created_at=at, confirmed_at=at,
    )  # fmt: skip
    session.add(authenticator)
    await session.flush()
    session.add(
        WebAuthnCredentialRow(
            authenticator_pk=authenticator.id or 0, user_pk=user_pk, credential_id=credential_id,
            public_key=b"cose", name="key", transports=["usb", "carrier-pigeon"], created_at=at,
        )
    )  # fmt: skip
    await session.commit()


async def add_transaction(session: AsyncSession, user_pk: int, expires_at: datetime) -> MfaTransactionRow:
    row = MfaTransactionRow(
        token_hash=b64url(expires_at.isoformat().encode())[:64], client_id="app", user_pk=user_pk,
        connection="customers", grant_type="password", expires_at=expires_at,
    )  # fmt: skip
    session.add(row)
    await session.commit()
    return row


# --- ceremonies ---------------------------------------------------------------------------------------------


async def test_a_response_finds_the_live_ceremony_of_its_purpose(session: AsyncSession, clock: FrozenClock) -> None:
    ceremonies = Ceremonies(session, clock)
    challenge = await ceremonies.issue(Purpose.PAGE_ASSERT, user_verification="required", client_id="app")
    await session.commit()

    found = await ceremonies.answered(answering(challenge), Purpose.PAGE_ASSERT)
    assert found is not None
    assert (found.purpose, found.client_id, found.user_verification) == ("page-assert", "app", "required")
    assert await ceremonies.answered(answering(challenge), Purpose.MFA_ASSERT) is None
    assert await ceremonies.answered(answering(b"another challenge"), Purpose.PAGE_ASSERT) is None

    clock.advance(CEREMONY_SECONDS)
    assert await ceremonies.answered(answering(challenge), Purpose.PAGE_ASSERT) is None


@pytest.mark.parametrize(
    "credential",
    [
        {},
        {"response": "not an object"},
        {"response": {"clientDataJSON": "!!not base64url!!"}},
        {"response": {"clientDataJSON": b64url(b"not json")}},
        {"response": {"clientDataJSON": b64url(b'{"no": "challenge"}')}},
        {"response": {"clientDataJSON": b64url(b'{"challenge": 7}')}},
    ],
)
async def test_a_malformed_response_answers_no_ceremony(
    session: AsyncSession, clock: FrozenClock, credential: dict[str, Any]
) -> None:
    assert await Ceremonies(session, clock).answered(credential, Purpose.PAGE_ASSERT) is None


async def test_a_ceremony_answers_only_its_own_binding(session: AsyncSession, clock: FrozenClock) -> None:
    user_pk = await add_user(session, "bound")
    now = datetime.fromtimestamp(clock.now(), UTC)
    mine = await add_transaction(session, user_pk, now + timedelta(seconds=60))
    other = await add_transaction(session, user_pk, now + timedelta(seconds=61))
    ceremonies = Ceremonies(session, clock)
    challenge = await ceremonies.issue(
        Purpose.MFA_ASSERT, user_verification="preferred", user_pk=user_pk, transaction=mine, session_binding="s1"
    )
    await session.commit()
    credential = answering(challenge)

    assert await ceremonies.answered(credential, Purpose.MFA_ASSERT, transaction_pk=other.id) is None
    assert await ceremonies.answered(credential, Purpose.MFA_ASSERT, session_binding="s2") is None
    found = await ceremonies.answered(credential, Purpose.MFA_ASSERT, transaction_pk=mine.id, session_binding="s1")
    assert found is not None and found.transaction_pk == mine.id
    # Bound to an mfa_token, the challenge dies with it, before CEREMONY_SECONDS.
    clock.advance(60)
    assert await ceremonies.answered(credential, Purpose.MFA_ASSERT, transaction_pk=mine.id) is None


async def test_a_ceremony_burns_once(session: AsyncSession, clock: FrozenClock) -> None:
    ceremonies = Ceremonies(session, clock)
    challenge = await ceremonies.issue(Purpose.PASSKEY_ASSERT, user_verification="preferred", session_binding="as")
    await session.commit()
    found = await ceremonies.of_session("as", [Purpose.PASSKEY_ASSERT])
    assert found is not None

    now = datetime.fromtimestamp(clock.now(), UTC)
    assert await ceremonies.burn(found, now) is True
    await session.commit()
    assert await ceremonies.burn(found, now) is False
    assert await ceremonies.answered(answering(challenge), Purpose.PASSKEY_ASSERT) is None
    assert await ceremonies.of_session("as", [Purpose.PASSKEY_ASSERT]) is None


async def test_a_session_finds_only_its_live_ceremony_of_the_purposes_asked(
    session: AsyncSession, clock: FrozenClock
) -> None:
    ceremonies = Ceremonies(session, clock)
    await ceremonies.issue(Purpose.PASSKEY_REGISTER, user_verification="preferred", session_binding="as")
    await session.commit()

    assert await ceremonies.of_session("other", [Purpose.PASSKEY_REGISTER]) is None
    assert await ceremonies.of_session("as", [Purpose.PASSKEY_ASSERT]) is None
    assert await ceremonies.of_session("as", [Purpose.PASSKEY_ASSERT, Purpose.PASSKEY_REGISTER]) is not None
    clock.advance(CEREMONY_SECONDS)
    assert await ceremonies.of_session("as", [Purpose.PASSKEY_REGISTER]) is None


# --- keys ---------------------------------------------------------------------------------------------------


async def test_a_user_handle_is_random_and_stable(session: AsyncSession) -> None:
    alice, bob = await add_user(session, "alice"), await add_user(session, "bob")
    keys = KeyStore(session)
    handle = await keys.user_handle(alice)
    assert len(handle) == 32
    assert await keys.user_handle(alice) == handle
    assert await keys.user_handle(bob) != handle
    assert await keys.user_by_handle(handle) == alice
    assert await keys.user_by_handle(b"\0" * 32) is None


async def test_keys_are_found_by_credential_id_never_across_users(session: AsyncSession, clock: FrozenClock) -> None:
    alice, bob = await add_user(session, "alice"), await add_user(session, "bob")
    await add_key(session, alice, b"alice-key", clock)
    keys = KeyStore(session)

    def by_id(raw: str) -> dict[str, Any]:
        return {"rawId": raw}

    assert [row.user_pk for row in await keys.candidates(by_id(b64url(b"alice-key")), {}, None)] == [alice]
    assert [row.user_pk for row in await keys.candidates(by_id(b64url(b"alice-key")), {}, alice)] == [alice]
    assert await keys.candidates(by_id(b64url(b"alice-key")), {}, bob) == []
    assert await keys.candidates(by_id(b64url(b"unknown")), {}, None) == []
    assert await keys.candidates(by_id("!!not base64url!!"), {}, None) == []


async def test_keys_are_found_by_user_handle_which_must_match_the_key(
    session: AsyncSession, clock: FrozenClock
) -> None:
    alice, bob = await add_user(session, "alice"), await add_user(session, "bob")
    await add_key(session, alice, b"alice-key-1", clock)
    await add_key(session, alice, b"alice-key-2", clock)
    await add_key(session, bob, b"bob-key", clock)
    keys = KeyStore(session)
    alice_handle = b64url(await keys.user_handle(alice))

    # A passkey response without a credential id: the handle names the user, whose keys are the candidates.
    found = await keys.candidates({}, {"userHandle": alice_handle}, None)
    assert [bytes(row.credential_id) for row in found] == [b"alice-key-1", b"alice-key-2"]
    # With a credential id, the handle must be its owner's.
    assert await keys.candidates({"id": b64url(b"bob-key")}, {"userHandle": alice_handle}, None) == []
    assert len(await keys.candidates({"id": b64url(b"alice-key-1")}, {"userHandle": alice_handle}, None)) == 1
    # A handle of another user than the one signing in, an unknown handle, a malformed one: nothing.
    assert await keys.candidates({}, {"userHandle": alice_handle}, bob) == []
    assert await keys.candidates({}, {"userHandle": b64url(b"\1" * 32)}, None) == []
    assert await keys.candidates({}, {"userHandle": "!!not base64url!!"}, None) == []
    # Neither a credential id nor a handle: the second-factor user's keys, or none without a user.
    assert len(await keys.candidates({}, {}, bob)) == 1
    assert await keys.candidates({}, {}, None) == []


# --- the service's refusals ---------------------------------------------------------------------------------


@pytest.fixture
def service(session: AsyncSession, clock: FrozenClock) -> WebAuthnService:
    settings = Settings(issuer="https://id.unit.test/", hash_workers=1)
    return WebAuthnService(session, settings, clock)


async def test_registration_options_refuse_an_unknown_user_and_a_full_key_ring(
    service: WebAuthnService, session: AsyncSession, clock: FrozenClock
) -> None:
    with pytest.raises(AccountError, match="unknown user"):
        await service.registration_options(999_999, Purpose.PAGE_REGISTER)
    user_pk = await add_user(session, "collector")
    await add_key(session, user_pk, b"first", clock)
    options = await service.registration_options(user_pk, Purpose.PAGE_REGISTER)
    assert [item["id"] for item in options["excludeCredentials"]] == [b64url(b"first")]
    assert options["excludeCredentials"][0]["transports"] == ["usb"]  # an unknown transport is left out
    for n in range(1, MAX_CREDENTIALS_PER_USER):
        await add_key(session, user_pk, f"key-{n}".encode(), clock)
    with pytest.raises(AccountError, match="too many security keys"):
        await service.registration_options(user_pk, Purpose.PAGE_REGISTER)


async def test_a_registration_without_a_user_or_with_a_malformed_attestation_is_refused(
    service: WebAuthnService, session: AsyncSession
) -> None:
    user_pk = await add_user(session, "registering")
    options = await service.registration_options(user_pk, Purpose.PAGE_REGISTER)
    credential = answering(base64.urlsafe_b64decode(options["challenge"] + "=="))
    ceremony = await service.ceremony(credential, Purpose.PAGE_REGISTER)
    assert ceremony is not None and ceremony.user_pk == user_pk

    anonymous = Pending(ceremony.id, ceremony.purpose, None, None, None, None, "preferred")
    assert (await service.register(anonymous, credential, name="k")).reason == "no user"
    refused = await service.register(ceremony, {**credential, "id": "x", "rawId": "x"}, name="k")
    assert refused.check is FactorCheck.INVALID
    assert await service.credentials(user_pk) == []
    # The refused attestation did not burn the challenge.
    assert await service.ceremony(credential, Purpose.PAGE_REGISTER) is not None


async def test_an_assertion_from_no_known_key_is_refused(service: WebAuthnService, session: AsyncSession) -> None:
    options = await service.authentication_options(Purpose.PASSKEY_ASSERT)
    assert options["allowCredentials"] == []
    credential = answering(base64.urlsafe_b64decode(options["challenge"] + "=="), rawId=b64url(b"unknown"))
    ceremony = await service.ceremony(credential, Purpose.PASSKEY_ASSERT)
    assert ceremony is not None
    taken: list[int] = []

    async def take(user_pk: int) -> bool:
        taken.append(user_pk)
        return True

    outcome = await service.authenticate(ceremony, credential, user_pk=None, take_attempt=take)
    assert outcome.check is FactorCheck.INVALID
    assert taken == []  # no key, no user: nothing to draw from


async def test_an_assertion_draws_an_attempt_first_and_never_comes_from_an_excluded_key(
    service: WebAuthnService, session: AsyncSession, clock: FrozenClock
) -> None:
    user_pk = await add_user(session, "signing")
    await add_key(session, user_pk, b"the-key", clock)
    options = await service.authentication_options(Purpose.MFA_ASSERT, user_pk=user_pk)
    assert [item["id"] for item in options["allowCredentials"]] == [b64url(b"the-key")]
    credential = answering(base64.urlsafe_b64decode(options["challenge"] + "=="), rawId=b64url(b"the-key"))
    ceremony = await service.ceremony(credential, Purpose.MFA_ASSERT)
    assert ceremony is not None
    taken: list[int] = []

    async def empty_bucket(owner: int) -> bool:
        taken.append(owner)
        return False

    async def full_bucket(owner: int) -> bool:
        taken.append(owner)
        return True

    limited = await service.authenticate(ceremony, credential, user_pk=user_pk, take_attempt=empty_bucket)
    assert (limited.check, taken) == (FactorCheck.RATE_LIMITED, [user_pk])
    excluded = await service.authenticate(
        ceremony, credential, user_pk=user_pk, take_attempt=full_bucket, exclude=f"webauthn|dev_{b'the-key'.hex()}"
    )
    assert (excluded.check, taken) == (FactorCheck.INVALID, [user_pk])
    # No signature at all: the key's check fails and the ceremony stays unanswered.
    unsigned = await service.authenticate(ceremony, credential, user_pk=user_pk, take_attempt=full_bucket)
    assert unsigned.check is FactorCheck.INVALID and not unsigned.cloned
    assert taken == [user_pk, user_pk]
    assert await service.ceremony(credential, Purpose.MFA_ASSERT) is not None


# --- the grants' factor (WebAuthnFactors) -------------------------------------------------------------------


@pytest.fixture
def factors(service: WebAuthnService, session: AsyncSession, clock: FrozenClock) -> WebAuthnFactors:
    return WebAuthnFactors(service, AttemptBucket(session, clock))


def challenge_in(options: dict[str, Any]) -> bytes:
    return base64.urlsafe_b64decode(options["challenge"] + "==")


async def empty_the_bucket(factors: WebAuthnFactors, user_pk: int) -> None:
    while await factors.attempts.reserve(user_pk):
        pass


async def test_a_passkey_response_answers_only_its_auth_session_and_client(
    factors: WebAuthnFactors, service: WebAuthnService
) -> None:
    options = await service.authentication_options(Purpose.PASSKEY_ASSERT, session_binding="as-1", client_id="app")
    other = await service.authentication_options(Purpose.PASSKEY_ASSERT, session_binding="as-2", client_id="app")
    credential = answering(challenge_in(options), rawId=b64url(b"unknown"))

    unknown = await factors.passkey("app", "as-unknown", credential)
    assert (unknown.check, unknown.session_unknown) == (FactorCheck.INVALID, True)
    crossed = await factors.passkey("app", "as-2", credential)  # the response answers as-1's challenge
    assert (crossed.check, crossed.session_unknown) == (FactorCheck.INVALID, False)
    other_client = await factors.passkey("other-app", "as-1", credential)
    assert (other_client.check, other_client.session_unknown) == (FactorCheck.INVALID, True)
    # Okta's form (no auth_session): the challenge names the ceremony, which must still be this client's.
    okta = await factors.passkey("other-app", None, answering(challenge_in(other)))
    assert (okta.check, okta.session_unknown) == (FactorCheck.INVALID, True)
    no_key = await factors.passkey("app", None, credential)
    assert (no_key.check, no_key.session_unknown, no_key.user) == (FactorCheck.INVALID, False, None)


async def test_a_passkey_registration_needs_an_attempt_of_its_user(
    factors: WebAuthnFactors, service: WebAuthnService, session: AsyncSession
) -> None:
    user_pk = await add_user(session, "passkey")
    options = await service.registration_options(
        user_pk, Purpose.PASSKEY_REGISTER, session_binding="as-reg", client_id="app"
    )
    credential = answering(challenge_in(options))
    refused = await factors.passkey("app", "as-reg", credential)
    assert refused.check is FactorCheck.INVALID  # a malformed attestation, and the attempt it cost stays spent
    await empty_the_bucket(factors, user_pk)
    assert (await factors.passkey("app", "as-reg", credential)).check is FactorCheck.RATE_LIMITED
    assert await service.credentials(user_pk) == []


async def transaction_of(session: AsyncSession, user_pk: int, clock: FrozenClock) -> MfaTransaction:
    expires = datetime.fromtimestamp(clock.now(), UTC) + timedelta(seconds=300)
    row = await add_transaction(session, user_pk, expires)
    user = await session.get(UserRow, user_pk)
    assert row.id is not None and user is not None
    return MfaTransaction(
        id=row.id, client_id="app", user_id=user.user_id, connection="customers", grant_type="password",
        audience=None, scopes=(), expires_at=expires.timestamp(), consumed=False,
    )  # fmt: skip


async def test_an_mfa_assertion_for_no_challenge_of_the_token_still_costs_an_attempt(
    factors: WebAuthnFactors, service: WebAuthnService, session: AsyncSession, clock: FrozenClock
) -> None:
    user_pk = await add_user(session, "second-factor")
    await add_key(session, user_pk, b"the-user-s-key", clock)  # options are refused to a user with no key
    transaction = await transaction_of(session, user_pk, clock)
    stray = answering(challenge_in(await service.authentication_options(Purpose.MFA_ASSERT, user_pk=user_pk)))

    assert (await factors.check_assertion(transaction, stray)).check is FactorCheck.INVALID
    await empty_the_bucket(factors, user_pk)
    assert (await factors.check_assertion(transaction, stray)).check is FactorCheck.RATE_LIMITED


async def test_an_mfa_enrollment_answers_only_a_challenge_of_its_token_and_user(
    factors: WebAuthnFactors, service: WebAuthnService, session: AsyncSession, clock: FrozenClock
) -> None:
    alice, bob = await add_user(session, "alice"), await add_user(session, "bob")
    transaction = await transaction_of(session, alice, clock)

    async def outcome(user_pk: int, transaction_pk: int | None) -> FactorCheck:
        options = await service.registration_options(user_pk, Purpose.MFA_REGISTER, transaction_pk=transaction_pk)
        return (await factors.confirm_enrollment(transaction, answering(challenge_in(options)))).check

    assert await outcome(bob, transaction.id) is FactorCheck.INVALID  # another user's key for this mfa_token
    assert await outcome(alice, None) is FactorCheck.INVALID  # a challenge bound to no mfa_token
    mine = answering(
        challenge_in(await service.registration_options(alice, Purpose.MFA_REGISTER, transaction_pk=transaction.id))
    )
    await empty_the_bucket(factors, alice)
    assert (await factors.confirm_enrollment(transaction, mine)).check is FactorCheck.RATE_LIMITED
    assert await service.credentials(alice) == []
