"""Hostile data in what the service hands out: CSV cells that are formulas, references that are scripts.

The hostile values are made here: a package name, a file name and an advisory title chosen by whoever
wrote the scanned files or the imported advisories, and references with every scheme an attacker
could put in an OSV record or a YARA rule's `meta.reference`.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from platform_data import T0, Platform, _save, bearer, build_platform

from tianmu.core.models import Asset, AssetKind, Component, Finding, FindingKind, Location, Severity
from tianmu.service.api.routes.findings import spreadsheet_safe
from tianmu.service.web.dashboard import is_web_link

FORMULAS = ['=HYPERLINK("http://evil.example/","x")', "+1+cmd|' /C calc'!A0", "-2+3", "@SUM(A1)"]
FORMULAS += ["\t=1+1", "\r=1+1"]
SCRIPTS = ["javascript:alert(document.cookie)", " JavaScript:alert(1)", "data:text/html,<script>x</script>"]
SCRIPTS += ["vbscript:msgbox(1)", "java\tscript:alert(1)", "//evil.example/x", "https:///no-host"]
WEB = ["https://osv.dev/vulnerability/PYSEC-1", "http://example.org/advisory?id=1"]


@pytest.fixture
def platform(tmp_path: Path) -> Platform:
    built = build_platform(tmp_path / "home")
    planted = Asset("/srv/upload", AssetKind.DIRECTORY, tenant="acme")
    findings = [
        Finding(
            kind=FindingKind.VULNERABILITY,
            rule_id="PYSEC-1",
            title=title,
            severity=Severity.HIGH,
            asset=planted,
            component=Component(title, "1.0", "PyPI", "pkg:pypi/x@1.0", Location(title + ".txt", 1)),
            references=tuple(SCRIPTS + WEB),
        )
        for title in FORMULAS
    ]
    _save(built.app, planted, findings, T0 + timedelta(hours=2))
    return built


@pytest.fixture
def client(platform: Platform) -> Iterator[TestClient]:
    with TestClient(platform.app, base_url="http://localhost:8000") as test_client:
        yield test_client


def test_csv_export_neutralises_formula_cells(client: TestClient, platform: Platform) -> None:
    response = client.get("/api/v1/findings/export", headers=bearer(platform, "victor"))
    assert response.status_code == 200
    rows = list(csv.DictReader(io.StringIO(response.text)))
    planted = [r for r in rows if r["asset"] == "/srv/upload"]
    assert len(planted) == len(FORMULAS)
    for row in planted:
        for column in ("title", "where", "component"):
            assert not row[column].startswith(("=", "+", "-", "@", "\t", "\r")), (column, row[column])
            assert row[column].startswith("'")
    assert sorted(r["title"] for r in planted) == sorted("'" + f for f in FORMULAS)  # kept, only quoted
    assert all(r["id"].isdigit() for r in rows)  # our own numbers untouched


def test_spreadsheet_safe_leaves_plain_cells() -> None:
    assert spreadsheet_safe("Django 3.2.0") == "Django 3.2.0"
    assert spreadsheet_safe(7) == 7
    assert spreadsheet_safe("") == ""
    assert spreadsheet_safe("=1") == "'=1"


def test_only_http_references_become_links(client: TestClient, platform: Platform) -> None:
    items = client.get("/api/v1/findings", headers=bearer(platform, "victor"), params={"q": "SUM"}).json()[
        "items"
    ]
    html = client.get(f"/findings/{items[0]['id']}", headers=bearer(platform, "victor")).text
    for url in WEB:
        assert f'<a href="{url.replace("&", "&amp;")}"' in html
    assert 'href="javascript' not in html.lower() and 'href=" javascript' not in html.lower()
    assert 'href="data:' not in html and 'href="vbscript' not in html and 'href="//evil' not in html
    assert "javascript:alert(document.cookie)" in html  # still shown, as text


@pytest.mark.parametrize("url", [*SCRIPTS, "", "mailto:a@b", "ftp://example.org/x"])
def test_is_web_link_refuses(url: str) -> None:
    assert not is_web_link(url)


@pytest.mark.parametrize("url", WEB)
def test_is_web_link_accepts(url: str) -> None:
    assert is_web_link(url)
