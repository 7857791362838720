"""Recovery codes: long enough, readable, typed back in any grouping or case, stored as a stable hash."""

from __future__ import annotations

import hashlib
import math
import re
from collections import Counter

import pytest

from identity.mfa import recovery

LOOK_ALIKES = set("01IOilo")
UNAMBIGUOUS = set("ABCDEFGHJKLMNPQRSTUVWXYZ23456789")


@pytest.fixture(scope="module")
def codes() -> list[str]:
    return [recovery.generate() for _ in range(2000)]


def test_length_is_24(codes: list[str]) -> None:
    assert {len(code) for code in codes} == {24}


def test_alphabet_is_upper_case_without_look_alikes(codes: list[str]) -> None:
    seen = Counter("".join(codes))

    assert set(seen) <= UNAMBIGUOUS
    assert not set(seen) & LOOK_ALIKES
    # 48,000 characters drawn: every one of the 32 symbols shows up, none much more often than the others.
    assert set(seen) == UNAMBIGUOUS
    expected = 24 * len(codes) / 32
    assert all(0.8 * expected < count < 1.2 * expected for count in seen.values())


def test_at_least_80_bits(codes: list[str]) -> None:
    symbols = len(set("".join(codes)))
    bits = len(codes[0]) * math.log2(symbols)

    assert bits >= 80
    assert bits == 120  # 24 symbols of 5 bits
    assert len(set(codes)) == len(codes)


def test_generated_codes_are_already_normalised(codes: list[str]) -> None:
    for code in codes[:100]:
        assert recovery.normalize(code) == code


def test_display_groups_of_four() -> None:
    code = "ABCDEFGHJKLMNPQRSTUVWXYZ"

    assert recovery.display(code) == "ABCD-EFGH-JKLM-NPQR-STUV-WXYZ"
    assert re.fullmatch(r"([A-Z2-9]{4}-){5}[A-Z2-9]{4}", recovery.display(recovery.generate()))


@pytest.mark.parametrize(
    "typed",
    [
        "ABCD-EFGH-JKLM-NPQR-STUV-WXYZ",
        "abcd-efgh-jklm-npqr-stuv-wxyz",
        "abcdefghjklmnpqrstuvwxyz",
        "AbCd EfGh JkLm NpQr StUv WxYz",
        "  ABCD EFGH-JKLM\tNPQR_STUV.WXYZ\n",
        "ABCD\N{EN DASH}EFGH\N{EM DASH}JKLM NPQR STUV WXYZ",  # dashes from word processors
    ],
)
def test_normalisation_of_grouped_and_lower_case_input(typed: str) -> None:
    assert recovery.normalize(typed) == "ABCDEFGHJKLMNPQRSTUVWXYZ"
    assert recovery.hash_code(typed) == recovery.hash_code("ABCDEFGHJKLMNPQRSTUVWXYZ")


def test_display_form_hashes_like_the_code(codes: list[str]) -> None:
    for code in codes[:50]:
        assert recovery.hash_code(recovery.display(code)) == recovery.hash_code(code)
        assert recovery.hash_code(recovery.display(code).lower()) == recovery.hash_code(code)


def test_hash_is_stable() -> None:
    """Stored hashes must keep matching across releases: pin the exact digest."""
    assert recovery.hash_code("ABCDEFGHJKLMNPQRSTUVWXYZ") == (
        "30b33d7a162a13e1a0aa24c5518b378eb4c82ab1eb84f08a3487f166673bc8c0"
    )
    assert recovery.hash_code("ABCDEFGHJKLMNPQRSTUVWXYZ") == (
        hashlib.sha256(b"recovery-code:ABCDEFGHJKLMNPQRSTUVWXYZ").hexdigest()
    )


def test_hash_is_hex_sha256_and_never_contains_the_code(codes: list[str]) -> None:
    for code in codes[:50]:
        digest = recovery.hash_code(code)
        assert re.fullmatch(r"[0-9a-f]{64}", digest)
        assert code not in digest.upper()


def test_different_codes_hash_differently() -> None:
    a = "ABCDEFGHJKLMNPQRSTUVWXYZ"
    b = "ABCDEFGHJKLMNPQRSTUVWXY2"

    assert recovery.hash_code(a) != recovery.hash_code(b)
    # Dropping or adding a character is another code, not the same one.
    assert recovery.hash_code(a) != recovery.hash_code(a[:-1])
    assert recovery.hash_code(a) != recovery.hash_code(a + "A")
