"""SARIF 2.1.0: validity against the SARIF 2.1.0 JSON schema, levels, regions, rules, fingerprints."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import jsonschema
import pytest
from report_data import FIXTURES, STARTED

import tianmu
from tianmu.core.models import Assessment, Asset, AssetKind, Finding, FindingKind, Severity
from tianmu.reports import render


def validate(log: dict[str, Any]) -> None:
    schema = json.loads((FIXTURES / "sarif-schema-2.1.0.json").read_text("utf-8-sig"))
    cls = jsonschema.validators.validator_for(schema)
    validator = cls(schema, format_checker=jsonschema.FormatChecker())
    errors = sorted(validator.iter_errors(log), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)


def sarif(assessment: Assessment) -> dict[str, Any]:
    return json.loads(render(assessment, "sarif"))  # type: ignore[no-any-return]


def test_fixture_schema_is_the_sarif_2_1_0_schema() -> None:
    schema = json.loads((FIXTURES / "sarif-schema-2.1.0.json").read_text("utf-8-sig"))
    assert schema["title"] == "Static Analysis Results Format (SARIF) Version 2.1.0 JSON Schema"
    assert set(schema["required"]) == {"version", "runs"}
    # The schema is strict: a misspelt property must fail, or validating our output would prove nothing.
    with pytest.raises(AssertionError, match="Additional properties"):
        validate({"version": "2.1.0", "runs": [], "rusn": []})


def test_valid_sarif(assessment: Assessment, empty_assessment: Assessment) -> None:
    validate(sarif(assessment))
    validate(sarif(empty_assessment))


def test_driver_and_rules(assessment: Assessment) -> None:
    run = sarif(assessment)["runs"][0]
    driver = run["tool"]["driver"]
    assert driver["name"] == "Tianmu"
    assert driver["version"] == tianmu.__version__
    assert "informationUri" not in driver  # no public home yet: better absent than invented
    rules = {rule["id"]: rule for rule in driver["rules"]}
    assert list(rules) == list(dict.fromkeys(f.rule_id for f in assessment.findings))
    sqli = rules["PYSEC-2021-111"]
    assert sqli["shortDescription"]["text"] == "Potential SQL injection via QuerySet.order_by()"
    assert sqli["properties"]["security-severity"] == "9.8"
    assert "security" in sqli["properties"]["tags"]
    assert sqli["helpUri"] == "https://osv.dev/vulnerability/PYSEC-2021-111"
    assert rules["GHSA-jfh8-c2jp-5v3q"]["properties"]["security-severity"] == "10.0"
    assert "kev" in rules["GHSA-jfh8-c2jp-5v3q"]["properties"]["tags"]
    # No references: the advisory page for a CVE is NVD's.
    assert rules["CVE-2024-22195"]["helpUri"] == "https://nvd.nist.gov/vuln/detail/CVE-2024-22195"
    # No score: the floor of the severity band, so dashboards label it the same way.
    assert rules["EICAR-Test-File"]["properties"]["security-severity"] == "7.0"
    assert "T1204.002" in rules["EICAR-Test-File"]["properties"]["tags"]


def test_results_levels_regions_fingerprints(assessment: Assessment) -> None:
    run = sarif(assessment)["runs"][0]
    results = run["results"]
    assert [r["ruleId"] for r in results] == [f.rule_id for f in assessment.findings]
    levels = {r["ruleId"]: r["level"] for r in results}
    assert levels == {
        "GHSA-jfh8-c2jp-5v3q": "error",
        "PYSEC-2021-111": "error",
        "GO-2022-0969": "error",
        "EICAR-Test-File": "error",
        "CVE-2024-22195": "warning",
        "PYSEC-2021-98": "warning",
    }
    by_rule = {r["ruleId"]: r for r in results}
    django = by_rule["PYSEC-2021-98"]
    physical = django["locations"][0]["physicalLocation"]
    assert physical["artifactLocation"] == {"uri": "requirements.txt", "uriBaseId": "%SRCROOT%"}
    assert physical["region"] == {"startLine": 3}
    assert "Django 3.2.0 (PyPI) is affected by PYSEC-2021-98" in django["message"]["text"]
    assert "Fixed in 2.2.24, 3.1.12, 3.2.4." in django["message"]["text"]
    finding = next(f for f in assessment.findings if f.rule_id == "PYSEC-2021-98")
    assert django["partialFingerprints"] == {"tianmu/v1": finding.fingerprint}
    assert django["properties"]["fixed_versions"] == ["2.2.24", "3.1.12", "3.2.4"]
    assert by_rule["GHSA-jfh8-c2jp-5v3q"]["properties"]["kev"] is True
    for result in results:
        assert run["tool"]["driver"]["rules"][result["ruleIndex"]]["id"] == result["ruleId"]
    assert run["originalUriBaseIds"] == {"%SRCROOT%": {"uri": "file:///srv/shop/"}}


def test_low_and_info_are_notes(assessment: Assessment) -> None:
    base = assessment.findings[0]
    assessment.findings = [
        replace(base, rule_id="LOW-1", severity=Severity.LOW, score=2.0),
        replace(base, rule_id="INFO-1", severity=Severity.INFO, score=None),
    ]
    log = sarif(assessment)
    validate(log)
    assert [r["level"] for r in log["runs"][0]["results"]] == ["note", "note"]


def test_evidence_path_and_logical_location(assessment: Assessment) -> None:
    by_rule = {r["ruleId"]: r for r in sarif(assessment)["runs"][0]["results"]}
    eicar = by_rule["EICAR-Test-File"]["locations"][0]
    assert eicar["physicalLocation"]["artifactLocation"]["uri"] == "uploads/eicar.com"

    host = Asset("web-01.example.org", AssetKind.HOST)
    finding = Finding(
        kind=FindingKind.EXPOSURE,
        rule_id="tianmu/open-redis",
        title="Redis reachable without authentication",
        severity=Severity.HIGH,
        asset=host,
        evidence={"port": 6379},
    )
    log = sarif(Assessment(target="web-01.example.org", asset=host, started=STARTED, findings=[finding]))
    validate(log)
    result = log["runs"][0]["results"][0]
    assert result["locations"] == [{"logicalLocations": [{"name": "web-01.example.org", "kind": "host"}]}]
    assert "originalUriBaseIds" not in log["runs"][0]


def test_errors_and_unresolved_are_notifications(assessment: Assessment) -> None:
    invocation = sarif(assessment)["runs"][0]["invocations"][0]
    assert invocation["startTimeUtc"] == "2025-03-01T09:00:00Z"
    notes = invocation["toolExecutionNotifications"]
    error = next(n for n in notes if n["level"] == "error")
    assert error["message"]["text"] == "not valid JSON: Expecting value"
    location = error["locations"][0]["physicalLocation"]
    assert location["artifactLocation"]["uri"] == "frontend/package-lock.json"
    assert location["region"] == {"startLine": 1}
    warning = next(n for n in notes if n["level"] == "warning")
    assert "requests>=2.20" in warning["message"]["text"]


def test_paths_become_uri_references(assessment: Assessment) -> None:
    comp = assessment.findings[5].component
    assert comp is not None and comp.location is not None
    odd = replace(comp, location=replace(comp.location, path="sub dir/requirements#1.txt"))
    absolute = replace(comp, location=replace(comp.location, path="/opt/app/requirements.txt"))
    assessment.findings = [
        replace(assessment.findings[5], component=odd),
        replace(assessment.findings[5], component=absolute),
    ]
    log = sarif(assessment)
    validate(log)
    uris = [r["locations"][0]["physicalLocation"]["artifactLocation"] for r in log["runs"][0]["results"]]
    assert uris[0] == {"uri": "sub%20dir/requirements%231.txt", "uriBaseId": "%SRCROOT%"}
    assert uris[1] == {"uri": "file:///opt/app/requirements.txt"}


def test_asset_label_beside_the_path(assessment: Assessment) -> None:
    """The label people gave (host name for `/`, a remote, a folder's name) is shown with the path; the
    path stays the name tools group by (before, SARIF carried the resolved path alone)."""
    root = replace(assessment.asset, name="/", kind=AssetKind.HOST, label="web-01")
    finding = Finding(
        kind=FindingKind.EXPOSURE,
        rule_id="tianmu/open-redis",
        title="Redis reachable without authentication",
        severity=Severity.HIGH,
        asset=root,
        evidence={"port": 6379},
    )
    log = sarif(Assessment(target="/", asset=root, started=STARTED, findings=[finding]))
    validate(log)
    run = log["runs"][0]
    assert run["properties"]["asset"] == {"name": "/", "label": "web-01", "kind": "host"}
    logical = run["results"][0]["locations"][0]["logicalLocations"][0]
    assert logical == {"name": "/", "kind": "host", "properties": {"label": "web-01"}}
    # No label: the name stands for itself.
    assert sarif(assessment)["runs"][0]["properties"]["asset"]["label"] == "/srv/shop"
