"""Advisories that publish no severity read as unscored on the dashboard, as they do in the reports.

Before, the dashboard showed an unscored finding as a plain `medium` in the findings list, the finding
page and the overview counts, and no filter could pick them out.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from platform_data import T0, Platform, _save, bearer, build_platform

from tianmu.core.models import Asset, AssetKind, Component, Finding, FindingKind, Location, Severity
from tianmu.store.queries import FindingQuery, find_findings


def _advisory(asset: Asset, name: str, rule: str, severity: Severity, line: int, **data: object) -> Finding:
    comp = Component(name, "1.0.0", "Go", f"pkg:golang/{name}@1.0.0", Location("go.mod", line))
    return Finding(
        kind=FindingKind.VULNERABILITY,
        rule_id=rule,
        title=f"{name} 1.0.0: {rule}",
        severity=severity,
        asset=asset,
        component=comp,
        data={"fixed_versions": ["1.0.1"], "advisories": [rule], **data},
    )


@pytest.fixture
def platform(tmp_path: Path) -> Platform:
    built = build_platform(tmp_path / "home")
    api = Asset("/srv/api", AssetKind.DIRECTORY, tenant="acme")
    _save(
        built.app,
        api,
        [
            # Unscored, no KEV or EPSS: medium by default.
            _advisory(
                api,
                "example.org/a",
                "GO-2024-0001",
                Severity.MEDIUM,
                1,
                unscored=True,
                severity_source="unknown",
            ),
            # Stored before the flag existed: only the unknown severity source says so.
            _advisory(api, "example.org/b", "GO-2024-0002", Severity.MEDIUM, 2, severity_source="unknown"),
            # Ranked high because CISA KEV lists it.
            _advisory(
                api,
                "example.org/c",
                "GO-2024-0003",
                Severity.HIGH,
                3,
                unscored=True,
                severity_source="kev",
                kev=True,
            ),
            # A rated medium (GHSA's word): not unscored.
            _advisory(api, "example.org/d", "GHSA-rated-medium", Severity.MEDIUM, 4, severity_source="ghsa"),
        ],
        T0 + timedelta(hours=2),
    )
    return built


@pytest.fixture
def client(platform: Platform) -> Iterator[TestClient]:
    with TestClient(platform.app, base_url="http://localhost:8000") as test_client:
        yield test_client


def _row(html: str, rule: str) -> str:
    rows = html.split('data-testid="findings"', 1)[1]
    match = re.search(rf"<tr>(?:(?!</tr>).)*{re.escape(rule)}(?:(?!</tr>).)*</tr>", rows, re.S)
    assert match, rule
    return match.group(0)


def _rules(html: str) -> set[str]:
    rows = html.split('data-testid="findings"', 1)[1]
    return set(re.findall(r'class="mono">([A-Z][A-Za-z0-9-]+)</a>', rows))


def test_findings_list_marks_unscored_and_not_rated(client: TestClient, platform: Platform) -> None:
    html = client.get("/findings", headers=bearer(platform, "victor")).text
    for rule in ("GO-2024-0001", "GO-2024-0002", "GO-2024-0003"):
        assert 'data-unscored="true"' in _row(html, rule), rule
    for rule in ("GHSA-rated-medium", "PYSEC-2021-142", "PYSEC-2021-98"):
        assert "data-unscored" not in _row(html, rule), rule
    assert 'name="unscored" value="true"' in html and "unscored only" in html


def test_filter_selects_only_unscored(client: TestClient, platform: Platform) -> None:
    viewer = bearer(platform, "victor")
    html = client.get("/findings", headers=viewer, params={"unscored": "true"}).text
    assert _rules(html) == {"GO-2024-0001", "GO-2024-0002", "GO-2024-0003"}
    assert 'name="unscored" value="true" checked' in html
    # Together with the severity filter: the unscored mediums, not the rated one.
    mediums = client.get("/findings", headers=viewer, params={"unscored": "true", "severity": "medium"}).text
    assert _rules(mediums) == {"GO-2024-0001", "GO-2024-0002"}
    # A kind that cannot be unscored selects nothing.
    assert (
        _rules(client.get("/findings", headers=viewer, params={"unscored": "true", "kind": "detection"}).text)
        == set()
    )
    # The export honours the filter, so its link carries it (before, it left it out and said so).
    assert 'href="/api/v1/findings/export?format=csv&unscored=true&amp;severity=medium"' in mediums
    assert "exports hold scored findings too" not in mediums


def test_api_list_and_export_filter_unscored(client: TestClient, platform: Platform) -> None:
    viewer = bearer(platform, "victor")
    unscored = {"GO-2024-0001", "GO-2024-0002", "GO-2024-0003"}
    listed = client.get("/api/v1/findings", headers=viewer, params={"unscored": "true"}).json()
    assert {i["rule"] for i in listed["items"]} == unscored
    scored = client.get("/api/v1/findings", headers=viewer, params={"unscored": "false"}).json()["items"]
    every = client.get("/api/v1/findings", headers=viewer, params={"limit": 1000}).json()["items"]
    assert {i["rule"] for i in scored} == {i["rule"] for i in every} - unscored
    assert "GHSA-rated-medium" in {i["rule"] for i in scored}
    exported = client.get(
        "/api/v1/findings/export", headers=viewer, params={"format": "json", "unscored": "true"}
    ).json()
    assert {d["id"] for d in exported} == unscored
    csv_text = client.get(
        "/api/v1/findings/export",
        headers=viewer,
        params={"format": "csv", "unscored": "true", "severity": "medium"},
    ).text
    assert "GO-2024-0001" in csv_text and "GO-2024-0002" in csv_text
    assert "GO-2024-0003" not in csv_text and "GHSA-rated-medium" not in csv_text


def test_finding_page_says_unscored_and_how_ranked(client: TestClient, platform: Platform) -> None:
    viewer = bearer(platform, "victor")
    items = client.get("/api/v1/findings", headers=viewer, params={"kind": "vulnerability"}).json()["items"]
    ids = {i["rule"]: i["id"] for i in items}
    default = client.get(f"/findings/{ids['GO-2024-0001']}", headers=viewer).text
    heading = default.split("<h1>", 1)[1].split("</h1>", 1)[0]
    assert 'data-unscored="true"' in heading
    assert "medium by default" in default.split('data-testid="severity-source"', 1)[1].split("</td>", 1)[0]
    kev = client.get(f"/findings/{ids['GO-2024-0003']}", headers=viewer).text
    assert "ranked by CISA KEV" in kev
    rated = client.get(f"/findings/{ids['GHSA-rated-medium']}", headers=viewer).text
    assert "data-unscored" not in rated and 'data-testid="severity-source"' not in rated


def test_overview_counts_unscored_within_each_severity(client: TestClient, platform: Platform) -> None:
    viewer = bearer(platform, "victor")
    api = client.get("/api/v1/overview", headers=viewer).json()
    html = client.get("/", headers=viewer).text
    bars = html.split('data-testid="by-severity"', 1)[1].split("</section>", 1)[0]
    # 4 open mediums (PyYAML, the GHSA-rated one and two unscored), 2 of them unscored.
    assert api["by_severity"]["medium"] == 4
    assert api["unscored"] == {"critical": 0, "high": 1, "medium": 2, "low": 0, "info": 0}
    medium = bars.split('data-severity="medium"', 1)[1].split("</a>", 1)[0]
    assert 'data-value="4"' in medium and 'data-unscored="2"' in medium and "(2 unscored)" in medium
    high = bars.split('data-severity="high"', 1)[1].split("</a>", 1)[0]
    assert "(1 unscored)" in high
    critical = bars.split('data-severity="critical"', 1)[1].split("</a>", 1)[0]
    assert "unscored" not in critical
    assert 'href="/findings?status=open&unscored=true"' in bars
    # The KEV table lists the KEV-ranked unscored advisory with its badge.
    kev_table = html.split("Known exploited exposures", 1)[1]
    assert 'data-unscored="true"' in _kev_row(kev_table, "GO-2024-0003")
    assert "data-unscored" not in _kev_row(kev_table, "PYSEC-2020-102")


def _kev_row(html: str, rule: str) -> str:
    match = re.search(rf"<tr>(?:(?!</tr>).)*{re.escape(rule)}(?:(?!</tr>).)*</tr>", html, re.S)
    assert match, rule
    return match.group(0)


def test_unscored_pages_skip_nothing_and_repeat_nothing(platform: Platform) -> None:
    store = platform.app.state.store
    every = find_findings(store, "acme", FindingQuery(), limit=100).items
    expected = [i.id for i in every if i.finding.rule_id.startswith("GO-")]
    assert len(every) > len(expected) == 3
    # The store's own condition: one finding per page, in the ordinary order, none lost or repeated.
    seen: list[int] = []
    cursor = None
    while True:
        page = find_findings(store, "acme", FindingQuery(unscored=True), limit=1, cursor=cursor)
        seen.extend(i.id for i in page.items)
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == expected


def test_asset_page_counts_unscored_within_each_severity(client: TestClient, platform: Platform) -> None:
    viewer = bearer(platform, "victor")
    assets = {a["name"]: a["id"] for a in client.get("/api/v1/assets", headers=viewer).json()}
    html = client.get(f"/assets/{assets['/srv/api']}", headers=viewer).text
    assert 'data-unscored="2"' in html and "(2 unscored)" in html and "(1 unscored)" in html
    assert f"asset_id={assets['/srv/api']}&severity=medium&unscored=true" in html
    assert "unscored)" not in client.get(f"/assets/{assets['/srv/shop']}", headers=viewer).text
    # The Chinese dashboard says it too.
    chinese = client.get(f"/assets/{assets['/srv/api']}", headers={**viewer, "Accept-Language": "zh-CN"}).text
    assert "其中 2 个未评分" in chinese
