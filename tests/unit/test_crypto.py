import pytest

from identity.crypto import SecretBox, SecretBoxError, constant_time_equals, sha256_hex
from identity.settings import EncryptionKeys

OLD = EncryptionKeys.generate("old")
NEW = EncryptionKeys.generate("new")


def test_seal_and_open_round_trip():
    box = SecretBox(OLD)
    sealed = box.seal(b"-----BEGIN PRIVATE KEY-----\nabc", purpose="signing-key:k1")
    assert box.open(sealed, purpose="signing-key:k1") == b"-----BEGIN PRIVATE KEY-----\nabc"


def test_sealed_value_names_version_and_key_and_hides_the_plaintext():
    sealed = SecretBox(OLD).seal(b"PRIVATE KEY material", purpose="p")
    version, kid, body = sealed.split(".")
    assert (version, kid) == ("v1", "old")
    assert "PRIVATE" not in sealed
    assert "=" not in body


def test_each_seal_uses_a_fresh_nonce():
    box = SecretBox(OLD)
    assert box.seal(b"same", purpose="p") != box.seal(b"same", purpose="p")


def test_purpose_is_bound():
    box = SecretBox(OLD)
    sealed = box.seal(b"secret", purpose="signing-key:a")
    with pytest.raises(SecretBoxError):
        box.open(sealed, purpose="signing-key:b")


def test_tampered_ciphertext_does_not_open():
    box = SecretBox(OLD)
    sealed = box.seal(b"secret", purpose="p")
    at = len("v1.old.") + 20  # inside the ciphertext: every bit of this character is data
    tampered = sealed[:at] + ("A" if sealed[at] != "A" else "B") + sealed[at + 1 :]
    with pytest.raises(SecretBoxError):
        box.open(tampered, purpose="p")


@pytest.mark.parametrize("value", ["", "v1", "v1.old", "v1.old.", "v1.old.!!!", "v2.old.AAAA", "garbage"])
def test_malformed_sealed_values_raise_secret_box_error(value):
    with pytest.raises(SecretBoxError):
        SecretBox(OLD).open(value, purpose="p")


def test_unknown_key_id_does_not_open():
    sealed = SecretBox(NEW).seal(b"secret", purpose="p")
    with pytest.raises(SecretBoxError, match="new"):
        SecretBox(OLD).open(sealed, purpose="p")


def test_key_rotation_first_key_seals_every_key_opens():
    old_sealed = SecretBox(OLD).seal(b"from before", purpose="p")
    rotated = SecretBox(EncryptionKeys(NEW.keys + OLD.keys))
    assert rotated.open(old_sealed, purpose="p") == b"from before"
    new_sealed = rotated.seal(b"after", purpose="p")
    assert new_sealed.startswith("v1.new.")
    assert SecretBox(NEW).open(new_sealed, purpose="p") == b"after"


def test_a_key_with_the_same_id_but_other_bytes_does_not_open():
    sealed = SecretBox(OLD).seal(b"secret", purpose="p")
    with pytest.raises(SecretBoxError):
        SecretBox(EncryptionKeys.generate("old")).open(sealed, purpose="p")


def test_sha256_hex_known_vectors():
    # FIPS 180-2 test vectors.
    assert sha256_hex("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert sha256_hex("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def test_constant_time_equals():
    assert constant_time_equals("abc", "abc")
    assert not constant_time_equals("abc", "abd")
    assert not constant_time_equals("abc", "abcd")
    assert constant_time_equals("é", "é")
