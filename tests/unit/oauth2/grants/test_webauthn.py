"""The WebAuthn grants over in-memory fakes: the factor's answer (`WebAuthnOutcome`) is the test's to choose, so
what the grants make of it, and every refusal after it, is pinned here without an authenticator."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import pytest

from identity.clock import FrozenClock
from identity.oauth2.errors import (
    InvalidGrant,
    InvalidRequest,
    MfaRequired,
    OAuthError,
    TooManyAttempts,
    Unauthorized,
)
from identity.oauth2.grants.mfa import MALFORMED_MFA_TOKEN
from identity.oauth2.grants.webauthn import (
    INVALID_AUTH_SESSION,
    INVALID_WEBAUTHN,
    MfaWebAuthnGrant,
    WebAuthnGrant,
    credential_from_request,
)
from identity.oauth2.interfaces import FactorCheck, GrantResult, MfaTransaction, User, WebAuthnOutcome
from identity.oauth2.requests import TokenRequest
from tests.unit.oauth2.fakes import API, CUSTOMERS, PASSWORD, FakeMfa, RecordingRules, make_client, standard_fakes

NOW = 1_800_000_000.0
CLIENT = make_client()
ALICE = User(user_id="auth0|alice", connection="customers", email="alice@example.test")
PASSKEY = "webauthn|dev_passkey"
ASSERTION = {"clientDataJSON": "cd", "authenticatorData": "ad", "signature": "sig"}
AUTHN_RESPONSE = json.dumps({"id": "k", "type": "public-key", "response": {"clientDataJSON": "cd", "signature": "s"}})


class FakeWebAuthn:
    """`WebAuthnFactor` answering ``outcome``; records which method was asked, with what."""

    def __init__(self, outcome: WebAuthnOutcome) -> None:
        self.outcome = outcome
        self.calls: list[tuple[str, Any]] = []

    async def confirm_enrollment(self, transaction: MfaTransaction, credential: Mapping[str, Any]) -> WebAuthnOutcome:
        self.calls.append(("confirm_enrollment", credential))
        return self.outcome

    async def check_assertion(self, transaction: MfaTransaction, credential: Mapping[str, Any]) -> WebAuthnOutcome:
        self.calls.append(("check_assertion", credential))
        return self.outcome

    async def passkey(
        self, client_id: str, auth_session: str | None, credential: Mapping[str, Any], *, ip: str | None = None
    ) -> WebAuthnOutcome:
        self.calls.append(("passkey", (client_id, auth_session)))
        return self.outcome


class StartingMfa(FakeMfa):
    """`FakeMfa` that starts a transaction (the passkey grant may answer ``mfa_required``) and requires MFA always."""

    def __init__(self) -> None:
        super().__init__([ALICE])
        self.started: list[GrantResult] = []

    async def required(self, user: User, *, forced: bool) -> bool:
        self.calls.append(("required", user.user_id))
        return True

    async def start(self, result: GrantResult) -> str:
        self.started.append(result)
        return "mfa-token-from-passkey"


# --- the credential in the request --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"authenticatorData": "ad", "signature": "s"}, "missing clientDataJSON parameter"),
        ({"clientDataJSON": "cd", "signature": "s"}, "missing authenticatorData parameter"),
        ({"clientDataJSON": "cd", "authenticatorData": "ad"}, "missing signature parameter"),
        ({"authn_response": "{"}, "must be a JSON object"),
        ({"authn_response": "[]"}, "with a response"),
        ({"authn_response": '{"response": {"signature": 7, "clientDataJSON": "cd"}}'}, "base64url strings"),
        ({"authn_response": '{"response": {"signature": "s"}}'}, "missing authn_response.response.clientDataJSON"),
    ],
)
def test_a_credential_missing_a_part_is_an_invalid_request(params: dict[str, str], message: str) -> None:
    with pytest.raises(InvalidRequest, match=message):
        credential_from_request(TokenRequest(params))


def test_okta_form_fields_become_a_public_key_credential() -> None:
    attestation = credential_from_request(TokenRequest({"clientDataJSON": "cd", "attestationObject": "ao"}))
    assert attestation == {"type": "public-key", "response": {"clientDataJSON": "cd", "attestationObject": "ao"}}
    assertion = credential_from_request(TokenRequest({**ASSERTION, "userHandle": "uh"}))
    assert assertion["response"] == {**ASSERTION, "userHandle": "uh"}


# --- mfa-webauthn: the second factor ------------------------------------------------------------------------

MFA_TOKEN = "mfa-token-of-alice"
TRANSACTION = MfaTransaction(
    id=7, client_id=CLIENT.client_id, user_id=ALICE.user_id, connection="customers", grant_type=PASSWORD,
    audience=API.identifier, scopes=("openid", "read:a"), expires_at=NOW + 300, consumed=False,
)  # fmt: skip


async def second_factor(
    outcome: WebAuthnOutcome, params: Mapping[str, str], transaction: MfaTransaction = TRANSACTION
) -> tuple[Any, FakeWebAuthn, list[GrantResult]]:
    """The grant's response (or the error it raised), the factor it asked, and what was issued."""
    tenant, _, issuer = standard_fakes()
    mfa = FakeMfa([ALICE])
    mfa.add(MFA_TOKEN, transaction)
    webauthn = FakeWebAuthn(outcome)
    grant = MfaWebAuthnGrant(tenant, mfa, issuer, FrozenClock(NOW), webauthn)
    try:
        response: Any = await grant.handle(TokenRequest({"mfa_token": MFA_TOKEN, **params}), CLIENT)
    except OAuthError as error:
        response = error
    return response, webauthn, issuer.results


async def test_an_accepted_key_issues_with_the_amr_of_its_attestation() -> None:
    software, webauthn, issued = await second_factor(WebAuthnOutcome(FactorCheck.ACCEPTED), ASSERTION)
    assert software.access_token and webauthn.calls[0][0] == "check_assertion"
    assert issued[0].amr == ("pwd", "mfa", "swk")
    assert issued[0].scopes == ("openid", "read:a")
    _, _, issued = await second_factor(WebAuthnOutcome(FactorCheck.ACCEPTED, hardware=True), ASSERTION)
    assert issued[0].amr == ("pwd", "mfa", "hwk")


async def test_an_attestation_confirms_the_pending_enrollment() -> None:
    params = {"clientDataJSON": "cd", "attestationObject": "ao"}
    response, webauthn, issued = await second_factor(WebAuthnOutcome(FactorCheck.ACCEPTED, hardware=True), params)
    assert response.access_token
    assert [call for call, _ in webauthn.calls] == ["confirm_enrollment"]
    assert issued[0].amr == ("pwd", "mfa", "hwk")


@pytest.mark.parametrize(
    ("check", "error", "description"),
    [
        (FactorCheck.INVALID, InvalidGrant, INVALID_WEBAUTHN),
        (FactorCheck.TOKEN_USED, InvalidGrant, MALFORMED_MFA_TOKEN),
        (FactorCheck.RATE_LIMITED, TooManyAttempts, None),
    ],
)
async def test_a_refused_key_issues_nothing(
    check: FactorCheck, error: type[OAuthError], description: str | None
) -> None:
    refused, _, issued = await second_factor(WebAuthnOutcome(check), ASSERTION)
    assert isinstance(refused, error)
    if description is not None:
        assert refused.description == description
    assert issued == []


async def test_the_passkey_of_the_first_factor_is_not_also_the_second() -> None:
    after_passkey = replace(TRANSACTION, first_factor=PASSKEY, amr=("swk",))
    same = WebAuthnOutcome(FactorCheck.ACCEPTED, authenticator_id=PASSKEY)
    refused, _, issued = await second_factor(same, ASSERTION, after_passkey)
    assert isinstance(refused, InvalidGrant) and refused.description == INVALID_WEBAUTHN
    assert issued == []
    other = WebAuthnOutcome(FactorCheck.ACCEPTED, authenticator_id="webauthn|dev_other", hardware=True)
    response, _, issued = await second_factor(other, ASSERTION, after_passkey)
    assert response.access_token and issued[0].amr == ("swk", "mfa", "hwk")


async def test_a_credential_without_its_parts_asks_no_factor() -> None:
    refused, webauthn, _ = await second_factor(WebAuthnOutcome(FactorCheck.ACCEPTED), {"clientDataJSON": "cd"})
    assert isinstance(refused, InvalidRequest)
    assert webauthn.calls == []


# --- webauthn: a passkey as the first factor ----------------------------------------------------------------


async def first_factor(
    outcome: WebAuthnOutcome,
    params: Mapping[str, str] | None = None,
    *,
    mfa: FakeMfa | None = None,
    rules: RecordingRules | None = None,
    client: Any = CLIENT,
) -> tuple[Any, FakeWebAuthn, list[GrantResult]]:
    tenant, users, issuer = standard_fakes()
    webauthn = FakeWebAuthn(outcome)
    grant = WebAuthnGrant(tenant, users, issuer, webauthn, mfa, rules)
    request = TokenRequest({"auth_session": "as-1", "authn_response": AUTHN_RESPONSE, **(params or {})})
    try:
        response: Any = await grant.handle(request, client)
    except OAuthError as error:
        response = error
    return response, webauthn, issuer.results


def accepted(user: User | None = ALICE, **fields: Any) -> WebAuthnOutcome:
    return WebAuthnOutcome(FactorCheck.ACCEPTED, user=user, authenticator_id=PASSKEY, **fields)


async def test_a_passkey_signs_its_owner_in_with_one_or_two_factors() -> None:
    presence, webauthn, issued = await first_factor(accepted())
    assert presence.access_token
    assert webauthn.calls == [("passkey", ("app", "as-1"))]
    assert (issued[0].user, issued[0].connection, issued[0].amr) == (ALICE, CUSTOMERS, ("swk",))
    assert issued[0].first_factor == PASSKEY
    _, _, issued = await first_factor(accepted(hardware=True, user_verified=True))
    assert issued[0].amr == ("hwk", "mfa")


async def test_an_unknown_auth_session_and_a_refused_passkey_issue_nothing() -> None:
    unknown, _, issued = await first_factor(WebAuthnOutcome(FactorCheck.INVALID, session_unknown=True))
    assert isinstance(unknown, InvalidGrant) and unknown.description == INVALID_AUTH_SESSION
    limited, _, _ = await first_factor(WebAuthnOutcome(FactorCheck.RATE_LIMITED))
    assert isinstance(limited, TooManyAttempts)
    ownerless, _, _ = await first_factor(accepted(user=None))
    assert isinstance(ownerless, InvalidGrant) and ownerless.description == INVALID_WEBAUTHN
    assert issued == []


async def test_a_passkey_of_another_directory_than_the_realm_is_refused() -> None:
    refused, _, issued = await first_factor(accepted(), {"realm": "employees"})
    assert isinstance(refused, InvalidGrant) and refused.description == INVALID_WEBAUTHN
    started_for_other, _, _ = await first_factor(accepted(connection="employees"))
    assert isinstance(started_for_other, InvalidGrant)
    assert issued == []
    matching, _, _ = await first_factor(accepted(connection="customers"), {"realm": "customers"})
    assert matching.access_token


async def test_a_disabled_connection_or_a_blocked_owner_is_refused() -> None:
    disabled, _, issued = await first_factor(accepted(), client=make_client(connections=("employees",)))
    assert isinstance(disabled, InvalidRequest) and "disabled" in (disabled.description or "")
    vanished, _, _ = await first_factor(accepted(User(user_id="auth0|x", connection="gone")))
    assert isinstance(vanished, InvalidRequest)
    blocked, _, _ = await first_factor(accepted(replace(ALICE, blocked=True)))
    assert isinstance(blocked, Unauthorized)
    assert issued == []


async def test_rules_run_for_the_passkey_protocol() -> None:
    rules = RecordingRules(claims={"https://example.test/tier": "gold"})
    response, _, issued = await first_factor(accepted(), {"scope": "openid read:a"}, rules=rules)
    assert response.access_token
    (run,) = rules.runs
    assert run["protocol"] == "oauth2-webauthn"
    assert run["requested_scopes"] == ("openid", "read:a")
    assert issued[0].access_claims == {"https://example.test/tier": "gold"}


async def test_a_passkey_that_only_proved_presence_meets_the_mfa_policy() -> None:
    mfa = StartingMfa()
    required, _, issued = await first_factor(accepted(), mfa=mfa)
    assert isinstance(required, MfaRequired) and required.mfa_token == "mfa-token-from-passkey"
    assert issued == [] and mfa.started[0].first_factor == PASSKEY
    # A passkey that verified the user is two factors: the policy is not asked.
    mfa = StartingMfa()
    verified, _, issued = await first_factor(accepted(user_verified=True), mfa=mfa)
    assert verified.access_token and mfa.calls == [] and len(issued) == 1
