"""Version ordering per ecosystem, checked against each ecosystem's documented ordering."""

from __future__ import annotations

import pytest

from tianmu.vulns.osv import normalize_name, split_ecosystem
from tianmu.vulns.versions import compare_versions, semver_key, version_key

# (ecosystem, lower, higher): each pair is documented behaviour of that ecosystem's tooling.
ORDERED = [
    # PEP 440: dev < pre < final < post; epochs win; local versions sort after their public version.
    ("PyPI", "1.0.dev1", "1.0a1"),
    ("PyPI", "1.0a1", "1.0rc1"),
    ("PyPI", "1.0rc1", "1.0"),
    ("PyPI", "1.0", "1.0.post1"),
    ("PyPI", "2.0", "1!1.0"),
    ("PyPI", "1.0", "1.0+local.1"),
    ("PyPI", "1.9", "1.10"),
    # SemVer 2.0 section 11 (npm, crates.io).
    ("npm", "1.0.0-alpha", "1.0.0-alpha.1"),
    ("npm", "1.0.0-alpha.1", "1.0.0-alpha.beta"),
    ("npm", "1.0.0-beta.2", "1.0.0-beta.11"),
    ("npm", "1.0.0-rc.1", "1.0.0"),
    ("crates.io", "0.2.9", "0.2.23"),
    # Go: leading v, pseudo-versions are prereleases of the next patch, go-prefixed stdlib.
    ("Go", "v0.0.0-20210101000000-abcdef123456", "v0.0.1"),
    ("Go", "v1.2.3", "v1.10.0"),
    ("Go", "1.13.0-0", "1.13.0"),
    ("Go", "go1.12.9", "go1.12.16"),
    # dpkg: epoch beats everything, ~ sorts before the empty string, revisions compare after upstream.
    ("Debian", "2.0", "1:1.0"),
    ("Debian", "1.0~rc1", "1.0"),
    ("Debian", "1.1.1n-0+deb11u4", "1.1.1n-0+deb11u5"),
    ("Ubuntu", "1.2-1ubuntu1", "1.2-1ubuntu10"),
    # apk: -rN numerically, _rc before release, letters after digits.
    ("Alpine", "1.2.3-r1", "1.2.3-r10"),
    ("Alpine", "1.0_rc1", "1.0"),
    ("Alpine", "3.1.4-r0", "3.1.4-r1"),
    # Maven ComparableVersion: alpha < beta < milestone < rc < (release) < sp.
    ("Maven", "1.0-alpha", "1.0"),
    ("Maven", "1.0-alpha-1", "1.0-beta-1"),
    ("Maven", "1.0-rc1", "1.0"),
    ("Maven", "2.0-beta9", "2.15.0"),
    ("Maven", "1.0", "1.0-sp1"),
    # RubyGems: a letter makes a prerelease.
    ("RubyGems", "1.0.0.pre", "1.0.0"),
    ("RubyGems", "7.0.0.alpha1", "7.0.0.rc1"),
    ("RubyGems", "1.9", "1.10"),
    # Composer: stability flags, optional v.
    ("Packagist", "1.0.0-beta1", "1.0.0"),
    ("Packagist", "v2.1", "2.1.1"),
]


@pytest.mark.parametrize(("ecosystem", "low", "high"), ORDERED)
def test_documented_ordering(ecosystem: str, low: str, high: str) -> None:
    assert compare_versions(ecosystem, low, high) == -1
    assert compare_versions(ecosystem, high, low) == 1


@pytest.mark.parametrize(
    ("ecosystem", "a", "b"),
    [
        ("PyPI", "1.0", "1.0.0"),  # PEP 440 pads release segments
        ("PyPI", "1.0-rc1", "1.0rc1"),  # alternative spellings normalise
        ("Maven", "1.0", "1.0.0"),
        ("npm", "1.0.0+build.1", "1.0.0+build.2"),  # build metadata has no precedence
        ("Go", "v1.2.0+incompatible", "1.2.0"),
        ("Go", "1.2", "1.2.0"),  # tolerated missing patch
    ],
)
def test_equal_versions(ecosystem: str, a: str, b: str) -> None:
    assert compare_versions(ecosystem, a, b) == 0


def test_invalid_versions_have_no_key() -> None:
    assert version_key("PyPI", "2.0.0-final") is None
    assert version_key("npm", "not.a.version") is None
    assert version_key("UnknownEco", "1.0") is None
    with pytest.raises(ValueError, match="not a valid PyPI version"):
        compare_versions("PyPI", "1.0", "banana split")


def test_semver_range_type_applies_to_any_ecosystem() -> None:
    assert version_key("Hackage", "1.2.3", "SEMVER") == semver_key("1.2.3")
    assert semver_key("1.2") == semver_key("1.2.0")


def test_name_normalisation() -> None:
    assert normalize_name("PyPI", "Zope.Interface") == "zope-interface"
    assert normalize_name("PyPI", "Foo__Bar-.baz") == "foo-bar-baz"
    assert normalize_name("Packagist", "GuzzleHttp/Guzzle") == "guzzlehttp/guzzle"
    assert normalize_name("npm", "JSONStream") == "JSONStream"
    assert normalize_name("Go", "github.com/BurntSushi/toml") == "github.com/BurntSushi/toml"
    assert (
        normalize_name("Maven", "org.apache.logging.log4j:log4j-core")
        == "org.apache.logging.log4j:log4j-core"
    )
    assert split_ecosystem("Debian:12") == ("Debian", "12")
    assert split_ecosystem("Ubuntu:22.04:LTS") == ("Ubuntu", "22.04:LTS")
    assert split_ecosystem("pypi") == ("PyPI", None)
