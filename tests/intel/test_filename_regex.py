"""Hostile file-name indicators: an expression RE2 cannot take is refused with its reason and never
matched by Python's backtracking `re`; a false-positive expression cannot hang the match of a long path
(issue 21).

The LOKI lists are written here. The hang case runs in a child process under a timeout, so that code
which backtracks fails the test instead of hanging the suite.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tianmu.intel.engine import IntelMatcher
from tianmu.intel.fields import compile_path_set
from tianmu.intel.kb import import_feed
from tianmu.store.database import Store

BACKREF = r"\\(\w+)\\\1\\[^\\]+\.exe"
"""The same folder name twice in a row (`C:\\Temp\\Temp\\x.exe`): a back-reference."""
LOOKBEHIND = r"(?<!Windows)\\System32\\evil\.dll"
DROPPER = r"\\dropper\.exe"

HANG_GUARD = 120
"""Seconds the child may take: the linear engine needs well under one; backtracking, hours."""

CHILD = """
import sys
from pathlib import Path
from tianmu.intel.engine import IntelMatcher
from tianmu.store.database import Store

store = Store(f"sqlite:///{sys.argv[1]}")
matcher = IntelMatcher.open(store, Path(sys.argv[2]))
path = "C:\\\\Users\\\\" + "a" * 50_000 + ".exe"
print(sorted(s.indicator for s in matcher.match_path(path)))
"""


def signature_base(folder: Path, filename_iocs: str) -> Path:
    folder.mkdir()
    (folder / "c2-iocs.txt").write_text("# Operation Nightowl\nnightowl-c2.example;80\n", encoding="utf-8")
    (folder / "filename-iocs.txt").write_text(filename_iocs, encoding="utf-8")
    return folder


def test_filename_indicator_re2_cannot_take_is_refused_not_matched_by_re(
    sqlite_store: Store, tmp_path: Path
) -> None:
    iocs = signature_base(
        tmp_path / "iocs",
        f"# Doubled folders\n{BACKREF};80\n# Fake system DLL\n{LOOKBEHIND};70\n# Dropper\n{DROPPER};60\n",
    )
    reports = import_feed(sqlite_store, iocs, home=tmp_path)
    # Refused at import, each with its file, line and reason: never stored as if it could match.
    errors = "\n".join(error for report in reports for error in report.errors)
    assert "filename-iocs.txt:2:" in errors and "back-references need backtracking" in errors
    assert "filename-iocs.txt:4:" in errors and "look-around" in errors
    matcher = IntelMatcher.open(sqlite_store, tmp_path)
    assert set(matcher.index.filenames) == {DROPPER}
    # `re` would match both on this path; RE2 takes only the dropper, and the others match nothing.
    assert {s.indicator for s in matcher.match_path(r"C:\Temp\Temp\dropper.exe")} == {DROPPER}
    assert matcher.match_path(r"D:\Tools\System32\evil.dll") == []
    # A set built over such expressions anyway (stored by an older version) leaves them out, saying why.
    refused = compile_path_set(sorted([BACKREF, LOOKBEHIND, DROPPER])).refused
    assert set(refused) == {BACKREF, LOOKBEHIND}
    assert refused[BACKREF].startswith(
        f"filename indicator {BACKREF!r} refused: RE2 (linear-time matching) cannot take it: "
        "back-references need backtracking"
    )
    assert "look-around assertions" in refused[LOOKBEHIND]


def test_a_false_positive_expression_re2_cannot_take_hides_no_hit(
    sqlite_store: Store, tmp_path: Path
) -> None:
    iocs = signature_base(tmp_path / "iocs", f"# Dropper\n{DROPPER};60;(\\w+)\\\\\\1\n")
    reports = import_feed(sqlite_store, iocs, home=tmp_path)
    errors = [error for report in reports for error in report.errors]
    assert any("filename-iocs.txt:2: false-positive expression dropped:" in e for e in errors), errors
    matcher = IntelMatcher.open(sqlite_store, tmp_path)
    # Under `re` the exclusion `(\w+)\\\1` would hide this hit (`Temp\Temp`); it cannot be evaluated in
    # linear time, so it excludes nothing.
    assert {s.indicator for s in matcher.match_path(r"C:\Temp\Temp\dropper.exe")} == {DROPPER}


def test_catastrophic_false_positive_expression_finishes_on_a_long_path(tmp_path: Path) -> None:
    iocs = signature_base(tmp_path / "iocs", "# Long names\n\\\\a+\\.exe;60;(a+)+b\n")
    database = tmp_path / "tianmu.db"
    store = Store(f"sqlite:///{database}")
    try:
        import_feed(store, iocs, home=tmp_path)
    finally:
        store.close()
    try:
        done = subprocess.run(
            [sys.executable, "-c", CHILD, str(database), str(tmp_path)],
            capture_output=True,
            text=True,
            timeout=HANG_GUARD,
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.fail("the exclusion (a+)+b over a 50,000-character path did not finish: it backtracks")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "['\\\\\\\\a+\\\\.exe']"  # matched, and not excluded: no `b` in the path
