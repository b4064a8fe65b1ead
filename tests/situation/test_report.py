"""The situation in the reports: JSON (valid against the schema) and HTML (incidents, risk with factors,
posture trend as inline SVG, the ATT&CK tactic view, the insurance summary)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from importlib import resources
from typing import Any

import jsonschema

from tianmu.core.models import Assessment
from tianmu.reports import render
from tianmu.reports.situation_view import trend_chart
from tianmu.situation import record_posture, score_findings, update_situation
from tianmu.store import Store
from tianmu.store.repository import save_assessment

from .scenario import WEB01, scenario_findings


def _assessment() -> Assessment:
    now = datetime(2026, 11, 24, tzinfo=UTC)
    findings = [f for f in scenario_findings() if f.asset.name == "web01"]
    return Assessment(target="/srv/web01", asset=WEB01, started=now, finished=now, findings=findings)


def _validator() -> jsonschema.Draft202012Validator:
    text = resources.files("tianmu.reports").joinpath("schemas/tianmu-report.schema.json").read_text("utf-8")
    return jsonschema.Draft202012Validator(json.loads(text), format_checker=jsonschema.FormatChecker())


def test_json_report_carries_incidents_and_risk(sqlite_store: Store) -> None:
    assessment = _assessment()
    saved = save_assessment(sqlite_store, assessment)
    update_situation(sqlite_store, assessment, assessment_id=saved.assessment_id)
    report = json.loads(render(assessment, "json"))
    _validator().validate(report)
    [main, scan] = report["incidents"]
    assert main["stage"] == "persistence" and main["first_seen"] == "2026-11-20T03:12:05Z"
    assert main["timeline"][0]["time"] == "2026-11-20T03:12:05Z"
    assert scan["stage"] == "discovery"
    risk = report["risk"]
    assert risk["assets"][0]["name"] == "web01" and risk["level"] == "critical"
    assert len(risk["history"]) == 1 and risk["history"][0]["open_findings"] == 6
    assert risk["history"][0]["open_incidents"] == 2
    assert {c["category"] for c in risk["insurance"]["categories"]} == {
        "ransomware",
        "data-breach",
        "account-takeover",
        "business-interruption",
    }


class _Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.sections: list[str] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        for name, value in attrs:
            if name in ("src", "href") and value:
                self.urls.append(value)
            if tag == "section" and name == "id" and value:
                self.sections.append(value)


def test_html_report_shows_the_situation_self_contained(sqlite_store: Store) -> None:
    assessment = _assessment()
    saved = save_assessment(sqlite_store, assessment)
    # Two earlier assessments, so the trend has three points.
    t0 = datetime(2026, 11, 1, tzinfo=UTC)
    for day, count in ((0, 1), (7, 3)):
        report = score_findings(assessment.findings[:count], [WEB01], now=t0 + timedelta(days=day))
        record_posture(sqlite_store, report)
    update_situation(sqlite_store, assessment, assessment_id=saved.assessment_id)
    html = render(assessment, "html")
    parser = _Collector()
    parser.feed(html)
    assert parser.sections == ["risk", "incidents", "attack", "insurance"]
    assert "script" not in parser.tags
    assert all(not u.startswith(("http://", "https://", "//")) for u in parser.urls if "svg" in u)
    assert "Persistence on web01 from 203.0.113.45" in html
    assert "kev" not in re.findall(r'<span class="tag">([a-z-]+) ×', html)
    assert '<span class="tag">internet-facing ×6</span>' in html
    assert "exposure internet-facing ×1.3" in html and "criticality 4 ×1.2" in html
    # The trend: three points, oldest left, in an inline SVG polyline.
    polyline = re.search(r'<polyline points="([^"]+)"', html)
    assert polyline is not None and len(polyline.group(1).split()) == 3
    # The tactic view: every ATT&CK tactic in order; the incident's stage is marked.
    names = re.findall(r'<div class="name">([^<]+)</div>', html)
    assert names[0] == "Reconnaissance" and names[-1] == "Impact" and len(names) == 14
    assert re.search(r'class="tactic hit stage"><div class="name">Persistence</div>', html)
    assert "Ransomware" in html and "yara:Linux_Trojan_Mirai on web01" in html


def test_trend_chart_geometry() -> None:
    assert trend_chart([]) is None
    chart: dict[str, Any] | None = trend_chart(
        [
            {"score": 0.0, "level": "minimal", "taken_at": "2026-11-01T00:00:00Z"},
            {"score": 100.0, "level": "critical", "taken_at": "2026-11-02T00:00:00Z"},
        ]
    )
    assert chart is not None
    first, last = chart["points"]
    assert (first["x"], first["y"]) == (40, 152.0)  # left edge, bottom of the plot (180 − 28)
    assert (last["x"], last["y"]) == (544, 12.0)  # right edge, top
    assert chart["first"] == "2026-11-01" and chart["last"] == "2026-11-02"
