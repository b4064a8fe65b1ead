"""A log deleted between the walk and the log pass is counted in one note, not an error (issue 21).

`tianmu assess /` on a live system listed 7,193 "cannot open: [Errno 2] No such file or directory"
errors: PostgreSQL's files and other people's temporary folders, gone by the time the pass reached them.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tianmu.core.engine import FileClass, JobContext
from tianmu.core.models import Asset, AssetKind
from tianmu.detect.events import DetectionEngine
from tianmu.detect.kb import STARTER_RULES, load_rule_base
from tianmu.road.collect import Classifier, collect
from tianmu.road.events import run_event_pass

_SUDO = "Nov 20 03:00:{:02d} web01 sudo:   deploy : TTY=pts/2 ; PWD=/srv ; USER=root ; COMMAND=/bin/bash -i\n"


def _no_package(_path: Path) -> bool:
    return False


@pytest.mark.parametrize("workers", [1, 2])
def test_a_log_gone_since_the_walk_is_a_note(tmp_path: Path, workers: int) -> None:
    root = tmp_path / "logs"
    root.mkdir()
    for name in ("auth.log", "gone.log", "syslog"):
        (root / name).write_text("".join(_SUDO.format(i) for i in range(3)), encoding="utf-8")
    files = [
        f for f in collect(root, Classifier(_no_package, all_logs=True)).files if FileClass.LOG in f.classes
    ]
    assert len(files) == 3
    (root / "gone.log").unlink()
    engine = DetectionEngine(load_rule_base([STARTER_RULES]))
    job = JobContext(Asset(name=str(root), kind=AssetKind.DIRECTORY), root=root)
    (result,) = run_event_pass(files, [engine], job, workers=workers)
    assert not any("gone.log" in error for error in result.errors)
    assert "logs: 1 file(s) vanished between the walk and their reading" in result.notes
    assert {str(f.evidence["path"]) for f in result.findings} == {"auth.log", "syslog"}
