"""Readers of line-oriented feeds: plain IOC lists, CSV with a column map, maltrail trails, LOKI IOC files.

| input                                   | kind           | source name                        |
| --------------------------------------- | -------------- | ---------------------------------- |
| one indicator per line (`#` comments)   | list           | `list:<file stem>` (or as given)    |
| CSV with a header and a column map      | csv            | `csv:<file stem>` (or as given)     |
| maltrail `trails/static` folder         | maltrail       | `maltrail:<malware|malicious|...>` |
| signature-base `iocs/` (LOKI) files     | signature-base | `signature-base:<c2|hash|filename>`|

A line that is not an indicator is reported as `path:line: message`; the other lines are kept. A line
longer than `MAX_LINE` characters (no indicator is) is reported and skipped without being held whole,
and so is a CSV row the `csv` module cannot read.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

from tianmu.intel.models import FeedResult, IntelEntry
from tianmu.intel.normalize import NormalizeError, classify, normalize

__all__ = [
    "MALTRAIL_CONFIDENCE",
    "is_maltrail",
    "is_signature_base",
    "read_csv",
    "read_maltrail",
    "read_plain",
    "read_signature_base",
]

MALTRAIL_CONFIDENCE = {"malware": 80, "malicious": 70, "suspicious": 40, "mass_scanner": 30}
"""Default confidence per maltrail part: named malware infrastructure is surer than a scanner list."""
SIGNATURE_BASE_CONFIDENCE = 75
_MALTRAIL_MARK = "maltrail developers"
_REGEX_CHARS = frozenset("\\[]*(){}^$|+")
_NONE: list[str] = []
_INLINE_COMMENT = re.compile(r"\s+#")
_BRACKETED_IP = re.compile(r"^\[[0-9a-fA-F:.]+\](:\d+)?$")


MAX_LINE = 1 << 20
"""Longest line read from a list (characters); an indicator is at most a few kilobytes."""


def _lines(path: Path, errors: list[str] | None = None) -> Iterator[tuple[int, str]]:
    with path.open(encoding="utf-8", errors="replace") as handle:
        number = 0
        while line := handle.readline(MAX_LINE + 1):
            number += 1
            if len(line) > MAX_LINE and not line.endswith("\n"):
                if errors is not None:
                    errors.append(f"{path}:{number}: line over {MAX_LINE} characters skipped")
                while line and not line.endswith("\n"):  # the rest of it, in bounded pieces
                    line = handle.readline(MAX_LINE + 1)
                continue
            yield number, line.strip()


def _entry(kind: str | None, text: str, confidence: int, origin: str) -> IntelEntry:
    itype, value = normalize(kind, text) if kind else classify(text)
    return IntelEntry(type=itype, value=value, confidence=confidence, origin=origin)


def read_plain(
    path: Path, source: str, confidence: int = 50, *, kind: str | None = None, exact: bool = False
) -> FeedResult:
    """One indicator per line; text after the first blank is its description; `#` starts a comment."""
    result = FeedResult(source=source, kind="list")
    for number, line in _lines(path, result.errors):
        if not line or line.startswith(("#", "//", ";")):
            continue
        value, _, rest = line.partition(" ")
        try:
            entry = _entry(kind, value, confidence, f"{path}:{number}")
        except NormalizeError as exc:
            result.errors.append(f"{path}:{number}: {exc}")
            continue
        entry.exact = exact
        entry.description = rest.strip().lstrip("#").strip()
        result.entries.append(entry)
    return result


CSV_FIELDS = (
    "value",
    "type",
    "confidence",
    "valid_from",
    "valid_until",
    "description",
    "labels",
    "malware",
    "actor",
    "technique",
    "exact",
)


def _parse_time(text: str) -> datetime:
    return datetime.fromisoformat(text.strip().replace("Z", "+00:00"))


def read_csv(
    path: Path,
    source: str,
    confidence: int = 50,
    columns: dict[str, str] | None = None,
    *,
    kind: str | None = None,
) -> FeedResult:
    """CSV with a header row. `columns` maps our fields (CSV_FIELDS) to header names; by default each
    field is read from the column of the same name. Lists (labels, malware...) are `|`-separated.
    """
    mapping = {name: name for name in CSV_FIELDS} | (columns or {})
    unknown = set(mapping) - set(CSV_FIELDS)
    if unknown:
        raise NormalizeError(f"unknown column-map field(s): {', '.join(sorted(unknown))}")
    result = FeedResult(source=source, kind="csv")
    # A cell over the csv module's limit (128 KiB) is a csv.Error, reported below with its line.
    with path.open(encoding="utf-8-sig", errors="replace", newline="") as handle:
        reader = csv.DictReader(handle)
        try:
            header = reader.fieldnames or []
        except csv.Error as exc:
            result.errors.append(f"{path}:1: unreadable header: {exc}")
            return result
        if mapping["value"] not in header:
            result.errors.append(f"{path}:1: no column {mapping['value']!r} for the indicator value")
            return result
        for row in _rows(reader, path, result.errors):
            where = f"{path}:{reader.line_num}"

            def cell(name: str, row: dict[str, str | None] = row) -> str:
                return (row.get(mapping[name]) or "").strip()

            try:
                value = cell("value")
                if not value:
                    raise NormalizeError("empty indicator value")
                row_kind = cell("type").lower() or kind
                entry = _entry(row_kind, value, confidence, where)
                if cell("confidence"):
                    entry.confidence = max(0, min(100, int(float(cell("confidence")))))
                if cell("valid_from"):
                    entry.valid_from = _parse_time(cell("valid_from"))
                if cell("valid_until"):
                    entry.valid_until = _parse_time(cell("valid_until"))
            except ValueError as exc:
                result.errors.append(f"{where}: {exc}")
                continue
            entry.description = cell("description")
            entry.exact = cell("exact").lower() in ("1", "true", "yes", "exact")
            entry.labels = [v.strip() for v in cell("labels").split("|") if v.strip()]
            entry.malware = [v.strip() for v in cell("malware").split("|") if v.strip()]
            entry.actors = [v.strip() for v in cell("actor").split("|") if v.strip()]
            entry.techniques = [v.strip().upper() for v in cell("technique").split("|") if v.strip()]
            result.entries.append(entry)
    return result


def _rows(reader: csv.DictReader[str], path: Path, errors: list[str]) -> Iterator[dict[str, str | None]]:
    while True:
        try:
            yield next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            errors.append(f"{path}:{reader.line_num}: unreadable row: {exc}")


# --- maltrail -----------------------------------------------------------------------------------------


def is_maltrail(path: Path) -> bool:
    """A maltrail `trails/static` folder (or one of its parts), or one trail file, by its header."""
    if path.is_dir():
        return any((path / part).is_dir() for part in ("malware", "malicious", "suspicious")) or (
            any(p.suffix == ".txt" for p in path.iterdir()) and _has_maltrail_header(next(path.glob("*.txt")))
        )
    return path.suffix == ".txt" and _has_maltrail_header(path)


def _has_maltrail_header(path: Path) -> bool:
    try:
        with path.open(encoding="utf-8", errors="replace") as handle:
            return _MALTRAIL_MARK in handle.read(400).lower()
    except OSError:
        return False


def _maltrail_part(path: Path) -> str:
    for part in ("malware", "malicious", "suspicious"):
        if part in path.parts:
            return part
    return "mass_scanner" if path.stem.startswith("mass_scanner") else "suspicious"


def read_maltrail(path: Path) -> list[FeedResult]:
    """Every trail file under `path`, one result per maltrail part (malware, malicious...).

    The file name is the threat maltrail reports (for `malware/` the malware family); `# Aliases:` lines
    add its other names, `# Reference:` lines become references of the trails below them.
    """
    files = sorted(path.rglob("*.txt")) if path.is_dir() else [path]
    results: dict[str, FeedResult] = {}
    for file in files:
        if file.name.lower() in ("license.txt", "readme.txt"):
            continue
        part = _maltrail_part(file)
        result = results.setdefault(part, FeedResult(source=f"maltrail:{part}", kind="maltrail"))
        _read_trail_file(file, part, result)
    return list(results.values())


def _read_trail_file(file: Path, part: str, result: FeedResult) -> None:
    name = file.stem
    confidence = MALTRAIL_CONFIDENCE[part]
    names = [name]
    labels = ["malware"] if part == "malware" else [part.replace("_", "-"), name]
    references: list[str] = []
    for number, line in _lines(file, result.errors):
        if not line:
            continue
        if line.startswith("#"):
            comment = line.lstrip("#").strip()
            if comment.lower().startswith("aliases:"):
                aliases = [a.strip() for a in comment.split(":", 1)[1].split(",")]
                names = [name] + [a for a in aliases if a and a.lower() != name.lower()]
            elif comment.lower().startswith("reference:"):
                references = [comment.split(":", 1)[1].strip()]
            continue
        trail = _INLINE_COMMENT.split(line, 1)[0].strip()
        if trail.startswith("/") or (
            any(c in trail for c in _REGEX_CHARS) and not _BRACKETED_IP.match(trail)
        ):
            # Path-only trails (`/pay_or_leak/`) and regular-expression trails are maltrail's own
            # HTTP-request heuristics, not indicators of a host, address or URL.
            result.skipped += 1
            continue
        try:
            entry = _entry(None, trail, confidence, f"{file}:{number}")
        except NormalizeError as exc:
            result.errors.append(f"{file}:{number}: {exc}")
            continue
        # One list per file, shared by its entries: `IntelEntry.merge` never mutates a list in place.
        entry.malware = names if part == "malware" else _NONE
        entry.labels = labels
        entry.references = references
        result.entries.append(entry)


# --- signature-base (LOKI) ----------------------------------------------------------------------------

_SIGBASE_KINDS = {"c2-iocs": "c2", "hash-iocs": "hash", "filename-iocs": "filename", "keywords": "keywords"}


def is_signature_base(path: Path) -> bool:
    if path.is_dir():
        return (path / "c2-iocs.txt").is_file() or (path / "hash-iocs.txt").is_file()
    return any(path.name.startswith(prefix) for prefix in ("c2-iocs", "hash-iocs"))


_SCORE = re.compile(r"^\d{1,3}$")


def read_signature_base(path: Path) -> list[FeedResult]:
    """LOKI IOC files: `c2-iocs*.txt` (`value[;score]`) and `hash-iocs*.txt` (`hash;[score;]comment`).

    LOKI chooses the list type from the file name, so do we. `#` lines are comments; the last one above
    an entry names the campaign or report it comes from and becomes its description. Filename regexes
    (`filename-iocs*.txt`) become `filename` indicators, their false-positive regex an `exclude:` label;
    keywords are counted as skipped.
    """
    files = sorted(path.glob("*.txt")) if path.is_dir() else [path]
    results: list[FeedResult] = []
    for file in files:
        kind = next((k for prefix, k in _SIGBASE_KINDS.items() if file.name.startswith(prefix)), None)
        if kind is None:
            continue
        result = FeedResult(source=f"signature-base:{kind}", kind="signature-base")
        if kind == "keywords":
            result.skipped = sum(1 for _, line in _lines(file) if line and not line.startswith("#"))
        elif kind == "filename":
            _read_filename_iocs(file, result)
        else:
            _read_loki_file(file, kind, result)
        results.append(result)
    return results


def _read_loki_file(file: Path, kind: str, result: FeedResult) -> None:
    heading = ""
    for number, line in _lines(file, result.errors):
        if not line:
            continue
        if line.startswith("#"):
            heading = line.lstrip("#").strip()
            continue
        fields = line.split(";")
        value = fields[0].strip()
        confidence = SIGNATURE_BASE_CONFIDENCE
        comment = heading
        rest = fields[1:]
        if rest and _SCORE.match(rest[0].strip()):
            confidence = min(100, int(rest[0]))
            rest = rest[1:]
        if rest and kind == "hash":
            # Comments may themselves contain `;`: everything after the score is the comment.
            comment = ";".join(rest).strip()
        try:
            entry = _entry("hash" if kind == "hash" else None, value, confidence, f"{file}:{number}")
        except NormalizeError as exc:
            result.errors.append(f"{file}:{number}: {exc}")
            continue
        entry.description = comment
        entry.labels = ["c2"] if kind == "c2" else []
        result.entries.append(entry)


def _read_filename_iocs(file: Path, result: FeedResult) -> None:
    """`regex;score[;false-positive regex]`: LOKI matches the regex against the full file path."""
    heading = ""
    for number, line in _lines(file, result.errors):
        if not line:
            continue
        if line.startswith("#"):
            heading = line.lstrip("#").strip()
            continue
        fields = line.split(";")
        confidence = SIGNATURE_BASE_CONFIDENCE
        if len(fields) > 1 and _SCORE.match(fields[1].strip()):
            confidence = min(100, int(fields[1]))
        try:
            entry = _entry("filename", fields[0], confidence, f"{file}:{number}")
        except NormalizeError as exc:
            result.errors.append(f"{file}:{number}: {exc}")
            continue
        exclude = ";".join(fields[2:]).strip()
        if exclude:
            try:
                normalize("filename", exclude)
            except NormalizeError as exc:
                # The indicator stands without its false-positive filter: a hit then is reported, never
                # hidden by an expression that cannot be evaluated safely.
                result.errors.append(f"{file}:{number}: false-positive expression dropped: {exc}")
                exclude = ""
        entry.description = heading
        entry.labels = ["filename"] + ([f"exclude:{exclude}"] if exclude else [])
        result.entries.append(entry)
