"""The test oracle: pySigma's SQLite backend over the same events loaded into an SQLite table.

This is the approach Zircolite takes: flatten each record into a row of a `logs` table (one TEXT
COLLATE NOCASE column per field), convert each Sigma rule to SQL with pySigma's SQLite backend (with
the same log-source conditions Tianmu uses, from `tianmu.detect.logsource.pipeline_for_oracle`), and
run each query. The benchmark uses it too, to time the SQL approach on the same input.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from sigma.backends.sqlite import sqliteBackend
from sigma.collection import SigmaCollection
from sigma.exceptions import SigmaError
from sigma.rule import SigmaRule

from tianmu.core.models import Event
from tianmu.detect.logsource import pipeline_for_oracle

FULLTEXT = "tianmu_fulltext"
_ORIGIN = ("tianmu_path", "tianmu_record")


@dataclass
class OracleRun:
    hits: dict[str, set[tuple[str, int]]] = field(default_factory=dict)
    """rule id → {(path, record)}"""
    unconverted: dict[str, str] = field(default_factory=dict)
    """rule id → why the backend could not convert it."""
    failed: dict[str, str] = field(default_factory=dict)
    """rule id → SQL error."""


def _regexp(pattern: str, value: object) -> bool:
    return value is not None and re.search(pattern, str(value)) is not None


def load_table(events: Iterable[Event]) -> sqlite3.Connection:
    rows = [event for event in events]
    columns: dict[str, str] = {}
    for event in rows:
        for name in event.fields:
            columns.setdefault(name.lower(), name)
    conn = sqlite3.connect(":memory:")
    conn.create_function("regexp", 2, _regexp, deterministic=True)
    names = list(columns.values())
    defs = ", ".join(f'"{name}" TEXT COLLATE NOCASE' for name in [*_ORIGIN, FULLTEXT, *names])
    conn.execute(f"CREATE TABLE logs ({defs})")
    placeholders = ", ".join("?" for _ in range(len(names) + 3))
    data = []
    for event in rows:
        lowered = {key.lower(): value for key, value in event.fields.items()}
        values = [None if lowered.get(n.lower()) is None else str(lowered[n.lower()]) for n in names]
        fulltext = "\n".join(str(v) for v in event.fields.values())
        data.append([event.origin.path, event.origin.line, fulltext, *values])
    conn.executemany(f"INSERT INTO logs VALUES ({placeholders})", data)
    return conn


def parse_rules(files: Sequence[Path]) -> list[SigmaRule]:
    rules: list[SigmaRule] = []
    for file in files:
        docs = [d for d in yaml.load_all(file.read_bytes(), Loader=yaml.CSafeLoader) if d]
        collection = SigmaCollection.from_dicts(docs, collect_errors=True)
        rules.extend(r for r in collection.rules if isinstance(r, SigmaRule) and not r.errors)
    return rules


def run_oracle(conn: sqlite3.Connection, rules: Sequence[SigmaRule]) -> OracleRun:
    backend = sqliteBackend(processing_pipeline=pipeline_for_oracle(), fulltext_field=FULLTEXT)
    run = OracleRun()
    for rule in rules:
        rule_id = str(rule.id)
        try:
            queries = backend.convert_rule(rule)
        except (SigmaError, NotImplementedError, ValueError, TypeError, AttributeError) as exc:
            run.unconverted[rule_id] = f"{exc.__class__.__name__}: {exc}"
            continue
        found: set[tuple[str, int]] = set()
        for query in queries:
            sql = query.replace("SELECT * FROM", f"SELECT {_ORIGIN[0]}, {_ORIGIN[1]} FROM", 1)
            for _attempt in range(50):
                try:
                    found.update((path, int(record)) for path, record in conn.execute(sql))
                    break
                except sqlite3.OperationalError as exc:
                    missing = re.match(r"no such column: (.+)", str(exc))
                    if not missing:
                        run.failed[rule_id] = str(exc)
                        break
                    # A field no event has: a NULL column, as Zircolite's table would hold.
                    name = missing.group(1).strip('"`')
                    conn.execute(f'ALTER TABLE logs ADD COLUMN "{name}" TEXT COLLATE NOCASE')
        run.hits[rule_id] = found
    return run
