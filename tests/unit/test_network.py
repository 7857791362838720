"""Which client address to believe (IDENTITY_TRUSTED_PROXIES) and how addresses are grouped for counting."""

from __future__ import annotations

import pytest

from identity.network import Networks, counting_key, resolve_client_ip
from identity.settings import Settings

PROXIES = Networks.parse(["10.0.0.0/8", "2001:db8:ffff::/48"])


@pytest.mark.parametrize(
    ("peer", "forwarded", "expected"),
    [
        # Not a trusted peer: its headers are not read at all.
        ("203.0.113.9", ["198.51.100.1"], "203.0.113.9"),
        ("127.0.0.1", ["198.51.100.1"], "127.0.0.1"),  # loopback is not trusted by default
        # A trusted proxy: the hop it appended is the client.
        ("10.1.2.3", ["198.51.100.1"], "198.51.100.1"),
        # Right to left: whatever the client wrote further left is not believed.
        ("10.1.2.3", ["6.6.6.6, 198.51.100.1"], "198.51.100.1"),
        ("10.1.2.3", ["6.6.6.6", "198.51.100.1"], "198.51.100.1"),  # repeated headers are one list
        # A chain of trusted proxies is skipped.
        ("10.1.2.3", ["6.6.6.6, 198.51.100.1, 10.9.9.9"], "198.51.100.1"),
        # Only trusted hops: the farthest one vouched for.
        ("10.1.2.3", ["10.9.9.9"], "10.9.9.9"),
        # Garbage stops the walk at the last address a proxy vouched for.
        ("10.1.2.3", ["198.51.100.1, garbage"], "10.1.2.3"),
        ("10.1.2.3", [], "10.1.2.3"),
        ("2001:db8:ffff::1", ["2001:db8:1::5"], "2001:db8:1::5"),
        ("10.1.2.3", ["[2001:db8:1::5]:443"], "2001:db8:1::5"),
        ("::ffff:10.1.2.3", ["198.51.100.1"], "198.51.100.1"),  # IPv4-mapped peer is its IPv4 address
    ],
)
def test_the_client_address(peer: str, forwarded: list[str], expected: str) -> None:
    assert resolve_client_ip(peer, forwarded, PROXIES) == expected


def test_nothing_is_trusted_by_default() -> None:
    settings = Settings()
    assert settings.trusted_proxies == ()
    assert resolve_client_ip("127.0.0.1", ["203.0.113.7"], settings.proxies) == "127.0.0.1"


def test_the_setting_is_read_and_checked() -> None:
    environ = {"IDENTITY_TRUSTED_PROXIES": "10.0.0.0/8, 192.0.2.1", "IDENTITY_ENCRYPTION_KEYS": "k=" + "A" * 43 + "="}
    settings = Settings.from_env(environ)
    assert "192.0.2.1" in settings.proxies and "10.200.0.1" in settings.proxies
    with pytest.raises(ValueError, match="IDENTITY_TRUSTED_PROXIES"):
        Settings(trusted_proxies=("10.0.0.0/33",))


@pytest.mark.parametrize(
    ("address", "key"),
    [
        ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::/64"),
        ("2001:db8:1:3::1", "2001:db8:1:3::/64"),
        ("192.0.2.7", "192.0.2.7"),
        ("::ffff:192.0.2.7", "192.0.2.7"),
        ("testclient", "testclient"),
    ],
)
def test_ipv6_addresses_count_by_their_64(address: str, key: str) -> None:
    assert counting_key(address) == key
