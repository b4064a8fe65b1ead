"""The same evidence record is one finding whichever directory above it was assessed.

A finding about a record of a file — a log line that a rule matched, an indicator seen in a line, a
sample — used to be keyed (`Finding.fingerprint`) on the assessed root's asset and the file's path
relative to that root. Assessing `/x/logs` after `/x` then stored every log line of `/x/logs` again,
under a second asset. The rule now: such a finding is keyed on the file's absolute place on the host
(`evidence["fingerprint_file"]`, which stands for the asset in the fingerprint) and its relative path
in `fingerprint_extra` is made absolute too; what is displayed (`evidence["path"]`) stays relative to
the assessed root. The stored row keeps the asset that first found it.

Findings whose `fingerprint_extra` names their own file are re-keyed so (a malware sample, a rule's
match at a line, an indicator at a path). A vulnerability found in a component is keyed on the absolute
place of the file that declared it (a requirements.txt pin, a dpkg status entry): assessing `/x/app`
after `/x` used to report every advisory of `/x/app/requirements.txt` again under a second asset.

A correlation (a brute force from one source over many lines)
is keyed on its group and the sorted absolute files its events come from: the same sum of the same
files is one finding; assessing a parent whose other logs add events of the group is another sum.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from tianmu.core.models import Finding, FindingKind

__all__ = ["key_on_files"]

_RECORD_KINDS = frozenset({FindingKind.MALWARE, FindingKind.DETECTION, FindingKind.INTEL})


def key_on_files(findings: Iterable[Finding], root: Path) -> None:
    """Key the record findings of an assessment of `root` (a folder, or one file) on their files."""
    resolved = root.resolve()
    base = resolved if resolved.is_dir() else resolved.parent
    for finding in findings:
        if finding.kind is FindingKind.VULNERABILITY:
            _key_on_component_file(finding, base)
            continue
        if finding.kind not in _RECORD_KINDS:
            continue
        evidence = finding.evidence
        relative = evidence.get("path")
        if not isinstance(relative, str) or not relative or "fingerprint_extra" not in evidence:
            continue
        absolute = _absolute(base, relative)
        extra, changed = _rebased(evidence["fingerprint_extra"], relative, absolute)
        if changed:
            evidence["fingerprint_extra"] = extra
            evidence["fingerprint_file"] = absolute
            continue
        files = _correlated_files(finding, base)
        if files:
            evidence["fingerprint_file"] = files


def _key_on_component_file(finding: Finding, base: Path) -> None:
    """A component's finding: keyed on the absolute file the component was read from, when it has one
    (a service's finding from a network scan has no file and keeps its asset)."""
    location = finding.component.location if finding.component is not None else None
    if location is None or not location.path:
        return
    finding.evidence["fingerprint_file"] = _absolute(base, location.path)


def _absolute(base: Path, relative: str) -> str:
    # String work, not Path: a member (`mail.zip!attach/e.com`) is no path of the host; only the file
    # part is normalised (a path typed as `../logs/auth.log`).
    file, bang, member = relative.partition("!")
    joined = file if file.startswith("/") else f"{base.as_posix().rstrip('/')}/{file}"
    return os.path.normpath(joined) + bang + member


def _correlated_files(finding: Finding, base: Path) -> list[str]:
    """The absolute files of a correlation's events (`data["correlation"]["events"]`), sorted."""
    correlation = finding.data.get("correlation")
    events = correlation.get("events") if isinstance(correlation, dict) else None
    if not isinstance(events, list):
        return []
    paths = {item.get("path") for item in events if isinstance(item, dict)}
    return sorted(_absolute(base, path) for path in paths if isinstance(path, str) and path)


def _rebased(value: Any, relative: str, absolute: str) -> tuple[Any, bool]:
    """`value` with the relative path made absolute where it names it (the whole string, or its
    `...@path` end as indicator places are written), and whether it did."""
    if isinstance(value, str):
        if value == relative:
            return absolute, True
        if value.endswith("@" + relative):
            return value[: -len(relative)] + absolute, True
        return value, False
    if isinstance(value, dict):
        out: dict[Any, Any] = {}
        changed = False
        for key, item in value.items():
            out[key], hit = _rebased(item, relative, absolute)
            changed = changed or hit
        return out, changed
    return value, False
