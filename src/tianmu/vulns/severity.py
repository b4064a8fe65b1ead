"""How bad an advisory is: CVSS, the GHSA word, and — for the unscored ones — KEV and EPSS.

An advisory that publishes no severity (the Go database, most PYSEC records) is *unscored*. Its finding
still needs a severity to be ranked and compared with `--fail-on`; that severity comes from what is
known about its exploitation (see `tianmu.vulns.engine`, point 7, and docs/risk.md), never from a
guess at its impact, and the finding says so (`data["unscored"]`).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import Any

from cvss import CVSS2, CVSS3, CVSS4

from tianmu.core.models import Severity

__all__ = [
    "EPSS_HIGH",
    "EPSS_MEDIUM",
    "UNSCORED_DEFAULT",
    "advisory_severity",
    "cvss_severity",
    "epss_severity",
    "kev_severity",
]

UNSCORED_DEFAULT = Severity.MEDIUM
"""The rank of an unscored advisory with neither KEV nor EPSS: unknown impact is not ranked low."""
EPSS_HIGH = 0.5
"""EPSS probability from which an unscored advisory ranks HIGH."""
EPSS_MEDIUM = 0.1
"""EPSS probability from which an unscored advisory ranks MEDIUM (below it: LOW)."""


@functools.lru_cache(maxsize=16384)
def _cvss_score(kind: str, vector: str) -> float | None:
    try:
        if kind == "CVSS_V4":
            return float(CVSS4(vector).base_score)
        if kind == "CVSS_V3":
            return float(CVSS3(vector).scores()[0])
        if kind == "CVSS_V2":
            return float(CVSS2(vector).scores()[0])
    except Exception:  # the cvss library raises its own error types per version; any means "unusable"
        return None
    return None


def cvss_severity(entries: Iterable[Any]) -> tuple[float, str] | None:
    """(base score, vector) from OSV `severity` entries, preferring CVSS v3, then v4, then v2."""
    by_kind: dict[str, str] = {}
    for entry in entries or ():
        if isinstance(entry, dict) and entry.get("type") and entry.get("score"):
            by_kind.setdefault(str(entry["type"]), str(entry["score"]))
    for kind in ("CVSS_V3", "CVSS_V4", "CVSS_V2"):
        vector = by_kind.get(kind)
        if vector:
            score = _cvss_score(kind, vector)
            if score is not None:
                return score, vector
    return None


def advisory_severity(advisory: Any, package_severity: Any) -> tuple[Severity, float | None, str | None, str]:
    """(severity, score, vector, source) for one advisory."""
    scored = cvss_severity(package_severity or []) or cvss_severity(advisory.severity or [])
    if scored is not None:
        return Severity.from_cvss_score(scored[0]), scored[0], scored[1], "cvss"
    text = (
        (advisory.database_specific or {}).get("severity")
        if isinstance(advisory.database_specific, dict)
        else None
    )
    if isinstance(text, str) and text.strip():
        try:
            return Severity.parse(text), None, None, "ghsa"
        except ValueError:
            pass
    return UNSCORED_DEFAULT, None, None, "unknown"


def epss_severity(probability: float) -> Severity:
    """The rank of an unscored advisory from its EPSS probability (module docstring, point 7)."""
    if probability >= EPSS_HIGH:
        return Severity.HIGH
    if probability >= EPSS_MEDIUM:
        return Severity.MEDIUM
    return Severity.LOW


def kev_severity(ransomware: object) -> Severity:
    """An unscored advisory listed in KEV: HIGH, CRITICAL when KEV knows of ransomware use."""
    return Severity.CRITICAL if str(ransomware or "").strip().lower() == "known" else Severity.HIGH
