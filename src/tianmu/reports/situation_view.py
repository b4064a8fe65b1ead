"""The situation part of the HTML report: incidents, risk and its factors, posture trend, ATT&CK view,
insurance summary — as a plain view model for `templates/situation.html.j2`.

Kept apart from html.py so that the report's core and the situation part can change independently; the
decisions (what is shown first, how a number is written, the chart's geometry) are made and tested here.
The trend chart is inline SVG computed here: no script, no CDN (see html.py on self-contained pages).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from tianmu.core.models import Assessment, Incident
from tianmu.situation.tactics import TACTIC_NAMES, TACTICS

__all__ = ["situation_view", "trend_chart"]

_LEVEL_COLOURS = {
    "critical": "#9b1c1c",
    "high": "#d9480f",
    "medium": "#e0a800",
    "low": "#2b6cb0",
    "minimal": "#2f855a",
}
_CHART_W, _CHART_H, _PAD_L, _PAD_R, _PAD_T, _PAD_B = 560, 180, 40, 16, 12, 28
_TOP_FINDINGS = 8


def _when(text: object) -> str:
    if not isinstance(text, str) or not text:
        return ""
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return text
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def _factors(factors: list[dict[str, Any]]) -> list[str]:
    return [f"{f['name']} {f['value']} ×{f['effect']:g}" for f in factors]


def _driver(drivers: list[dict[str, Any]]) -> str:
    return f"{drivers[0]['id']} on {drivers[0]['asset']}" if drivers else ""


def trend_chart(history: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Points of the posture trend (score 0–100 over assessments, oldest left) in SVG coordinates."""
    if not history:
        return None
    inner_w = _CHART_W - _PAD_L - _PAD_R
    inner_h = _CHART_H - _PAD_T - _PAD_B
    step = inner_w / (len(history) - 1) if len(history) > 1 else 0.0
    points = []
    for index, point in enumerate(history):
        x = _PAD_L + (step * index if len(history) > 1 else inner_w / 2)
        y = _PAD_T + inner_h * (1 - max(0.0, min(100.0, float(point["score"]))) / 100)
        points.append(
            {
                "x": round(x, 1),
                "y": round(y, 1),
                "score": f"{float(point['score']):.1f}",
                "label": _when(point.get("taken_at"))[:10],
                "colour": _LEVEL_COLOURS.get(str(point.get("level")), "#1f3a5f"),
            }
        )
    grid = [
        {"y": round(_PAD_T + inner_h * (1 - v / 100), 1), "label": str(v)} for v in (0, 20, 40, 60, 80, 100)
    ]
    return {
        "width": _CHART_W,
        "height": _CHART_H,
        "left": _PAD_L,
        "right": _CHART_W - _PAD_R,
        "bottom": _CHART_H - _PAD_B + 16,
        "points": points,
        "polyline": " ".join(f"{p['x']},{p['y']}" for p in points),
        "grid": grid,
        "first": points[0]["label"],
        "last": points[-1]["label"],
    }


def _incident(incident: Incident) -> dict[str, Any]:
    rows = []
    for entry in incident.timeline:
        evidence = entry.get("evidence", {})
        where = str(evidence.get("path", ""))
        if evidence.get("line"):
            where += f":{evidence['line']}"
        elif evidence.get("record"):
            where += f"#{evidence['record']}"
        rows.append(
            {
                "time": _when(entry.get("time")),
                "tactics": [TACTIC_NAMES.get(t, t) for t in entry.get("tactics", [])],
                "severity": entry.get("severity", "info"),
                "kind": entry.get("kind", ""),
                "title": entry.get("title", ""),
                "rule": entry.get("rule_id", ""),
                "where": where,
            }
        )
    return {
        "id": incident.id,
        "title": incident.title,
        "severity": incident.severity.value,
        "stage": TACTIC_NAMES.get(incident.stage or "", "—"),
        "status": incident.status.value.replace("_", " "),
        "assignee": incident.assignee or "",
        "assets": incident.assets,
        "sources": incident.sources,
        "first_seen": _when(incident.first_seen.isoformat() if incident.first_seen else None),
        "last_seen": _when(incident.last_seen.isoformat() if incident.last_seen else None),
        "tactics": [TACTIC_NAMES[t] for t in incident.tactics if t in TACTIC_NAMES],
        "timeline": rows,
    }


def _attack_view(incidents: list[Incident]) -> list[dict[str, Any]]:
    """The ATT&CK Enterprise tactics in kill-chain order, with what this report saw under each."""
    columns = []
    for tactic in TACTICS:
        rules: dict[str, int] = {}
        stage_of = [i.id for i in incidents if i.stage == tactic]
        for incident in incidents:
            for entry in incident.timeline:
                if tactic in entry.get("tactics", []):
                    rules[entry.get("title", "")] = rules.get(entry.get("title", ""), 0) + 1
        columns.append(
            {
                "name": TACTIC_NAMES[tactic],
                "count": sum(rules.values()),
                "entries": sorted(rules.items(), key=lambda kv: (-kv[1], kv[0])),
                "stage_of": stage_of,
            }
        )
    return columns


def situation_view(assessment: Assessment) -> dict[str, Any] | None:
    """None when the situation step did not run (the report then has no situation part)."""
    risk = assessment.risk
    if risk is None and not assessment.incidents:
        return None
    view: dict[str, Any] = {
        "incidents": [_incident(i) for i in assessment.incidents],
        "attack": _attack_view(assessment.incidents),
        "risk": None,
        "trend": None,
        "insurance": None,
    }
    if risk is not None:
        level = str(risk.get("level", "minimal"))
        view["risk"] = {
            "score": f"{float(risk.get('score', 0.0)):.1f}",
            "level": level,
            "colour": _LEVEL_COLOURS.get(level, "#1f3a5f"),
            "drivers": sorted((str(k), int(v)) for k, v in (risk.get("drivers") or {}).items()),
            "assets": [
                {
                    "name": a["name"],
                    "criticality": a["criticality"],
                    "score": f"{a['score']:.1f}",
                    "level": a["level"],
                    "colour": _LEVEL_COLOURS.get(a["level"], "#1f3a5f"),
                    "findings": a["findings"],
                }
                for a in risk.get("assets", [])
            ],
            "findings": [
                {
                    "id": f["id"],
                    "title": f["title"],
                    "asset": f["asset"],
                    "score": f"{f['score']:.1f}",
                    "base": f"{f['base']:.0f}",
                    "factors": _factors(f["factors"]),
                }
                for f in risk.get("findings", [])[:_TOP_FINDINGS]
            ],
            "total_findings": len(risk.get("findings", [])),
        }
        view["trend"] = trend_chart(list(risk.get("history") or []))
        insurance = risk.get("insurance")
        if isinstance(insurance, dict):
            view["insurance"] = {
                "currency": insurance["currency"],
                "total": f"{insurance['total_expected']:,.0f}",
                "categories": [
                    {
                        "name": c["category"].replace("-", " ").capitalize(),
                        "likelihood": f"{c['likelihood'] * 100:.0f}%",
                        "expected": f"{c['expected']:,.0f}",
                        "assets": c["assets"],
                        "driver": (
                            f"{c['drivers'][0]['id']} on {c['drivers'][0]['asset']}" if c["drivers"] else ""
                        ),
                    }
                    for c in insurance["categories"]
                ],
            }
    return view
