"""CISA KEV and FIRST EPSS: reading the published files and syncing their tables.

KEV comes as JSON (`known_exploited_vulnerabilities.json`: `catalogVersion`, `vulnerabilities`) or as
the CSV with the same columns; EPSS as `epss_scores-YYYY-MM-DD.csv[.gz]` whose first line is a
`#model_version:...,score_date:...` comment followed by `cve,epss,percentile` rows.

Both are whole-catalogue snapshots: a sync compares the new rows with the table and writes only the
difference (rows added, changed, gone), so `added/updated/removed` in the report mean something and a
daily EPSS refresh does not rewrite rows whose score did not move. Rows gone from the file are removed
only when the import is authoritative (`remove=True`); a merge keeps them.

Hostile input: an EPSS score or percentile that is not a finite number in [0, 1] (`NaN`, `inf`, `2`)
and a line over `max_line_bytes` are reported with file and line and skipped; a KEV JSON over
`max_document_bytes` or nested deeper than `max_depth` is refused with the reason.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import math
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Table, select

from tianmu.core.errors import KnowledgeBaseError, ParseError
from tianmu.store.bulk import delete_in, insert_rows
from tianmu.store.knowledge import ImportLimits, LimitError, load_json, read_limited
from tianmu.store.schema import epss_scores, kev_entries

__all__ = ["FeedData", "read_epss", "read_kev_csv", "read_kev_json", "sync_table"]

_KEV_FIELDS = {
    "cve_id": "cveID",
    "vendor": "vendorProject",
    "product": "product",
    "name": "vulnerabilityName",
    "date_added": "dateAdded",
    "due_date": "dueDate",
    "ransomware": "knownRansomwareCampaignUse",
    "required_action": "requiredAction",
    "notes": "notes",
}


class FeedData:
    """Rows read from a feed file, its version label, and the per-line errors met on the way."""

    def __init__(self, rows: list[dict[str, Any]], version: str | None, errors: list[str]) -> None:
        self.rows = rows
        self.version = version
        self.errors = errors


def _kev_row(item: dict[str, Any]) -> dict[str, Any]:
    row = {
        column: (str(item[key]) if item.get(key) not in (None, "") else None)
        for column, key in _KEV_FIELDS.items()
    }
    row["cve_id"] = str(item["cveID"]).strip().upper()
    return row


def read_kev_json(path: Path, limits: ImportLimits | None = None) -> FeedData:
    limits = limits or ImportLimits()
    try:
        data = load_json(read_limited(path, limits.max_document_bytes, "max_document_bytes"), limits)
    except LimitError as exc:
        raise KnowledgeBaseError(f"{path}: refused: {exc}") from exc
    except json.JSONDecodeError as exc:
        raise KnowledgeBaseError(str(ParseError(f"invalid JSON: {exc.msg}", str(path), exc.lineno))) from exc
    items = data.get("vulnerabilities") if isinstance(data, dict) else None
    if not isinstance(items, list):
        raise KnowledgeBaseError(f"{path}: not a KEV catalogue (no `vulnerabilities` list)")
    rows: list[dict[str, Any]] = []
    errors: list[str] = []
    for index, item in enumerate(items):
        if not isinstance(item, dict) or not item.get("cveID"):
            errors.append(f"{path.name}: vulnerabilities[{index}]: entry without a cveID")
            continue
        rows.append(_kev_row(item))
    version = data.get("catalogVersion")
    return FeedData(rows, str(version) if version else None, errors)


def read_kev_csv(path: Path, limits: ImportLimits | None = None) -> FeedData:
    rows: list[dict[str, Any]] = []
    errors: list[str] = []
    latest = ""
    # A cell over the csv module's limit (128 KiB, its global: not changed here) is a csv.Error,
    # reported with its line by _csv_rows.
    with path.open(encoding="utf-8-sig", errors="replace", newline="") as handle:
        reader = csv.DictReader(handle)
        if not reader.fieldnames or "cveID" not in reader.fieldnames:
            raise KnowledgeBaseError(f"{path}: not a KEV CSV (no cveID column)")
        for item in _csv_rows(reader, path, errors):
            if not item.get("cveID"):
                errors.append(str(ParseError("row without a cveID", path.name, reader.line_num)))
                continue
            rows.append(_kev_row(item))
            latest = max(latest, item.get("dateAdded") or "")
    # The CSV has no catalogue version; the newest dateAdded is the closest thing (and matches the JSON's).
    return FeedData(rows, latest.replace("-", ".") or None, errors)


def _csv_rows(reader: csv.DictReader[str], path: Path, errors: list[str]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    while True:
        try:
            rows.append(next(reader))
        except StopIteration:
            return rows
        except csv.Error as exc:
            errors.append(str(ParseError(f"unreadable row: {exc}", path.name, reader.line_num)))


def _bounded_lines(handle: io.TextIOBase, limit: int, path: Path, errors: list[str]) -> Any:
    """(number, line) of each line; a line over `limit` characters is reported and skipped unread."""
    number = 0
    while True:
        line = handle.readline(limit + 1)
        if not line:
            return
        number += 1
        if len(line) > limit and not line.endswith("\n"):
            errors.append(
                str(
                    ParseError(
                        f"line over {limit} characters skipped (limit max_line_bytes)", path.name, number
                    )
                )
            )
            while line and not line.endswith("\n"):  # drop the rest of it in bounded pieces
                line = handle.readline(limit + 1)
            continue
        yield number, line


def _fraction(text: str) -> float:
    value = float(text)
    if not math.isfinite(value) or not 0.0 <= value <= 1.0:
        raise ValueError(f"{text.strip()!r} is not a number between 0 and 1")
    return value


def _open_text(path: Path) -> io.TextIOBase:
    with path.open("rb") as probe:
        magic = probe.read(2)
    if magic == b"\x1f\x8b":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", newline="")
    return io.TextIOWrapper(path.open("rb"), encoding="utf-8", newline="")


def read_epss(path: Path, limits: ImportLimits | None = None) -> FeedData:
    limit = (limits or ImportLimits()).max_line_bytes
    rows: list[dict[str, Any]] = []
    errors: list[str] = []
    meta: dict[str, str] = {}
    try:
        with _open_text(path) as handle:
            for number, line in _bounded_lines(handle, limit, path, errors):
                line = line.strip()
                if not line:
                    continue
                if line.startswith("#"):
                    for part in line.lstrip("#").split(","):
                        key, _sep, value = part.partition(":")
                        meta[key.strip()] = value.strip()
                    continue
                fields = line.split(",")
                if fields[0].lower() == "cve":
                    continue  # the header
                try:
                    cve, score, percentile = (
                        fields[0].strip().upper(),
                        _fraction(fields[1]),
                        _fraction(fields[2]),
                    )
                except IndexError:
                    errors.append(
                        str(ParseError(f"not a `cve,epss,percentile` row: {line[:80]!r}", path.name, number))
                    )
                    continue
                except ValueError as exc:
                    errors.append(str(ParseError(f"bad EPSS row {line[:80]!r}: {exc}", path.name, number)))
                    continue
                if not cve or len(cve) > 64:
                    errors.append(str(ParseError(f"not a CVE id: {cve[:80]!r}", path.name, number)))
                    continue
                rows.append({"cve_id": cve, "score": score, "percentile": percentile, "score_date": None})
    except (OSError, EOFError, UnicodeDecodeError, zlib.error) as exc:
        # A corrupt gzip stream mid-file: keep what was read before it, and say where it stopped.
        if not rows:
            raise KnowledgeBaseError(f"{path}: cannot read EPSS scores: {exc}") from exc
        errors.append(f"{path.name}: reading stopped after {len(rows)} rows: {exc}")
    score_date = meta.get("score_date")
    for row in rows:
        row["score_date"] = score_date
    model = meta.get("model_version")
    version = ",".join(filter(None, [model, score_date])) or None
    return FeedData(rows, version, errors)


def sync_table(
    conn: Connection, table: Table, rows: Sequence[dict[str, Any]], *, remove: bool = True
) -> tuple[int, int, int]:
    """Make `table` hold `rows` (keyed by `cve_id`); returns (added, updated, removed).

    `remove`: rows missing from `rows` are deleted (an authoritative snapshot); otherwise kept (a merge).
    """
    key = table.c.cve_id
    columns = [c.name for c in table.columns]
    wanted = {row["cve_id"]: tuple(row.get(c) for c in columns) for row in rows}
    existing = {r[0]: tuple(r) for r in conn.execute(select(*[table.c[c] for c in columns])).all()}
    added = [k for k in wanted if k not in existing]
    changed = [k for k in wanted if k in existing and existing[k] != wanted[k]]
    removed = [k for k in existing if k not in wanted] if remove else []
    delete_in(conn, key, changed + removed)
    by_key = {row["cve_id"]: row for row in rows}
    insert_rows(conn, table, [{c: by_key[k].get(c) for c in columns} for k in added + changed])
    return len(added), len(changed), len(removed)


KEV_TABLE = kev_entries
EPSS_TABLE = epss_scores
