"""The JSON report: Tianmu's own, complete rendering of an assessment.

The shape is versioned by `schema_version` and described by `schemas/tianmu-report.schema.json`
(documented in docs/json-report.md). Other renderers reuse `finding_to_dict` so that a finding reads
the same in every format.
"""

from __future__ import annotations

import json
from typing import Any

import tianmu
from tianmu.core.models import Assessment, Incident
from tianmu.core.serialize import (
    component_to_dict,
    finding_to_dict,
    iso,
    jsonable,
    location_to_dict,
    unresolved_to_dict,
)

from ._common import kev_count, severity_counts, unscored_counts

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
            # What people call a path asset (its remote, its folder's name); `name` is its identity.
            **({"label": asset.label} if asset.label else {}),
        },
        "started": iso(assessment.started),
        "finished": iso(assessment.finished),
        "summary": {
            "components": len(assessment.components),
            "findings": len(assessment.findings),
            "by_severity": severity_counts(assessment.findings),
            "kev": kev_count(assessment.findings),
            "unscored": sum(unscored_counts(assessment.findings).values()),
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
