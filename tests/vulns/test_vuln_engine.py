"""The matcher over a store: aliases merged, withdrawn excluded, KEV/EPSS joined, severities, ranking."""

from __future__ import annotations

import pytest
from vulns_helpers import ASSET, FIXTURES, OSV_DIR, comp

from tianmu.core.models import Finding, FindingKind, Severity
from tianmu.store.database import Store
from tianmu.vulns.engine import VulnMatcher, sort_findings
from tianmu.vulns.kb import import_path


@pytest.fixture()
def kb(store: Store) -> Store:
    import_path(store, OSV_DIR)
    import_path(store, FIXTURES / "kev.json")
    import_path(store, FIXTURES / "epss_scores-2025-08-25.csv")
    return store


def ids(findings: list[Finding]) -> set[str]:
    return {f.rule_id for f in findings}


def test_aliases_merge_into_one_finding(kb: Store) -> None:
    findings = VulnMatcher(kb).match([comp("Django", "4.1.8")], ASSET)
    assert len(findings) == 1
    f = findings[0]
    assert f.kind is FindingKind.VULNERABILITY
    assert f.rule_id == "PYSEC-2023-61"  # ecosystem-native id before GHSA before CVE
    assert f.aliases == ("CVE-2023-31047", "GHSA-r3xc-prgr-mg9p")
    assert f.title == "Django file upload validation bypass"
    # The GHSA record's CVSS vector rates the group.
    assert (f.severity, f.score) == (Severity.CRITICAL, 9.8)
    assert f.data["cvss_vector"] == "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"
    assert f.data["fixed_versions"] == ["4.1.9", "4.2.1"]
    assert f.data["matched_by"] == "versions"  # 4.1.8 is enumerated by PYSEC-2023-61
    assert f.data["epss"] == pytest.approx(0.01234) and f.data["epss_percentile"] == pytest.approx(0.7821)
    assert f.data["kev"] is False and f.data["kev_details"] is None
    assert "https://www.djangoproject.com/weblog/2023/may/03/security-releases/" in f.references


def test_range_only_and_unaffected_versions(kb: Store) -> None:
    m = VulnMatcher(kb)
    (f,) = m.match([comp("django", "4.1.5")], ASSET)  # in ranges, not in the enumeration
    assert f.data["matched_by"] == "range"
    assert m.match([comp("django", "4.1.9"), comp("django", "3.1"), comp("django", "4.2.1")], ASSET) == []
    # 4.2rc1 is enumerated although it sorts before the range's `introduced: 4.2`.
    assert ids(m.match([comp("Django", "4.2rc1")], ASSET)) == {"PYSEC-2023-61"}


def test_kev_join_and_title_from_details(kb: Store) -> None:
    (f,) = VulnMatcher(kb).match([comp("salt", "3000.1")], ASSET)
    assert f.rule_id == "PYSEC-2020-102"
    assert f.title.startswith("An issue was discovered in SaltStack Salt before 2019.2.4")
    assert "\n" not in f.title
    assert f.data["kev"] is True
    assert f.data["kev_details"] == {
        "cve": "CVE-2020-11651",
        "date_added": "2021-11-03",
        "due_date": "2022-05-03",
        "ransomware": "Unknown",
        "required_action": "Apply updates per vendor instructions.",
    }
    assert f.data["epss"] == pytest.approx(0.97461)
    # No CVSS in the record, but CISA lists CVE-2020-11651 as exploited: at least high.
    assert (f.severity, f.data["severity_source"]) == (Severity.HIGH, "kev")
    assert f.data["unscored"] is True and f.score is None
    assert f.data["fixed_versions"] == ["3000.2"]


def test_withdrawn_is_excluded(kb: Store) -> None:
    assert VulnMatcher(kb).match([comp("pillow", "8.4.0")], ASSET) == []


def test_name_normalisation_and_invalid_versions(kb: Store) -> None:
    m = VulnMatcher(kb)
    assert ids(m.match([comp("Zope_Interface", "2.0.0-final")], ASSET)) == {"PYSEC-2024-1"}
    assert m.match([comp("zope.interface", "2.0.0")], ASSET) == []
    assert ids(m.match([comp("JINJA2", "2.10")], ASSET)) == {"PYSEC-2021-66"}


def test_enumerated_versions_decide_over_ranges(kb: Store) -> None:
    """PYSEC-2021-66 lists 2.10 and 2.11.2 only; its range (0 to 2.11.3) would also take in 2.10.1."""
    m = VulnMatcher(kb)
    (listed,) = m.match([comp("jinja2", "2.11.2")], ASSET)
    assert listed.data["matched_by"] == "versions"
    assert listed.data["fixed_versions"] == ["2.11.3"]  # the range still gives the upgrade target
    assert m.match([comp("jinja2", "2.10.1")], ASSET) == []


def test_semver_ecosystems_and_database_severity(kb: Store) -> None:
    m = VulnMatcher(kb)
    (lodash,) = m.match([comp("lodash", "4.17.20", "npm")], ASSET)
    assert (lodash.severity, lodash.data["severity_source"]) == (Severity.MEDIUM, "ghsa")  # MODERATE
    assert "unscored" not in lodash.data
    assert lodash.data["fixed_versions"] == []  # last_affected only
    assert m.match([comp("lodash", "4.17.21", "npm")], ASSET) == []
    (gin,) = m.match([comp("github.com/gin-gonic/gin", "v1.6.3", "Go")], ASSET)
    assert gin.rule_id == "GO-2021-0052"
    assert gin.data["ecosystem_specific"] == {
        "imports": [{"path": "github.com/gin-gonic/gin", "symbols": ["Context.ClientIP"]}]
    }
    (std,) = m.match([comp("stdlib", "go1.13.6", "Go")], ASSET)
    assert std.data["kev"] is True and std.data["fixed_versions"] == ["1.13.7"]
    assert ids(m.match([comp("time", "0.3.0", "crates.io")], ASSET)) == {"RUSTSEC-2020-0071"}
    assert m.match([comp("time", "0.3.5", "crates.io")], ASSET) == []  # beyond the limit


def test_other_ecosystems(kb: Store) -> None:
    m = VulnMatcher(kb)
    (log4j,) = m.match([comp("org.apache.logging.log4j:log4j-core", "2.14.1", "Maven")], ASSET)
    assert log4j.severity is Severity.CRITICAL and log4j.score == 10.0 and log4j.data["kev"] is True
    assert log4j.data["kev_details"]["ransomware"] == "Known"
    assert ids(m.match([comp("rails", "7.0.0.rc1", "RubyGems")], ASSET)) == {"GHSA-2xxx-gem-0001"}
    assert ids(m.match([comp("GuzzleHttp/Guzzle", "7.4.4", "Packagist")], ASSET)) == {"GHSA-2xxx-php-0001"}
    assert m.match([comp("guzzlehttp/guzzle", "7.4.5", "Packagist")], ASSET) == []


def test_distro_source_package_and_release(kb: Store) -> None:
    m = VulnMatcher(kb)
    libssl12 = comp("libssl3", "3.0.8-1", "Debian", source_name="openssl", release="12")
    (f,) = m.match([libssl12], ASSET)
    assert (
        f.rule_id == "DSA-5417-1" and f.severity is Severity.HIGH and f.data["fixed_versions"] == ["3.0.9-1"]
    )
    assert m.match([comp("libssl3", "3.0.9-1", "Debian", source_name="openssl", release="12")], ASSET) == []
    # Debian 11's entry has its own fix; 1.1.1n-0+deb11u4 < u5.
    assert ids(m.match([comp("openssl", "1.1.1n-0+deb11u4", "Debian:11")], ASSET)) == {"DSA-5417-1"}
    assert m.match([comp("openssl", "1.1.1n-0+deb11u5", "Debian", release="11")], ASSET) == []
    # Another release: no entry applies.
    assert m.match([comp("openssl", "1.0.0-1", "Debian", release="10")], ASSET) == []
    apk = comp("libcrypto3", "3.1.4-r0", "Alpine", source_name="openssl", release="3.18")
    assert ids(m.match([apk], ASSET)) == {"ALPINE-CVE-2023-5678"}


def test_ranking_kev_first_then_severity_then_epss(kb: Store) -> None:
    m = VulnMatcher(kb)
    components = [
        comp("Django", "4.1.8"),
        comp("salt", "3000.1"),
        comp("lodash", "4.17.0", "npm"),
        comp("org.apache.logging.log4j:log4j-core", "2.14.1", "Maven"),
        comp("github.com/gin-gonic/gin", "1.6.0", "Go"),
    ]
    findings = m.match(components, ASSET)
    order = [f.rule_id for f in findings]
    # KEV: log4j (critical) before salt (unscored, high by KEV); then Django (critical), lodash (medium
    # by its GHSA word), and gin last: unscored, ranked low by its EPSS of 0.21 %.
    assert order == [
        "GHSA-2xxx-maven-0001",
        "PYSEC-2020-102",
        "PYSEC-2023-61",
        "GHSA-29mw-wpgm-hmr9",
        "GO-2021-0052",
    ]
    assert sort_findings(list(reversed(findings))) == findings
    assert m.last_stats["findings"] == 5


def test_pep440_equal_versions_match_the_enumeration(kb: Store) -> None:
    """`2.10.0` is PEP 440-equal to the listed `2.10`: the pin installs the same release."""
    assert ids(VulnMatcher(kb).match([comp("Jinja2", "2.10.0")], ASSET)) == {"PYSEC-2021-66"}
