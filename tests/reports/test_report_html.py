"""The HTML report: content, advisory links, escaping, self-containment, fix-first order, grouping."""

from __future__ import annotations

import re
from dataclasses import replace
from html.parser import HTMLParser

from tianmu.core.models import Assessment, TriageStatus
from tianmu.reports import render
from tianmu.reports.html import fix_first

ADVISORY_SITES = ("https://osv.dev/vulnerability/", "https://nvd.nist.gov/vuln/detail/")


class _Collector(HTMLParser):
    """Every tag and attribute, to check structure without matching on raw text."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def parse(text: str) -> list[tuple[str, dict[str, str | None]]]:
    collector = _Collector()
    collector.feed(text)
    return collector.tags


def test_contains_findings_and_sections(assessment: Assessment) -> None:
    page = render(assessment, "html")
    assert page.startswith("<!DOCTYPE html>")
    for finding in assessment.findings:
        assert finding.rule_id in page
    for text in (
        "/srv/shop",
        "Potential directory traversal via admindocs",
        "3.2.0",
        "2.2.24",
        "94.4%",  # EPSS of Log4Shell
        "requests&gt;=2.20",  # unresolved requirement, escaped
        "frontend/package-lock.json:1: not valid JSON: Expecting value",
        "221034",  # knowledge base record count
        "2025.02.28",
        "Tianmu 0.1.0",
    ):
        assert text in page, text
    assert page.count('class="kev"') == 2  # fix-first table and findings table


def test_advisory_links(assessment: Assessment) -> None:
    hrefs = [attrs["href"] for tag, attrs in parse(render(assessment, "html")) if tag == "a"]
    assert "https://osv.dev/vulnerability/PYSEC-2021-98" in hrefs
    assert "https://nvd.nist.gov/vuln/detail/CVE-2021-33203" in hrefs
    assert "https://osv.dev/vulnerability/GO-2022-0969" in hrefs
    assert "https://nvd.nist.gov/vuln/detail/CVE-2024-22195" in hrefs
    # Rule ids that are not advisories are not links.
    assert not any(h and "EICAR" in h for h in hrefs)


def test_self_contained(assessment: Assessment) -> None:
    page = render(assessment, "html")
    tags = parse(page)
    names = {tag for tag, _ in tags}
    assert "script" not in names
    assert "link" not in names
    assert "img" not in names and "iframe" not in names
    for tag, attrs in tags:
        assert "src" not in attrs, tag
        href = attrs.get("href")
        if href is not None:
            assert tag == "a" and href.startswith(ADVISORY_SITES), href
    assert not re.search(r"url\(|@import", page)
    assert "<svg" in page and "<style>" in page


def test_untrusted_text_is_escaped(assessment: Assessment) -> None:
    evil = "<script>alert('owned')</script>"
    assessment.findings[0] = replace(assessment.findings[0], summary=evil, title="<b>bold</b> & co")
    assessment.errors.append('x.txt:2: <img src=x onerror="alert(1)">')
    page = render(assessment, "html")
    assert "<script>" not in page
    assert "&lt;script&gt;alert(&#39;owned&#39;)&lt;/script&gt;" in page
    assert "&lt;b&gt;bold&lt;/b&gt; &amp; co" in page
    assert "<img" not in page


def test_fix_first_order(assessment: Assessment) -> None:
    ordered = [f.rule_id for f in fix_first(assessment.findings)]
    # KEV first, then severity; within a severity the likelier exploit (EPSS) first, then the score.
    assert ordered == [
        "GHSA-jfh8-c2jp-5v3q",
        "PYSEC-2021-111",
        "GO-2022-0969",
        "EICAR-Test-File",
        "PYSEC-2021-98",
        "CVE-2024-22195",
    ]
    # A KEV-listed medium still comes before an unlisted critical.
    assessment.findings[5].data["kev"] = True
    assert [f.rule_id for f in fix_first(assessment.findings)][:2] == ["GHSA-jfh8-c2jp-5v3q", "PYSEC-2021-98"]
    # Resolved findings need no fixing.
    assessment.findings[0] = replace(assessment.findings[0], status=TriageStatus.RESOLVED)
    assert "GHSA-jfh8-c2jp-5v3q" not in [f.rule_id for f in fix_first(assessment.findings)]


def test_grouped_by_file_in_given_order(assessment: Assessment) -> None:
    page = render(assessment, "html")
    section = page[page.index("<h2>Findings</h2>") :]
    headings = re.findall(r"<h4>(.*?)</h4>", section)
    assert headings == ["legacy/pom.xml", "requirements.txt", "tools/go.mod", "uploads/eicar.com"]
    start, end = section.index("<h4>requirements.txt</h4>"), section.index("<h4>tools/go.mod</h4>")
    requirements = section[start:end]
    positions = [requirements.index(i) for i in ("PYSEC-2021-111", "CVE-2024-22195", "PYSEC-2021-98")]
    assert positions == sorted(positions)


def test_empty_report(empty_assessment: Assessment) -> None:
    page = render(empty_assessment, "html")
    assert "No findings." in page
    assert "Nothing to fix" in page
    assert "Every input was read." in page
