"""Indicator normalisation: refanging, IDNA, URL canonicalisation, networks, hash types, type guessing."""

from __future__ import annotations

import pytest

from tianmu.intel.normalize import (
    NormalizeError,
    classify,
    hash_type,
    normalize,
    normalize_cidr,
    normalize_domain,
    normalize_ip,
    normalize_url,
    refang,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("hxxp://evil[.]com/a", "http://evil.com/a"),
        ("HXXPS://evil(.)com", "https://evil.com"),
        ("evil[dot]com", "evil.com"),
        ("user[@]evil{.}com", "user@evil.com"),
        ("http[:]//evil.com", "http://evil.com"),
        ("plain text with (parentheses) stays", "plain text with (parentheses) stays"),
    ],
)
def test_refang(text: str, expected: str) -> None:
    assert refang(text) == expected


def test_domains_are_lower_case_punycode_without_trailing_dot() -> None:
    assert normalize_domain("WWW.Evil.COM.") == "www.evil.com"
    assert normalize_domain("bücher.example") == "xn--bcher-kva.example"
    assert normalize_domain("*.wild.example") == "wild.example"
    for bad in ("localhost", "bad..domain", "-x.example", "1.2.3.4", ""):
        with pytest.raises(NormalizeError):
            normalize_domain(bad)


def test_urls_are_canonical() -> None:
    assert normalize_url("HTTP://Evil.COM:80/Path?q=1#frag") == "http://evil.com/Path?q=1"
    assert normalize_url("https://evil.com:443") == "https://evil.com/"
    assert normalize_url("https://evil.com:8443/x") == "https://evil.com:8443/x"
    assert normalize_url("evil.com/gate.php") == "http://evil.com/gate.php"
    assert normalize_url("hxxp://[2001:db8::1]:8080/x") == "http://[2001:db8::1]:8080/x"
    with pytest.raises(NormalizeError):
        normalize_url("http:///nohost")


def test_addresses_and_networks() -> None:
    assert normalize_ip("66.210.228.178:443") == "66.210.228.178"
    assert normalize_ip("2001:DB8:0:0::1") == "2001:db8::1"
    assert normalize_cidr("10.1.2.3/8") == ("cidr", "10.0.0.0/8")
    assert normalize_cidr("203.0.113.5/32") == ("ip", "203.0.113.5")
    with pytest.raises(NormalizeError):
        normalize_ip("999.1.1.1")


def test_hash_type_follows_length() -> None:
    assert hash_type("44D88612FEA8A8F36DE82E1F5C9C9B3F") == "md5"
    assert hash_type("a" * 40) == "sha1"
    assert hash_type("b" * 64) == "sha256"
    assert hash_type("c" * 128) == "sha512"
    assert hash_type("d" * 50) is None
    with pytest.raises(NormalizeError, match="md5 digest by its length, not sha256"):
        normalize("sha256", "44d88612fea8a8f36de82e1f5c9c9b3f")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("hxxp://evil[.]com/x", ("url", "http://evil.com/x")),
        ("EVIL.com", ("domain", "evil.com")),
        ("evil.com:8080", ("domain", "evil.com")),
        ("1.2.3.4:80", ("ip", "1.2.3.4")),
        ("1.2.3.0/24", ("cidr", "1.2.3.0/24")),
        ("Bad@Evil.com", ("email", "bad@evil.com")),
        ("evil.com/admin/login.php", ("url", "http://evil.com/admin/login.php")),
    ],
)
def test_classify(value: str, expected: tuple[str, str]) -> None:
    assert classify(value) == expected
