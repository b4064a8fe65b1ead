"""Alert rules: what in the current situation deserves an alert, before deduplication.

A rule selects what to alert on (`on`: incident state changes, new findings, KEV entries newly affecting
an asset), with a severity threshold, finding kinds, asset name patterns and asset tags. Each alert
carries a state (an incident's status, stage and severity; `kev`; `open`): deduplication (`delivery`)
sends an alert again only when its state changed.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tianmu.core.models import Asset, Finding, FindingKind, Incident, Severity, TriageStatus

from ..correlation import incident_state
from .model import Alert

__all__ = ["SUBJECTS", "AlertRule", "pending_alerts"]

SUBJECTS = ("incident", "finding", "kev")


@dataclass(frozen=True, slots=True)
class AlertRule:
    name: str
    on: tuple[str, ...] = ("incident", "kev")
    min_severity: Severity = Severity.HIGH
    kinds: tuple[FindingKind, ...] = ()
    """Only incidents containing, or findings of, these kinds (empty: any)."""
    assets: tuple[str, ...] = ()
    """Shell-style patterns over asset names (empty: any)."""
    tags: tuple[str, ...] = ()
    """Only assets carrying one of these tags (empty: any)."""
    channels: tuple[str, ...] = ()
    """Channel names (empty: every channel)."""


def _asset_ok(rule: AlertRule, names: Sequence[str], records: Mapping[str, Asset]) -> bool:
    if rule.assets and not any(fnmatch.fnmatchcase(n, p) for n in names for p in rule.assets):
        return False
    if rule.tags:
        tags = {t for n in names if n in records for t in records[n].tags}
        if not tags & set(rule.tags):
            return False
    return True


def _incident_payload(incident: Incident, state: str) -> dict[str, Any]:
    return {
        "type": "incident",
        "id": incident.id,
        "tenant": incident.tenant,
        "title": incident.title,
        "severity": incident.severity.value,
        "stage": incident.stage,
        "status": incident.status.value,
        "assignee": incident.assignee,
        "tactics": incident.tactics,
        "assets": incident.assets,
        "sources": incident.sources,
        "findings": len(incident.finding_fingerprints),
        "first_seen": incident.first_seen.isoformat() if incident.first_seen else None,
        "last_seen": incident.last_seen.isoformat() if incident.last_seen else None,
        "state": state,
    }


def _finding_payload(finding: Finding, kind: str, state: str) -> dict[str, Any]:
    return {
        "type": kind,
        "id": finding.rule_id,
        "tenant": finding.asset.tenant,
        "title": finding.title,
        "severity": finding.severity.value,
        "kind": finding.kind.value,
        "asset": finding.asset.name,
        "fingerprint": finding.fingerprint,
        "aliases": list(finding.aliases),
        "kev": bool(finding.data.get("kev")),
        "state": state,
    }


def pending_alerts(
    rules: Iterable[AlertRule],
    incidents: Iterable[Incident] = (),
    findings: Iterable[Finding] = (),
    assets: Iterable[Asset] = (),
) -> list[Alert]:
    """Every alert the rules ask for in the current situation (before deduplication)."""
    records = {a.name: a for a in assets}
    incidents, findings = list(incidents), list(findings)
    out: list[Alert] = []
    for rule in rules:
        if "incident" in rule.on:
            for incident in incidents:
                if not incident.severity.at_least(rule.min_severity):
                    continue
                kinds = {e.get("kind") for e in incident.timeline}
                if rule.kinds and not kinds & {k.value for k in rule.kinds}:
                    continue
                if not _asset_ok(rule, incident.assets, records):
                    continue
                state = incident_state(incident)
                out.append(
                    Alert(
                        rule.name,
                        incident.id,
                        state,
                        incident.severity,
                        incident.title,
                        incident.tenant,
                        _incident_payload(incident, state),
                    )
                )
        for finding in findings:
            if finding.status not in (TriageStatus.OPEN, TriageStatus.ACKNOWLEDGED):
                continue
            if not finding.severity.at_least(rule.min_severity):
                continue
            if rule.kinds and finding.kind not in rule.kinds:
                continue
            if not _asset_ok(rule, [finding.asset.name], records):
                continue
            if "kev" in rule.on and finding.kind is FindingKind.VULNERABILITY and finding.data.get("kev"):
                title = f"Known exploited vulnerability {finding.rule_id} on {finding.asset.name}"
                out.append(
                    Alert(
                        rule.name,
                        f"kev:{finding.fingerprint}",
                        "kev",
                        finding.severity,
                        title,
                        finding.asset.tenant,
                        _finding_payload(finding, "kev", "kev"),
                    )
                )
            elif "finding" in rule.on:
                out.append(
                    Alert(
                        rule.name,
                        f"finding:{finding.fingerprint}",
                        "open",
                        finding.severity,
                        finding.title,
                        finding.asset.tenant,
                        _finding_payload(finding, "finding", "open"),
                    )
                )
    return out
