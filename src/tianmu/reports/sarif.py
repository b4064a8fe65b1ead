"""SARIF 2.1.0 rendering, for code-scanning dashboards (GitHub, GitLab, Azure DevOps, IDE viewers).

One run, one rule per distinct rule id, one result per finding. Choices that matter to consumers:

* `properties.security-severity` on each rule is the CVSS score as a string: GitHub derives its
  critical/high/medium/low label from it. Without a score we use the bottom of the severity's band.
* `partialFingerprints["tianmu/v1"]` is the finding fingerprint, so dashboards track one problem
  across runs the way the Tianmu store does.
* A finding with no file gets a logical location naming the asset: SARIF allows results without a
  physical location and that is more honest than pointing at an arbitrary file.
* Input errors and unresolved dependencies become tool execution notifications, not results: they
  are gaps in what was assessed, not problems found in it.
"""

from __future__ import annotations

import json
import re
from pathlib import PurePosixPath, PureWindowsPath
from typing import Any
from urllib.parse import quote

import tianmu
from tianmu.core.models import Assessment, AssetKind, Finding, FindingKind, Location, Severity

from ._common import advisory_url, finding_location, is_unscored, iso, jsonable, vuln_details

__all__ = ["SARIF_SCHEMA_URI", "assessment_to_sarif", "render_sarif"]

SARIF_SCHEMA_URI = (
    "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"
)
SRCROOT = "%SRCROOT%"

_LEVELS = {
    Severity.CRITICAL: "error",
    Severity.HIGH: "error",
    Severity.MEDIUM: "warning",
    Severity.LOW: "note",
    Severity.INFO: "note",
}
# Lower bound of each band of the CVSS qualitative scale, so the consumer's label matches ours.
_BAND_FLOOR = {
    Severity.CRITICAL: 9.0,
    Severity.HIGH: 7.0,
    Severity.MEDIUM: 4.0,
    Severity.LOW: 0.1,
    Severity.INFO: 0.0,
}
_ERROR_RE = re.compile(r"^(?P<path>.+?):(?P<line>\d+): (?P<message>.*)$", re.DOTALL)


def _security_severity(finding: Finding) -> float:
    return finding.score if finding.score is not None else _BAND_FLOOR[finding.severity]


def _artifact_location(path: str) -> dict[str, Any]:
    """A relative path stays relative to %SRCROOT%; an absolute one becomes a file URI."""
    if PurePosixPath(path).is_absolute():
        return {"uri": PurePosixPath(path).as_uri()}
    if PureWindowsPath(path).is_absolute():
        return {"uri": PureWindowsPath(path).as_uri()}
    return {"uri": quote(path.replace("\\", "/"), safe="/"), "uriBaseId": SRCROOT}


def _physical(location: Location) -> dict[str, Any]:
    physical: dict[str, Any] = {"artifactLocation": _artifact_location(location.path)}
    if location.line:
        physical["region"] = {"startLine": location.line}
    return {"physicalLocation": physical}


def _locations(finding: Finding) -> list[dict[str, Any]]:
    location = finding_location(finding)
    if location is not None:
        return [_physical(location)]
    asset = finding.asset
    logical: dict[str, Any] = {"name": asset.name, "kind": asset.kind.value}
    if asset.label and asset.label != asset.name:
        # The name stays the resolved path (the identity tools group by); the label is what people say.
        logical["properties"] = {"label": asset.label}
    return [{"logicalLocations": [logical]}]


def _message(finding: Finding) -> str:
    component = finding.component
    if finding.kind is not FindingKind.VULNERABILITY or component is None:
        return f"{finding.rule_id}: {finding.title}"
    details = vuln_details(finding)
    text = f"{component.name} {component.version} ({component.ecosystem}) is affected by {finding.rule_id}"
    text += f": {finding.title}." if finding.title else "."
    if details.fixed_versions:
        text += f" Fixed in {', '.join(details.fixed_versions)}."
    else:
        text += " No fixed version is known."
    if details.kev:
        text += " Listed in CISA KEV: known to be exploited."
    return text


def _rule(finding: Finding, top_score: float, kev: bool) -> dict[str, Any]:
    rule: dict[str, Any] = {
        "id": finding.rule_id,
        "shortDescription": {"text": finding.title or finding.rule_id},
        "fullDescription": {"text": finding.summary or finding.title or finding.rule_id},
        "defaultConfiguration": {"level": _LEVELS[finding.severity]},
    }
    help_uri = finding.references[0] if finding.references else advisory_url(finding.rule_id)
    if help_uri:
        rule["helpUri"] = help_uri
    if finding.aliases:
        rule["help"] = {"text": "Also known as " + ", ".join(finding.aliases) + "."}
    tags = ["security", finding.kind.value, *finding.techniques]
    if kev:
        tags.append("kev")
    rule["properties"] = {
        # One decimal, as GitHub documents it ("9.8"); str(float) would give "7.0" too, but be explicit.
        "security-severity": f"{top_score:.1f}",
        "tags": list(dict.fromkeys(tags)),
        "precision": "high" if finding.kind is FindingKind.VULNERABILITY else "medium",
    }
    return rule


def _result_properties(finding: Finding) -> dict[str, Any]:
    props: dict[str, Any] = {
        "kind": finding.kind.value,
        "severity": finding.severity.value,
        "status": finding.status.value,
        "asset": finding.asset.name,
    }
    if finding.score is not None:
        props["score"] = finding.score
    if is_unscored(finding):
        # `severity` is then a rank from KEV/EPSS or the default, not a rating (docs/risk.md).
        props["unscored"] = True
    if finding.aliases:
        props["aliases"] = list(finding.aliases)
    if finding.component is not None:
        props["purl"] = finding.component.purl
    if finding.kind is FindingKind.VULNERABILITY:
        details = vuln_details(finding)
        props["fixed_versions"] = list(details.fixed_versions)
        props["kev"] = details.kev
        if details.epss is not None:
            props["epss"] = details.epss
        if details.epss_percentile is not None:
            props["epss_percentile"] = details.epss_percentile
        if details.cvss_vector:
            props["cvss_vector"] = details.cvss_vector
    elif finding.evidence:
        props["evidence"] = jsonable(finding.evidence)
    return props


def _notifications(assessment: Assessment) -> list[dict[str, Any]]:
    notes: list[dict[str, Any]] = []
    for error in assessment.errors:
        note: dict[str, Any] = {"level": "error", "message": {"text": error}}
        match = _ERROR_RE.match(error)
        if match:
            line = int(match.group("line"))
            location = Location(match.group("path"), line if line > 0 else None)
            note["message"] = {"text": match.group("message")}
            note["locations"] = [_physical(location)]
        notes.append(note)
    for item in assessment.unresolved:
        text = f"Not assessed: {item.name} ({item.ecosystem}) `{item.requirement}`: {item.reason}"
        notes.append(
            {
                "level": "warning",
                "message": {"text": text},
                "locations": [_physical(item.location)],
            }
        )
    return notes


def _invocation(assessment: Assessment) -> dict[str, Any]:
    invocation: dict[str, Any] = {
        # "Successful" in SARIF means the tool ran to the end; unreadable inputs are reported below.
        "executionSuccessful": True,
        "startTimeUtc": iso(assessment.started),
        "toolExecutionNotifications": _notifications(assessment),
    }
    if assessment.finished is not None:
        invocation["endTimeUtc"] = iso(assessment.finished)
    return invocation


def assessment_to_sarif(assessment: Assessment) -> dict[str, Any]:
    """The SARIF log as a dict (one run); results keep the order of `assessment.findings`."""
    first: dict[str, Finding] = {}
    top_score: dict[str, float] = {}
    kev: dict[str, bool] = {}
    for finding in assessment.findings:
        rid = finding.rule_id
        first.setdefault(rid, finding)
        # The same advisory can be scored differently per ecosystem; the rule shows the worst case.
        top_score[rid] = max(top_score.get(rid, 0.0), _security_severity(finding))
        kev[rid] = kev.get(rid, False) or bool(finding.data.get("kev", False))
    rule_index = {rid: index for index, rid in enumerate(first)}
    rules = [_rule(f, top_score[rid], kev[rid]) for rid, f in first.items()]

    results = []
    for finding in assessment.findings:
        results.append(
            {
                "ruleId": finding.rule_id,
                "ruleIndex": rule_index[finding.rule_id],
                "level": _LEVELS[finding.severity],
                "kind": "fail",
                "message": {"text": _message(finding)},
                "locations": _locations(finding),
                "partialFingerprints": {"tianmu/v1": finding.fingerprint},
                "properties": _result_properties(finding),
            }
        )

    run: dict[str, Any] = {
        "tool": {
            "driver": {
                "name": "Tianmu",
                "version": tianmu.__version__,
                "semanticVersion": tianmu.__version__,
                "rules": rules,
            }
        },
        "invocations": [_invocation(assessment)],
        "results": results,
        "columnKind": "unicodeCodePoints",
        "properties": {
            "target": assessment.target,
            "asset": {
                "name": assessment.asset.name,
                "label": assessment.asset.label or assessment.asset.name,
                "kind": assessment.asset.kind.value,
            },
            "knowledge_bases": [jsonable(kb) for kb in assessment.knowledge_bases],
        },
    }
    root = _srcroot(assessment)
    if root is not None:
        run["originalUriBaseIds"] = {SRCROOT: {"uri": root}}
    return {"$schema": SARIF_SCHEMA_URI, "version": "2.1.0", "runs": [run]}


def _srcroot(assessment: Assessment) -> str | None:
    """A directory target resolves %SRCROOT% for viewers; anything else (a URL, a host) does not."""
    path = PurePosixPath(assessment.target)
    if assessment.asset.kind not in (AssetKind.DIRECTORY, AssetKind.REPOSITORY) or not path.is_absolute():
        return None
    uri = path.as_uri()
    return uri if uri.endswith("/") else uri + "/"


def render_sarif(assessment: Assessment) -> str:
    return json.dumps(assessment_to_sarif(assessment), indent=2, ensure_ascii=False) + "\n"
