"""grant_type=authorization_code (identity/oauth2/grants/authorization_code.py) and PKCE, with in-memory fakes."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace
from typing import Any

import pytest

from identity.clock import FrozenClock
from identity.oauth2 import pkce as pkce_module
from identity.oauth2.errors import InvalidGrant, InvalidRequest, OAuthError, Unauthorized
from identity.oauth2.first_party import AUTHORIZATION_CODE, MULTI_FACTOR
from identity.oauth2.grants.authorization_code import INVALID_CODE, INVALID_VERIFIER, AuthorizationCodeGrant
from identity.oauth2.interfaces import GrantResult, User
from identity.oauth2.requests import TokenRequest
from tests.unit.oauth2.fakes import API, CUSTOMERS, RecordingIssuer, make_client, standard_fakes
from tests.unit.oauth2.first_party_fakes import FakeFirstParty, FakeLookup, FakeRefreshTokens, pkce

APP = make_client("app", grant_types=(AUTHORIZATION_CODE, "refresh_token"))
OTHER = make_client("other", grant_types=(AUTHORIZATION_CODE,))


@dataclass
class World:
    grant: AuthorizationCodeGrant
    store: FakeFirstParty
    issuer: RecordingIssuer
    refresh: FakeRefreshTokens
    clock: FrozenClock
    lookup: FakeLookup
    alice: User

    async def code(self, scopes: tuple[str, ...] = ("openid", "offline_access", "read:a")) -> tuple[str, str]:
        """A code for Alice (as the endpoint makes them) and its verifier."""
        verifier, challenge = pkce()
        result = GrantResult(AUTHORIZATION_CODE, APP, self.alice, CUSTOMERS, API, API.identifier, scopes)
        _, session = await self.store.start(result, code_challenge=challenge, pending=True, auth_time=1.0)
        code = await self.store.issue_code(
            session, amr=("pwd", "mfa", "otp"), acr=MULTI_FACTOR, auth_time=self.clock.now()
        )
        return code, verifier

    async def redeem(self, code: str, verifier: str | None, client: Any = APP) -> Any:
        params = {"grant_type": AUTHORIZATION_CODE, "code": code}
        if verifier is not None:
            params["code_verifier"] = verifier
        return await self.grant.handle(TokenRequest(params), client)

    async def fails(self, code: str, verifier: str | None, client: Any = APP) -> OAuthError:
        with pytest.raises(OAuthError) as caught:
            await self.redeem(code, verifier, client)
        return caught.value


@pytest.fixture
def world() -> World:
    tenant, users, issuer = standard_fakes(clients=[APP, OTHER])
    api = replace(API, allow_offline_access=True)
    tenant.apis[api.identifier] = api
    alice = users.accounts[("customers", "alice@example.test")][1]
    clock = FrozenClock()
    store, refresh, lookup = FakeFirstParty(clock), FakeRefreshTokens(), FakeLookup(alice)
    grant = AuthorizationCodeGrant(tenant, store, lookup, refresh, issuer, clock)
    return World(grant, store, issuer, refresh, clock, lookup, alice)


async def test_a_code_issues_what_was_authenticated(world: World) -> None:
    code, verifier = await world.code()
    response = await world.redeem(code, verifier)
    (result,) = world.issuer.results
    assert result.grant_type == AUTHORIZATION_CODE and result.user == world.alice
    assert result.amr == ("pwd", "mfa", "otp") and result.acr == MULTI_FACTOR and result.auth_time == world.clock.now()
    assert result.scopes == ("openid", "offline_access", "read:a") and result.audience == API.identifier
    # The grant minted the refresh token itself, so the code can name its family.
    assert result.refresh_token == "rt-0" and world.store.families == {
        next(iter(world.store.codes.values())).id: "family-0"
    }
    assert response.access_token == "access-token-1"


async def test_no_refresh_token_without_offline_access(world: World) -> None:
    code, verifier = await world.code(scopes=("read:a",))
    await world.redeem(code, verifier)
    assert world.issuer.results[0].refresh_token is None and world.refresh.tokens == {}


async def test_refusals_that_spend_nothing(world: World) -> None:
    code, verifier = await world.code()
    missing = await world.fails(code, None)
    assert isinstance(missing, InvalidRequest) and missing.description == "missing code_verifier parameter"
    for wrong in (pkce()[0], "short", verifier + "x"):
        refused = await world.fails(code, wrong)
        assert isinstance(refused, InvalidGrant) and refused.description == INVALID_VERIFIER
    other = await world.fails(code, verifier, OTHER)
    assert isinstance(other, InvalidGrant) and other.description == INVALID_CODE
    unknown = await world.fails("made-up", verifier)
    assert isinstance(unknown, InvalidGrant) and unknown.description == INVALID_CODE
    assert world.issuer.results == []
    await world.redeem(code, verifier)  # still good for the one who holds the verifier


async def test_an_expired_code(world: World) -> None:
    code, verifier = await world.code()
    world.clock.advance(60)
    assert (await world.fails(code, verifier)).description == INVALID_CODE


async def test_reuse_with_the_verifier_revokes_the_family_and_without_it_does_not(world: World) -> None:
    code, verifier = await world.code()
    await world.redeem(code, verifier)
    assert (await world.fails(code, pkce()[0])).description == INVALID_CODE
    assert world.refresh.revoked == []
    assert (await world.fails(code, verifier)).description == INVALID_CODE
    assert world.refresh.revoked == [("family-0", "code_reuse")]
    assert len(world.issuer.results) == 1


async def test_concurrent_redemptions_issue_once(world: World) -> None:
    code, verifier = await world.code()
    outcomes = await asyncio.gather(*(world.redeem(code, verifier) for _ in range(25)), return_exceptions=True)
    assert sum(not isinstance(outcome, BaseException) for outcome in outcomes) == 1
    assert all(isinstance(o, InvalidGrant) for o in outcomes if isinstance(o, BaseException))
    assert len(world.issuer.results) == 1


async def test_the_user_as_stored_now(world: World) -> None:
    code, verifier = await world.code()
    world.lookup.users[world.alice.user_id] = replace(world.alice, blocked=True)
    assert isinstance(await world.fails(code, verifier), Unauthorized)
    del world.lookup.users[world.alice.user_id]
    assert (await world.fails(code, verifier)).description == INVALID_CODE
    assert world.issuer.results == []


# --- PKCE ----------------------------------------------------------------------------------------------------------


def test_rfc7636_appendix_b_vector() -> None:
    verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
    challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
    assert pkce_module.checked_challenge(challenge, "S256") == challenge
    assert pkce_module.verify(verifier, challenge)
    assert not pkce_module.verify(verifier[:-1] + "l", challenge)


@pytest.mark.parametrize(
    ("challenge", "method"),
    [(None, "S256"), ("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM", None), ("x" * 43, "plain"), ("x" * 44, "S256"),
     ("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw+cM", "S256")],
)  # fmt: skip
def test_only_well_formed_s256_challenges(challenge: str | None, method: str | None) -> None:
    with pytest.raises(InvalidRequest):
        pkce_module.checked_challenge(challenge, method)


@pytest.mark.parametrize("verifier", ["", "a" * 42, "a" * 129, "a" * 42 + " ", "é" * 43])
def test_malformed_verifiers_never_verify(verifier: str) -> None:
    assert not pkce_module.verify(verifier, "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM")
