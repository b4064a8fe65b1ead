"""The rule base as a knowledge base (import, cache, status) on SQLite and PostgreSQL, and the CLI."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tianmu.cli.console import out_console
from tianmu.cli.main import app
from tianmu.core.models import FindingKind
from tianmu.detect.kb import STARTER_RULES, SigmaKnowledgeBase, active_rule_paths, load_rule_base
from tianmu.road.knowledge import import_any, kb_status
from tianmu.store import Store
from tianmu.store.knowledge import KbContext

REPO = Path(__file__).resolve().parents[2]
DEMO_LOGS = REPO / "demo" / "target" / "logs"


def _rule_folder(shared_data: Path, tmp_path: Path) -> Path:
    """A slice of SigmaHQ: the Windows builtin security rules (a few hundred files)."""
    folder = tmp_path / "security"
    shutil.copytree(shared_data / "sigma" / "rules" / "windows" / "builtin" / "security", folder)
    return folder


def test_import_is_versioned_and_idempotent(store: Store, shared_data: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    ctx = KbContext(store, home)
    folder = _rule_folder(shared_data, tmp_path)
    kb = SigmaKnowledgeBase()
    assert kb.claims(folder) and not kb.claims(shared_data / "evtx")
    [first] = import_any(ctx, folder)
    assert first.source == "sigma:security" and first.status == "imported" and first.record_count > 100
    [again] = kb.import_path(ctx, folder)
    assert again.status == "unchanged" and again.digest == first.digest
    victim = next(folder.rglob("*.yml"))
    victim.write_text(victim.read_text().replace("level: ", "level: critical\n# was: ", 1))
    [changed] = kb.import_path(ctx, folder)
    assert changed.status == "updated" and changed.digest != first.digest
    rows = {row.name: row for row in kb_status(store)}
    assert (
        rows["sigma:security"].kind == "sigma" and rows["sigma:security"].record_count == changed.record_count
    )
    paths = active_rule_paths(store, home)
    assert paths[0] == STARTER_RULES and paths[1] == home / "detect" / "sigma" / "security"


def test_compiled_cache_gives_a_warm_start(shared_data: Path, tmp_path: Path) -> None:
    root = shared_data / "sigma" / "rules" / "windows"
    cold = load_rule_base([root], cache_dir=tmp_path)
    started = time.perf_counter()
    warm = load_rule_base([root], cache_dir=tmp_path)
    elapsed = time.perf_counter() - started
    assert not cold.from_cache and warm.from_cache and warm.digest == cold.digest
    assert [r.id for r in warm.rules] == [r.id for r in cold.rules] and len(warm.rules) > 2300
    assert elapsed < 2.0  # a cold compile takes several times longer; the benchmark measures it properly
    # A damaged cache file is recompiled, not trusted.
    next(tmp_path.glob("*.pickle")).write_bytes(b"not a pickle")
    assert not load_rule_base([root], cache_dir=tmp_path).from_cache


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setattr(out_console, "width", 200)
    return CliRunner()


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {"TIANMU_HOME": str(tmp_path / "home"), "TIANMU_DATABASE_URL": "", "TIANMU_TENANT": ""}


def test_detect_json_and_exit_codes(runner: CliRunner, env: dict[str, str]) -> None:
    result = runner.invoke(app, ["detect", str(DEMO_LOGS), "--json"], env=env)
    assert result.exit_code == 1, result.output
    document = json.loads(result.stdout)
    assert document["summary"]["events"] == 54 and document["summary"]["malformed"] == 0
    finding = next(f for f in document["findings"] if f["title"] == "Path Traversal Attempt In Access Log")
    assert finding["kind"] == "detection" and finding["severity"] == "high"
    assert (
        finding["rule"]["id"] == "8b9c0d1e-2f3a-4b4c-5d6e-7f8a9b0c1d31" and finding["rule"]["level"] == "high"
    )
    assert finding["attack"] == ["T1190", "T1083"]
    assert finding["event"] == {"path": "access.log", "record": 8, "time": "2026-11-20T03:07:15+00:00"}
    assert finding["fields"] == {"cs-uri": "/download?file=../../../../etc/passwd"}
    assert finding["evidence"]["entities"]["ip"] == ["198.51.100.23"]
    quiet = runner.invoke(app, ["detect", str(DEMO_LOGS / "access.log"), "--fail-on", "critical"], env=env)
    assert quiet.exit_code == 0 and "detections in 10 events" in quiet.stdout
    missing = runner.invoke(app, ["detect", str(DEMO_LOGS / "absent.log")], env=env)
    assert missing.exit_code == 2 and "no such file" in missing.output
    bad = runner.invoke(app, ["detect", str(DEMO_LOGS), "--format", "pcap"], env=env)
    assert bad.exit_code == 2 and "--format" in bad.output
    forced = runner.invoke(
        app, ["detect", str(DEMO_LOGS / "eve.json"), "--format", "syslog", "--json"], env=env
    )
    assert forced.exit_code == 0
    assert json.loads(forced.stdout)["summary"]["malformed"] == 6
    assert json.loads(forced.stdout)["errors"][0].endswith(
        "eve.json:1: not a syslog line (RFC 3164, RFC 5424 or ISO timestamp expected)"
    )


def test_detect_with_rules_option_and_rules_status(
    runner: CliRunner, env: dict[str, str], shared_data: Path, tmp_path: Path
) -> None:
    folder = _rule_folder(shared_data, tmp_path)
    result = runner.invoke(
        app,
        ["detect", str(shared_data / "evtx" / "Credential Access"), "--rules", str(folder), "--json"],
        env=env,
    )
    assert result.exit_code in (0, 1), result.output
    assert json.loads(result.stdout)["summary"]["rules"] > 100
    imported = runner.invoke(app, ["kb", "import", str(shared_data / "sigma" / "rules" / "linux")], env=env)
    assert imported.exit_code == 0, imported.output
    status = runner.invoke(app, ["rules", "status", "--json"], env=env)
    assert status.exit_code == 0, status.output
    rows = {row["name"]: row for row in json.loads(status.stdout)}
    assert rows["starter"]["rules"] == 12 and rows["starter"]["correlations"] == 3
    linux = rows["linux"]
    assert linux["rules"] > 50 and linux["unusable"]
    assert all(item["reason"] for item in linux["unusable"])
    assert any(
        "no field mapping for log source linux/process_creation" in item["reason"]
        for item in linux["unusable"]
    )
    table = runner.invoke(app, ["rules", "status"], env=env)
    assert "unusable:" in table.stdout and "starter" in table.stdout


def test_assess_runs_the_detection_engine(store: Store, tmp_path: Path) -> None:
    """The `detection` engine of `assess`, alone (the other engines have tests of their own), stored."""
    from tianmu.road.assess import ENGINES, AssessOptions, assess

    assert "detection" in ENGINES
    target = tmp_path / "server"
    shutil.copytree(DEMO_LOGS, target / "var" / "log")
    (target / "package.json").write_text('{\n  "name": "shop",\n  "version": "1.0.0"\n}\n')
    options = AssessOptions(engines=("detection",), home=tmp_path / "home")
    result = assess(store, target, options)
    detections = [f for f in result.findings if f.kind is FindingKind.DETECTION]
    assert {"SSH Brute Force Followed By Successful Login", "Suricata High-Severity Alert"} <= {
        f.title for f in detections
    }
    assert all(str(f.evidence["path"]).startswith("var/log/") for f in detections)
    assert any(note.startswith("detection: 54 events in 3 log files") for note in result.notes)
    assert not [e for e in result.errors if "package.json" in e]
    # Stored like any finding: a second run finds the same problems (same fingerprints).
    again = assess(store, target, options)
    assert {f.fingerprint for f in again.findings} == {f.fingerprint for f in detections}


def test_changed_rule_set_recompiles_only_changed_files(
    shared_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = _rule_folder(shared_data, tmp_path)
    cache = tmp_path / "cache"
    first = load_rule_base([folder], cache_dir=cache)
    victim = sorted(folder.rglob("*.yml"))[3]
    text = victim.read_text()
    victim.write_text(text.replace("\nlevel: ", "\nlevel: critical\n# before: ", 1))
    (folder / "broken.yml").write_text("title: [unclosed\n")
    from tianmu.detect import translate

    compiled: list[int] = []
    original = translate.compile_files

    def counting(files, display):  # type: ignore[no-untyped-def]
        compiled.append(len(files))
        return original(files, display)

    monkeypatch.setattr(translate, "compile_files", counting)
    second = load_rule_base([folder], cache_dir=cache)
    assert compiled == [2]  # the edited file and the new one
    full = load_rule_base([folder])  # no cache: everything compiled again
    assert [(r.id, r.level, r.plan) for r in second.rules] == [(r.id, r.level, r.plan) for r in full.rules]
    assert sorted(map(str, second.unusable)) == sorted(map(str, full.unusable))
    assert any("broken.yml" in u.path for u in second.unusable)
    changed = next(r for r in second.rules if r.path.endswith(victim.name))
    assert changed.level == "critical" and len(second.rules) == len(first.rules)
    assert len(list(cache.glob("*.pickle"))) == 1  # the superseded entry is removed
