"""A planted `.tianmuignore` cannot hide a web shell (issue 21).

Whoever can write into a scanned tree (an upload folder, a web root) could drop a `.tianmuignore`
holding `*` and hide everything from `assess` and `malware scan`. Now an ignore file is read only when
the command asks (assess, inventory, vulns, detect; never a job of the service, never a malware scan),
only when it is a regular file owned by the scanning user or root and writable by its owner alone, and
never hides a file from malware scanning. Each ignore file met is in the notes: used, refused or unread.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tianmu.cli.main import app
from tianmu.core.walk import IGNORE_FILE, MountTable, WalkRules, WalkSkips, walk_tree
from tianmu.road.assess import AssessOptions, assess
from tianmu.store import Store

_EICAR = "X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
_TRUSTING = WalkRules(mounts=MountTable(), ignore_file=True)


def _web_root(tmp_path: Path, ignore: str = "*\n") -> Path:
    """A web root with an uploaded shell, a lockfile and an ignore file (by default hiding all three)."""
    root = tmp_path / "www"
    (root / "uploads").mkdir(parents=True)
    (root / "uploads" / "shell.php").write_text(_EICAR)
    (root / "requirements.txt").write_text("django==3.2.0\n")
    (root / IGNORE_FILE).write_text(ignore)
    return root


def _walked(root: Path, rules: WalkRules = _TRUSTING) -> tuple[list[str], WalkSkips]:
    skips = WalkSkips()

    def unlisted(relpath: str, exc: OSError) -> None:
        raise AssertionError(f"{relpath}: {exc}")

    return [rel for _item, rel in walk_tree(root, on_error=unlisted, rules=rules, skips=skips)], skips


def _env(tmp_path: Path) -> dict[str, str]:
    return {"TIANMU_HOME": str(tmp_path / "home"), "TIANMU_DATABASE_URL": "", "TIANMU_TENANT": ""}


def test_a_trusted_ignore_file_is_used_and_said_so(tmp_path: Path) -> None:
    root = _web_root(tmp_path, "uploads/\n")
    seen, skips = _walked(root)
    assert seen == [IGNORE_FILE, "requirements.txt"]
    assert skips.ignored == 1
    notes = skips.notes()
    assert any(
        n.startswith(f"{root / IGNORE_FILE}: used (owner uid {os.geteuid()}, mode 0644)") for n in notes
    )
    assert f"1 entries excluded by {IGNORE_FILE}" in notes


def test_an_ignore_file_others_may_write_is_refused(tmp_path: Path) -> None:
    root = _web_root(tmp_path)
    (root / IGNORE_FILE).chmod(0o666)
    seen, skips = _walked(root)
    assert "uploads/shell.php" in seen and skips.ignored == 0
    assert f"{root / IGNORE_FILE}: not used: writable by group or others (mode 0666)" in skips.notes()


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another user needs root")
def test_an_ignore_file_of_another_user_is_refused(tmp_path: Path) -> None:
    root = _web_root(tmp_path)
    os.chown(root / IGNORE_FILE, 33, 33)  # www-data: what a web upload is owned by
    seen, skips = _walked(root)
    assert "uploads/shell.php" in seen and skips.ignored == 0
    assert any(
        n.startswith(f"{root / IGNORE_FILE}: not used: owned by uid 33, neither the user running the scan")
        for n in skips.notes()
    )


def test_a_symlinked_hard_linked_or_fifo_ignore_file_is_refused(tmp_path: Path) -> None:
    elsewhere = tmp_path / "globs"
    elsewhere.write_text("*\n")
    cases: dict[str, Callable[[Path], None]] = {
        "symlink": lambda where: where.symlink_to(elsewhere),
        "hardlink": lambda where: os.link(elsewhere, where),
        "fifo": os.mkfifo,
    }
    reasons = {"symlink": "a symlink", "hardlink": "it has 2 hard links", "fifo": "not a regular file"}
    for name, make in cases.items():
        root = tmp_path / name
        (root / "uploads").mkdir(parents=True)
        (root / "uploads" / "shell.php").write_text(_EICAR)
        make(root / IGNORE_FILE)
        seen, skips = _walked(root)
        assert "uploads/shell.php" in seen, name
        assert f"{root / IGNORE_FILE}: not used: {reasons[name]}" in skips.notes(), name


def test_an_ignore_file_is_not_read_unless_asked(tmp_path: Path) -> None:
    root = _web_root(tmp_path)
    seen, skips = _walked(root, WalkRules(mounts=MountTable()))
    assert "uploads/shell.php" in seen and skips.ignored == 0
    assert any(n.startswith(f"{root / IGNORE_FILE}: not read: this job does not") for n in skips.notes())


def test_assess_still_scans_what_a_trusted_ignore_file_hides_for_malware(tmp_path: Path) -> None:
    root = _web_root(tmp_path)
    result = CliRunner().invoke(
        app, ["assess", str(root), "-f", "json", "--fail-on", "none"], env=_env(tmp_path)
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    malware = [f for f in report["findings"] if f["kind"] == "malware"]
    assert [f["evidence"]["path"] for f in malware] == ["uploads/shell.php"]
    assert report["components"] == []  # the inventory honoured the ignore file
    notes = report["notes"]
    assert any(n.startswith(f"{root / IGNORE_FILE}: used") for n in notes)
    assert any(
        "file(s) that .tianmuignore excluded were still scanned for malware" in n and n.startswith("3 ")
        for n in notes
    )


def test_an_assess_job_never_reads_an_ignore_file(sqlite_store: Store, tmp_path: Path) -> None:
    root = _web_root(tmp_path)
    # The options a job of the service gets: the defaults.
    result = assess(sqlite_store, root, AssessOptions(home=tmp_path / "home", save=False))
    assert [c.name for c in result.components] == ["django"]
    assert any(str(f.evidence.get("path")) == "uploads/shell.php" for f in result.findings)
    assert any(n.startswith(f"{root / IGNORE_FILE}: not read") for n in result.notes)


def test_malware_scan_never_hides_files_through_an_ignore_file(tmp_path: Path) -> None:
    root = _web_root(tmp_path)
    result = CliRunner().invoke(app, ["malware", "scan", str(root), "--json"], env=_env(tmp_path))
    report = json.loads(result.stdout)
    assert [d["path"] for d in report["detections"]] == [f"{root}/uploads/shell.php"]
    assert any(n.startswith(f"{root / IGNORE_FILE}: not read") for n in report["notes"])
