"""Vulnerability knowledge base (OSV, CISA KEV, FIRST EPSS) and the OSV version-range matcher.

- `kb`: import (`import_path`), online update (`update`), status (`kb_status`).
- `engine`: `VulnMatcher(store).match(components, asset)` → findings; `sort_findings` ranking.
- `versions`: per-ecosystem version ordering; `ranges`: the OSV evaluation algorithm;
  `osv`: record parsing and name normalisation; `feeds`: KEV and EPSS files.
"""

from tianmu.vulns.engine import VulnMatcher, sort_findings
from tianmu.vulns.kb import ImportReport, KbStatus, import_path, kb_status, update
from tianmu.vulns.osv import normalize_name

__all__ = [
    "ImportReport",
    "KbStatus",
    "VulnMatcher",
    "import_path",
    "kb_status",
    "normalize_name",
    "sort_findings",
    "update",
]
