"""The `intel` engine of `tianmu assess`: earlier findings' hashes and peers, and the logs under the target.

It runs after the malware engine (ENGINES order), so the file hashes the scanner reported and the
network peers and hosts other engines put into `evidence["entities"]` are matched too. Logs are read
with the detection readers (`tianmu.detect.iter_events`), which give each event its fields and origin;
a log-looking file no reader understands is scanned as plain text. File names under the target are
swept with the filename indicators (LOKI's), when the base has any. Without an imported feed the engine
says so in the notes and finds nothing.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import func, select

from tianmu.core.errors import InputError
from tianmu.core.models import Asset, Finding
from tianmu.intel.engine import IntelMatcher
from tianmu.store.database import Store
from tianmu.store.schema import intel_indicators

if TYPE_CHECKING:
    from tianmu.assess import EngineContext

__all__ = ["assess_engine", "has_indicators", "match_logs"]

_MAX_TEXT_BYTES = 256 << 20
_SKIP_DIRS = frozenset({".git", ".hg", ".svn", "node_modules", ".venv", "venv", "__pycache__", ".tox"})
_LOG_SUFFIXES = frozenset({".log", ".jsonl", ".ndjson", ".txt", ".out", ".eve", ".audit"})


def has_indicators(store: Store) -> bool:
    with store.connect() as conn:
        return bool(
            conn.execute(
                select(func.count()).select_from(select(intel_indicators.c.id).limit(1).subquery())
            ).scalar()
        )


def _log_files(root: Path, all_files: bool) -> Iterator[Path]:
    try:
        from tianmu.readers import find_log_files
    except ImportError:
        find_log_files = None  # type: ignore[assignment]
    if find_log_files is not None:
        yield from find_log_files(root, all_files=all_files)
        return
    # The detection readers are absent: the same idea by name (`*.log`, `syslog`, `auth.log.1`...).
    if root.is_file():
        yield root
        return
    for path in sorted(root.rglob("*")):
        if any(part in _SKIP_DIRS for part in path.parts) or not path.is_file() or path.is_symlink():
            continue
        name = path.name.lower()
        if (
            all_files
            or path.suffix.lower() in _LOG_SUFFIXES
            or any(w in name for w in ("log", "messages", "syslog", "secure"))
        ):
            yield path


def _all_files(root: Path) -> Iterator[str]:
    """Every regular file under `root` (not following links, version-control and tool folders left out)."""
    if root.is_file():
        yield str(root.resolve())
        return
    for directory, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d not in _SKIP_DIRS]
        for name in files:
            yield str(Path(directory, name).resolve())


def _is_text(path: Path) -> bool:
    try:
        with path.open("rb") as handle:
            head = handle.read(8192)
        return b"\x00" not in head and path.stat().st_size <= _MAX_TEXT_BYTES
    except OSError:
        return False


def _relative(path: str, root: Path) -> str:
    try:
        base = root if root.is_dir() else root.parent
        return str(Path(path).resolve().relative_to(base.resolve()))
    except (ValueError, OSError):
        return path


def match_logs(
    matcher: IntelMatcher,
    root: Path,
    asset: Asset,
    *,
    all_files: bool = False,
    errors: list[str] | None = None,
    notes: list[str] | None = None,
    progress: Callable[[str], None] | None = None,
) -> list[Finding]:
    """Findings over the log files under `root` (every file with `all_files`), paths relative to it."""
    errors = errors if errors is not None else []
    findings: list[Finding] = []
    try:
        from tianmu.readers import ReadStats, iter_events
    except ImportError:
        iter_events = None  # type: ignore[assignment]
        if notes is not None:
            notes.append("intel: log readers unavailable, log files scanned as plain text")
    for file in _log_files(root, all_files):
        if progress is not None:
            progress(str(file))
        if iter_events is not None:
            stats = ReadStats()
            try:
                found = list(matcher.match_events(iter_events(file, stats=stats), asset))
            except InputError:
                found = []  # no log format the readers know: read as text below
            if stats.events:
                # A log with some broken records: those are worth reporting. A file that yields no
                # event at all is not a log (a lockfile, a source file) and is read as text below;
                # the readers' complaints about it would only be noise.
                errors.extend(stats.errors)
                findings.extend(found)
                continue
        if _is_text(file):
            try:
                with file.open(encoding="utf-8", errors="replace") as handle:
                    findings.extend(matcher.match_lines(handle, str(file), asset))
            except OSError as exc:
                errors.append(f"{file}: {exc.strerror or exc}")
    for finding in findings:
        _relocate(finding, root)
    return findings


def _relocate(finding: Finding, root: Path) -> None:
    evidence = finding.evidence
    relative = _relative(str(evidence.get("path", "")), root)
    evidence["path"] = relative
    indicator = evidence.get("indicator") or {}
    evidence["fingerprint_extra"] = f"{indicator.get('type')}:{indicator.get('value')}@{relative}"


def assess_engine(ctx: EngineContext) -> list[Finding]:
    if not has_indicators(ctx.store):
        ctx.notes.append(
            "intel: no threat-intelligence feed imported, IOC matching skipped (`tianmu kb import FEED`)"
        )
        return []
    matcher = IntelMatcher.open(ctx.store, ctx.home)
    findings = match_logs(
        matcher, ctx.root, ctx.asset, errors=ctx.errors, notes=ctx.notes, progress=ctx.progress
    )
    findings += matcher.match_findings(ctx.earlier, ctx.asset)
    if matcher.index.filenames:
        swept = list(matcher.match_paths(_all_files(ctx.root), ctx.asset))
        for finding in swept:
            _relocate(finding, ctx.root)
        findings += swept
    # A finding of another engine over a log may name an address the log scan matched in that file too:
    # one finding per fingerprint, the log's own (with its line and excerpt) first.
    unique: dict[str, Finding] = {}
    for finding in findings:
        unique.setdefault(finding.fingerprint, finding)
    return list(unique.values())
