"""Email factors for the API tests: enrolled through the MFA API (the code read from the email that arrived), or
added to a user who has a factor already."""

from __future__ import annotations

from typing import Any

import httpx

from tests.api.mfa_support import MFA_AUDIENCE, MFA_OOB, Mfa
from tests.smtp_support import SmtpSink

ADDRESS = "alice.codes@mail.example"


def associate_email(mfa: Mfa, mfa_token: str, address: str | None = ADDRESS) -> httpx.Response:
    """``POST /mfa/associate`` for ``oob`` on the ``email`` channel (the user's own address when ``None``)."""
    body: dict[str, Any] = {"authenticator_types": ["oob"], "oob_channels": ["email"]}
    if address is not None:
        body["email"] = address
    return mfa.client.post("/mfa/associate", json=body, headers={"Authorization": f"Bearer {mfa_token}"})


def enroll_email(mfa: Mfa, sink: SmtpSink, address: str = ADDRESS) -> dict[str, Any]:
    """Enroll an email factor from a login and confirm it with the code that arrived; the confirming tokens.

    The user's first factor: the enrollment also gives them a recovery code. One email is spent from their bucket.
    """
    mfa_token = mfa.mfa_token(audience=MFA_AUDIENCE)
    answer = associate_email(mfa, mfa_token, address)
    assert answer.status_code == 200, answer.text
    confirmed = mfa.token(
        grant_type=MFA_OOB, mfa_token=mfa_token, oob_code=answer.json()["oob_code"], binding_code=sink.code_for(address)
    )
    assert confirmed.status_code == 200, confirmed.text
    sink.clear()
    return dict(confirmed.json())


def add_email_factor(mfa: Mfa, user_id: str, address: str = ADDRESS) -> None:
    """Give an enrolled user an email factor too (an mfa_token enrolls only the first factor), in the database."""
    from identity.accounts.factors.email import EMAIL_PURPOSE
    from identity.crypto import SecretBox

    box = SecretBox(mfa.settings.encryption_keys)
    public_id = "email|dev_added"
    sealed = box.seal(address.encode(), purpose=EMAIL_PURPOSE + public_id)
    mfa.db.sql(
        "INSERT INTO authenticator (public_id, user_pk, kind, secret, active, created_at, confirmed_at) "
        f"SELECT '{public_id}', id, 'email', '{sealed}', true, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP "
        f"FROM users WHERE user_id = '{user_id}'"
    )
