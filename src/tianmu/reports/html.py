"""The HTML situation report: one self-contained page a person reads to decide what to fix first.

Self-contained means no request leaves the page: CSS is inline, the chart is inline SVG, there is no
script at all. The page is opened from mail attachments and air-gapped shares, and a report that
phones home would leak what an organisation runs. The only URLs are links to advisories.

This module builds a plain view model (dicts of strings and numbers) and the template only lays it
out, so the decisions (what goes first, how a number is written) live here and are tested here.
Jinja2 autoescaping is always on: advisory texts come from the outside world.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from jinja2 import Environment, PackageLoader

import tianmu
from tianmu.core.models import Assessment, Finding, FindingKind, Severity, utcnow

from ._common import (
    advisory_url,
    finding_location,
    is_kev,
    is_unscored,
    kev_count,
    severity_counts,
    unscored_summary,
    vuln_details,
)
from .situation_view import situation_view

__all__ = ["FIX_FIRST_LIMIT", "fix_first", "render_html", "view_model"]

FIX_FIRST_LIMIT = 10
NO_FILE = "(no file)"

_SEVERITY_COLOURS = {
    Severity.CRITICAL: "#9b1c1c",
    Severity.HIGH: "#d9480f",
    Severity.MEDIUM: "#e0a800",
    Severity.LOW: "#2b6cb0",
    Severity.INFO: "#718096",
}
_CHART_BAR_WIDTH = 360


@dataclass(frozen=True, slots=True)
class _Link:
    text: str
    url: str | None


def _environment() -> Environment:
    return Environment(
        loader=PackageLoader("tianmu.reports", "templates"),
        # Unconditional: the template's .j2 suffix would not trigger extension-based autoescaping.
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def _link(advisory_id: str) -> _Link:
    return _Link(advisory_id, advisory_url(advisory_id))


def _human(moment: datetime | None) -> str:
    """For people: UTC to the second, no ISO `T` (machine formats keep full ISO 8601)."""
    if moment is None:
        return ""
    aware = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return aware.strftime("%Y-%m-%d %H:%M:%S UTC")


def _human_text(value: object, fmt: str = "%Y-%m-%d %H:%M") -> str:
    """A datetime or an ISO 8601 text, short, in UTC; anything else (a catalogue version) as is."""
    moment: datetime | None = value if isinstance(value, datetime) else None
    text = str(value or "")
    if moment is None and "T" in text:
        try:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            return text
    if moment is None:
        return text
    aware = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return aware.strftime(fmt)


def _ordinal(value: float) -> str:
    """EPSS percentile 0.9996 -> "99th": floored, because "100th" would claim the very top."""
    n = min(int(value * 100), 99)
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _percent(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value * 100:.1f}%" if value >= 0.001 else f"{value * 100:.2f}%"


def _row(finding: Finding) -> dict[str, Any]:
    component = finding.component
    location = finding_location(finding)
    row: dict[str, Any] = {
        "kind": finding.kind.value,
        "id": _link(finding.rule_id),
        "aliases": [_link(alias) for alias in finding.aliases],
        "title": finding.title,
        "summary": finding.summary,
        "severity": finding.severity.value,
        "unscored": is_unscored(finding),
        # A distribution-owned package matched with upstream ranges (tianmu.vulns.backports).
        "backport_note": str(finding.data.get("backport_note") or ""),
        "score": f"{finding.score:.1f}" if finding.score is not None else "",
        "component": component.name if component else "",
        "version": component.version if component else "",
        "ecosystem": component.ecosystem if component else "",
        "file": location.path if location else "",
        "line": location.line if location and location.line else None,
        "status": finding.status.value.replace("_", " "),
        "techniques": _technique_tags(finding),
        "evidence": [
            (str(k), str(v)) for k, v in finding.evidence.items() if not k.startswith("fingerprint_")
        ],
        "is_vuln": finding.kind is FindingKind.VULNERABILITY,
        "fixed": [],
        "kev": False,
        "kev_title": "",
        "epss": "–",
        "epss_value": None,
        "epss_percentile": "",
    }
    if finding.kind is FindingKind.VULNERABILITY:
        details = vuln_details(finding)
        kev_info = details.kev_details or {}
        kev_title = "Listed in CISA's Known Exploited Vulnerabilities catalog"
        if kev_info.get("date_added"):
            kev_title += f" since {kev_info['date_added']}"
        if kev_info.get("ransomware") in (True, "Known", "known"):
            kev_title += "; used in ransomware campaigns"
        row.update(
            fixed=list(details.fixed_versions),
            kev=details.kev,
            kev_title=kev_title if details.kev else "",
            epss=_percent(details.epss),
            epss_value=details.epss,
            epss_percentile=_ordinal(details.epss_percentile) if details.epss_percentile is not None else "",
        )
    return row


def _technique_tags(finding: Finding) -> list[str]:
    """`T1059.001 PowerShell (Execution)` when the ATT&CK base named it (`data["attack"]`), else the id."""
    named = {str(t.get("id")): t for t in finding.data.get("attack") or [] if isinstance(t, dict)}
    tags = []
    for technique in finding.techniques:
        info = named.get(technique.upper())
        if info:
            tactics = ", ".join(str(t) for t in info.get("tactics") or [])
            name = f"{technique} {info.get('full_name') or info.get('name')}"
            tags.append(f"{name} ({tactics})" if tactics else name)
        else:
            tags.append(technique)
    return tags


def _tactics(findings: list[Finding]) -> list[dict[str, Any]]:
    """Findings per ATT&CK tactic in kill-chain order (a finding under each tactic of its techniques).

    Empty unless the ATT&CK base was present at assessment time (`data["attack"]`).
    """
    groups: dict[str, dict[str, Any]] = {}
    for finding in findings:
        seen: set[str] = set()
        for info in finding.data.get("attack") or []:
            if not isinstance(info, dict):
                continue
            names = info.get("tactics") or []
            positions = info.get("tactic_positions") or [99] * len(names)
            for name, position in zip(names, positions, strict=False):
                if name in seen:
                    continue
                seen.add(name)
                group = groups.setdefault(str(name), {"name": str(name), "position": position, "rows": []})
                group["rows"].append(_row(finding))
    return sorted(groups.values(), key=lambda g: (g["position"], g["name"]))


def fix_first(findings: list[Finding], limit: int = FIX_FIRST_LIMIT) -> list[Finding]:
    """What to fix first: known-exploited first, then severity, then exploit likelihood, then score.

    Stable, so among equals the caller's order wins. Resolved and false-positive findings are left
    out: they need no fixing.
    """
    open_findings = [f for f in findings if f.status.value in ("open", "acknowledged")]

    def key(finding: Finding) -> tuple[int, int, float, float]:
        epss = vuln_details(finding).epss if finding.kind is FindingKind.VULNERABILITY else None
        return (-int(is_kev(finding)), -finding.severity.rank, -(epss or 0.0), -(finding.score or 0.0))

    return sorted(open_findings, key=key)[:limit]


def _groups(findings: list[Finding]) -> list[dict[str, Any]]:
    """Findings per asset, then per file, in order of first appearance (the caller's sort order)."""
    assets: dict[str, dict[str, list[Finding]]] = {}
    for finding in findings:
        location = finding_location(finding)
        path = location.path if location else NO_FILE
        assets.setdefault(finding.asset.name, {}).setdefault(path, []).append(finding)
    return [
        {
            "asset": name,
            "count": sum(len(group) for group in files.values()),
            "files": [{"path": path, "rows": [_row(f) for f in group]} for path, group in files.items()],
        }
        for name, files in assets.items()
    ]


def _chart(counts: dict[str, int]) -> dict[str, Any]:
    top = max(counts.values(), default=0) or 1
    bars = []
    for index, severity in enumerate(Severity):
        count = counts[severity.value]
        width = round(_CHART_BAR_WIDTH * count / top) if count else 0
        bars.append(
            {
                "label": severity.value.capitalize(),
                "count": count,
                "y": 8 + index * 30,
                # A sliver keeps zero-count severities visible as a baseline, not as missing data.
                "width": max(width, 2),
                "colour": _SEVERITY_COLOURS[severity],
            }
        )
    return {"bars": bars, "width": 110 + _CHART_BAR_WIDTH + 50, "height": 8 + 30 * len(bars)}


def _duration(assessment: Assessment) -> str:
    if assessment.finished is None:
        return ""
    seconds = (assessment.finished - assessment.started).total_seconds()
    if seconds < 60:
        return f"{seconds:.1f} s"
    return f"{int(seconds // 60)} min {int(seconds % 60)} s"


def view_model(assessment: Assessment) -> dict[str, Any]:
    findings = assessment.findings
    counts = severity_counts(findings)
    return {
        "version": tianmu.__version__,
        "target": assessment.target,
        "asset": {"name": assessment.asset.display, "kind": assessment.asset.kind.value},
        "started": _human(assessment.started),
        "finished": _human(assessment.finished),
        "duration": _duration(assessment),
        "generated": _human(utcnow()),
        "files_read": assessment.files_read,
        "engines": list(assessment.engines),
        "summary": {
            "components": len(assessment.components),
            "findings": len(findings),
            "by_severity": counts,
            "kev": kev_count(findings),
            "unscored": sum(1 for f in findings if is_unscored(f)),
            "unscored_note": unscored_summary(findings),
            "unresolved": len(assessment.unresolved),
            "errors": len(assessment.errors),
        },
        "colours": {s.value: c for s, c in _SEVERITY_COLOURS.items()},
        "chart": _chart(counts),
        "fix_first": [_row(f) for f in fix_first(findings)],
        "situation": situation_view(assessment),
        "groups": _groups(findings),
        "tactics": _tactics(findings),
        "unresolved": [
            {
                "name": u.name,
                "ecosystem": u.ecosystem,
                "requirement": u.requirement,
                "where": str(u.location),
                "reason": u.reason,
            }
            for u in assessment.unresolved
        ],
        "errors": list(assessment.errors),
        "knowledge_bases": [
            {
                "name": str(kb.get("name", "")),
                "kind": str(kb.get("kind") or ""),
                "version": _human_text(kb.get("version"), "%Y-%m-%d"),
                "records": kb.get("record_count"),
                "imported_at": _human_text(kb.get("imported_at")),
                "origin": str(kb.get("origin") or ""),
                "digest": str(kb.get("digest") or ""),
            }
            for kb in assessment.knowledge_bases
        ],
    }


def render_html(assessment: Assessment) -> str:
    template = _environment().get_template("report.html.j2")
    return template.render(**view_model(assessment))
