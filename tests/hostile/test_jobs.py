"""One bad record must not cost the job: hostile rules, values and engines, made by the tests.

Each case here failed on the code before issue 21: a YARA meta string with an escape came back from
yara-x as `bytes` and no assessment could be stored; one failing engine lost every engine's findings.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from tianmu.cli.console import out_console
from tianmu.cli.main import app
from tianmu.core.models import FindingKind
from tianmu.core.serialize import jsonable
from tianmu.malware.kb import import_path
from tianmu.road.assess import AssessOptions, assess
from tianmu.store.database import Store
from tianmu.store.repository import list_findings

# A rule as signature-base writes them, its meta strings holding `\"` and `\\` (yara-x returns those
# as bytes), matching a JSP upload shell planted in the tree.
ESCAPED_RULE = r"""
rule WEBSHELL_JSP_Test_Upload_Write {
  meta:
    description = "JSP \"upload\" shell writing to C:\\temp"
    author = "tests \\ hostile"
    reference = "https://example.org/\"x\""
    score = 70
  strings:
    $a = "request.getParameter" ascii
    $b = "FileOutputStream" ascii
  condition:
    all of them
}
"""
SHELL = b'<% String f = request.getParameter("f"); new java.io.FileOutputStream(f); %>'
DESCRIPTION = 'JSP "upload" shell writing to C:\\temp'


def brute_force_log(attempts: int = 12) -> str:
    """An auth.log with a password-guessing run, which the built-in detection rules report."""
    lines = [
        f"Nov 20 03:12:{10 + i:02d} web01 sshd[{4200 + i}]: Failed password for invalid user admin "
        f"from 203.0.113.45 port {40100 + i} ssh2"
        for i in range(attempts)
    ]
    return "\n".join(lines) + "\n"


@pytest.fixture
def rule_file(tmp_path: Path) -> Path:
    folder = tmp_path / "rules"
    folder.mkdir()
    path = folder / "escaped.yar"
    path.write_text(ESCAPED_RULE, encoding="utf-8")
    return path


@pytest.fixture
def planted_tree(tmp_path: Path) -> Path:
    root = tmp_path / "site"
    (root / "webapps" / "ROOT").mkdir(parents=True)
    (root / "webapps" / "ROOT" / "up.jsp").write_bytes(SHELL)
    (root / "logs").mkdir()
    (root / "logs" / "auth.log").write_text(brute_force_log(), encoding="utf-8")
    return root


def test_jsonable_never_raises_and_gives_strict_json() -> None:
    class Broken:
        def __str__(self) -> str:
            raise RuntimeError("no")

    cycle: dict[str, Any] = {"a": 1}
    cycle["self"] = cycle
    deep: list[Any] = []
    node = deep
    for _ in range(10_000):
        node.append([])
        node = node[0]
    hostile = {
        "bytes": b"\xff\x00",
        "nan": math.nan,
        "inf": -math.inf,
        "broken": Broken(),
        Broken(): "key",
        "cycle": cycle,
        "deep": deep,
        "set": {1, "a", b"b"},
        "memory": memoryview(b"ab"),
    }
    out = jsonable(hostile)
    text = json.dumps(out, allow_nan=False)  # strict JSON: no NaN, nothing unknown
    assert out["bytes"] == "ff00" and out["nan"] is None and out["inf"] is None
    assert out["broken"] == "<Broken>" and out["<Broken>"] == "key"
    assert out["cycle"]["self"] == "<...>"
    assert "<...>" in text and out["memory"] == "6162"


def test_escaped_meta_scan_json(
    rule_file: Path, planted_tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(out_console, "width", 200)
    env = {"TIANMU_HOME": str(tmp_path / "home"), "TIANMU_DATABASE_URL": "", "TIANMU_TENANT": ""}
    result = CliRunner().invoke(
        app,
        ["malware", "scan", str(planted_tree), "--json", "--jobs", "1", "--rules", str(rule_file)],
        env=env,
    )
    assert result.exit_code == 1, result.output
    report = json.loads(result.stdout)
    (match,) = [m for d in report["detections"] for m in d["matches"]]
    assert match["rule"] == "WEBSHELL_JSP_Test_Upload_Write"
    assert match["description"] == DESCRIPTION
    assert match["author"] == "tests \\ hostile"


def test_assess_of_a_tree_with_one_matching_file_stores_every_engine(
    sqlite_store: Store, rule_file: Path, planted_tree: Path, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    import_path(sqlite_store, rule_file.parent)
    result = assess(sqlite_store, planted_tree, AssessOptions(home=home, workers=1))
    stored = [s.finding for s in list_findings(sqlite_store, "default")]
    kinds = {f.kind for f in stored}
    assert {FindingKind.MALWARE, FindingKind.DETECTION} <= kinds, result.errors
    (malware,) = [f for f in stored if f.kind is FindingKind.MALWARE]
    assert malware.summary == DESCRIPTION
    assert malware.data["matches"][0]["reference"] == 'https://example.org/"x"'
    assert len(stored) == len({f.fingerprint for f in result.findings})
