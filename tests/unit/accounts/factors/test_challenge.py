"""Which challenge /mfa/challenge answers with: pure, over the user's factor records."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from identity.accounts.factors import Challenge, Factor, FactorType, choose_challenge

AT = datetime(2027, 1, 15, tzinfo=UTC)
LATER = AT + timedelta(days=3)
APP = Factor("totp|dev_app", FactorType.TOTP, True, AT)
PENDING_APP = Factor("totp|dev_pending", FactorType.TOTP, False, AT)
KEY = Factor("webauthn|dev_key", FactorType.WEBAUTHN, True, AT, name="Key")
OTHER_KEY = Factor("webauthn|dev_other", FactorType.WEBAUTHN, True, AT, name="Other")
RECOVERY = Factor("recovery-code|dev_rc", FactorType.RECOVERY_CODE, True, AT)
# Enrolled before everything else: still never chosen unasked while there is something else.
EMAIL = Factor("email|dev_mail", FactorType.EMAIL, True, AT - timedelta(days=30), name="a***@example.com")
PENDING_EMAIL = Factor("email|dev_pending", FactorType.EMAIL, False, AT)
LATE_APP = Factor("totp|dev_late", FactorType.TOTP, True, LATER)
LATE_KEY = Factor("webauthn|dev_late", FactorType.WEBAUTHN, True, AT, confirmed_at=LATER)


@pytest.mark.parametrize(
    ("factors", "challenge_type", "authenticator_id", "expected"),
    [
        ((RECOVERY, APP), None, None, Challenge.OTP),
        ((RECOVERY, KEY), None, None, Challenge.WEBAUTHN),
        ((RECOVERY, APP, KEY), None, None, Challenge.OTP),  # enrolled together: the first listed
        ((RECOVERY, KEY, LATE_APP), None, None, Challenge.WEBAUTHN),  # omitted: the one enrolled first
        ((RECOVERY, APP, LATE_KEY), None, None, Challenge.OTP),  # a key counts from its confirmation
        ((RECOVERY, APP, KEY), "otp webauthn", None, Challenge.OTP),
        ((RECOVERY, APP, KEY), "webauthn otp", None, Challenge.WEBAUTHN),  # the client's first type the user has
        ((RECOVERY, APP, KEY), "webauthn", None, Challenge.WEBAUTHN),
        ((RECOVERY, APP, KEY), "otp", None, Challenge.OTP),
        ((RECOVERY, APP, KEY), "otp webauthn", KEY.id, Challenge.WEBAUTHN),  # the id picks the authenticator
        ((RECOVERY, APP, KEY), "webauthn otp", APP.id, Challenge.OTP),
        ((RECOVERY, APP, KEY), "otp", KEY.id, None),  # ... among the types asked
        ((RECOVERY, APP, KEY, OTHER_KEY), None, OTHER_KEY.id, Challenge.WEBAUTHN),
        ((PENDING_APP,), None, None, Challenge.OTP),  # an app being enrolled (the mfa-otp grant confirms it)
        ((RECOVERY, KEY, PENDING_APP), "otp", None, None),  # ... but only before any factor is active
        ((RECOVERY, EMAIL, PENDING_APP), None, None, Challenge.OOB),
        ((RECOVERY, KEY), "otp", None, None),
        ((RECOVERY, APP), "webauthn", None, None),
        ((RECOVERY, APP), "oob", None, None),
        ((RECOVERY, APP, KEY), None, "totp|dev_unknown", None),
        ((RECOVERY,), None, None, None),
        ((), None, None, None),
        # Email: sent when asked for, named, or the only factor; never otherwise.
        ((RECOVERY, EMAIL, APP), None, None, Challenge.OTP),
        ((RECOVERY, EMAIL, KEY), None, None, Challenge.WEBAUTHN),
        ((RECOVERY, EMAIL), None, None, Challenge.OOB),
        ((RECOVERY, EMAIL, APP), "oob", None, Challenge.OOB),
        ((RECOVERY, EMAIL, APP), "otp oob", None, Challenge.OTP),
        ((RECOVERY, EMAIL, APP), "oob otp", None, Challenge.OOB),
        ((RECOVERY, EMAIL, APP), None, EMAIL.id, Challenge.OOB),
        ((RECOVERY, EMAIL, APP), "otp", EMAIL.id, None),
        ((RECOVERY, EMAIL), "otp webauthn", None, None),
        ((RECOVERY, PENDING_EMAIL), None, None, None),  # an enrollment is confirmed with the code /mfa/associate sent
        ((RECOVERY, PENDING_EMAIL), "oob", PENDING_EMAIL.id, None),
    ],
)
def test_the_challenge(factors, challenge_type, authenticator_id, expected):
    chosen = choose_challenge(factors, challenge_type=challenge_type, authenticator_id=authenticator_id)
    assert (chosen.challenge if chosen is not None else None) is expected


def test_the_choice_names_the_factor_it_is_for():
    chosen = choose_challenge((RECOVERY, APP, KEY, OTHER_KEY), challenge_type="webauthn", authenticator_id=None)
    assert chosen is not None and chosen.factor == KEY
    chosen = choose_challenge((RECOVERY, APP, EMAIL), challenge_type="oob", authenticator_id=None)
    assert chosen is not None and chosen.factor == EMAIL


def test_without_a_mail_server_or_the_grant_email_factors_are_left_out():
    assert choose_challenge((RECOVERY, EMAIL), challenge_type=None, authenticator_id=None, email=False) is None
    assert choose_challenge((RECOVERY, EMAIL), challenge_type="oob", authenticator_id=None, email=False) is None
    chosen = choose_challenge((RECOVERY, EMAIL, APP), challenge_type="oob otp", authenticator_id=None, email=False)
    assert chosen is not None and chosen.challenge is Challenge.OTP


def test_a_pending_app_does_not_count_beside_an_active_one_when_an_id_names_it():
    chosen = choose_challenge((APP, PENDING_APP), challenge_type="otp", authenticator_id=PENDING_APP.id)
    assert chosen is None
