"""The refresh_token grant over fakes: rotation, reuse detection, leeway, non-rotating tokens, scopes, users, rules."""

from dataclasses import replace

import pytest

from identity.clock import FrozenClock
from identity.oauth2.errors import AccessDenied, InvalidGrant, InvalidRequest, InvalidScope, OAuthError
from identity.oauth2.grants.refresh_token import DELETED_USER, UNKNOWN_REFRESH_TOKEN, RefreshTokenGrant
from identity.oauth2.interfaces import RefreshTokenPolicy, StoredRefreshToken, User
from identity.oauth2.requests import TokenRequest
from identity.rules import Rule, RulesEngine
from tests.unit.oauth2.fakes import (
    API,
    CUSTOMERS,
    FakeRefreshTokens,
    FakeUserLookup,
    RecordingRules,
    make_client,
    standard_fakes,
)

NOW = 1_800_000_000.0
ROTATING = make_client(grant_types=("password", "refresh_token"))
NON_ROTATING = replace(ROTATING, refresh_token=RefreshTokenPolicy(rotation_type="non-rotating"))
ALICE = User(user_id="auth0|alice", connection="customers", email="alice@example.test", name="Alice")
TOKEN = "v1.presented-token"
STORED = StoredRefreshToken(
    id=11,
    family_id="family-a",
    client_id=ROTATING.client_id,
    user_id=ALICE.user_id,
    connection="customers",
    audience=API.identifier,
    scopes=("openid", "offline_access", "read:a", "write:a"),
    amr=("pwd", "mfa", "otp"),
    access_claims={"https://example.test/tier": "gold"},
    id_claims={"https://example.test/nick": "al"},
    expires_at=NOW + 3600,
    idle_expires_at=NOW + 600,
    used_at=None,
    revoked=False,
    newest=True,
)
RETIRED = replace(STORED, used_at=NOW - 5, newest=False)


class Setup:
    """One test's fakes: the tenant, Alice as stored now, the refresh-token store holding ``stored``, rules."""

    def __init__(
        self,
        stored: StoredRefreshToken | None = STORED,
        *,
        user: User | None = ALICE,
        rules: RecordingRules | None = None,
    ) -> None:
        self.tenant, _, self.issuer = standard_fakes()
        self.users = FakeUserLookup(*([user] if user is not None else []))
        self.store = FakeRefreshTokens()
        if stored is not None:
            self.store.add(TOKEN, stored)
        self.rules = rules
        self.clock = FrozenClock(NOW)

    async def handle(self, params=None, client=ROTATING, **transport):
        grant = RefreshTokenGrant(self.tenant, self.users, self.store, self.issuer, self.clock, self.rules)
        return await grant.handle(
            TokenRequest({"refresh_token": TOKEN} if params is None else params, **transport), client
        )

    async def refused(self, params=None, client=ROTATING) -> OAuthError:
        with pytest.raises(OAuthError) as caught:
            await self.handle(params, client)
        assert self.issuer.results == [], "nothing may be issued after a refusal"
        return caught.value


def test_grant_type_and_protocol():
    assert RefreshTokenGrant.GRANT_TYPE == "refresh_token"
    assert RefreshTokenGrant.PROTOCOL == "oauth2-refresh-token"


# -- rotation ---------------------------------------------------------------------------------------------------------


async def test_newest_token_rotates_and_the_response_carries_its_successor():
    setup = Setup()
    await setup.handle()
    assert setup.store.spent() == [("rotate", 11)]
    (result,) = setup.issuer.results
    assert result.refresh_token == "successor-1"
    assert result.mint_refresh_token is True
    assert result.grant_type == "refresh_token"
    assert (result.client, result.user, result.connection, result.api) == (ROTATING, ALICE, CUSTOMERS, API)
    assert (result.audience, result.scopes, result.amr) == (API.identifier, STORED.scopes, ("pwd", "mfa", "otp"))
    assert result.access_claims == STORED.access_claims
    assert result.id_claims == STORED.id_claims


async def test_the_new_tokens_reflect_the_user_as_stored_now():
    renamed = replace(ALICE, name="Alice Renamed", email_verified=True)
    setup = Setup(user=renamed)
    await setup.handle()
    assert setup.issuer.results[0].user == renamed


async def test_reused_refresh_token_revokes_family():
    setup = Setup(RETIRED)
    error = await setup.refused()
    assert (type(error), error.status_code, error.description) == (InvalidGrant, 403, UNKNOWN_REFRESH_TOKEN)
    assert setup.store.calls[-2:] == [("successor_within_leeway", 11), ("revoke_family", "family-a", "reuse")]
    assert ("rotate", 11) not in setup.store.calls


async def test_previous_token_within_leeway_gets_the_same_successor_without_rotating_again():
    setup = Setup(RETIRED)
    setup.store.leeway_successors[11] = "v1.already-issued-successor"
    await setup.handle()
    assert setup.issuer.results[0].refresh_token == "v1.already-issued-successor"
    assert setup.store.spent() == []


async def test_a_lost_rotation_race_gets_the_winners_successor_within_leeway():
    setup = Setup()
    setup.store.lose_rotation = True
    setup.store.leeway_successors[11] = "v1.winners-successor"
    await setup.handle()
    assert setup.issuer.results[0].refresh_token == "v1.winners-successor"
    assert [call[0] for call in setup.store.calls] == ["find", "rotate", "find", "successor_within_leeway"]


async def test_a_lost_rotation_race_without_leeway_revokes_the_family():
    setup = Setup()
    setup.store.lose_rotation = True
    error = await setup.refused()
    assert (type(error), error.description) == (InvalidGrant, UNKNOWN_REFRESH_TOKEN)
    assert setup.store.spent() == [("rotate", 11), ("revoke_family", "family-a", "reuse")]


class VanishingTokens(FakeRefreshTokens):
    """Loses the rotation race, and the user is deleted (with every token) before the grant looks again."""

    async def rotate(self, stored, policy):
        self.tokens.clear()
        self.lose_rotation = True
        return await super().rotate(stored, policy)


async def test_a_lost_rotation_race_whose_token_vanished_revokes_the_family():
    setup = Setup()
    setup.store = VanishingTokens()
    setup.store.add(TOKEN, STORED)
    error = await setup.refused()
    assert error.description == UNKNOWN_REFRESH_TOKEN
    assert [call[0] for call in setup.store.calls] == ["find", "rotate", "find", "revoke_family"]


# -- non-rotating tokens ----------------------------------------------------------------------------------------------


async def test_non_rotating_token_is_touched_and_no_new_refresh_token_is_minted():
    setup = Setup(replace(STORED, client_id=NON_ROTATING.client_id))
    await setup.handle(client=NON_ROTATING)
    assert setup.store.spent() == [("touch", 11)]
    (result,) = setup.issuer.results
    assert (result.refresh_token, result.mint_refresh_token) == (None, False)


# -- which tokens are live --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "stored",
    [
        None,
        replace(STORED, client_id="another-app"),
        replace(STORED, revoked=True),
        replace(STORED, expires_at=NOW),
        replace(STORED, expires_at=NOW - 1),
        replace(STORED, idle_expires_at=NOW),
        replace(STORED, idle_expires_at=NOW - 1),
    ],
    ids=["unknown", "other-client", "revoked", "absolute-now", "absolute-past", "idle-now", "idle-past"],
)
async def test_tokens_that_are_not_live_are_unknown_and_spend_nothing(stored):
    setup = Setup(stored)
    error = await setup.refused()
    assert error.to_body() == {"error": "invalid_grant", "error_description": UNKNOWN_REFRESH_TOKEN}
    assert setup.store.spent() == []


async def test_token_without_expiry_never_expires():
    setup = Setup(replace(STORED, expires_at=None, idle_expires_at=None))
    setup.clock.advance(10 * 365 * 86_400)
    await setup.handle()
    assert setup.issuer.results[0].refresh_token == "successor-1"


async def test_missing_refresh_token_is_an_invalid_request():
    setup = Setup()
    error = await setup.refused({})
    assert isinstance(error, InvalidRequest)
    assert error.description == "missing refresh_token parameter"
    assert setup.store.calls == []


# -- scopes -----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("asked", "granted"),
    [
        ("read:a", ("offline_access", "read:a")),
        ("write:a openid", ("openid", "offline_access", "write:a")),
        ("openid offline_access read:a write:a", STORED.scopes),
    ],
)
async def test_scope_narrows_the_grant_in_its_original_order_and_keeps_offline_access(asked, granted):
    setup = Setup()
    await setup.handle({"refresh_token": TOKEN, "scope": asked})
    assert setup.issuer.results[0].scopes == granted


async def test_scope_cannot_widen_the_grant():
    setup = Setup()
    error = await setup.refused({"refresh_token": TOKEN, "scope": "read:a delete:a"})
    assert isinstance(error, InvalidScope)
    assert error.to_body() == {
        "error": "invalid_scope",
        "error_description": "Scope 'delete:a' was not granted to this refresh token",
    }
    assert setup.store.spent() == []


# -- the user and the configuration as they are now -------------------------------------------------------------------


async def test_deleted_user_is_refused_before_the_token_is_spent():
    setup = Setup(user=None)
    error = await setup.refused()
    assert (type(error), error.description) == (InvalidGrant, DELETED_USER)
    assert setup.store.spent() == []


async def test_blocked_user_is_refused_before_the_token_is_spent():
    setup = Setup(user=replace(ALICE, blocked=True))
    error = await setup.refused()
    assert error.to_body() == {"error": "invalid_grant", "error_description": "user is blocked"}
    assert setup.store.spent() == []


async def test_a_retired_token_of_a_blocked_user_still_revokes_its_family():
    """Reuse is decided first: a stolen copy kills the family whatever the user's state."""
    setup = Setup(RETIRED, user=replace(ALICE, blocked=True))
    await setup.refused()
    assert setup.store.spent() == [("revoke_family", "family-a", "reuse")]


@pytest.mark.parametrize(
    "change",
    [{"connection": "removed-directory"}, {"audience": "https://removed-api.test/"}],
    ids=["connection", "api"],
)
async def test_configuration_removed_since_issue_makes_the_token_unknown(change):
    setup = Setup(replace(STORED, **change))
    error = await setup.refused()
    assert error.description == UNKNOWN_REFRESH_TOKEN
    assert setup.store.spent() == []


async def test_token_without_audience_refreshes_without_api():
    setup = Setup(replace(STORED, audience=None, scopes=("openid", "offline_access")))
    await setup.handle()
    assert (setup.issuer.results[0].api, setup.issuer.results[0].audience) == (None, None)


# -- rules ------------------------------------------------------------------------------------------------------------


async def test_rules_run_as_oauth2_refresh_token_and_their_claims_are_issued():
    rules = RecordingRules(claims={"https://example.test/refreshed": True})
    setup = Setup(rules=rules)
    await setup.handle({"refresh_token": TOKEN, "scope": "read:a"}, client_ip="203.0.113.9", user_agent="agent/1.0")
    (run,) = rules.runs
    assert run["protocol"] == "oauth2-refresh-token"
    assert run["requested_scopes"] == ("read:a",)
    assert (run["client_ip"], run["user_agent"]) == ("203.0.113.9", "agent/1.0")
    assert run["result"].scopes == ("offline_access", "read:a")
    (issued,) = setup.issuer.results
    assert issued.access_claims == {**STORED.access_claims, "https://example.test/refreshed": True}
    assert issued.refresh_token == "successor-1"


async def test_rules_see_the_family_authentication_time_not_the_refresh_time():
    seen = []
    setup = Setup(replace(STORED, auth_time=NOW - 7200), rules=None)
    setup.rules = RulesEngine([Rule("see", lambda event, api: seen.append(event))], setup.clock)
    setup.clock.advance(30)
    await setup.handle()
    (event,) = seen
    assert [dict(method) for method in event.authentication.methods] == [
        {"name": name, "timestamp": int(NOW - 7200)} for name in ("pwd", "mfa", "otp")
    ]
    (issued,) = setup.issuer.results
    # Kept for the next family link; a claim (with acr) because the family began after a second factor, whose
    # tokens claimed it (RFC 9470): a refreshed token has the shape of the one it replaces.
    assert issued.authenticated_at == NOW - 7200 and issued.auth_time == NOW - 7200
    assert issued.acr == "http://schemas.openid.net/pape/policies/2007/06/multi-factor"


async def test_a_family_after_the_password_alone_claims_no_auth_time():
    setup = Setup(replace(STORED, amr=("pwd",), auth_time=NOW - 7200))
    await setup.handle()
    (issued,) = setup.issuer.results
    assert issued.authenticated_at == NOW - 7200 and issued.auth_time is None and issued.acr is None


async def test_a_rule_denial_leaves_the_presented_token_usable():
    setup = Setup(rules=RecordingRules(error=AccessDenied("not today")))
    error = await setup.refused()
    assert error.to_body() == {"error": "access_denied", "error_description": "not today"}
    assert setup.store.spent() == [], "rules run before the token is retired"


async def test_rules_also_run_for_a_leeway_retry():
    rules = RecordingRules()
    setup = Setup(RETIRED, rules=rules)
    setup.store.leeway_successors[11] = "v1.already-issued-successor"
    await setup.handle()
    assert len(rules.runs) == 1
