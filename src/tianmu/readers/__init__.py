"""Log readers shared by every event engine: one parse of a log into events.

Public surface:

- `iter_events(path, fmt=None, field_map=None, stats=None)`: every `Event` of a log file or a folder of
  them, format judged from the content, compressed files read transparently; each Event's origin is
  `Location(path, line)` (`record` for EVTX).
- `ReadStats`: counts and located errors of a read.
- `ReadLimits`: the bounds of a read (line size, decompressed size and ratio, EVTX spool), passed down
  as `limits=`; damage or a limit stops one stream with `path: read stopped at line N: reason`.
- `iter_file_events(path, stats, ..., strict=...)`: the events of one file (the road's parse pass).
- `FORMATS`, `detect_format`, `find_log_files`.

Readers live below the capabilities: the road parses each log once and every event engine (detection,
intelligence, and those to come) sees the same events. Formats are documented in docs/detect.md.
"""

from __future__ import annotations

from tianmu.readers._common import ReadStats
from tianmu.readers.limits import ReadLimits
from tianmu.readers.sources import FORMATS, detect_format, find_log_files, iter_events, iter_file_events

__all__ = [
    "FORMATS",
    "ReadLimits",
    "ReadStats",
    "detect_format",
    "find_log_files",
    "iter_events",
    "iter_file_events",
]
