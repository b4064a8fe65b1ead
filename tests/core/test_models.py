"""Severity ordering and the fingerprint rule."""

from __future__ import annotations

from dataclasses import replace

import pytest

from tianmu.core.errors import ParseError
from tianmu.core.models import Asset, AssetKind, Component, Finding, FindingKind, Location, Severity

ASSET = Asset(name="/srv/app", kind=AssetKind.DIRECTORY)
COMP = Component("lodash", "4.17.15", "npm", "pkg:npm/lodash@4.17.15", Location("package-lock.json", 12))


def finding(**changes: object) -> Finding:
    base = Finding(
        kind=FindingKind.VULNERABILITY,
        rule_id="GHSA-p6mc-m468-83gw",
        title="Prototype pollution in lodash",
        severity=Severity.HIGH,
        asset=ASSET,
        component=COMP,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("score", "expected"),
    [
        (9.8, Severity.CRITICAL),
        (9.0, Severity.CRITICAL),
        (7.5, Severity.HIGH),
        (4.0, Severity.MEDIUM),
        (3.9, Severity.LOW),
        (0.0, Severity.INFO),
        (None, Severity.MEDIUM),
    ],
)
def test_cvss_rating(score: float | None, expected: Severity) -> None:
    assert Severity.from_cvss_score(score) is expected


def test_severity_order_and_aliases() -> None:
    assert Severity.CRITICAL.at_least(Severity.HIGH)
    assert not Severity.LOW.at_least(Severity.MEDIUM)
    assert Severity.parse("MODERATE") is Severity.MEDIUM
    assert Severity.parse("Important") is Severity.HIGH
    with pytest.raises(ValueError):
        Severity.parse("severe")


def test_fingerprint_ignores_what_changes_without_changing_the_problem() -> None:
    moved = replace(COMP, location=Location("package-lock.json", 99))
    same = finding(severity=Severity.CRITICAL, title="new title", score=9.1, component=moved)
    assert same.fingerprint == finding().fingerprint


@pytest.mark.parametrize(
    "changes",
    [
        {"rule_id": "GHSA-jf85-cpcp-j695"},
        {"component": replace(COMP, version="4.17.19")},
        {"component": replace(COMP, location=Location("web/package-lock.json", 12))},
        {"asset": replace(ASSET, tenant="acme")},
        {"asset": replace(ASSET, name="/srv/other")},
        {"kind": FindingKind.EXPOSURE},
    ],
)
def test_fingerprint_separates_different_problems(changes: dict[str, object]) -> None:
    assert finding(**changes).fingerprint != finding().fingerprint


def test_errors_render_their_location() -> None:
    assert str(ParseError("expected a version", "poetry.lock", 12)) == "poetry.lock:12: expected a version"
    assert str(ParseError("file too large", "big.json")) == "big.json: file too large"
