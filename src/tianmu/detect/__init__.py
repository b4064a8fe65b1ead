"""Intrusion detection: log readers and the Sigma rule engine.

Public surface (kept stable; other capabilities call it):

- `iter_events(path, fmt=None, field_map=None, stats=None)`: every `Event` of a log file or a folder of
  them, format judged from the content, compressed files read transparently; each Event's origin is
  `Location(path, line)` (`record` for EVTX).
- `ReadStats`: counts and located errors of a read.
- `FORMATS`, `detect_format`, `find_log_files`.

The engine (`tianmu.detect.engine.Detector`, `detect_paths`) and the rule base
(`tianmu.detect.kb.load_rule_base`, `SigmaKnowledgeBase`) are documented in docs/detect.md.
"""

from __future__ import annotations

from tianmu.detect._common import ReadStats
from tianmu.detect.sources import FORMATS, detect_format, find_log_files, iter_events

__all__ = ["FORMATS", "ReadStats", "detect_format", "find_log_files", "iter_events"]
