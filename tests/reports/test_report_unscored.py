"""Unscored advisories read as unscored in every report (a badge, a label, a count and a sentence);
upstream ranges on a distribution-owned package carry their note."""

from __future__ import annotations

import json
from dataclasses import replace
from html.parser import HTMLParser

from report_data import ASSET, GO_STDLIB, STARTED
from test_report_cyclonedx import bom
from test_report_json import validate
from test_report_sarif import sarif
from test_report_sarif import validate as validate_sarif

from tianmu.core.models import Assessment, Finding, FindingKind, Severity
from tianmu.reports import render
from tianmu.reports._common import severity_label, unscored_counts, unscored_summary


def _go(rule_id: str, severity: Severity, source: str, **data: object) -> Finding:
    """A Go-database finding as the matcher makes it: no score, `unscored`, ranked by `source`."""
    return Finding(
        kind=FindingKind.VULNERABILITY,
        rule_id=rule_id,
        title=f"A flaw ({rule_id})",
        severity=severity,
        asset=ASSET,
        component=GO_STDLIB,
        data={
            "fixed_versions": ["1.18.6"],
            "kev": source == "kev",
            "kev_details": None,
            "epss": data.pop("epss", None),
            "epss_percentile": None,
            "cvss_vector": None,
            "severity_source": source,
            "unscored": True,
            **data,
        },
        first_seen=STARTED,
        last_seen=STARTED,
    )


UNSCORED = [
    _go("GO-2099-0001", Severity.MEDIUM, "unknown"),
    _go("GO-2099-0002", Severity.MEDIUM, "unknown"),
    _go("GO-2099-0003", Severity.HIGH, "kev"),
    _go("GO-2099-0004", Severity.LOW, "epss", epss=0.004),
]


def _with_unscored(assessment: Assessment) -> Assessment:
    return replace(assessment, findings=[*assessment.findings, *UNSCORED])


def test_labels_counts_and_sentence() -> None:
    assert [severity_label(f) for f in UNSCORED] == [
        "medium (unscored)",
        "medium (unscored)",
        "high (unscored)",
        "low (unscored)",
    ]
    assert unscored_counts(UNSCORED) == {"medium": 2, "high": 1, "low": 1}
    assert unscored_summary(UNSCORED) == (
        "4 findings rest on advisories that publish no severity (unscored): "
        "ranked by KEV (1) and EPSS (1) where known, else medium (2)"
    )
    scored = replace(UNSCORED[0], score=5.3, data={"severity_source": "cvss"})
    assert severity_label(scored) == "medium" and unscored_summary([scored]) is None
    # Only vulnerabilities are ever unscored: a detection rule always states its level.
    detection = replace(UNSCORED[0], kind=FindingKind.DETECTION)
    assert severity_label(detection) == "medium"


def test_json_report_counts_unscored_and_keeps_the_flag(assessment: Assessment) -> None:
    report = json.loads(render(_with_unscored(assessment), "json"))
    validate(report)
    assert report["summary"]["unscored"] == 4
    flagged = [f["id"] for f in report["findings"] if f["data"].get("unscored")]
    assert flagged == [f.rule_id for f in UNSCORED]
    assert {f["data"]["severity_source"] for f in report["findings"] if f["id"] in flagged} == {
        "unknown",
        "kev",
        "epss",
    }


class _Badges(HTMLParser):
    """The text of every `unscored` badge and the row it sits in (by advisory id seen before it)."""

    def __init__(self) -> None:
        super().__init__()
        self.in_badge = False
        self.badges = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.in_badge = tag == "span" and dict(attrs).get("class") == "unscored"

    def handle_data(self, data: str) -> None:
        if self.in_badge and data.strip() == "unscored":
            self.badges += 1
        self.in_badge = False


def test_html_report_shows_a_badge_on_each_unscored_row_and_says_why(assessment: Assessment) -> None:
    page = render(_with_unscored(assessment), "html")
    parser = _Badges()
    parser.feed(page)
    # Each unscored finding in "Findings" and in "Fix first" (the report's top list holds them all).
    assert parser.badges == 2 * len(UNSCORED)
    assert "· 4 unscored" in page
    assert "4 findings rest on advisories that publish no severity (unscored)" in page
    plain = render(assessment, "html")
    parser = _Badges()
    parser.feed(plain)
    assert parser.badges == 0 and "unscored)" not in plain


def test_html_report_shows_the_backport_note_of_a_distribution_owned_package(assessment: Assessment) -> None:
    note = "upstream range; the distribution (Debian python3-jinja2 3.1.2-1) may have backported the fix"
    marked = [
        replace(f, data={**f.data, "backport_note": note}) if f.rule_id == "CVE-2024-22195" else f
        for f in assessment.findings
    ]
    page = render(replace(assessment, findings=marked), "html")
    assert page.count(f"Note: {note}") == 1
    assert "may have backported" not in render(assessment, "html")


def test_cyclonedx_rates_an_unscored_advisory_unknown_and_keeps_the_rank(assessment: Assessment) -> None:
    doc = bom(_with_unscored(assessment))
    vulns = {v["id"]: v for v in doc["vulnerabilities"]}
    plain = vulns["GO-2099-0001"]
    assert plain["ratings"][0]["severity"] == "unknown" and "score" not in plain["ratings"][0]
    assert {p["name"]: p["value"] for p in plain["properties"]}["tianmu:unscored_rank"] == "medium"
    assert vulns["PYSEC-2021-98"]["ratings"][0]["severity"] == "medium"  # a published score stays


def test_sarif_marks_unscored_results(assessment: Assessment) -> None:
    log = sarif(_with_unscored(assessment))
    validate_sarif(log)
    flagged = {r["ruleId"] for r in log["runs"][0]["results"] if r["properties"].get("unscored")}
    assert flagged == {f.rule_id for f in UNSCORED}
