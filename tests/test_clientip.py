from __future__ import annotations

import ipaddress

import pytest

from ipgeo.clientip import client_ip, client_key
from ipgeo.settings import parse_networks

TRUSTED = parse_networks("127.0.0.1;10.0.0.0/8;fd00::/8", "IPGEO_TRUSTED_PROXIES")
LINK_LOCAL = parse_networks("fe80::/10", "IPGEO_TRUSTED_PROXIES")

CASES = [
    # peer, X-Forwarded-For, X-Real-IP, trusted, expected
    ("203.0.113.9", None, None, TRUSTED, "203.0.113.9"),
    # untrusted peer: headers are ignored, whatever they say
    ("203.0.113.9", "1.2.3.4", None, TRUSTED, "203.0.113.9"),
    ("203.0.113.9", None, "1.2.3.4", TRUSTED, "203.0.113.9"),
    # no trusted proxies configured: headers never count
    ("127.0.0.1", "1.2.3.4", "5.6.7.8", (), "127.0.0.1"),
    # trusted peer: rightmost untrusted hop
    ("127.0.0.1", "1.2.3.4", None, TRUSTED, "1.2.3.4"),
    ("127.0.0.1", "1.2.3.4, 10.0.0.5", None, TRUSTED, "1.2.3.4"),
    # spoofing: the client prepends a fake hop; the proxy appends the real one
    ("127.0.0.1", "6.6.6.6, 198.51.100.7", None, TRUSTED, "198.51.100.7"),
    ("127.0.0.1", "10.0.0.1, 198.51.100.7, 10.0.0.2", None, TRUSTED, "198.51.100.7"),
    # X-Real-IP only when there is no X-Forwarded-For
    ("127.0.0.1", None, "198.51.100.8", TRUSTED, "198.51.100.8"),
    ("127.0.0.1", "198.51.100.7", "6.6.6.6", TRUSTED, "198.51.100.7"),
    # garbage stops the walk at the last trusted hop
    ("127.0.0.1", "garbage", None, TRUSTED, "127.0.0.1"),
    ("127.0.0.1", "1.2.3.4, garbage, 10.0.0.9", None, TRUSTED, "10.0.0.9"),
    ("127.0.0.1", "", None, TRUSTED, "127.0.0.1"),
    # every hop trusted: the leftmost one
    ("127.0.0.1", "10.1.1.1, 10.2.2.2", None, TRUSTED, "10.1.1.1"),
    # ports and brackets added by some proxies
    ("127.0.0.1", "198.51.100.7:4711", None, TRUSTED, "198.51.100.7"),
    ("127.0.0.1", "[2001:db8::5]:4711", None, TRUSTED, "2001:db8::5"),
    # IPv6 and IPv4-mapped peers
    ("fd00::1", "2001:db8::7", None, TRUSTED, "2001:db8::7"),
    ("::ffff:127.0.0.1", "198.51.100.7", None, TRUSTED, "198.51.100.7"),
    ("::ffff:203.0.113.9", "1.2.3.4", None, TRUSTED, "203.0.113.9"),
    # a zone id names an interface of some host, not a client: such a hop is unparsable
    ("127.0.0.1", "fe80::1%eth0", None, TRUSTED, "127.0.0.1"),
    ("127.0.0.1", "198.51.100.7, fe80::1%eth0", None, TRUSTED, "127.0.0.1"),
    ("127.0.0.1", "fe80::1%eth0, 10.0.0.5", None, TRUSTED, "10.0.0.5"),
    ("127.0.0.1", "[fe80::1%eth0]:4711", None, TRUSTED, "127.0.0.1"),
    ("127.0.0.1", "2001:db8::7%1", None, TRUSTED, "127.0.0.1"),
    ("127.0.0.1", "::ffff:198.51.100.7%eth0", None, TRUSTED, "127.0.0.1"),
    ("127.0.0.1", None, "fe80::1%eth0", TRUSTED, "127.0.0.1"),
    # the peer's own zone id (a link-local connection) is dropped: the address is the client
    ("fe80::1%eth0", "198.51.100.7", None, TRUSTED, "fe80::1"),
    ("fe80::1%eth0", "198.51.100.7", None, LINK_LOCAL, "198.51.100.7"),
]


@pytest.mark.parametrize(("peer", "xff", "real", "trusted", "expected"), CASES)
def test_client_ip(
    peer: str, xff: str | None, real: str | None, trusted: tuple, expected: str
) -> None:
    assert client_ip(peer, xff, real, trusted) == ipaddress.ip_address(expected)


def test_unix_socket_peer_has_no_ip() -> None:
    assert client_ip("", "1.2.3.4", None, TRUSTED) is None


KEYS = [
    # ip, IPv6 prefix, key
    ("192.0.2.7", 64, "192.0.2.7"),
    ("192.0.2.7", 128, "192.0.2.7"),  # the prefix is for IPv6 only
    ("::ffff:192.0.2.7", 64, "192.0.2.7"),  # IPv4-mapped counts as IPv4
    ("2001:db8:1:2:aaaa:bbbb:cccc:dddd", 64, "2001:db8:1:2::/64"),
    ("2001:db8:1:2::1", 64, "2001:db8:1:2::/64"),  # the same subscriber
    ("2001:db8:1:3::1", 64, "2001:db8:1:3::/64"),  # the next one
    ("2001:db8:1:2:aaaa::1", 56, "2001:db8:1::/56"),
    ("2001:db8:1:2:aaaa::1", 48, "2001:db8:1::/48"),
    ("2001:db8::1", 128, "2001:db8::1/128"),
    ("2001:db8::1", 1, "::/1"),
    ("fe80::1%eth0", 64, "fe80::/64"),  # a zone id is no part of the identity
    ("::1", 64, "::/64"),
]


@pytest.mark.parametrize(("ip", "prefix", "key"), KEYS)
def test_client_key(ip: str, prefix: int, key: str) -> None:
    assert client_key(ipaddress.ip_address(ip), prefix) == key


def test_client_key_defaults_to_the_64_and_checks_the_prefix() -> None:
    assert client_key(ipaddress.ip_address("2001:db8:1:2::9")) == "2001:db8:1:2::/64"
    for prefix in (0, 129):
        with pytest.raises(ValueError, match=r"1\.\.128"):
            client_key(ipaddress.ip_address("2001:db8::1"), prefix)
