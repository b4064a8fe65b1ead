"""The date of an OSV import's data, told honestly: which date it is, and how much of the data has one.

`kb status` shows it as the source's version. The newest `modified` of the records is the natural
answer, but some databases zero it: every `modified` in the Go vulnerability database's repository copy
is `0001-01-01T00:00:00Z` (vuln.go.dev fills real times in on publication), and so are most of its
`published` times. A sentinel like that is no date: dates before 1970, after tomorrow or unparsable
are left out. What is left decides, in this order:

1. the newest real `modified`: `2024-10-08 (newest modified)`;
2. else the newest real `published`, with the share of records that have none, and — when most have
   none — the date of the files themselves (zip members carry the date their producer wrote them):
   `2022-12-14 (newest published; 4039 of 4291 records undated; files dated 2026-08-21)`;
3. else the files' own date: `2026-08-21 (file date; no record is dated)`.
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tianmu.core.models import utcnow
from tianmu.vulns.osv import OSV_SUFFIXES, ParsedRecord

__all__ = ["data_date", "real_date"]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_FIELDS = ("modified", "published")


def real_date(text: object, now: datetime) -> datetime | None:
    """The moment an OSV time stands for, or None for a sentinel, a future or an unparsable one."""
    if not isinstance(text, str) or not text.strip():
        return None
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    if moment < _EPOCH or moment > now + timedelta(days=1):
        return None
    return moment


def data_date(records: Iterable[ParsedRecord], path: Path, now: datetime | None = None) -> str | None:
    """The import's data date and what it is (module docstring); None when nothing has a date."""
    now = now or utcnow()
    newest: dict[str, datetime | None] = dict.fromkeys(_FIELDS)
    dated = dict.fromkeys(_FIELDS, 0)
    total = 0
    for record in records:
        total += 1
        for name in _FIELDS:
            moment = real_date(record.advisory.get(name), now)
            if moment is None:
                continue
            dated[name] += 1
            best = newest[name]
            if best is None or moment > best:
                newest[name] = moment
    for name in _FIELDS:
        moment = newest[name]
        if moment is None:
            continue
        note = f"newest {name}"
        undated = total - dated[name]
        if undated:
            note += f"; {undated} of {total} records undated"
        if undated * 2 > total:
            files = _file_date(path, now)
            if files is not None and files.date() > moment.date():
                note += f"; files dated {files:%Y-%m-%d}"
        return f"{moment:%Y-%m-%d} ({note})"
    files = _file_date(path, now)
    return None if files is None else f"{files:%Y-%m-%d} (file date; no record is dated)"


def _file_date(path: Path, now: datetime) -> datetime | None:
    """The newest date of the record files: zip member dates, else modification times."""
    try:
        if path.is_file() and zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                stamps = [datetime(*info.date_time, tzinfo=UTC) for info in archive.infolist()]
        elif path.is_dir():
            stamps = [
                datetime.fromtimestamp(file.stat().st_mtime, UTC)
                for file in path.rglob("*")
                if file.suffix.lower() in OSV_SUFFIXES and file.is_file()
            ]
        else:
            stamps = [datetime.fromtimestamp(path.stat().st_mtime, UTC)]
    except (OSError, ValueError, zipfile.BadZipFile):
        # A date is a courtesy: an unreadable file or a member with an impossible date costs only it.
        return None
    plausible = [s for s in stamps if _EPOCH <= s <= now + timedelta(days=1)]
    return max(plausible, default=None)
