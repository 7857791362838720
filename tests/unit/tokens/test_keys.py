import base64
import hashlib
import json

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from identity.crypto import SecretBox
from identity.settings import EncryptionKeys
from identity.tokens.keys import SUPPORTED_ALGS, KeyRing, SigningKey, generate_key

BOX = SecretBox(EncryptionKeys.generate("unit"))
PUBLIC_MEMBERS = {
    "RS256": {"kty", "kid", "use", "alg", "n", "e"},
    "ES256": {"kty", "kid", "use", "alg", "crv", "x", "y"},
}
PRIVATE_MEMBERS = {"d", "p", "q", "dp", "dq", "qi", "oth", "k"}

# RFC 7638 §3.1: the example RSA key and its SHA-256 thumbprint.
RFC7638_KEY = {
    "kty": "RSA",
    "e": "AQAB",
    "alg": "RS256",
    "kid": "2011-04-29",
    "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3"
    "oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu"
    "6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJ"
    "zKnqDKgw",
}
RFC7638_THUMBPRINT = "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


def rfc7638_thumbprint(jwk: dict) -> str:
    """RFC 7638 §3.2: required members only, lexicographic order, no whitespace, SHA-256, base64url."""
    required = {"RSA": ("e", "kty", "n"), "EC": ("crv", "kty", "x", "y")}[jwk["kty"]]
    canonical = "{" + ",".join(f'"{name}":"{jwk[name]}"' for name in required) + "}"
    return base64.urlsafe_b64encode(hashlib.sha256(canonical.encode()).digest()).decode().rstrip("=")


def test_thumbprint_oracle_matches_the_rfc_7638_example():
    assert rfc7638_thumbprint(RFC7638_KEY) == RFC7638_THUMBPRINT


@pytest.fixture(scope="module")
def rows():
    return {alg: generate_key(alg, BOX) for alg in SUPPORTED_ALGS}


def open_private_key(row):
    pem = BOX.open(row.private_key, purpose="signing-key:" + row.kid)
    return serialization.load_pem_private_key(pem, password=None)


def test_supported_algorithms():
    assert SUPPORTED_ALGS == ("RS256", "ES256")


@pytest.mark.parametrize("alg", SUPPORTED_ALGS)
def test_generated_key_row(rows, alg):
    row = rows[alg]
    assert row.alg == alg
    assert row.status == "active"
    assert row.active_slot == alg
    assert row.kid == row.public_jwk["kid"]


@pytest.mark.parametrize("alg", SUPPORTED_ALGS)
def test_generated_private_key_is_stored_sealed(rows, alg):
    row = rows[alg]
    assert "PRIVATE KEY" not in row.private_key
    assert row.private_key.startswith("v1.unit.")
    private_key = open_private_key(row)
    expected_type = rsa.RSAPrivateKey if alg == "RS256" else ec.EllipticCurvePrivateKey
    assert isinstance(private_key, expected_type)


def test_sealed_private_key_is_bound_to_its_kid(rows):
    row = rows["RS256"]
    other = rows["ES256"]
    with pytest.raises(Exception, match="does not open"):
        BOX.open(row.private_key, purpose="signing-key:" + other.kid)


@pytest.mark.parametrize("alg", SUPPORTED_ALGS)
def test_public_jwk_has_only_public_members(rows, alg):
    jwk = rows[alg].public_jwk
    assert set(jwk) == PUBLIC_MEMBERS[alg]
    assert not PRIVATE_MEMBERS & set(jwk)
    assert jwk["use"] == "sig"
    assert jwk["alg"] == alg


def test_rsa_key_parameters(rows):
    jwk = rows["RS256"].public_jwk
    assert jwk["kty"] == "RSA"
    assert jwk["e"] == "AQAB"
    assert open_private_key(rows["RS256"]).key_size >= 2048


def test_ec_key_parameters(rows):
    jwk = rows["ES256"].public_jwk
    assert jwk["kty"] == "EC"
    assert jwk["crv"] == "P-256"


@pytest.mark.parametrize("alg", SUPPORTED_ALGS)
def test_kid_is_the_rfc_7638_thumbprint(rows, alg):
    assert rows[alg].kid == rfc7638_thumbprint(rows[alg].public_jwk)


@pytest.mark.parametrize("alg", SUPPORTED_ALGS)
def test_public_jwk_matches_the_private_key(rows, alg):
    private_key = open_private_key(rows[alg])
    algorithm = RSAAlgorithm if alg == "RS256" else ECAlgorithm
    expected = algorithm.to_jwk(private_key.public_key(), as_dict=True)
    jwk = rows[alg].public_jwk
    for name in PUBLIC_MEMBERS[alg] - {"kid", "use", "alg"}:
        assert jwk[name] == expected[name]


def test_unsupported_algorithm_is_refused():
    with pytest.raises(ValueError, match="HS256"):
        generate_key("HS256", BOX)


def test_two_generated_keys_differ():
    assert generate_key("ES256", BOX).kid != generate_key("ES256", BOX).kid


# -- KeyRing --------------------------------------------------------------------------------------------------------


def signing_key(row, *, active=True) -> SigningKey:
    return SigningKey(
        kid=row.kid, alg=row.alg, private_key=open_private_key(row), public_jwk=row.public_jwk, active=active
    )


@pytest.fixture(scope="module")
def retired():
    return generate_key("RS256", BOX)


@pytest.fixture(scope="module")
def ring(rows, retired):
    return KeyRing([signing_key(retired, active=False), signing_key(rows["RS256"]), signing_key(rows["ES256"])])


@pytest.mark.parametrize("alg", SUPPORTED_ALGS)
def test_ring_signs_with_the_active_key_and_the_jwks_verifies(ring, rows, alg):
    token = ring.sign({"sub": "auth0|1", "aud": "x"}, alg)
    header = jwt.get_unverified_header(token)
    assert header == {"alg": alg, "kid": rows[alg].kid, "typ": "JWT"}
    jwks = jwt.PyJWKSet.from_dict(json.loads(ring.jwks_json))
    claims = jwt.decode(token, jwks[header["kid"]].key, algorithms=[alg], audience="x")
    assert claims == {"sub": "auth0|1", "aud": "x"}


def test_ring_sign_with_custom_typ(ring):
    assert jwt.get_unverified_header(ring.sign({}, "RS256", typ="at+jwt"))["typ"] == "at+jwt"


def test_retired_key_is_published_but_not_used(ring, retired):
    kids = [key["kid"] for key in ring.jwks()["keys"]]
    assert retired.kid in kids
    assert len(kids) == 3
    assert jwt.get_unverified_header(ring.sign({}, "RS256"))["kid"] != retired.kid


def test_ring_refuses_an_algorithm_without_active_key(rows):
    only_rsa = KeyRing([signing_key(rows["RS256"])])
    with pytest.raises(ValueError, match="ES256"):
        only_rsa.sign({}, "ES256")
    with pytest.raises(ValueError, match="HS256"):
        only_rsa.sign({}, "HS256")


def test_jwks_json_is_the_serialised_jwks(ring):
    assert json.loads(ring.jwks_json) == ring.jwks()
    for key in ring.jwks()["keys"]:
        assert not PRIVATE_MEMBERS & set(key)
