"""Intrusion detection: log readers and the Sigma rule engine.

Public surface (kept stable; other capabilities call it):

- `iter_events(path, fmt=None, field_map=None, stats=None)`: every `Event` of a log file or directory,
  format detected from content, compressed files read transparently.
- `ReadStats`: counts and located errors of a read.
- `FORMATS`: the format names `--format` accepts.
- `detect_paths(...)` and `RuleSet`: run Sigma rules over logs (see `tianmu.detect.engine`).
"""

from __future__ import annotations

from tianmu.detect._common import ReadStats
from tianmu.detect.sources import FORMATS, detect_format, find_log_files, iter_events

__all__ = ["FORMATS", "ReadStats", "detect_format", "find_log_files", "iter_events"]
