"""The JSON report: schema validity, field values, order, time format, and the registry."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import pytest

import tianmu
from tianmu.core.errors import ConfigError
from tianmu.core.models import Assessment
from tianmu.reports import FORMATS, finding_to_dict, render, write_report
from tianmu.reports._common import advisory_url

REPO = Path(__file__).resolve().parents[2]


def schema() -> dict[str, Any]:
    text = resources.files("tianmu.reports").joinpath("schemas/tianmu-report.schema.json").read_text("utf-8")
    return json.loads(text)  # type: ignore[no-any-return]


def validate(report: dict[str, Any]) -> None:
    validator = jsonschema.Draft202012Validator(schema(), format_checker=jsonschema.FormatChecker())
    errors = sorted(validator.iter_errors(report), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)


def test_schema_is_valid_draft_2020_12_and_published_copy_matches() -> None:
    jsonschema.Draft202012Validator.check_schema(schema())
    published = json.loads((REPO / "docs" / "schemas" / "tianmu-report.schema.json").read_text("utf-8"))
    assert published == schema()


def test_documented_example_validates() -> None:
    doc = (REPO / "docs" / "json-report.md").read_text("utf-8")
    example = doc.split("```json\n", 1)[1].split("```", 1)[0]
    validate(json.loads(example))


def test_report_validates(assessment: Assessment) -> None:
    report = json.loads(render(assessment, "json"))
    validate(report)
    assert report["tianmu"] == tianmu.__version__
    assert report["schema_version"] == "1"
    assert report["target"] == "/srv/shop"
    assert report["asset"] == {
        "name": "/srv/shop",
        "kind": "directory",
        "tenant": "default",
        "criticality": 4,
        "tags": ["prod"],
    }


def test_empty_report_validates(empty_assessment: Assessment) -> None:
    report = json.loads(render(empty_assessment, "json"))
    validate(report)
    assert report["finished"] is None
    assert report["summary"]["by_severity"] == {"critical": 0, "high": 0, "medium": 0, "low": 0, "info": 0}


def test_summary_counts(assessment: Assessment) -> None:
    summary = json.loads(render(assessment, "json"))["summary"]
    assert summary == {
        "components": 4,
        "findings": 6,
        "by_severity": {"critical": 2, "high": 2, "medium": 2, "low": 0, "info": 0},
        "kev": 1,
        "unscored": 0,
        "unresolved": 1,
        "errors": 1,
        "files_read": 4,
    }


def test_vulnerability_fields(assessment: Assessment) -> None:
    report = json.loads(render(assessment, "json"))
    by_id = {f["id"]: f for f in report["findings"]}
    django = by_id["PYSEC-2021-98"]
    assert django["kind"] == "vulnerability"
    assert django["aliases"] == ["CVE-2021-33203", "GHSA-68w8-qjq3-2gfm"]
    assert django["severity"] == "medium"
    assert django["score"] == 4.9
    assert django["component"]["purl"] == "pkg:pypi/django@3.2.0"
    assert django["component"]["location"] == {"path": "requirements.txt", "line": 3}
    assert django["fixed_versions"] == ["2.2.24", "3.1.12", "3.2.4"]
    assert django["kev"] is False and django["kev_details"] is None
    assert django["epss"] == pytest.approx(0.00134)
    assert django["cvss_vector"].startswith("CVSS:3.1/")
    assert django["data"] == {"matched_by": "versions"}
    assert django["status"] == "open"
    assert django["first_seen"] == "2025-03-01T09:00:00Z"
    finding = next(f for f in assessment.findings if f.rule_id == "PYSEC-2021-98")
    assert django["fingerprint"] == finding.fingerprint

    log4j = by_id["GHSA-jfh8-c2jp-5v3q"]
    assert log4j["kev"] is True
    assert log4j["kev_details"]["date_added"] == "2021-12-10"
    assert log4j["score"] == 10.0

    jinja = by_id["CVE-2024-22195"]
    assert jinja["epss"] is None and jinja["epss_percentile"] is None


def test_other_kinds_are_generic(assessment: Assessment) -> None:
    eicar = next(f for f in json.loads(render(assessment, "json"))["findings"] if f["kind"] == "malware")
    assert eicar["id"] == "EICAR-Test-File"
    assert eicar["component"] is None
    assert eicar["techniques"] == ["T1204.002"]
    assert eicar["evidence"]["path"] == "uploads/eicar.com"
    assert eicar["data"] == {"engine": "hashes", "signature_db": "tianmu-demo"}
    assert "fixed_versions" not in eicar


def test_findings_keep_caller_order(assessment: Assessment) -> None:
    assessment.findings.reverse()
    ids = [f["id"] for f in json.loads(render(assessment, "json"))["findings"]]
    assert ids == [f.rule_id for f in assessment.findings]


def test_times_are_utc_iso(assessment: Assessment) -> None:
    cst = timezone(timedelta(hours=8))
    started = datetime(2025, 3, 1, 17, 0, tzinfo=cst)
    moved = replace(assessment, started=started, finished=datetime(2025, 3, 1, 9, 1))
    report = json.loads(render(moved, "json"))
    assert report["started"] == "2025-03-01T09:00:00Z"
    assert report["finished"] == "2025-03-01T09:01:00Z"  # naive is taken as UTC, as Tianmu stores it
    assert report["knowledge_bases"][0]["imported_at"] == "2025-03-01T06:12:00Z"
    validate(report)


def test_evidence_with_odd_types_is_serialisable(assessment: Assessment) -> None:
    finding = assessment.findings[3]
    finding.evidence["seen"] = (datetime(2025, 1, 1),)
    finding.evidence["blob"] = b"\x01\x02"
    data = finding_to_dict(finding)
    assert data["evidence"]["seen"] == ["2025-01-01T00:00:00Z"]
    assert data["evidence"]["blob"] == "0102"


def test_schema_rejects_a_vulnerability_without_kev(assessment: Assessment) -> None:
    report = json.loads(render(assessment, "json"))
    del report["findings"][0]["kev"]
    with pytest.raises(AssertionError, match="kev"):
        validate(report)


def test_registry_and_write(assessment: Assessment, tmp_path: Path) -> None:
    assert set(FORMATS) == {"json", "sarif", "cyclonedx", "html"}
    with pytest.raises(ConfigError, match="unknown report format"):
        render(assessment, "pdf")
    path = write_report(assessment, "JSON", tmp_path / "out" / "report.json")
    assert json.loads(path.read_text("utf-8"))["summary"]["findings"] == 6


@pytest.mark.parametrize(
    ("ident", "url"),
    [
        ("CVE-2021-33203", "https://nvd.nist.gov/vuln/detail/CVE-2021-33203"),
        ("PYSEC-2021-98", "https://osv.dev/vulnerability/PYSEC-2021-98"),
        ("GHSA-jfh8-c2jp-5v3q", "https://osv.dev/vulnerability/GHSA-jfh8-c2jp-5v3q"),
        ("GO-2022-0969", "https://osv.dev/vulnerability/GO-2022-0969"),
        ("RUSTSEC-2021-0001", "https://osv.dev/vulnerability/RUSTSEC-2021-0001"),
        ("DSA-5000-1", "https://osv.dev/vulnerability/DSA-5000-1"),
        ("EICAR-Test-File", None),
        ("win_susp_powershell", None),
    ],
)
def test_advisory_url(ident: str, url: str | None) -> None:
    assert advisory_url(ident) == url
