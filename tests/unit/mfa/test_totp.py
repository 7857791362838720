"""TOTP as authenticator apps compute it (RFC 6238, SHA-1, 6 digits, 30 s), and the otpauth:// URI they scan."""

from __future__ import annotations

import base64
from urllib.parse import parse_qs, unquote, urlsplit

import pyotp
import pytest

from identity.mfa import totp

# RFC 6238 Appendix B: the SHA-1 seed is the ASCII string "12345678901234567890". The RFC prints 8-digit codes;
# an authenticator app shows their last 6 digits (RFC 4226 truncation modulo 10^6).
RFC_SECRET = base64.b32encode(b"12345678901234567890").decode()
RFC_VECTORS = [
    (59, "94287082"),
    (1111111109, "07081804"),
    (1111111111, "14050471"),
    (1234567890, "89005924"),
    (2000000000, "69279037"),
    (20000000000, "65353130"),
]


def code_at(secret: str, at: float) -> str:
    return pyotp.TOTP(secret).at(at)


def test_rfc_secret_is_the_published_base32() -> None:
    assert RFC_SECRET == "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"


@pytest.mark.parametrize(("at", "rfc_code"), RFC_VECTORS, ids=[str(at) for at, _ in RFC_VECTORS])
def test_rfc6238_sha1_vectors(at: int, rfc_code: str) -> None:
    six_digits = rfc_code[-6:]

    assert totp.verify(RFC_SECRET, six_digits, at=at) == at // 30
    # The 8-digit form is not what the server expects.
    assert totp.verify(RFC_SECRET, rfc_code, at=at) is None


@pytest.mark.parametrize(("at", "rfc_code"), RFC_VECTORS, ids=[str(at) for at, _ in RFC_VECTORS])
def test_vectors_match_an_independent_implementation(at: int, rfc_code: str) -> None:
    assert pyotp.TOTP(RFC_SECRET, digits=8).at(at) == rfc_code


def test_parameters_are_those_of_authenticator_apps() -> None:
    assert (totp.DIGITS, totp.PERIOD, totp.VALID_WINDOW) == (6, 30, 1)


@pytest.mark.parametrize("offset", [-1, 0, 1])
def test_one_step_either_side_is_accepted_and_named(offset: int) -> None:
    at = 1_800_000_015.0  # middle of step 60_000_000
    code = code_at(RFC_SECRET, at + 30 * offset)

    assert totp.verify(RFC_SECRET, code, at=at) == 60_000_000 + offset


@pytest.mark.parametrize("offset", [-3, -2, 2, 3])
def test_two_steps_away_is_refused(offset: int) -> None:
    at = 1_800_000_015.0
    code = code_at(RFC_SECRET, at + 30 * offset)
    # Guard against a code that happens to repeat inside the window.
    window = {code_at(RFC_SECRET, at + 30 * k) for k in (-1, 0, 1)}
    assert code not in window

    assert totp.verify(RFC_SECRET, code, at=at) is None


def test_step_boundaries() -> None:
    # 1_800_000_000 is the first second of step 60_000_000; 1_799_999_999 the last of the one before.
    code = code_at(RFC_SECRET, 1_800_000_000)

    assert totp.verify(RFC_SECRET, code, at=1_800_000_000) == 60_000_000
    assert totp.verify(RFC_SECRET, code, at=1_800_000_029.999) == 60_000_000
    assert totp.verify(RFC_SECRET, code, at=1_799_999_999) == 60_000_000  # the next step, within the window
    assert totp.verify(RFC_SECRET, code, at=1_800_000_059.999) == 60_000_000  # the previous step
    assert totp.verify(RFC_SECRET, code, at=1_800_000_060) is None
    assert totp.verify(RFC_SECRET, code, at=1_799_999_969.999) is None


def test_another_secret_does_not_verify() -> None:
    at = 1_800_000_015.0
    other = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
    code = code_at(RFC_SECRET, at)
    assert code not in {code_at(other, at + 30 * k) for k in (-1, 0, 1)}

    assert totp.verify(other, code, at=at) is None


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param("", id="empty"),
        pytest.param("05924", id="five-digits"),
        pytest.param("0005924", id="seven-digits"),
        pytest.param("89005924", id="eight-digits"),
        pytest.param("0O5924", id="letter-O"),
        pytest.param("00592a", id="hex-letter"),
        pytest.param("-05924", id="minus-sign"),
        pytest.param("+05924", id="plus-sign"),
        pytest.param("00592\N{ARABIC-INDIC DIGIT FOUR}", id="arabic-indic-digit"),
        pytest.param("005.24", id="dot"),
        pytest.param("005924\x00", id="nul"),
    ],
)
def test_wrong_length_or_non_digits_are_refused(bad: str) -> None:
    # The right code at this time is 005924.
    assert totp.verify(RFC_SECRET, "005924", at=1234567890) is not None

    assert totp.verify(RFC_SECRET, bad, at=1234567890) is None


@pytest.mark.parametrize("typed", [" 005924", "005924 ", "005 924", " 005 924 "])
def test_spaces_people_type_are_ignored(typed: str) -> None:
    assert totp.verify(RFC_SECRET, typed, at=1234567890) == 1234567890 // 30


def test_fullwidth_digits_read_as_the_same_code() -> None:
    """A CJK keyboard's full-width digits are the same code after NFKC (pyotp's comparison), not another one."""
    fullwidth = "".join(chr(ord(digit) - ord("0") + 0xFF10) for digit in "005924")

    assert totp.verify(RFC_SECRET, fullwidth, at=1234567890) == 1234567890 // 30
    assert totp.verify(RFC_SECRET, fullwidth[:-1] + "\N{FULLWIDTH DIGIT FIVE}", at=1234567890) is None


def test_new_secret_is_160_bits_of_base32() -> None:
    secrets_ = {totp.new_secret() for _ in range(200)}

    assert len(secrets_) == 200
    for secret in secrets_:
        assert len(secret) == 32
        assert set(secret) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567")
        assert len(base64.b32decode(secret)) == 20  # 160 bits, RFC 4226's recommended key size


def test_a_new_secret_works_with_an_independent_implementation() -> None:
    secret = totp.new_secret()
    at = 1_900_000_000.0

    assert totp.verify(secret, code_at(secret, at), at=at) == int(at // 30)


# --- Provisioning URI (Key Uri Format) ---------------------------------------------------------------------------


def test_provisioning_uri_exact_form() -> None:
    uri = totp.provisioning_uri("JBSWY3DPEHPK3PXP", issuer="Test", account="alice@example.test")

    assert uri == (
        "otpauth://totp/Test:alice@example.test?secret=JBSWY3DPEHPK3PXP&issuer=Test&algorithm=SHA1&digits=6&period=30"
    )


def test_provisioning_uri_escapes_spaces_and_reserved_characters() -> None:
    uri = totp.provisioning_uri("JBSWY3DPEHPK3PXP", issuer="Acme Corp", account="a b/c?d#e&f=g")
    parts = urlsplit(uri)

    assert parts.scheme == "otpauth"
    assert parts.netloc == "totp"
    assert parts.path == "/Acme%20Corp:a%20b%2Fc%3Fd%23e%26f%3Dg"
    assert parts.fragment == ""
    # Spaces are %20, never '+', in the label and in the query (Key Uri Format).
    assert "+" not in uri
    assert "issuer=Acme%20Corp&" in uri
    query = parse_qs(parts.query)
    assert query == {
        "secret": ["JBSWY3DPEHPK3PXP"],
        "issuer": ["Acme Corp"],
        "algorithm": ["SHA1"],
        "digits": ["6"],
        "period": ["30"],
    }


def test_provisioning_uri_encodes_utf8() -> None:
    uri = totp.provisioning_uri("JBSWY3DPEHPK3PXP", issuer="Zoë's", account="zoë@example.test")

    assert uri.startswith("otpauth://totp/Zo%C3%AB%27s:zo%C3%AB@example.test?")
    assert uri.isascii()
    assert unquote(urlsplit(uri).path) == "/Zoë's:zoë@example.test"


@pytest.mark.parametrize(
    ("issuer", "account"),
    [
        pytest.param("Test", "alice@example.test", id="plain"),
        pytest.param("Acme Corp", "a b/c?d#e&f=g", id="reserved"),
        pytest.param("Zoë's", "zoë@example.test", id="utf8"),
        pytest.param("Test", "we:ird", id="colon-in-account"),
        pytest.param("Acme: Staging", "alice@example.test", id="colon-in-issuer"),
    ],
)
def test_provisioning_uri_round_trips_through_an_authenticator_parser(issuer: str, account: str) -> None:
    """pyotp's parser splits the label at the literal ':' only (a colon inside a name must be %3A)."""
    secret = totp.new_secret()

    parsed = pyotp.parse_uri(totp.provisioning_uri(secret, issuer=issuer, account=account))

    assert isinstance(parsed, pyotp.TOTP)
    assert (parsed.issuer, parsed.name, parsed.secret) == (issuer, account, secret)
    assert (parsed.digits, parsed.interval, parsed.digest().name) == (6, 30, "sha1")
    assert parsed.at(1_900_000_000) == code_at(secret, 1_900_000_000)
