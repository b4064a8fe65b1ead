"""The intelligence engine of the road: indicators in the events of the one parse pass, in the findings
of the engines before it, and in the file names of the target.

- As an event engine, it sees every stream the road parses — logs, generic JSON/CSV data records, and
  the numbered lines of text files no log reader understands — and reports one finding per (indicator,
  file), the first sighting as evidence.
- As a batch engine, it runs after the file engines: the hashes the malware scanner reported, the
  network peers and hosts other engines put into `evidence["entities"]`, and (when the base has
  filename indicators, LOKI's) the names of the target's files.

Without an imported feed it says so in a note and finds nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from tianmu.core.engine import (
    EngineResult,
    EventStream,
    FileClass,
    InputKind,
    Inputs,
    JobContext,
    Requirements,
)
from tianmu.core.models import Event, Finding
from tianmu.intel.engine import Hits, IntelMatcher, LineScan
from tianmu.store.database import Store
from tianmu.store.schema import intel_indicators

__all__ = ["IntelEngine", "IntelSink", "has_indicators", "relocate"]

_SKIP_DIRS = frozenset({".git", ".hg", ".svn", "node_modules", ".venv", "venv", "__pycache__", ".tox"})
_NO_EVENTS = frozenset({"unknown", "unreadable"})


def has_indicators(store: Store) -> bool:
    with store.connect() as conn:
        return bool(
            conn.execute(
                select(func.count()).select_from(select(intel_indicators.c.id).limit(1).subquery())
            ).scalar()
        )


def relocate(finding: Finding, root: Path | None) -> None:
    """Evidence path relative to the target root, and the fingerprint's place with it."""
    evidence = finding.evidence
    relative = _relative(str(evidence.get("path", "")), root)
    evidence["path"] = relative
    indicator = evidence.get("indicator") or {}
    evidence["fingerprint_extra"] = f"{indicator.get('type')}:{indicator.get('value')}@{relative}"


def _relative(path: str, root: Path | None) -> str:
    if root is None:
        return path
    try:
        base = root if root.is_dir() else root.parent
        return str(Path(path).resolve().relative_to(base.resolve()))
    except (ValueError, OSError):
        return path


class IntelEngine:
    name = "intel"
    requirements = Requirements(
        knowledge=frozenset({"intel"}),
        events=True,
        files=frozenset({FileClass.ANY}),
        inputs=frozenset({InputKind.FINDINGS}),
    )

    def __init__(self, store: Store, home: Path | None) -> None:
        # Opened only when there is something to match: loading the index costs a query per kind.
        self.matcher = IntelMatcher.open(store, home) if has_indicators(store) else None

    def open(self, job: JobContext) -> IntelSink:
        return IntelSink(self.matcher, job)

    def combine(self, partials: Sequence[Any], job: JobContext) -> EngineResult:
        result = EngineResult()
        for findings, errors in partials:
            result.findings.extend(findings)
            result.errors.extend(errors)
        for finding in result.findings:
            relocate(finding, job.root)
        return result

    def analyse(self, inputs: Inputs, job: JobContext) -> EngineResult:
        matcher = self.matcher
        if matcher is None:
            note = (
                "intel: no threat-intelligence feed imported, IOC matching skipped (`tianmu kb import FEED`)"
            )
            return EngineResult(notes=[note])
        findings = list(matcher.match_findings(inputs.findings, job.asset))
        notes: list[str] = []
        if matcher.index.filenames:
            names = [
                str(Path(file.path).resolve())
                for file in inputs.files_of(FileClass.ANY)
                if not _SKIP_DIRS.intersection(file.relpath.split("/")[:-1])
            ]
            swept = list(matcher.match_paths(names, job.asset))
            for finding in swept:
                relocate(finding, job.root)
            findings += swept
            # Stored before import refused them (or by an older version): said, never matched by `re`.
            refused = list(matcher.path_patterns().refused.values())
            if refused:
                notes.append(
                    f"intel: {len(refused)} filename indicator(s) not matched: {'; '.join(refused[:3])}"
                )
        return EngineResult(findings=findings, notes=notes)


class IntelSink:
    """One pass of events (and text lines) through the matcher; findings one per (indicator, file)."""

    def __init__(self, matcher: IntelMatcher | None, job: JobContext) -> None:
        self.matcher = matcher
        self.job = job
        self.findings: list[Finding] = []
        self.errors: list[str] = []
        self._hits: Hits | None = None
        self._lines: LineScan | None = None

    def begin(self, stream: EventStream) -> bool:
        if self.matcher is None or stream.format in _NO_EVENTS:
            return False
        if stream.format == "text":
            self._lines, self._hits = self.matcher.line_scan(stream.name), None
        else:
            self._lines, self._hits = None, Hits()
        return True

    def add(self, event: Event) -> None:
        if self._lines is not None:
            self._lines.add(event.raw)
        elif self._hits is not None and self.matcher is not None:
            self.matcher.add_event(self._hits, event)

    def end(self, stream: EventStream, events: int, errors: Sequence[str]) -> None:
        if self._lines is not None:
            self.findings.extend(self._lines.findings(self.job.asset))
        elif self._hits is not None:
            self.findings.extend(self._hits.findings(self.job.asset))
            # A stream of which nothing could be read is no log (the road reads it as text next);
            # its reader's complaints would only be noise.
            if events:
                self.errors.extend(errors)
        self._hits = self._lines = None

    def partial(self) -> tuple[list[Finding], list[str]]:
        part = (self.findings, self.errors)
        self.findings, self.errors = [], []
        return part
