"""The MFA grants (mfa-otp, mfa-recovery-code) over in-memory fakes: what they issue, and every refusal."""

from dataclasses import replace

import pytest

from identity.clock import FrozenClock
from identity.oauth2.errors import (
    ExpiredToken,
    InvalidGrant,
    InvalidRequest,
    OAuthError,
    ServerError,
    TooManyAttempts,
    Unauthorized,
)
from identity.oauth2.grants.mfa import (
    INVALID_OTP,
    INVALID_RECOVERY_CODE,
    MALFORMED_MFA_TOKEN,
    TOO_MANY_ATTEMPTS,
    MfaOtpGrant,
    MfaRecoveryCodeGrant,
    live_mfa_transaction,
)
from identity.oauth2.interfaces import FactorCheck, MfaTransaction, User
from identity.oauth2.requests import TokenRequest
from tests.unit.oauth2.fakes import API, CUSTOMERS, PASSWORD_REALM, FakeMfa, make_client, standard_fakes

NOW = 1_800_000_000.0
CLIENT = make_client()
ALICE = User(user_id="auth0|alice", connection="customers", email="alice@example.test")
MFA_TOKEN = "mfa-token-of-alice"
TRANSACTION = MfaTransaction(
    id=7,
    client_id=CLIENT.client_id,
    user_id=ALICE.user_id,
    connection="customers",
    grant_type=PASSWORD_REALM,
    audience=API.identifier,
    scopes=("openid", "read:a"),
    expires_at=NOW + 300,
    consumed=False,
    access_claims={"https://example.test/tier": "gold"},
    id_claims={"https://example.test/nick": "al"},
    app_metadata={"seen_mfa": True},
)
OTP = {"mfa_token": MFA_TOKEN, "otp": "123456"}
RECOVERY = {"mfa_token": MFA_TOKEN, "recovery_code": "OLDRECOVERYCODE0123456789"}
GRANTS = [(MfaOtpGrant, OTP), (MfaRecoveryCodeGrant, RECOVERY)]


class Setup:
    """The fakes of one test: a tenant, an MFA service holding Alice's transaction, an issuer, a frozen clock."""

    def __init__(self, transaction: MfaTransaction | None = TRANSACTION, users: tuple[User, ...] = (ALICE,)) -> None:
        self.tenant, _, self.issuer = standard_fakes()
        self.mfa = FakeMfa(users)
        if transaction is not None:
            self.mfa.add(MFA_TOKEN, transaction)
        self.clock = FrozenClock(NOW)

    def grant(self, kind):
        return kind(self.tenant, self.mfa, self.issuer, self.clock)

    async def handle(self, kind, params, client=CLIENT):
        return await self.grant(kind).handle(TokenRequest(params), client)

    async def refused(self, kind, params, client=CLIENT) -> OAuthError:
        with pytest.raises(OAuthError) as caught:
            await self.handle(kind, params, client)
        assert self.issuer.results == [], "nothing may be issued after a refusal"
        return caught.value


def test_grant_type_strings():
    assert MfaOtpGrant.GRANT_TYPE == "http://auth0.com/oauth/grant-type/mfa-otp"
    assert MfaRecoveryCodeGrant.GRANT_TYPE == "http://auth0.com/oauth/grant-type/mfa-recovery-code"


# -- what is issued ---------------------------------------------------------------------------------------------------


async def test_otp_issues_what_the_password_step_deferred():
    setup = Setup()
    response = await setup.handle(MfaOtpGrant, OTP)
    (result,) = setup.issuer.results
    assert result.grant_type == PASSWORD_REALM, "the grant type of the first step, not of mfa-otp"
    assert (result.client, result.user, result.connection) == (CLIENT, ALICE, CUSTOMERS)
    assert (result.api, result.audience, result.scopes) == (API, API.identifier, ("openid", "read:a"))
    assert result.access_claims == TRANSACTION.access_claims
    assert result.id_claims == TRANSACTION.id_claims
    assert result.app_metadata == {"seen_mfa": True}
    assert result.amr == ("pwd", "mfa", "otp")
    assert setup.mfa.factor_checks() == [("check_otp", "7", "123456")]
    assert response.access_token == "access-token-1"
    assert "recovery_code" not in response.to_body()


async def test_recovery_code_issues_and_hands_back_the_replacement_code():
    setup = Setup()
    response = await setup.handle(MfaRecoveryCodeGrant, RECOVERY)
    (result,) = setup.issuer.results
    assert result.amr == ("pwd", "mfa")
    assert result.scopes == ("openid", "read:a")
    assert setup.mfa.factor_checks() == [("redeem_recovery_code", "7", "OLDRECOVERYCODE0123456789")]
    assert response.to_body()["recovery_code"] == "NEWRECOVERYCODE0123456789"


@pytest.mark.parametrize(
    ("kind", "params", "amr"),
    [(MfaOtpGrant, OTP, ("swk", "mfa", "otp")), (MfaRecoveryCodeGrant, RECOVERY, ("swk", "mfa"))],
)
async def test_amr_keeps_a_passkey_first_factor(kind, params, amr):
    setup = Setup(replace(TRANSACTION, amr=("swk",), first_factor="cred-1"))
    await setup.handle(kind, params)
    assert setup.issuer.results[0].amr == amr


async def test_a_transaction_without_audience_issues_without_api():
    setup = Setup(replace(TRANSACTION, audience=None, scopes=("openid",)))
    await setup.handle(MfaOtpGrant, OTP)
    (result,) = setup.issuer.results
    assert (result.api, result.audience) == (None, None)


# -- the mfa_token ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "params"), GRANTS)
async def test_missing_mfa_token_is_an_invalid_request(kind, params):
    setup = Setup()
    error = await setup.refused(kind, {k: v for k, v in params.items() if k != "mfa_token"})
    assert isinstance(error, InvalidRequest)
    assert error.to_body() == {"error": "invalid_request", "error_description": "missing mfa_token parameter"}
    assert setup.mfa.calls == []


@pytest.mark.parametrize(("kind", "params"), GRANTS)
async def test_unknown_mfa_token_is_malformed(kind, params):
    setup = Setup()
    error = await setup.refused(kind, {**params, "mfa_token": "forged"})
    assert isinstance(error, InvalidGrant)
    assert error.to_body() == {"error": "invalid_grant", "error_description": MALFORMED_MFA_TOKEN}
    assert setup.mfa.factor_checks() == []


@pytest.mark.parametrize(("kind", "params"), GRANTS)
async def test_consumed_mfa_token_is_malformed(kind, params):
    setup = Setup(replace(TRANSACTION, consumed=True))
    error = await setup.refused(kind, params)
    assert (type(error), error.description) == (InvalidGrant, MALFORMED_MFA_TOKEN)
    assert setup.mfa.factor_checks() == []


@pytest.mark.parametrize(("kind", "params"), GRANTS)
async def test_mfa_token_of_another_client_is_refused(kind, params):
    setup = Setup()
    error = await setup.refused(kind, params, client=make_client("other-app"))
    assert isinstance(error, InvalidRequest)
    assert error.to_body() == {"error": "invalid_request", "error_description": "mfa_token not issued to this client"}
    assert setup.mfa.factor_checks() == []


@pytest.mark.parametrize(("kind", "params"), GRANTS)
@pytest.mark.parametrize("seconds_left", [0, -1, -3600])
async def test_expired_mfa_token_is_refused(kind, params, seconds_left):
    setup = Setup(replace(TRANSACTION, expires_at=NOW + seconds_left))
    error = await setup.refused(kind, params)
    assert isinstance(error, ExpiredToken)
    assert (error.status_code, error.to_body()) == (
        403,
        {"error": "expired_token", "error_description": "mfa_token is expired"},
    )
    assert setup.mfa.factor_checks() == []


async def test_mfa_token_is_live_until_its_last_second():
    almost = Setup(replace(TRANSACTION, expires_at=NOW + 1))
    await almost.handle(MfaOtpGrant, OTP)
    assert len(almost.issuer.results) == 1
    late = Setup(replace(TRANSACTION, expires_at=NOW + 1))
    late.clock.advance(1)
    assert isinstance(await late.refused(MfaOtpGrant, OTP), ExpiredToken)


async def test_lookup_without_client_skips_the_client_check():
    """The MFA API's Bearer endpoints carry no client: ``client_id=None`` accepts any client's transaction."""
    mfa = FakeMfa([ALICE])
    mfa.add(MFA_TOKEN, replace(TRANSACTION, client_id="someone-else"))
    found = await live_mfa_transaction(mfa, MFA_TOKEN, client_id=None, clock=FrozenClock(NOW))
    assert found.id == TRANSACTION.id
    with pytest.raises(ExpiredToken):
        await live_mfa_transaction(mfa, MFA_TOKEN, client_id=None, clock=FrozenClock(TRANSACTION.expires_at))


# -- the second factor's parameter and the deferred login -------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "params", "name"), [(MfaOtpGrant, OTP, "otp"), (MfaRecoveryCodeGrant, RECOVERY, "recovery_code")]
)
async def test_missing_factor_is_an_invalid_request_and_spends_nothing(kind, params, name):
    setup = Setup()
    error = await setup.refused(kind, {"mfa_token": MFA_TOKEN})
    assert error.to_body() == {"error": "invalid_request", "error_description": f"missing {name} parameter"}
    assert setup.mfa.factor_checks() == []


@pytest.mark.parametrize(("kind", "params"), GRANTS)
async def test_blocked_user_is_unauthorized_before_the_factor_is_checked(kind, params):
    setup = Setup(users=(replace(ALICE, blocked=True),))
    error = await setup.refused(kind, params)
    assert isinstance(error, Unauthorized)
    assert (error.status_code, error.to_body()) == (
        401,
        {"error": "unauthorized", "error_description": "user is blocked"},
    )
    assert setup.mfa.factor_checks() == []


@pytest.mark.parametrize(("kind", "params"), GRANTS)
async def test_deleted_user_makes_the_mfa_token_malformed(kind, params):
    setup = Setup(users=())
    error = await setup.refused(kind, params)
    assert (type(error), error.description) == (InvalidGrant, MALFORMED_MFA_TOKEN)
    assert setup.mfa.factor_checks() == []


@pytest.mark.parametrize(
    "change",
    [{"connection": "removed-directory"}, {"audience": "https://removed-api.test/"}],
    ids=["connection", "api"],
)
async def test_configuration_removed_since_the_password_step_makes_the_mfa_token_malformed(change):
    setup = Setup(replace(TRANSACTION, **change))
    error = await setup.refused(MfaOtpGrant, OTP)
    assert (type(error), error.description) == (InvalidGrant, MALFORMED_MFA_TOKEN)
    assert setup.mfa.factor_checks() == []


# -- the factor's answer ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("check", "error_type", "status", "description"),
    [
        (FactorCheck.INVALID, InvalidGrant, 403, INVALID_OTP),
        (FactorCheck.RATE_LIMITED, TooManyAttempts, 429, TOO_MANY_ATTEMPTS),
        (FactorCheck.TOKEN_USED, InvalidGrant, 403, MALFORMED_MFA_TOKEN),
    ],
)
async def test_otp_refusals(check, error_type, status, description):
    setup = Setup()
    setup.mfa.otp_check = check
    error = await setup.refused(MfaOtpGrant, OTP)
    assert (type(error), error.status_code, error.description) == (error_type, status, description)


@pytest.mark.parametrize(
    ("check", "error_type", "description"),
    [
        (FactorCheck.INVALID, InvalidGrant, INVALID_RECOVERY_CODE),
        (FactorCheck.RATE_LIMITED, TooManyAttempts, TOO_MANY_ATTEMPTS),
        (FactorCheck.TOKEN_USED, InvalidGrant, MALFORMED_MFA_TOKEN),
    ],
)
async def test_recovery_code_refusals(check, error_type, description):
    setup = Setup()
    setup.mfa.recovery = (check, None)
    error = await setup.refused(MfaRecoveryCodeGrant, RECOVERY)
    assert (type(error), error.description) == (error_type, description)


async def test_recovery_code_accepted_without_a_replacement_is_a_server_error():
    """Issuing anyway would leave the user without a recovery code; ``python -O`` must not change that."""
    setup = Setup()
    setup.mfa.recovery = (FactorCheck.ACCEPTED, None)
    error = await setup.refused(MfaRecoveryCodeGrant, RECOVERY)
    assert isinstance(error, ServerError)
    assert (error.status_code, error.to_body()) == (
        500,
        {"error": "server_error", "error_description": "the recovery code could not be replaced"},
    )
