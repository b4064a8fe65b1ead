"""The JSON report: Tianmu's own, complete rendering of an assessment.

The shape is versioned by `schema_version` and described by `schemas/tianmu-report.schema.json`
(documented in docs/json-report.md). Other renderers reuse `finding_to_dict` so that a finding reads
the same in every format.
"""

from __future__ import annotations

import json
from typing import Any

import tianmu
from tianmu.core.models import Assessment, Component, Finding, FindingKind, Incident, Location, Unresolved

from ._common import iso, jsonable, kev_count, severity_counts, vuln_details

__all__ = [
    "SCHEMA_VERSION",
    "assessment_to_dict",
    "component_to_dict",
    "finding_to_dict",
    "incident_to_dict",
    "location_to_dict",
    "render_json",
    "unresolved_to_dict",
]

SCHEMA_VERSION = "1"
"""Bumped only on incompatible changes; adding a field is compatible."""

_FLATTENED = frozenset({"fixed_versions", "kev", "kev_details", "epss", "epss_percentile", "cvss_vector"})


def location_to_dict(location: Location | None) -> dict[str, Any] | None:
    if location is None:
        return None
    return {"path": location.path, "line": location.line}


def component_to_dict(component: Component) -> dict[str, Any]:
    return {
        "purl": component.purl,
        "name": component.name,
        "version": component.version,
        "ecosystem": component.ecosystem,
        "location": location_to_dict(component.location),
        "direct": component.direct,
        "source_name": component.source_name,
        "distro_release": component.distro_release,
    }


def unresolved_to_dict(item: Unresolved) -> dict[str, Any]:
    return {
        "name": item.name,
        "ecosystem": item.ecosystem,
        "requirement": item.requirement,
        "location": location_to_dict(item.location),
        "reason": item.reason,
    }


def finding_to_dict(finding: Finding) -> dict[str, Any]:
    """One finding as plain JSON types.

    Every kind carries the common fields and `data`, the engine's kind-specific details; for a
    vulnerability the well-known details (`fixed_versions`, `kev`, `epss`...) are lifted out of
    `data` into fields of their own.
    """
    out: dict[str, Any] = {
        "kind": finding.kind.value,
        "id": finding.rule_id,
        "title": finding.title,
        "severity": finding.severity.value,
        "score": finding.score,
        "summary": finding.summary,
        "asset": {"name": finding.asset.name, "kind": finding.asset.kind.value},
        "component": component_to_dict(finding.component) if finding.component else None,
        "aliases": list(finding.aliases),
        "references": list(finding.references),
        "techniques": list(finding.techniques),
        "evidence": jsonable(finding.evidence),
        "fingerprint": finding.fingerprint,
        "status": finding.status.value,
        "first_seen": iso(finding.first_seen),
        "last_seen": iso(finding.last_seen),
    }
    if finding.kind is FindingKind.VULNERABILITY:
        details = vuln_details(finding)
        out.update(
            {
                "fixed_versions": list(details.fixed_versions),
                "kev": details.kev,
                "kev_details": details.kev_details,
                "epss": details.epss,
                "epss_percentile": details.epss_percentile,
                "cvss_vector": details.cvss_vector,
            }
        )
        # Whatever else the matcher recorded (how it matched, publication date...) stays available.
        rest = {k: v for k, v in finding.data.items() if k not in _FLATTENED}
        out["data"] = jsonable(rest)
    else:
        # Each engine's headline details (a detection's `rule`, `event`, `fields`; a malware hit's
        # `file`, `matches`) are documented fields of that kind, so they are lifted to the top level
        # too — without ever shadowing a common field.
        data = jsonable(finding.data)
        for key, value in data.items():
            out.setdefault(key, value)
        out["data"] = data
    return out


def incident_to_dict(incident: Incident) -> dict[str, Any]:
    """One incident (tianmu.situation) as plain JSON types; the timeline keeps the correlator's order."""
    return {
        "id": incident.id,
        "title": incident.title,
        "severity": incident.severity.value,
        "stage": incident.stage,
        "status": incident.status.value,
        "assignee": incident.assignee,
        "tactics": list(incident.tactics),
        "assets": list(incident.assets),
        "sources": list(incident.sources),
        "entities": jsonable(incident.entities),
        "first_seen": iso(incident.first_seen),
        "last_seen": iso(incident.last_seen),
        "findings": list(incident.finding_fingerprints),
        "timeline": jsonable(incident.timeline),
    }


def assessment_to_dict(assessment: Assessment) -> dict[str, Any]:
    """The whole report as a dict; findings keep the order the caller gave them."""
    asset = assessment.asset
    return {
        "tianmu": tianmu.__version__,
        "schema_version": SCHEMA_VERSION,
        "target": assessment.target,
        "asset": {
            "name": asset.name,
            "kind": asset.kind.value,
            "tenant": asset.tenant,
            "criticality": asset.criticality,
            "tags": list(asset.tags),
        },
        "started": iso(assessment.started),
        "finished": iso(assessment.finished),
        "summary": {
            "components": len(assessment.components),
            "findings": len(assessment.findings),
            "by_severity": severity_counts(assessment.findings),
            "kev": kev_count(assessment.findings),
            "unresolved": len(assessment.unresolved),
            "errors": len(assessment.errors),
            "files_read": assessment.files_read,
        },
        "engines": list(assessment.engines),
        "notes": list(assessment.notes),
        "knowledge_bases": [jsonable(kb) for kb in assessment.knowledge_bases],
        "components": [component_to_dict(c) for c in assessment.components],
        "unresolved": [unresolved_to_dict(u) for u in assessment.unresolved],
        "errors": list(assessment.errors),
        "findings": [finding_to_dict(f) for f in assessment.findings],
        "incidents": [incident_to_dict(i) for i in assessment.incidents],
        "risk": jsonable(assessment.risk) if assessment.risk is not None else None,
    }


def render_json(assessment: Assessment) -> str:
    # ensure_ascii=False keeps non-Latin package names and messages readable; the output is UTF-8.
    return json.dumps(assessment_to_dict(assessment), indent=2, ensure_ascii=False) + "\n"
