"""CycloneDX 1.6: validity with the library's strict validator, components, vulnerabilities, affects."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
from report_data import DJANGO, REQS

import tianmu
from tianmu.core.models import Assessment, Location
from tianmu.reports import render


def bom(assessment: Assessment) -> dict[str, Any]:
    text = render(assessment, "cyclonedx")
    error = JsonStrictValidator(SchemaVersion.V1_6).validate_str(text)
    # The error's str() dumps the whole schema; its message and path are what a reader needs.
    assert error is None, f"{list(error.data.path)}: {error.data.message}"
    return json.loads(text)  # type: ignore[no-any-return]


def test_valid_bom_with_metadata(assessment: Assessment, empty_assessment: Assessment) -> None:
    doc = bom(assessment)
    assert doc["bomFormat"] == "CycloneDX"
    assert doc["specVersion"] == "1.6"
    meta = doc["metadata"]
    assert meta["timestamp"].startswith("2025-03-01T09:00:07")
    assert meta["tools"]["components"][0]["name"] == "Tianmu"
    assert meta["tools"]["components"][0]["version"] == tianmu.__version__
    assert meta["component"]["name"] == "/srv/shop"
    assert meta["component"]["type"] == "application"
    bom(empty_assessment)


def test_components(assessment: Assessment) -> None:
    components = {c["bom-ref"]: c for c in bom(assessment)["components"]}
    django = components["pkg:pypi/django@3.2.0|requirements.txt:3"]
    assert django["purl"] == "pkg:pypi/django@3.2.0"
    assert django["name"] == "Django" and django["version"] == "3.2.0"
    props = {p["name"]: p["value"] for p in django["properties"]}
    assert props["tianmu:location"] == "requirements.txt:3"
    assert props["tianmu:ecosystem"] == "PyPI"
    log4j = components["pkg:maven/org.apache.logging.log4j/log4j-core@2.14.1|legacy/pom.xml:41"]
    assert (log4j["group"], log4j["name"]) == ("org.apache.logging.log4j", "log4j-core")


def test_same_package_in_two_files_stays_two_components(assessment: Assessment) -> None:
    again = replace(DJANGO, location=Location("services/api/requirements.txt", 7))
    assessment.components.append(again)
    assessment.findings.append(replace(assessment.findings[5], component=again))
    doc = bom(assessment)
    refs = [c["bom-ref"] for c in doc["components"] if c["purl"] == "pkg:pypi/django@3.2.0"]
    assert sorted(refs) == [
        "pkg:pypi/django@3.2.0|requirements.txt:3",
        "pkg:pypi/django@3.2.0|services/api/requirements.txt:7",
    ]
    vuln = next(v for v in doc["vulnerabilities"] if v["id"] == "PYSEC-2021-98")
    assert sorted(a["ref"] for a in vuln["affects"]) == refs and len(refs) == 2


def test_vulnerabilities(assessment: Assessment) -> None:
    doc = bom(assessment)
    vulns = {v["id"]: v for v in doc["vulnerabilities"]}
    # Only vulnerability findings: the EICAR malware finding has no place in an SBOM.
    assert set(vulns) == {f.rule_id for f in assessment.findings if f.kind.value == "vulnerability"}
    refs = {c["bom-ref"] for c in doc["components"]}
    for vuln in vulns.values():
        assert vuln["affects"] and all(a["ref"] in refs for a in vuln["affects"])

    django = vulns["PYSEC-2021-98"]
    assert django["source"] == {"name": "OSV", "url": "https://osv.dev/vulnerability/PYSEC-2021-98"}
    assert {r["id"]: r["source"]["name"] for r in django["references"]} == {
        "CVE-2021-33203": "NVD",
        "GHSA-68w8-qjq3-2gfm": "OSV",
    }
    rating = django["ratings"][0]
    assert rating["score"] == 4.9
    assert rating["severity"] == "medium"
    assert rating["method"] == "CVSSv31"
    # The library writes the vector without its "CVSS:3.1/" prefix: `method` carries the version.
    assert rating["vector"] == "AV:N/AC:L/PR:H/UI:N/S:U/C:H/I:N/A:N"
    assert django["description"] == "Potential directory traversal via admindocs"
    assert django["recommendation"] == "Upgrade to 2.2.24 or 3.1.12 or 3.2.4."
    assert django["affects"] == [{"ref": f"pkg:pypi/django@3.2.0|{REQS}:3"}]

    jinja = vulns["CVE-2024-22195"]
    assert jinja["source"]["name"] == "NVD"
    assert jinja["source"]["url"] == "https://nvd.nist.gov/vuln/detail/CVE-2024-22195"

    log4j = vulns["GHSA-jfh8-c2jp-5v3q"]
    props = {p["name"]: p["value"] for p in log4j["properties"]}
    assert props["tianmu:kev"] == "true"
    assert props["tianmu:kev:date_added"] == "2021-12-10"
    assert props["tianmu:epss"] == "0.94358"
    assert {p["name"]: p["value"] for p in django["properties"]}["tianmu:kev"] == "false"


def test_cvss_v4_vector_and_no_score(assessment: Assessment) -> None:
    finding = assessment.findings[5]
    finding.data["cvss_vector"] = "CVSS:4.0/AV:N/AC:L/AT:N/PR:H/UI:N/VC:H/VI:N/VA:N/SC:N/SI:N/SA:N"
    finding.score = None
    finding.data["fixed_versions"] = []
    vuln = next(v for v in bom(assessment)["vulnerabilities"] if v["id"] == "PYSEC-2021-98")
    assert vuln["ratings"][0]["method"] == "CVSSv4"
    assert "score" not in vuln["ratings"][0]
    assert "recommendation" not in vuln


def test_malformed_purl_keeps_the_component(assessment: Assessment) -> None:
    odd = replace(DJANGO, purl="not a purl")
    assessment.components = [odd]
    assessment.findings = [replace(assessment.findings[5], component=odd)]
    doc = bom(assessment)
    component = doc["components"][0]
    assert "purl" not in component
    assert {p["name"]: p["value"] for p in component["properties"]}["tianmu:purl"] == "not a purl"
    assert doc["vulnerabilities"][0]["affects"] == [{"ref": "not a purl|requirements.txt:3"}]


def test_asset_label_beside_the_path(assessment: Assessment) -> None:
    """The root component keeps the resolved path as name and bom-ref and says the label beside it
    (before, only the path)."""
    labelled = replace(assessment, asset=replace(assessment.asset, label="git@example.org:acme/shop.git"))
    root = bom(labelled)["metadata"]["component"]
    assert root["name"] == "/srv/shop" and root["bom-ref"].endswith(":/srv/shop")
    assert root["description"] == "git@example.org:acme/shop.git (/srv/shop)"
    props = {p["name"]: p["value"] for p in root["properties"]}
    assert props["tianmu:label"] == "git@example.org:acme/shop.git"
    plain = bom(assessment)["metadata"]["component"]
    assert plain["description"] == "/srv/shop"
    assert {p["name"]: p["value"] for p in plain["properties"]}["tianmu:label"] == "/srv/shop"
