"""The admin commands for second factors (issue 3 §8): ``identity users mfa-reset USER_ID`` and
``identity users recovery-code-regenerate USER_ID``, run with click's CliRunner on the database an app (FrozenClock)
is serving, and checked through that app's HTTP API.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
from click.testing import CliRunner, Result

from identity.cli import main
from identity.mfa import recovery
from identity.settings import EncryptionKeys
from tests.api.mfa_support import MFA_REQUIRED, Mfa, dump_text, error_of, open_mfa, reset
from tests.conftest import API

INVALID_RECOVERY_CODE = (403, "invalid_grant", "Invalid recovery_code.")


@pytest.fixture(scope="module")
def module_mfa(database_url: str, encryption_keys: EncryptionKeys) -> Iterator[Mfa]:
    with open_mfa(database_url, encryption_keys) as driver:
        yield driver


@pytest.fixture
def mfa(module_mfa: Mfa) -> Mfa:
    return reset(module_mfa)


def identity(mfa: Mfa, *args: str) -> Result:
    """``identity ARGS`` in-process, configured like an operator would: through the environment."""
    env = {
        "IDENTITY_DATABASE_URL": mfa.settings.database_url,
        "IDENTITY_ENCRYPTION_KEYS": mfa.settings.encryption_keys.dump().replace("\n", ","),
        "IDENTITY_ISSUER": mfa.settings.issuer,
        "IDENTITY_HASH_WORKERS": "1",
    }
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)


def printed(result: Result) -> dict[str, Any]:
    assert result.exit_code == 0, result.output
    answer: dict[str, Any] = json.loads(result.stdout)
    return answer


# --- mfa-reset ---------------------------------------------------------------------------------------------------


def test_mfa_reset_removes_every_factor(mfa: Mfa) -> None:
    enrolled = mfa.enroll()
    assert error_of(mfa.login()) == (403, "mfa_required", MFA_REQUIRED)

    answer = printed(identity(mfa, "users", "mfa-reset", enrolled.user_id))

    assert answer == {"user_id": enrolled.user_id, "removed": 2}  # the authenticator and the recovery code
    assert mfa.login().status_code == 200  # if-enrolled: nothing enrolled any more
    mfa.set_policy("always")
    mfa_token = mfa.mfa_token()
    assert mfa.authenticators(mfa_token).json() == []
    assert error_of(mfa.recover(mfa_token, enrolled.recovery_code)) == INVALID_RECOVERY_CODE
    assert error_of(mfa.otp(mfa_token, mfa.code(enrolled.secret))) == (403, "invalid_grant", "Invalid otp_code.")


def test_after_a_reset_the_user_enrolls_again_and_gets_a_new_recovery_code(mfa: Mfa) -> None:
    enrolled = mfa.enroll()
    printed(identity(mfa, "users", "mfa-reset", enrolled.user_id))

    again = mfa.enroll(fresh=True)

    assert again.secret != enrolled.secret
    assert again.recovery_code != enrolled.recovery_code
    assert error_of(mfa.login()) == (403, "mfa_required", MFA_REQUIRED)


def test_mfa_reset_touches_only_that_user(mfa: Mfa) -> None:
    customer = mfa.enroll()
    employee = mfa.enroll(realm="employees")

    printed(identity(mfa, "users", "mfa-reset", customer.user_id))

    assert mfa.login().status_code == 200
    mfa_token = mfa.mfa_token(realm="employees")
    assert mfa.otp(mfa_token, mfa.code(employee.secret)).status_code == 200


def test_mfa_reset_of_a_user_without_factors(mfa: Mfa) -> None:
    enrolled = mfa.enroll()
    printed(identity(mfa, "users", "mfa-reset", enrolled.user_id))

    assert printed(identity(mfa, "users", "mfa-reset", enrolled.user_id)) == {
        "user_id": enrolled.user_id,
        "removed": 0,
    }


def test_mfa_reset_of_an_unknown_user(mfa: Mfa) -> None:
    result = identity(mfa, "users", "mfa-reset", "auth0|nobody")

    assert result.exit_code == 1
    assert "unknown user" in result.output
    assert result.stdout == ""


# --- recovery-code-regenerate ------------------------------------------------------------------------------------


def test_recovery_code_regenerate_prints_a_new_code_once(mfa: Mfa) -> None:
    enrolled = mfa.enroll()

    answer = printed(identity(mfa, "users", "recovery-code-regenerate", enrolled.user_id))

    assert set(answer) == {"user_id", "recovery_code", "display"}
    assert answer["user_id"] == enrolled.user_id
    code = answer["recovery_code"]
    assert re.fullmatch(r"[A-Z2-9]{24}", code)
    assert code != enrolled.recovery_code
    assert answer["display"] == recovery.display(code)
    assert re.fullmatch(r"([A-Z2-9]{4}-){5}[A-Z2-9]{4}", answer["display"])
    # The old code stopped working; the new one works, typed as displayed.
    assert error_of(mfa.recover(mfa.mfa_token(), enrolled.recovery_code)) == INVALID_RECOVERY_CODE
    response = mfa.recover(mfa.mfa_token(), answer["display"])
    assert response.status_code == 200, response.text
    # Stored hashed only.
    everything = "\n".join(value for values in dump_text(mfa.db).values() for value in values)
    assert code not in everything
    assert answer["display"] not in everything


def test_regenerating_twice_keeps_only_the_last_code(mfa: Mfa) -> None:
    enrolled = mfa.enroll()
    first = printed(identity(mfa, "users", "recovery-code-regenerate", enrolled.user_id))["recovery_code"]

    second = printed(identity(mfa, "users", "recovery-code-regenerate", enrolled.user_id))["recovery_code"]

    assert second != first
    assert error_of(mfa.recover(mfa.mfa_token(), first)) == INVALID_RECOVERY_CODE
    assert mfa.recover(mfa.mfa_token(), second).status_code == 200
    listed = mfa.authenticators(mfa.mfa_token()).json()
    assert [a["authenticator_type"] for a in listed].count("recovery-code") == 1


def test_recovery_code_regenerate_after_a_reset_restores_nothing(mfa: Mfa) -> None:
    enrolled = mfa.enroll()
    printed(identity(mfa, "users", "mfa-reset", enrolled.user_id))

    result = identity(mfa, "users", "recovery-code-regenerate", enrolled.user_id)

    assert result.exit_code == 1
    assert "the user has no enrolled factor" in result.output
    assert result.stdout == ""
    assert mfa.login().status_code == 200


def test_recovery_code_regenerate_refuses_a_pending_enrollment(mfa: Mfa) -> None:
    user_id = mfa.claims(mfa.login().json()["access_token"], audience=API)["sub"]
    mfa.set_policy("always")
    assert mfa.associate(mfa.mfa_token()).status_code == 200

    result = identity(mfa, "users", "recovery-code-regenerate", user_id)

    assert result.exit_code == 1
    assert "the user has no enrolled factor" in result.output


def test_recovery_code_regenerate_of_an_unknown_user(mfa: Mfa) -> None:
    result = identity(mfa, "users", "recovery-code-regenerate", "auth0|nobody")

    assert result.exit_code == 1
    assert "unknown user" in result.output
