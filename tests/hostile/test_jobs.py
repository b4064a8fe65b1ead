"""One bad record must not cost the job: hostile rules, values and engines, made by the tests.

Each case here failed on the code before issue 21: a YARA meta string with an escape came back from
yara-x as `bytes` and no assessment could be stored; one failing engine lost every engine's findings.
"""

from __future__ import annotations

import json
import math
import os
import queue
import signal
import subprocess
import sys
import time
import zipfile
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from tianmu import gmcrypto
from tianmu.cli.console import out_console
from tianmu.cli.main import app
from tianmu.core.engine import (
    CollectedFile,
    Engine,
    EngineResult,
    EventEngine,
    EventStream,
    FileClass,
    Inputs,
    JobContext,
    Requirements,
)
from tianmu.core.errors import InputError
from tianmu.core.models import (
    Assessment,
    Asset,
    AssetKind,
    Component,
    Event,
    Finding,
    FindingKind,
    Location,
    Severity,
)
from tianmu.core.serialize import jsonable
from tianmu.gmcrypto import IntegrityError
from tianmu.malware import pool, quarantine
from tianmu.malware import scanner as scanner_module
from tianmu.malware.engine import scan_paths
from tianmu.malware.findings import findings_from_report
from tianmu.malware.kb import import_path, load_database
from tianmu.malware.quarantine import QuarantineItem, quarantine_file, restore_item
from tianmu.malware.report import Detection, ScanReport
from tianmu.malware.yararules import read_rule_files
from tianmu.road import finish as road_finish
from tianmu.road import run as road_run
from tianmu.road.assess import AssessOptions, assess
from tianmu.road.engines import ENGINES
from tianmu.road.isolation import describe
from tianmu.road.logs import DetectJob, run_detect
from tianmu.road.malware import MalwareScanOptions, run_malware_scan
from tianmu.road.run import run_engines
from tianmu.store.database import Store
from tianmu.store.repository import list_findings, save_assessment
from tianmu.store.schema import assessments, assets, findings

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


# --- case 2: an engine that raises costs only itself -----------------------------------------------


class _Finder:
    """A batch engine that reports one finding per file it is given."""

    name = "finder"
    requirements = Requirements(files=frozenset({FileClass.ANY}))

    def analyse(self, inputs: Inputs, job: JobContext) -> EngineResult:
        return EngineResult(
            findings=[
                Finding(
                    kind=FindingKind.MISCONFIGURATION,
                    rule_id="test:file",
                    title=f"file {file.relpath}",
                    severity=Severity.LOW,
                    asset=job.asset,
                    evidence={"path": file.relpath, "fingerprint_extra": file.relpath},
                )
                for file in inputs.files_of(FileClass.ANY)
            ]
        )


class _Boom:
    """A batch engine that fails with something no engine raises on purpose."""

    name = "boom"
    requirements = Requirements(files=frozenset({FileClass.ANY}))

    def analyse(self, inputs: Inputs, job: JobContext) -> EngineResult:
        raise ZeroDivisionError("division by zero\nsecond line")


class _CountingSink:
    """Counts events per stream; fails on the events and at the places its engine was told to."""

    def __init__(self, engine: _EventCounter) -> None:
        self.engine = engine
        self.events = 0

    def begin(self, stream: EventStream) -> bool:
        return True

    def add(self, event: Event) -> None:
        if "poison" in str(event.raw) and "add" in self.engine.fail:
            raise KeyError("poison")
        self.events += 1

    def end(self, stream: EventStream, events: int, errors: Sequence[str]) -> None:
        pass

    def partial(self) -> int:
        if "partial" in self.engine.fail:
            raise ValueError("cannot summarise")
        return self.events


class _EventCounter:
    """An event engine reporting how many events it saw, failing where `fail` says."""

    requirements = Requirements(events=True)

    def __init__(self, name: str, fail: frozenset[str] = frozenset()) -> None:
        self.name = name
        self.fail = fail

    def open(self, job: JobContext) -> _CountingSink:
        if "open" in self.fail:
            raise OSError("no rules")
        return _CountingSink(self)

    def combine(self, partials: Sequence[Any], job: JobContext) -> EngineResult:
        if "combine" in self.fail:
            raise TypeError("bad partial")
        return EngineResult(notes=[f"{self.name}: {sum(partials)} events"])


@pytest.fixture
def collected(tmp_path: Path) -> list[CollectedFile]:
    log = tmp_path / "app.log"
    log.write_text("one line\npoison line\nthird line\n", encoding="utf-8")
    other = tmp_path / "data.bin"
    other.write_bytes(b"\x00")
    return [
        CollectedFile(str(log), "app.log", log.stat().st_size, frozenset({FileClass.ANY, FileClass.LOG})),
        CollectedFile(str(other), "data.bin", 1, frozenset({FileClass.ANY})),
    ]


def test_a_failing_batch_engine_costs_only_itself(collected: list[CollectedFile], tmp_path: Path) -> None:
    job = JobContext(asset=Asset(name=str(tmp_path), kind=AssetKind.DIRECTORY), root=tmp_path)
    run = run_engines([_Boom(), _Finder(), _EventCounter("counter")], collected, job, workers=1)
    merged = run.merged()
    assert len(merged.findings) == 2
    assert merged.errors == ["engine boom failed: ZeroDivisionError: division by zero"]
    assert "counter: 3 events" in merged.notes


@pytest.mark.parametrize("where", ["open", "partial", "combine"])
def test_a_failing_event_engine_costs_only_itself(
    where: str, collected: list[CollectedFile], tmp_path: Path
) -> None:
    job = JobContext(asset=Asset(name=str(tmp_path), kind=AssetKind.DIRECTORY), root=tmp_path)
    engines: list[Engine | EventEngine] = [
        _EventCounter("bad", frozenset({where})),
        _Finder(),
        _EventCounter("good"),
    ]
    merged = run_engines(engines, collected, job, workers=1).merged()
    assert len(merged.findings) == 2 and "good: 3 events" in merged.notes
    (error,) = merged.errors
    assert error.startswith("engine bad failed: ") and not any(n.startswith("bad:") for n in merged.notes)


def test_a_poisoned_event_costs_only_that_event(collected: list[CollectedFile], tmp_path: Path) -> None:
    job = JobContext(asset=Asset(name=str(tmp_path), kind=AssetKind.DIRECTORY), root=tmp_path)
    engines = [_EventCounter("picky", frozenset({"add"})), _EventCounter("good")]
    merged = run_engines(engines, collected, job, workers=1).merged()
    assert merged.notes == ["picky: 2 events", "good: 3 events"]
    assert merged.errors == [f"engine picky: {collected[0].path}: event 2: KeyError: 'poison'"]


def test_assess_keeps_every_other_engine_when_one_fails(
    sqlite_store: Store, planted_tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setitem(ENGINES, "malware", lambda setup: _Boom())
    result = assess(sqlite_store, planted_tree, AssessOptions(home=home, workers=1))
    assert "engine boom failed: ZeroDivisionError: division by zero" in result.errors
    stored = [s.finding for s in list_findings(sqlite_store, "default")]
    assert any(f.kind is FindingKind.DETECTION for f in stored)
    with sqlite_store.connect() as conn:
        (errors,) = conn.execute(select(assessments.c.errors)).one()
    assert "engine boom failed: ZeroDivisionError: division by zero" in errors


def test_isolation_holds_in_forked_workers(tmp_path: Path) -> None:
    files = []
    for index in range(2):
        log = tmp_path / f"app{index}.log"
        log.write_text(f"line {index}\npoison {index}\n", encoding="utf-8")
        files.append(CollectedFile(str(log), log.name, log.stat().st_size, frozenset({FileClass.LOG})))
    job = JobContext(asset=Asset(name=str(tmp_path), kind=AssetKind.DIRECTORY), root=tmp_path)
    engines = [_EventCounter("picky", frozenset({"add"})), _EventCounter("bad", frozenset({"partial"}))]
    merged = run_engines(engines, files, job, workers=2).merged()
    assert merged.notes == ["picky: 2 events"]
    assert merged.errors == [
        f"engine picky: {files[0].path}: event 2: KeyError: 'poison'",
        f"engine picky: {files[1].path}: event 2: KeyError: 'poison'",
        "engine bad failed: ValueError: cannot summarise",
    ]


def test_a_failing_log_pass_keeps_the_batch_engines(
    collected: list[CollectedFile], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise TypeError("reader bug")

    monkeypatch.setattr(road_run, "run_event_pass", broken)
    job = JobContext(asset=Asset(name=str(tmp_path), kind=AssetKind.DIRECTORY), root=tmp_path)
    merged = run_engines([_Finder(), _EventCounter("good")], collected, job, workers=1).merged()
    assert len(merged.findings) == 2
    assert merged.errors == ["the log pass failed: TypeError: reader bug"]


# --- case 3: a job stores a consistent result or nothing; log errors are not inventory errors ------

BROKEN_LOCK = '{"lockfileVersion": 3,\n "packages": {\n'
BAD_LOG_LINES = "\x00\x01garbage one\n<<<not syslog>>>\n"


def _cli_env(tmp_path: Path) -> dict[str, str]:
    return {"TIANMU_HOME": str(tmp_path / "home"), "TIANMU_DATABASE_URL": "", "TIANMU_TENANT": ""}


def _stored(tmp_path: Path) -> tuple[int, int, int]:
    """Assessments, assets and findings stored in the CLI's database."""
    store = Store(f"sqlite:///{tmp_path / 'home' / 'tianmu.db'}")
    try:
        with store.connect() as conn:
            counts = [
                conn.execute(select(func.count()).select_from(table)).scalar_one()
                for table in (assessments, assets, findings)
            ]
    finally:
        store.close()
    return counts[0], counts[1], counts[2]


def test_nothing_read_exits_2_and_stores_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(out_console, "width", 200)
    target = tmp_path / "target"
    (target / "logs").mkdir(parents=True)
    (target / "package-lock.json").write_text(BROKEN_LOCK, encoding="utf-8")
    (target / "logs" / "auth.log").write_text(BAD_LOG_LINES * 3, encoding="utf-8")
    result = CliRunner().invoke(app, ["assess", str(target)], env=_cli_env(tmp_path))
    assert result.exit_code == 2, result.output
    # One inventory file failed; the six malformed log lines are not inventory files.
    assert "none of the 1 inventory file(s) could be read" in result.stderr
    assert "package-lock.json:3" in result.stderr and "Traceback" not in result.output
    assert _stored(tmp_path) == (0, 0, 0)


def test_a_broken_lockfile_beside_findings_is_an_error_of_a_stored_result(
    planted_tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(out_console, "width", 200)
    (planted_tree / "package-lock.json").write_text(BROKEN_LOCK, encoding="utf-8")
    result = CliRunner().invoke(
        app, ["assess", str(planted_tree), "--format", "json"], env=_cli_env(tmp_path)
    )
    assert result.exit_code == 1, result.output  # findings, not "nothing could be read"
    report = json.loads(result.stdout)
    assert any(e.startswith("package-lock.json:3") for e in report["errors"])
    stored_assessments, _, stored_findings = _stored(tmp_path)
    assert stored_assessments == 1 and stored_findings == len(report["findings"]) > 0


def test_log_errors_are_not_inventory_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(out_console, "width", 200)
    logs = tmp_path / "var" / "log"
    (logs / "mysql").mkdir(parents=True)
    good = "Nov 20 03:12:06 web01 sshd[42]: Accepted publickey for bob from 10.0.0.1 port 1 ssh2\n"
    (logs / "auth.log").write_text(good + BAD_LOG_LINES, encoding="utf-8")
    (logs / "mysql" / "error.log").write_text("Version: '10.11.6-MariaDB-0+deb12u1'  socket: ''\n")
    result = CliRunner().invoke(app, ["assess", str(logs)], env=_cli_env(tmp_path))
    assert result.exit_code == 0, result.output
    assert "could be read" not in result.stderr
    assert _stored(tmp_path)[0] == 1


# --- case 4: one record, one finding, whichever directory above it was assessed -------------------


def _stored_fingerprints(store: Store) -> list[str]:
    return sorted(s.finding.fingerprint for s in list_findings(store, "default"))


@pytest.mark.parametrize("order", ["parent first", "children first"])
def test_a_record_is_one_finding_whichever_directory_above_it_was_assessed(
    order: str,
    sqlite_store: Store,
    rule_file: Path,
    planted_tree: Path,
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    import_path(sqlite_store, rule_file.parent)
    (planted_tree / "logs" / "web.log").write_text(
        '203.0.113.9 - - [20/Nov/2024:03:12:00 +0000] "GET /../../etc/passwd HTTP/1.1" 404 0 "-" "sqlmap"\n'
    )
    options = AssessOptions(home=home, workers=1)
    children = [planted_tree / "logs", planted_tree / "webapps" / "ROOT" / "up.jsp"]
    targets = [planted_tree, *children] if order == "parent first" else [*children, planted_tree]
    results = [assess(sqlite_store, target, options) for target in targets]
    parent = results[0 if order == "parent first" else -1]
    kinds = {f.kind for f in parent.findings}
    assert {FindingKind.MALWARE, FindingKind.DETECTION} <= kinds
    assert any("correlation" in f.data for f in parent.findings)  # the brute force
    # Everything the sub-directories found, the parent found too: one finding each, not two.
    assert _stored_fingerprints(sqlite_store) == sorted({f.fingerprint for f in parent.findings})
    malware = [s.finding for s in list_findings(sqlite_store, "default", kinds=[FindingKind.MALWARE])]
    assert len(malware) == 1
    assert malware[0].evidence["path"] in {"webapps/ROOT/up.jsp", "up.jsp"}


def test_malware_scan_and_assess_share_the_sample(
    sqlite_store: Store, rule_file: Path, planted_tree: Path, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    import_path(sqlite_store, rule_file.parent)
    assess(sqlite_store, planted_tree, AssessOptions(home=home, workers=1))
    run_malware_scan(
        sqlite_store,
        [planted_tree / "webapps"],
        MalwareScanOptions(home=home, save=True, jobs=1),
    )
    assert len(list_findings(sqlite_store, "default", kinds=[FindingKind.MALWARE])) == 1


# --- case 5: the malware runtime -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("match", "severity"),
    [
        ({"rule": "EICAR_Test_File", "type": "yara", "severity": "info"}, Severity.INFO),
        ({"rule": "Win.Test.EICAR_HDB-1", "type": "clamav"}, Severity.INFO),
        ({"rule": "Eicar-Test-Signature", "type": "hash"}, Severity.INFO),
        ({"rule": "Trojan.Geicarus", "type": "clamav"}, Severity.HIGH),  # not the word EICAR
        ({"rule": "EICAR_Dropper", "type": "yara", "severity": "high"}, Severity.HIGH),  # declared
    ],
)
def test_the_eicar_test_file_is_info(match: dict[str, Any], severity: Severity) -> None:
    report = ScanReport(detections=[Detection("e.com", "e.com", "0" * 64, 68, [match])])
    (finding,) = findings_from_report(report, Asset(name="/x", kind=AssetKind.DIRECTORY))
    assert finding.severity is severity


_POOL_PARENT = """
import sys, time
from pathlib import Path
from tianmu.malware.archives import ScanLimits
from tianmu.malware.kb import load_database
from tianmu.malware.pool import ScanPool
from tianmu.store.database import Store

home = Path(sys.argv[1])
store = Store(f"sqlite:///{home / 'tianmu.db'}")
pool = ScanPool(2, load_database(store, home), ScanLimits())
print(" ".join(str(worker.pid) for worker in pool._workers), flush=True)
time.sleep(120)
"""


def _gone(pid: int) -> bool:
    """Exited: no such process, or a zombie nobody reaped yet (a container's init may not)."""
    try:
        status = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return status.rsplit(")", 1)[1].split()[0] in {"Z", "X"}


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_scan_workers_end_when_their_parent_is_killed(tmp_path: Path) -> None:
    parent = subprocess.Popen(
        [sys.executable, "-c", _POOL_PARENT, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert parent.stdout is not None
        workers = [int(pid) for pid in parent.stdout.readline().split()]
        assert len(workers) == 2 and not any(_gone(pid) for pid in workers)
    finally:
        parent.send_signal(signal.SIGKILL)  # no clean-up runs: as `kill -9` of `tianmu assess`
        parent.wait()
    deadline = time.monotonic() + 10
    while not all(_gone(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert all(_gone(pid) for pid in workers)


def test_a_worker_without_prctl_still_notices_it_was_re_parented() -> None:
    tasks: queue.Queue[Any] = queue.Queue()
    # A parent pid that is not ours: as after the parent died and the worker was re-parented.
    assert pool._next_task(tasks, os.getppid() + 1) is None  # type: ignore[arg-type]
    tasks.put((0, []))
    assert pool._next_task(tasks, os.getppid()) == (0, [])  # type: ignore[arg-type]


QUARANTINE_KEY = "00112233445566778899aabbccddeeff"


def _quarantined(home: Path, folder: Path, mode: int) -> tuple[Path, QuarantineItem]:
    folder.mkdir(parents=True)
    sample = folder / "sample.bin"
    sample.write_bytes(b"#!/bin/sh\necho owned\n")
    os.chmod(sample, mode)
    return sample, quarantine_file(home, sample, reason="test")


@pytest.mark.parametrize(
    ("field", "value"),
    [("original_path", "/tmp/elsewhere/sample"), ("mode", 0o4755), ("uid", 4242), ("mtime_ns", 1)],
)
def test_an_edited_quarantine_entry_is_refused_before_anything_is_written(
    field: str, value: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TIANMU_MASTER_KEY", QUARANTINE_KEY)
    home = tmp_path / "home"
    sample, item = _quarantined(home, tmp_path / "site", 0o644)
    if field == "original_path":
        value = str(tmp_path / "elsewhere" / "sample")
    entry = home / "quarantine" / f"{item.id}.json"
    data = json.loads(entry.read_text(encoding="utf-8"))
    data[field] = value
    entry.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(IntegrityError, match="index entry was altered"):
        restore_item(home, item.id)
    assert not sample.exists() and not (tmp_path / "elsewhere").exists()
    result = CliRunner().invoke(
        app,
        ["malware", "restore", item.id],
        env={**_cli_env(tmp_path), "TIANMU_MASTER_KEY": QUARANTINE_KEY},
    )
    assert result.exit_code == 2 and "index entry was altered" in result.stderr
    assert "Traceback" not in result.output


def test_set_id_bits_are_restored_only_when_asked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TIANMU_MASTER_KEY", QUARANTINE_KEY)
    monkeypatch.setattr(out_console, "width", 200)
    home = tmp_path / "home"
    sample, item = _quarantined(home, tmp_path / "site", 0o6755)
    env = {**_cli_env(tmp_path), "TIANMU_MASTER_KEY": QUARANTINE_KEY}
    result = CliRunner().invoke(app, ["malware", "restore", item.id], env=env)
    assert result.exit_code == 0, result.output
    assert sample.stat().st_mode & 0o7777 == 0o755 and "set-uid/set-gid bits were not" in result.stderr
    again = CliRunner().invoke(app, ["malware", "restore", item.id, "--force", "--keep-setid"], env=env)
    assert again.exit_code == 0, again.output
    assert sample.stat().st_mode & 0o7777 == 0o6755


def test_an_entry_sealed_without_its_metadata_goes_only_where_told(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TIANMU_MASTER_KEY", QUARANTINE_KEY)
    home = tmp_path / "home"
    _, item = _quarantined(home, tmp_path / "site", 0o4755)
    # As quarantines made before the metadata was bound: the data key sealed with the id alone.
    key = gmcrypto.open(
        gmcrypto.master_key(home), bytes.fromhex(item.wrapped_key), aad=quarantine._metadata_aad(item)
    )
    entry = home / "quarantine" / f"{item.id}.json"
    data = json.loads(entry.read_text(encoding="utf-8"))
    data["wrapped_key"] = gmcrypto.seal(gmcrypto.master_key(home), key, aad=item.id.encode()).hex()
    entry.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(InputError, match="--to PATH"):
        restore_item(home, item.id)
    copy = restore_item(home, item.id, to=tmp_path / "copy.bin", keep_setid=True)
    assert copy.read_bytes() == b"#!/bin/sh\necho owned\n"
    assert copy.stat().st_mode & 0o7777 == 0o755  # nothing of an unauthenticated entry but the content


# --- saving: one hostile text must not fail the transaction of every engine's findings -------------

HOSTILE_NAME = "up\udc80load\x00.jsp"  # a file name's undecodable byte (surrogateescape) and a NUL


def test_hostile_texts_are_stored_not_fatal(store: Store) -> None:
    asset = Asset(name=f"/srv/{HOSTILE_NAME}", kind=AssetKind.DIRECTORY)
    component = Component(
        name="pkg\x00",
        version="1\udcff",
        ecosystem="PyPI",
        purl="pkg:pypi/pkg@1",
        location=Location(HOSTILE_NAME, 3),
    )
    hostile = Finding(
        kind=FindingKind.MALWARE,
        rule_id="rule\x00",
        title=f"Malware in {HOSTILE_NAME}",
        severity=Severity.HIGH,
        asset=asset,
        summary="\ud800 lone",
        component=component,
        evidence={"path": HOSTILE_NAME, HOSTILE_NAME: [HOSTILE_NAME], "fingerprint_extra": HOSTILE_NAME},
        references=(HOSTILE_NAME,),
        data={"raw": b"\x00\xff", "nan": math.nan},
    )
    plain = Finding(
        kind=FindingKind.MALWARE, rule_id="plain", title="plain", severity=Severity.LOW, asset=asset
    )
    assessment = Assessment(
        target=f"/srv/{HOSTILE_NAME}",
        asset=asset,
        started=datetime.now(UTC),
        components=[component],
        findings=[hostile, plain],
        errors=[f"{HOSTILE_NAME}:1: bad"],
    )
    saved = save_assessment(store, assessment)
    assert saved.new_findings == 2
    by_rule = {s.finding.rule_id: s.finding for s in list_findings(store, "default")}
    stored = by_rule["rule\\x00"]
    assert stored.title == "Malware in up\\x80load\\x00.jsp" and stored.summary == "\\xed\\xa0\\x80 lone"
    assert stored.evidence["path"] == "up\\x80load\\x00.jsp" and stored.data["nan"] is None
    assert stored.component is not None and stored.component.version == "1\\xff"
    # Found again, it is the same finding (the fingerprint is of the finding as the engine made it).
    assert save_assessment(store, assessment).seen_again == 2


def test_failing_annotation_and_situation_steps_keep_the_save(
    sqlite_store: Store, planted_tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("step bug")

    monkeypatch.setattr(road_finish, "annotate_findings", broken)
    monkeypatch.setattr(road_finish, "update_situation", broken)
    home = tmp_path / "home"
    home.mkdir()
    result = assess(sqlite_store, planted_tree, AssessOptions(home=home, workers=1))
    assert "ATT&CK annotation failed: RuntimeError: step bug" in result.errors
    assert "the situation step failed (results saved): RuntimeError: step bug" in result.errors
    stored = list_findings(sqlite_store, "default")
    assert stored and len(stored) == len({f.fingerprint for f in result.findings})


def test_a_file_that_breaks_the_scanner_costs_that_file_only(
    planted_tree: Path, rule_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with zipfile.ZipFile(planted_tree / "poison.zip", "w") as archive:
        archive.writestr("a.txt", b"a")

    def exploding(*args: Any, **kwargs: Any) -> Any:
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr(scanner_module, "iter_members", exploding)
    database = load_database(
        Store(f"sqlite:///{tmp_path / 'db.sqlite'}"), tmp_path, extra=read_rule_files(rule_file).rules
    )
    report = scan_paths([planted_tree], database, jobs=1, root=planted_tree)
    assert [d.path for d in report.detections] == ["webapps/ROOT/up.jsp"]
    assert report.errors == ["poison.zip: cannot scan: RecursionError: maximum recursion depth exceeded"]


def test_detect_after_assess_stores_no_second_copy(
    sqlite_store: Store, planted_tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    assess(sqlite_store, planted_tree, AssessOptions(home=home, workers=1))
    before = _stored_fingerprints(sqlite_store)
    assert before
    run_detect(sqlite_store, DetectJob(paths=[planted_tree / "logs"], home=home, workers=1))
    monkeypatch.chdir(planted_tree / "webapps")
    run_detect(sqlite_store, DetectJob(paths=[Path("../logs/auth.log")], home=home, workers=1))
    assert _stored_fingerprints(sqlite_store) == before


def test_a_worker_failure_names_its_real_cause() -> None:
    """A pool's failure carries the worker's traceback: its last line (the cause) is kept, not lost."""
    failure = RuntimeError(
        'a scanning worker failed:\nTraceback (most recent call last):\n  File "x.py", line 1\n'
        "ValueError: bad thing"
    )
    assert describe(failure) == "RuntimeError: a scanning worker failed: … ValueError: bad thing"
