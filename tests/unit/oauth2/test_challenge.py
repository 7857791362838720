"""The Authorization Challenge Endpoint engine (identity/oauth2/challenge.py) with in-memory fakes."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace
from typing import Any

import pytest

from identity.clock import FrozenClock
from identity.oauth2.challenge import (
    ASK_OR_ANSWER,
    ASK_WITH_SESSION,
    MFA_REQUIRED,
    NO_SECOND_FACTOR,
    NOT_PENDING,
    PASSWORD_REQUIRED,
    AuthorizationChallengeEndpoint,
)
from identity.oauth2.challenge_methods import (
    EXPIRED_EMAIL_CODE,
    INVALID_EMAIL_CODE,
    NO_EMAIL_CODE,
    EmailMethod,
    OtpMethod,
    RecoveryCodeMethod,
    WebAuthnMethod,
)
from identity.oauth2.errors import (
    AccessDenied,
    InvalidClient,
    InvalidGrant,
    InvalidRequest,
    OAuthError,
    TemporarilyUnavailable,
    TooManyAttempts,
    UnauthorizedClient,
    UnsupportedChallengeType,
)
from identity.oauth2.first_party import (
    AUTHORIZATION_CODE,
    MULTI_FACTOR,
    CodeNotSent,
    Delivery,
    InsufficientAuthorization,
    InvalidSession,
    TooManyCodesSent,
    UnmetAuthenticationRequirements,
    UnsupportedResponseType,
    challenge_status,
)
from identity.oauth2.interfaces import FactorCheck, RuleOutcome, User
from identity.oauth2.requests import TokenRequest
from tests.unit.oauth2.fakes import SECRET, FakeTenant, make_client, standard_fakes
from tests.unit.oauth2.first_party_fakes import (
    FakeFactors,
    FakeFirstParty,
    FakeLookup,
    FakeMfa,
    FakeWebAuthn,
    pkce,
)

ALICE_ID = "auth0|customers-alice@example.test"
PUBLIC = make_client("app", grant_types=(AUTHORIZATION_CODE,))
CONFIDENTIAL = make_client("server", method="client_secret_post", secret=SECRET, grant_types=(AUTHORIZATION_CODE,))
OTHER = make_client("other", grant_types=(AUTHORIZATION_CODE,))
PASSWORD_ONLY = make_client("legacy", grant_types=("password",))


class RecordingRules:
    """`RulesPipeline` that records the protocol and adds a claim."""

    def __init__(self) -> None:
        self.protocols: list[str] = []

    async def run(self, result: Any, *, protocol: str, **_: Any) -> RuleOutcome:
        self.protocols.append(protocol)
        return RuleOutcome(replace(result, access_claims={"https://example.test/rule": protocol}))


@dataclass
class World:
    endpoint: AuthorizationChallengeEndpoint
    tenant: FakeTenant
    store: FakeFirstParty
    mfa: FakeMfa
    factors: FakeFactors
    clock: FrozenClock
    alice: User
    rules: RecordingRules

    async def post(self, client: str | None = "app", **params: str) -> Any:
        if client is not None:
            params["client_id"] = client
        return await self.endpoint.handle(TokenRequest(params))

    async def fails(self, client: str | None = "app", **params: str) -> OAuthError:
        with pytest.raises(OAuthError) as caught:
            await self.post(client, **params)
        return caught.value

    def enroll(self, *methods: str) -> None:
        self.mfa.enroll(self.alice)
        self.factors.methods_of[self.alice.user_id] = methods or ("otp", "recovery-code")


def start(challenge: str, **params: str) -> dict[str, str]:
    return {
        "response_type": "code",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "username": "alice@example.test",
        "password": "customer pw",
        **params,
    }


@pytest.fixture
def world() -> World:
    tenant, users, _ = standard_fakes(clients=[PUBLIC, CONFIDENTIAL, OTHER, PASSWORD_ONLY])
    clock = FrozenClock()
    store = FakeFirstParty(clock)
    mfa = FakeMfa(store)
    factors = FakeFactors(mfa)
    alice = users.accounts[("customers", "alice@example.test")][1]
    bob = users.accounts[("customers", "bob@example.test")][1]
    rules = RecordingRules()
    endpoint = AuthorizationChallengeEndpoint(
        tenant,
        users,
        FakeLookup(alice, bob),
        mfa,
        store,
        factors,
        (
            OtpMethod(mfa),
            WebAuthnMethod(FakeWebAuthn(store), factors),
            EmailMethod(mfa, factors),
            RecoveryCodeMethod(mfa),
        ),
        clock,
        challenge_realm="test",
        rules=rules,
    )
    return World(endpoint, tenant, store, mfa, factors, clock, alice, rules)


async def test_the_password_alone_yields_a_code_and_a_session(world: World) -> None:
    _, challenge = pkce()
    answer = await world.post(**start(challenge, scope="openid read:a"))
    body = answer.to_body()
    assert set(body) == {"authorization_code", "auth_session"} and answer.factor is None
    (code,) = world.store.codes.values()
    assert code.client_id == "app" and code.user_id == ALICE_ID and code.code_challenge == challenge
    assert code.amr == ("pwd",) and code.acr is None and code.auth_time == world.clock.now()
    assert code.scopes == ("openid", "read:a") and code.audience == "https://api.test/"
    assert code.access_claims == {"https://example.test/rule": "oauth2-first-party"}
    assert world.rules.protocols == ["oauth2-first-party"]
    (session,) = world.store.sessions.values()
    assert not session.pending and session.expires_at == session.created_at + 86_400


async def test_a_second_factor_is_asked_with_the_session_and_what_each_method_needs(world: World) -> None:
    world.enroll("otp", "webauthn", "recovery-code")
    _, challenge = pkce()
    asked = await world.fails(**start(challenge))
    assert isinstance(asked, InsufficientAuthorization) and challenge_status(asked) == 401
    body = asked.to_body()
    session = world.store.sessions[next(iter(world.store.sessions))]
    assert body == {
        "error": "insufficient_authorization",
        "error_description": MFA_REQUIRED,
        "auth_session": asked.auth_session,
        "methods": ["otp", "webauthn", "recovery-code"],
        "otp_required": True,
        "webauthn": {"publicKey": {"challenge": f"for-session-{session.id}", "allowCredentials": []}},
    }
    assert session.pending and session.expires_at == world.clock.now() + 600


async def test_the_otp_yields_a_code_with_the_factors_and_the_policy(world: World) -> None:
    world.enroll()
    _, challenge = pkce()
    token = (await world.fails(**start(challenge))).auth_session  # type: ignore[attr-defined]
    world.clock.advance(20)
    answer = await world.post(None, auth_session=token, otp="123456")  # the session names its public client
    assert answer.auth_session == token and answer.factor == "otp"
    (code,) = world.store.codes.values()
    assert code.amr == ("pwd", "mfa", "otp") and code.acr == MULTI_FACTOR and code.auth_time == world.clock.now()


async def test_webauthn_and_recovery_code_are_second_factors_too(world: World) -> None:
    world.enroll("webauthn", "recovery-code")
    for params, amr in (
        ({"clientDataJSON": "good", "authenticatorData": "a", "signature": "s"}, ("pwd", "mfa", "hwk")),
        ({"recovery_code": "RECOVERY-CODE-0001"}, ("pwd", "mfa")),
    ):
        _, challenge = pkce()
        token = (await world.fails(**start(challenge))).auth_session  # type: ignore[attr-defined]
        answer = await world.post(auth_session=token, **params)
        assert list(world.store.codes.values())[-1].amr == amr
    assert answer.to_body()["recovery_code"] == "RECOVERY-CODE-0002"
    bad = await world.fails(**start(challenge, clientDataJSON="bad", authenticatorData="a", signature="s"))
    assert bad.error == "invalid_grant" and bad.description == "Invalid WebAuthn response."


async def test_refused_second_factors(world: World) -> None:
    world.enroll()
    _, challenge = pkce()
    token = (await world.fails(**start(challenge))).auth_session  # type: ignore[attr-defined]
    wrong = await world.fails(auth_session=token, otp="000000")
    assert isinstance(wrong, InvalidGrant) and wrong.description == "Invalid otp_code."
    assert challenge_status(wrong) == 400
    two = await world.fails(auth_session=token, otp="123456", recovery_code="x")
    assert isinstance(two, InvalidRequest)
    world.mfa.attempts[ALICE_ID] = 0
    limited = await world.fails(auth_session=token, otp="123456")
    assert isinstance(limited, TooManyAttempts) and challenge_status(limited) == 429
    world.mfa.attempts[ALICE_ID] = 10
    await world.post(auth_session=token, otp="123456")
    again = await world.fails(auth_session=token, otp="123456")  # the step is spent
    assert isinstance(again, InvalidRequest) and again.description == NOT_PENDING


async def test_a_step_spent_by_a_concurrent_request_is_not_pending(world: World, monkeypatch: Any) -> None:
    world.enroll()
    _, challenge = pkce()
    token = (await world.fails(**start(challenge))).auth_session  # type: ignore[attr-defined]

    async def lost(transaction: Any, otp: str) -> FactorCheck:
        return FactorCheck.TOKEN_USED  # right code, but another request burned the step first

    monkeypatch.setattr(world.mfa, "check_otp", lost)
    error = await world.fails(auth_session=token, otp="123456")
    assert isinstance(error, InvalidRequest) and error.description == NOT_PENDING
    assert world.store.codes == {}


async def test_concurrent_submissions_of_one_step_yield_one_code(world: World) -> None:
    world.enroll()
    _, challenge = pkce()
    token = (await world.fails(**start(challenge))).auth_session  # type: ignore[attr-defined]
    outcomes = await asyncio.gather(
        *(world.post(auth_session=token or "", otp="123456") for _ in range(25)), return_exceptions=True
    )
    assert sum(not isinstance(outcome, BaseException) for outcome in outcomes) == 1
    assert all(isinstance(o, InvalidRequest) for o in outcomes if isinstance(o, BaseException))
    assert len(world.store.codes) == 1


async def test_the_initial_request_is_an_authorization_request(world: World) -> None:
    _, challenge = pkce()
    cases: list[tuple[dict[str, str], type[OAuthError], str | None]] = [
        ({"response_type": ""}, InvalidRequest, "missing response_type parameter"),
        ({"response_type": "token"}, UnsupportedResponseType, "response_type must be code"),
        ({"code_challenge_method": "plain"}, InvalidRequest, "code_challenge_method must be S256"),
        ({"code_challenge": "x" * 42}, InvalidRequest, None),
        ({"acr_values": "urn:gold"}, UnmetAuthenticationRequirements, None),
        ({"max_age": "-1"}, InvalidRequest, "max_age must be a number of seconds"),
        ({"audience": "https://api.test/", "resource": "https://other.test/"}, InvalidRequest, None),
        ({"password": "nope"}, InvalidGrant, "Wrong email or password."),
    ]
    for override, kind, description in cases:
        params = {k: v for k, v in start(challenge, **override).items() if v}
        error = await world.fails(**params)
        assert isinstance(error, kind), (override, error)
        assert challenge_status(error) == 400
        if description is not None:
            assert error.description == description
    assert world.store.sessions == {} and world.store.codes == {}


async def test_without_a_password_it_is_asked_and_nothing_is_stored(world: World) -> None:
    _, challenge = pkce()
    params = start(challenge)
    del params["password"]
    asked = await world.fails(**params)
    assert isinstance(asked, InsufficientAuthorization) and asked.description == PASSWORD_REQUIRED
    assert asked.to_body() == {
        "error": "insufficient_authorization",
        "error_description": PASSWORD_REQUIRED,
        "methods": ["password"],
        "password_required": True,
    }
    assert world.store.sessions == {}


async def test_login_hint_and_resource(world: World) -> None:
    _, challenge = pkce()
    params = start(challenge, login_hint="alice@example.test", resource="https://other.test/")
    del params["username"]
    await world.post(**params)
    (code,) = world.store.codes.values()
    assert code.audience == "https://other.test/"


async def test_clients(world: World) -> None:
    _, challenge = pkce()
    assert isinstance(await world.fails("legacy", **start(challenge)), UnauthorizedClient)
    unknown = await world.fails("nobody", **start(challenge))
    assert isinstance(unknown, InvalidClient) and challenge_status(unknown) == 401
    assert isinstance(await world.fails("server", **start(challenge)), InvalidClient)  # no secret
    world.enroll()
    token = (await world.fails("server", client_secret=SECRET, **start(challenge))).auth_session  # type: ignore[attr-defined]
    assert isinstance(await world.fails(None, auth_session=token, otp="123456"), InvalidClient)
    assert isinstance(await world.fails("other", auth_session=token, otp="123456"), InvalidSession)
    answer = await world.post("server", client_secret=SECRET, auth_session=token, otp="123456")
    assert answer.factor == "otp"


async def test_sessions_expire_and_unknown_ones_are_invalid(world: World) -> None:
    world.enroll()
    _, challenge = pkce()
    assert isinstance(await world.fails(auth_session="made-up", otp="123456"), InvalidSession)
    token = (await world.fails(**start(challenge))).auth_session  # type: ignore[attr-defined]
    world.clock.advance(600)
    error = await world.fails(auth_session=token, otp="123456")
    assert isinstance(error, InvalidSession) and challenge_status(error) == 400


async def test_acr_values_force_the_second_factor_and_none_is_unmet(world: World) -> None:
    _, challenge = pkce()
    unmet = await world.fails(**start(challenge, acr_values=MULTI_FACTOR))
    assert isinstance(unmet, UnmetAuthenticationRequirements) and unmet.description == NO_SECOND_FACTOR
    world.enroll()
    world.mfa.policy = "never"
    await world.post(**start(challenge))  # no second factor asked
    asked = await world.fails(**start(challenge, acr_values=f"urn:x {MULTI_FACTOR}"))
    assert isinstance(asked, InsufficientAuthorization)


async def test_step_up_on_a_completed_session(world: World) -> None:
    world.enroll()
    world.mfa.policy = "never"
    _, challenge = pkce()
    token = (await world.post(**start(challenge))).auth_session
    world.clock.advance(3600)
    assert isinstance(await world.fails(auth_session=token, otp="123456"), InvalidRequest)  # nothing pending
    _, second = pkce()
    step_up = {"response_type": "code", "code_challenge": second, "code_challenge_method": "S256"}
    asked = await world.fails(auth_session=token, acr_values=MULTI_FACTOR, scope="read:a", **step_up)
    assert isinstance(asked, InsufficientAuthorization) and asked.auth_session == token
    assert "password_required" not in asked.members
    await world.post(auth_session=token, otp="123456")
    code = list(world.store.codes.values())[-1]
    assert code.code_challenge == second and code.scopes == ("read:a",) and code.acr == MULTI_FACTOR
    assert world.rules.protocols == ["oauth2-first-party", "oauth2-first-party"]
    # A session whose user has no second factor is good for nothing more.
    world.factors.methods_of.clear()
    assert isinstance(await world.fails(auth_session=token, **step_up), UnmetAuthenticationRequirements)


async def test_blocked_and_deleted_users(world: World) -> None:
    _, challenge = pkce()
    blocked = await world.fails(**start(challenge, username="bob@example.test", password="bob pw"))
    assert isinstance(blocked, AccessDenied) and blocked.description == "user is blocked"
    world.enroll()
    token = (await world.fails(**start(challenge))).auth_session  # type: ignore[attr-defined]
    lookup = world.endpoint.lookup
    assert isinstance(lookup, FakeLookup)
    lookup.users[ALICE_ID] = replace(world.alice, blocked=True)
    assert isinstance(await world.fails(auth_session=token, otp="123456"), AccessDenied)
    del lookup.users[ALICE_ID]
    assert isinstance(await world.fails(auth_session=token, otp="123456"), InvalidSession)


# --- emailed codes ---------------------------------------------------------------------------------------------


async def test_an_only_email_factor_is_sent_at_login_and_its_code_yields_a_code(world: World) -> None:
    world.enroll("email", "recovery-code")  # the recovery code is a fallback: email is the only factor
    _, challenge = pkce()
    asked = await world.fails(**start(challenge))
    assert isinstance(asked, InsufficientAuthorization)
    assert asked.members == {
        "methods": ["email", "recovery-code"],
        "email_code_required": True,
        "email_code_sent_to": "a***@example.test",
    }
    ((session_id, code),) = world.factors.sent
    token = asked.auth_session or ""
    assert world.store.session_by_id(session_id).pending
    answer = await world.post(None, auth_session=token, email_code=code)
    assert answer.factor == "email" and answer.auth_session == token
    (issued,) = world.store.codes.values()
    assert issued.amr == ("pwd", "mfa", "otp") and issued.acr == MULTI_FACTOR
    again = await world.fails(auth_session=token, email_code=code)
    assert isinstance(again, InvalidRequest) and again.description == NOT_PENDING


async def test_with_another_factor_an_email_is_sent_only_when_asked(world: World) -> None:
    world.enroll("otp", "email", "recovery-code")
    _, challenge = pkce()
    asked = await world.fails(**start(challenge))
    assert isinstance(asked, InsufficientAuthorization) and world.factors.sent == []
    assert asked.members == {"methods": ["otp", "email", "recovery-code"], "otp_required": True}
    token = asked.auth_session or ""
    assert isinstance(await world.fails(auth_session=token), InsufficientAuthorization)  # asking again: no email
    assert world.factors.sent == []
    sent = await world.fails(auth_session=token, challenge_type="email")
    assert isinstance(sent, InsufficientAuthorization) and sent.members["email_code_required"] is True
    assert sent.auth_session == token and len(world.factors.sent) == 1
    # challenge_type=otp starts nothing; a method the user lacks is refused, as at /mfa/challenge.
    otp = await world.fails(auth_session=token, challenge_type="otp")
    assert isinstance(otp, InsufficientAuthorization) and "email_code_required" not in otp.members
    for lacking in ("webauthn", "sms", "password"):
        refused = await world.fails(auth_session=token, challenge_type=lacking)
        assert isinstance(refused, UnsupportedChallengeType) and challenge_status(refused) == 400
    assert len(world.factors.sent) == 1
    await world.post(auth_session=token, email_code=world.factors.sent[-1][1])


async def test_no_email_is_sent_on_a_request_that_carries_a_factor_or_has_no_session(world: World) -> None:
    world.enroll("email", "recovery-code")
    _, challenge = pkce()
    first = await world.fails(**start(challenge, challenge_type="email"))
    assert isinstance(first, InvalidRequest) and first.description == ASK_WITH_SESSION
    assert world.store.sessions == {}  # refused before the password
    both = await world.fails(**start(challenge, email_code="123456"))  # a factor with the password: checked
    assert isinstance(both, InvalidGrant) and both.description == NO_EMAIL_CODE
    assert world.factors.sent == []
    token = (await world.fails(**start(challenge))).auth_session  # type: ignore[attr-defined]
    world.factors.sent.clear()
    mixed = await world.fails(auth_session=token, challenge_type="email", recovery_code="RECOVERY-CODE-0001")
    assert isinstance(mixed, InvalidRequest) and mixed.description == ASK_OR_ANSWER
    assert world.factors.sent == []


async def test_refused_email_codes(world: World) -> None:
    world.enroll("email")
    _, challenge = pkce()
    token = (await world.fails(**start(challenge))).auth_session  # type: ignore[attr-defined]
    code = world.factors.sent[-1][1]
    wrong = await world.fails(auth_session=token, email_code="000000")
    assert isinstance(wrong, InvalidGrant) and wrong.description == INVALID_EMAIL_CODE
    assert world.mfa.attempts[ALICE_ID] == 9
    _, other = pkce()
    elsewhere = (await world.fails(**start(other))).auth_session  # type: ignore[attr-defined]
    foreign = await world.fails(auth_session=elsewhere, email_code=code)  # the first session's code
    assert isinstance(foreign, InvalidGrant)
    world.mfa.attempts[ALICE_ID] = 0
    limited = await world.fails(auth_session=token, email_code=code)
    assert isinstance(limited, TooManyAttempts) and challenge_status(limited) == 429


async def test_an_expired_email_code_says_so(world: World, monkeypatch: Any) -> None:
    world.enroll("email")
    _, challenge = pkce()
    token = (await world.fails(**start(challenge))).auth_session  # type: ignore[attr-defined]

    async def expired(*_: Any, **__: Any) -> FactorCheck:
        return FactorCheck.EXPIRED

    monkeypatch.setattr(world.mfa, "check_oob", expired)
    error = await world.fails(auth_session=token, email_code=world.factors.sent[-1][1])
    assert isinstance(error, InvalidGrant) and error.description == EXPIRED_EMAIL_CODE


async def test_a_send_that_fails_keeps_the_auth_session(world: World) -> None:
    world.enroll("email")
    _, challenge = pkce()
    world.factors.delivery = Delivery.FAILED
    failed = await world.fails(**start(challenge))
    assert isinstance(failed, CodeNotSent) and challenge_status(failed) == 400
    body = failed.to_body()
    assert body["error"] == "bad_gateway" and body["auth_session"] == failed.auth_session
    token = failed.auth_session
    world.factors.delivery = Delivery.LIMITED
    limited = await world.fails(auth_session=token, challenge_type="email")
    assert isinstance(limited, TooManyCodesSent) and challenge_status(limited) == 429
    assert limited.headers() == {"Retry-After": "3600"} and limited.to_body()["auth_session"] == token
    world.factors.delivery = Delivery.SENT
    await world.fails(auth_session=token, challenge_type="email")
    await world.post(auth_session=token, email_code=world.factors.sent[-1][1])


async def test_step_up_sends_to_an_only_email_factor(world: World) -> None:
    world.enroll("email")
    world.mfa.policy = "never"
    _, challenge = pkce()
    token = (await world.post(**start(challenge))).auth_session
    assert world.factors.sent == []
    _, second = pkce()
    step_up = {"response_type": "code", "code_challenge": second, "code_challenge_method": "S256"}
    asked = await world.fails(auth_session=token, acr_values=MULTI_FACTOR, **step_up)
    assert isinstance(asked, InsufficientAuthorization) and asked.members["email_code_required"] is True
    answer = await world.post(auth_session=token, email_code=world.factors.sent[-1][1])
    assert answer.factor == "email" and list(world.store.codes.values())[-1].code_challenge == second


def test_statuses_follow_the_draft() -> None:
    assert challenge_status(InvalidGrant("x")) == 400  # 403 at the token endpoint (Auth0)
    assert challenge_status(AccessDenied("x")) == 400
    assert challenge_status(TemporarilyUnavailable()) == 503
    assert challenge_status(InvalidSession()) == 400
