"""OSV range semantics (osv-schema "Evaluation"), evaluated without a database."""

from __future__ import annotations

from typing import Any

import pytest

from tianmu.vulns.ranges import CompiledAffected


def entry(
    events: list[dict[str, str]], *, eco: str = "PyPI", rtype: str = "ECOSYSTEM", versions: Any = ()
) -> CompiledAffected:
    return CompiledAffected.compile(
        "X-1", eco, eco, None, list(versions), [{"type": rtype, "events": events}]
    )


def affected(e: CompiledAffected, version: str) -> bool:
    return e.match(version) is not None


def test_introduced_fixed_is_half_open() -> None:
    e = entry([{"introduced": "1.0"}, {"fixed": "1.5"}])
    assert not affected(e, "0.9")
    assert affected(e, "1.0")
    assert affected(e, "1.4.9")
    assert not affected(e, "1.5")
    assert not affected(e, "2.0")
    # PEP 440: a prerelease of the bound sorts before it.
    assert affected(e, "1.5rc1")
    assert not affected(e, "1.0rc1")


def test_introduced_zero_means_from_the_start() -> None:
    e = entry([{"introduced": "0"}, {"fixed": "2.0"}])
    assert affected(e, "0.0.1.dev0")
    assert affected(e, "1.99")
    assert not affected(e, "2.0")


def test_open_ended_range_has_no_fix() -> None:
    e = entry([{"introduced": "3.0"}])
    assert affected(e, "99.0")
    match = e.match("3.1")
    assert match is not None and match.fixed_versions == ()


def test_last_affected_is_inclusive() -> None:
    e = entry([{"introduced": "4.0.0"}, {"last_affected": "4.17.20"}], eco="npm", rtype="SEMVER")
    assert affected(e, "4.17.20")
    assert affected(e, "4.0.0")
    assert not affected(e, "4.17.21")
    assert not affected(e, "3.9.9")
    match = e.match("4.17.20")
    assert match is not None and match.fixed_versions == ()  # last_affected gives no upgrade target


def test_multiple_introduced_and_fixed_unsorted_events() -> None:
    # Events given out of order must be sorted before the walk.
    events = [{"fixed": "4.1.9"}, {"introduced": "3.2"}, {"introduced": "4.0"}, {"fixed": "3.2.19"}]
    e = entry(events)
    assert affected(e, "3.2.5")
    assert not affected(e, "3.2.19")
    assert not affected(e, "3.3")
    assert affected(e, "4.1.8")
    assert not affected(e, "4.1.9")
    match = e.match("3.2.5")
    assert match is not None and match.fixed_versions == ("3.2.19", "4.1.9")
    match = e.match("4.0.1")
    assert match is not None and match.fixed_versions == ("4.1.9",)


def test_limit_is_an_upper_bound() -> None:
    e = entry([{"introduced": "0.3.0"}, {"limit": "0.3.1"}], eco="crates.io", rtype="SEMVER")
    assert affected(e, "0.3.0")
    assert not affected(e, "0.3.1")
    assert not affected(e, "0.4.0")
    star = entry([{"introduced": "1.0.0"}, {"limit": "*"}, {"limit": "1.5.0"}], eco="npm", rtype="SEMVER")
    assert affected(star, "9.0.0")  # v < "*" always holds, so the other limit cannot exclude it


def test_versions_list_alone_and_invalid_pypi_versions() -> None:
    e = CompiledAffected.compile("X-1", "PyPI", "PyPI", None, ["2.0.0-final", "3.0", "1.0-rc1"], [])
    assert affected(e, "2.0.0-final")  # not PEP 440, but enumerated: exact string match
    assert affected(e, "3.0")
    assert affected(e, "1.0rc1")  # PEP 440 normal form of the enumerated 1.0-rc1
    assert not affected(e, "2.0.0")
    match = e.match("3.0")
    assert match is not None and match.matched_by == "versions"


def test_git_ranges_are_skipped_and_counted() -> None:
    e = CompiledAffected.compile(
        "X-1",
        "PyPI",
        "PyPI",
        None,
        ["1.0"],
        [{"type": "GIT", "repo": "r", "events": [{"introduced": "abc"}]}],
    )
    assert e.skipped_ranges == 1
    assert affected(e, "1.0")
    assert not affected(e, "1.1")


def test_unparsable_bound_skips_the_range() -> None:
    e = entry([{"introduced": "0"}, {"fixed": "not-a-version!"}])
    assert e.skipped_ranges == 1
    assert not affected(e, "1.0")


def test_semver_go_pseudo_and_prefixed_versions() -> None:
    e = entry(
        [{"introduced": "0"}, {"fixed": "1.12.16"}, {"introduced": "1.13.0-0"}, {"fixed": "1.13.7"}],
        eco="Go",
        rtype="SEMVER",
    )
    assert affected(e, "go1.12.15")
    assert not affected(e, "1.12.16")
    assert affected(e, "v1.13.0-rc1")
    assert affected(e, "1.13.6")
    assert not affected(e, "1.13.7")
    pseudo = entry(
        [{"introduced": "0"}, {"fixed": "0.0.0-20220101000000-abcdefabcdef"}], eco="Go", rtype="SEMVER"
    )
    assert affected(pseudo, "v0.0.0-20210101000000-123456789abc")
    assert not affected(pseudo, "v0.1.0")


@pytest.mark.parametrize(
    ("eco", "events", "inside", "outside"),
    [
        ("Debian", [{"introduced": "0"}, {"fixed": "1:1.0-1"}], "2.0-5", "1:1.0-1"),
        ("Alpine", [{"introduced": "0"}, {"fixed": "3.1.4-r1"}], "3.1.4-r0", "3.1.4-r10"),
        ("Maven", [{"introduced": "2.0-beta9"}, {"fixed": "2.15.0"}], "2.14.1", "2.0-alpha1"),
        ("RubyGems", [{"introduced": "7.0.0.alpha1"}, {"fixed": "7.0.1"}], "7.0.0.rc1", "6.1.4"),
        ("Packagist", [{"introduced": "7.0.0"}, {"fixed": "7.4.5"}], "7.4.4", "7.4.5"),
    ],
)
def test_ecosystem_ranges(eco: str, events: list[dict[str, str]], inside: str, outside: str) -> None:
    e = entry(events, eco=eco)
    assert affected(e, inside)
    assert not affected(e, outside)
