"""The bundled demo: its knowledge base imports cleanly and the target shows the flaws it was built with."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tianmu.cli.main import app

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    env = {"TIANMU_HOME": str(tmp_path_factory.mktemp("home")), "TIANMU_DATABASE_URL": ""}
    runner = CliRunner()
    imported = runner.invoke(app, ["kb", "import", str(REPO / "demo" / "kb"), "--json"], env=env)
    assert imported.exit_code == 0, imported.output
    sources = {r["source"]: r for r in json.loads(imported.stdout)}
    assert set(sources) == {
        "kev",
        "osv:Debian",
        "osv:Go",
        "osv:PyPI",
        "osv:npm",
        "yara:kb",
        "stix:northwind-partner-cert",
        "list:shared-blocklist",
    }
    assert all(not r["errors"] for r in sources.values())
    html = tmp_path_factory.mktemp("out") / "demo-report.html"
    result = runner.invoke(
        app, ["assess", str(REPO / "demo" / "target"), "-f", "html", "-o", str(html)], env=env
    )
    assert result.exit_code == 1, result.output  # findings at or above the default threshold
    assert "Tianmu situation summary" in result.stdout and html.stat().st_size > 10_000
    as_json = runner.invoke(app, ["assess", str(REPO / "demo" / "target"), "-f", "json"], env=env)
    return json.loads(as_json.stdout)  # type: ignore[no-any-return]


def _hits(report: dict[str, object]) -> dict[tuple[str, str], dict[str, object]]:
    findings = report["findings"]
    assert isinstance(findings, list)
    return {(f["component"]["name"], f["id"]): f for f in findings if f["component"]}


def test_known_exploited_flaws_come_first(report: dict[str, object]) -> None:
    findings = report["findings"]
    assert isinstance(findings, list)
    kev = [(f["component"]["name"], f["id"]) for f in findings if f.get("kev")]
    assert set(kev) >= {
        ("sudo", "DSA-4839-1"),
        ("policykit-1", "DSA-5059-1"),
        ("libpolkit-gobject-1-0", "DSA-5059-1"),
        ("salt", "PYSEC-2020-102"),
    }
    assert all(f["kev"] for f in findings[: len(kev)])
    assert all(f["severity"] in ("critical", "high") for f in findings if f.get("kev"))


def test_each_ecosystem_of_the_target_is_assessed(report: dict[str, object]) -> None:
    hits = _hits(report)
    assert hits[("minimist", "GHSA-xvch-5gv4-984h")]["fixed_versions"] == ["1.2.6"]
    assert hits[("lodash", "GHSA-35jh-r3h4-6jhm")]["severity"] == "high"
    assert hits[("Django", "PYSEC-2021-98")]["component"]["location"] == {
        "path": "shop-web/requirements.txt",
        "line": 4,
    }
    assert ("requests", "PYSEC-2018-28") in hits  # pinned in the included common.txt
    assert hits[("golang.org/x/text", "GO-2021-0113")]["fixed_versions"] == ["0.3.7"]
    assert hits[("libssl1.1", "DSA-5103-1")]["fixed_versions"] == ["1.1.1d-0+deb10u8"]
    assert not any(name == "nginx-common" for name, _id in hits)  # removed, only config files left
    assert not any(name == "certifi" for name, _id in hits)


def test_unpinned_requirements_are_reported_not_guessed(report: dict[str, object]) -> None:
    unresolved = report["unresolved"]
    assert isinstance(unresolved, list)
    assert sorted(u["name"] for u in unresolved) == ["gunicorn", "whitenoise"]


def test_known_bad_indicators_in_the_demo_logs(report: dict[str, object]) -> None:
    findings = report["findings"]
    assert isinstance(findings, list)
    intel = {
        (f["evidence"]["indicator"]["value"], f["evidence"]["path"]) for f in findings if f["kind"] == "intel"
    }
    assert {
        ("192.0.2.77", "logs/eve.json"),  # the NightOwl C2 the web server talked to
        ("203.0.113.45", "logs/auth.log"),  # the SSH brute-forcer
        ("198.51.100.23", "logs/access.log"),  # the web scanner
    } <= intel
    # The EICAR member of the mail attachment, by the hash the malware scan reported.
    assert any(value.startswith("275a021bbfb6489e") for value, _path in intel)
