"""Which challenge /mfa/challenge answers with: pure, over the user's factor records."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from identity.accounts.factors import Challenge, Factor, FactorType, choose_challenge

AT = datetime(2027, 1, 15, tzinfo=UTC)
APP = Factor("totp|dev_app", FactorType.TOTP, True, AT)
PENDING_APP = Factor("totp|dev_pending", FactorType.TOTP, False, AT)
KEY = Factor("webauthn|dev_key", FactorType.WEBAUTHN, True, AT, name="Key")
OTHER_KEY = Factor("webauthn|dev_other", FactorType.WEBAUTHN, True, AT, name="Other")
RECOVERY = Factor("recovery-code|dev_rc", FactorType.RECOVERY_CODE, True, AT)


@pytest.mark.parametrize(
    ("factors", "challenge_type", "authenticator_id", "expected"),
    [
        ((RECOVERY, APP), None, None, Challenge.OTP),
        ((RECOVERY, KEY), None, None, Challenge.WEBAUTHN),
        ((RECOVERY, APP, KEY), None, None, Challenge.OTP),  # omitted: OTP first
        ((RECOVERY, APP, KEY), "otp webauthn", None, Challenge.OTP),
        ((RECOVERY, APP, KEY), "webauthn otp", None, Challenge.WEBAUTHN),  # the client's first type the user has
        ((RECOVERY, APP, KEY), "webauthn", None, Challenge.WEBAUTHN),
        ((RECOVERY, APP, KEY), "otp", None, Challenge.OTP),
        ((RECOVERY, APP, KEY), "otp webauthn", KEY.id, Challenge.WEBAUTHN),  # the id picks the authenticator
        ((RECOVERY, APP, KEY), "webauthn otp", APP.id, Challenge.OTP),
        ((RECOVERY, APP, KEY, OTHER_KEY), None, OTHER_KEY.id, Challenge.WEBAUTHN),
        ((PENDING_APP,), None, None, Challenge.OTP),  # an app being enrolled (the mfa-otp grant confirms it)
        ((RECOVERY, KEY), "otp", None, None),
        ((RECOVERY, APP), "webauthn", None, None),
        ((RECOVERY, APP), "oob", None, None),
        ((RECOVERY, APP, KEY), None, "totp|dev_unknown", None),
        ((RECOVERY,), None, None, None),
        ((), None, None, None),
    ],
)
def test_the_challenge(factors, challenge_type, authenticator_id, expected):
    chosen = choose_challenge(factors, challenge_type=challenge_type, authenticator_id=authenticator_id)
    assert chosen is expected


def test_a_pending_app_does_not_count_beside_an_active_one_when_an_id_names_it():
    chosen = choose_challenge((APP, PENDING_APP), challenge_type="otp", authenticator_id=PENDING_APP.id)
    assert chosen is None
