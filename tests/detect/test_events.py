"""The detection engine of the road: its `DetectLimits` hold in every pass, in forked workers too."""

from __future__ import annotations

from pathlib import Path

from tianmu.core.engine import CollectedFile, FileClass, JobContext
from tianmu.core.models import Asset, AssetKind
from tianmu.detect.engine import DetectLimits
from tianmu.detect.events import DetectionEngine
from tianmu.detect.kb import STARTER_RULES, load_rule_base
from tianmu.road.events import run_event_pass

SUDO = (
    "Nov  1 10:00:{second:02d} web01 sudo:   deploy : TTY=pts/2 ; PWD=/srv ; "
    "USER=root ; COMMAND=/bin/bash -i\n"
)
FAILED = "Nov  1 10:01:{second:02d} web01 sshd[7]: Failed password for root from 10.0.{a}.{b} port 22 ssh2\n"


def _logs(folder: Path, files: int, lines: int) -> list[CollectedFile]:
    """Auth logs whose every line matches a starter rule (sudo shells) or feeds a correlation."""
    folder.mkdir()
    collected = []
    for number in range(files):
        path = folder / f"auth{number}.log"
        with path.open("w", encoding="utf-8") as out:
            for i in range(lines):
                out.write(
                    SUDO.format(second=i % 60) if i % 2 else FAILED.format(second=i % 60, a=i >> 8, b=i & 255)
                )
        collected.append(
            CollectedFile(
                str(path), path.name, path.stat().st_size, frozenset({FileClass.ANY, FileClass.LOG})
            )
        )
    return collected


def test_limits_given_to_the_engine_hold_in_every_worker(tmp_path: Path) -> None:
    files = _logs(tmp_path / "logs", files=4, lines=200)
    job = JobContext(asset=Asset(kind=AssetKind.DIRECTORY, name="logs"), root=tmp_path / "logs")
    engine = DetectionEngine(
        load_rule_base([STARTER_RULES]), limits=DetectLimits(max_findings_per_rule=7, max_sightings=20)
    )
    assert engine.detector.limits == DetectLimits(max_findings_per_rule=7, max_sightings=20)
    (parallel,) = run_event_pass(files, [engine], job, workers=2)
    (single,) = run_event_pass(files, [engine], job, workers=1)
    for result in (parallel, single):
        per_file: dict[tuple[str, str], int] = {}
        for finding in result.findings:
            if finding.data.get("correlation"):
                continue
            key = (finding.rule_id, str(finding.evidence["path"]))
            per_file[key] = per_file.get(key, 0) + 1
        assert per_file and max(per_file.values()) == 7  # the cap, per rule and file, in each worker
        for number in range(4):
            assert any(f"events in auth{number}.log; the first 7 are findings" in n for n in result.notes)
        assert any("limit max_sightings = 20" in note for note in result.notes)
    # The per-file cap does not depend on how the files were shared out between workers.
    assert sum(not f.data.get("correlation") for f in parallel.findings) == sum(
        not f.data.get("correlation") for f in single.findings
    )


def test_default_limits_when_none_are_given() -> None:
    engine = DetectionEngine(load_rule_base([STARTER_RULES]))
    assert engine.detector.limits == DetectLimits()
