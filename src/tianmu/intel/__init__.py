"""Threat intelligence: feeds (STIX 2.1, TAXII 2.1, MISP, lists, maltrail, LOKI), IOC matching, ATT&CK.

Public surface (other capabilities call it):

- `IntelKnowledgeBase` (`tianmu kb import|update|status`) and `import_feed(store, path, ...)`.
- `IntelMatcher.open(store, home)`: `match_events(events, asset)`, `match_lines`, `match_findings`,
  `match_values`, `scan_text`, `lookup(value)`.
- `technique_info(store, ids)`: ATT&CK technique ids → name and tactics, for reports and correlation.
- `assess_engine(ctx)`: the `intel` engine of `tianmu assess`.
"""

from __future__ import annotations

from tianmu.intel.attack import tactic_order, technique_info
from tianmu.intel.engine import IntelMatcher, Sighting
from tianmu.intel.kb import IntelKnowledgeBase, import_feed
from tianmu.intel.models import IntelRecord

__all__ = [
    "IntelKnowledgeBase",
    "IntelMatcher",
    "IntelRecord",
    "Sighting",
    "import_feed",
    "tactic_order",
    "technique_info",
]
