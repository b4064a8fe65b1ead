"""The road of `assess`: the target walked once, each log parsed once for every event engine, each file
opened at most twice, and the same findings whether the log pass runs in one process or several."""

from __future__ import annotations

import gzip
import os
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tianmu.assets.engine import InventoryEngine
from tianmu.core.engine import FileClass
from tianmu.core.models import FindingKind
from tianmu.readers import sources
from tianmu.road.assess import AssessOptions, assess
from tianmu.road.collect import Classifier, collect
from tianmu.road.knowledge import import_any
from tianmu.store.database import Store
from tianmu.store.knowledge import KbContext

REPO = Path(__file__).resolve().parents[2]
DEMO_TARGET = REPO / "demo" / "target"


@pytest.fixture(scope="module")
def demo_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Store, Path]]:
    home = tmp_path_factory.mktemp("home")
    store = Store(f"sqlite:///{home / 'tianmu.db'}")
    import_any(KbContext(store, home), REPO / "demo" / "kb")
    yield store, home
    store.close()


def test_each_log_is_parsed_once_for_every_event_engine(
    demo_home: tuple[Store, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    store, home = demo_home
    parsed: Counter[str] = Counter()
    original = sources._read_stream

    def counting(stream: Any, name: str, *args: Any) -> Iterator[Any]:
        parsed[name] += 1
        return original(stream, name, *args)

    monkeypatch.setattr(sources, "_read_stream", counting)
    result = assess(store, DEMO_TARGET, AssessOptions(home=home, save=False))
    logs = {name.removeprefix(str(DEMO_TARGET) + "/") for name in parsed}
    assert {"logs/auth.log", "logs/access.log", "logs/eve.json"} <= logs
    assert set(parsed.values()) == {1}, parsed
    kinds = Counter(f.kind for f in result.findings)
    # Both event engines saw the one parse: detections and intel hits from the same log lines.
    assert kinds[FindingKind.DETECTION] == 21 and kinds[FindingKind.INTEL] == 5
    intel_logs = {f.evidence["path"] for f in result.findings if f.kind is FindingKind.INTEL}
    assert {"logs/auth.log", "logs/access.log", "logs/eve.json"} <= intel_logs


def test_the_target_is_walked_once(demo_home: tuple[Store, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    store, home = demo_home
    listed: Counter[str] = Counter()
    original = os.scandir

    def counting(path: Any = ".") -> Any:
        listed[os.path.abspath(path)] += 1
        return original(path)

    walk = os.walk

    def no_second_walk(top: Any, *args: Any, **kwargs: Any) -> Iterator[Any]:
        assert not str(Path(top).resolve()).startswith(str(DEMO_TARGET)), f"a second walk of {top}"
        return walk(top, *args, **kwargs)

    monkeypatch.setattr(os, "scandir", counting)
    monkeypatch.setattr(os, "walk", no_second_walk)
    assess(
        store,
        DEMO_TARGET,
        AssessOptions(home=home, save=False, engines=("vulnerability", "intel", "detection")),
    )
    assert listed[str(DEMO_TARGET)] == 1 and set(listed.values()) == {1}


@pytest.mark.skipif(shutil.which("strace") is None, reason="strace is not installed (make test installs it)")
def test_no_file_of_the_target_is_opened_more_than_twice(tmp_path: Path) -> None:
    env = {**os.environ, "TIANMU_HOME": str(tmp_path / "home"), "TIANMU_DATABASE_URL": ""}
    tianmu = [str(Path(sys.executable).with_name("tianmu"))]
    subprocess.run(
        [*tianmu, "kb", "import", str(REPO / "demo" / "kb")], env=env, check=True, capture_output=True
    )
    trace = tmp_path / "trace"
    subprocess.run(
        [
            "strace",
            "-f",
            "-e",
            "trace=openat",
            "-o",
            str(trace),
            *tianmu,
            "assess",
            str(DEMO_TARGET),
            "--fail-on",
            "none",
        ],
        env=env,
        check=True,
        capture_output=True,
    )
    opened: Counter[str] = Counter()
    for line in trace.read_text().splitlines():
        if "ENOENT" in line or "O_DIRECTORY" in line or str(DEMO_TARGET) not in line:
            continue
        opened[line.split('"')[1]] += 1
    regular = [path for path in opened if Path(path).is_file()]
    assert len(regular) == sum(1 for p in DEMO_TARGET.rglob("*") if p.is_file())
    assert max(opened.values()) <= 2, opened.most_common(5)


def _tree(root: Path, logs: int) -> Path:
    """A tree of auth logs (brute force from many sources), a lockfile, and source files."""
    (root / "app").mkdir(parents=True)
    (root / "app" / "requirements.txt").write_text("django==3.2.0\n")
    for index in range(20):
        (root / "app" / f"module_{index}.py").write_text(f"def handler_{index}():\n    return {index}\n")
    (root / "var" / "log").mkdir(parents=True)
    for index in range(logs):
        lines = [
            f"Nov 14 10:{minute:02d}:{second:02d} web{index} sshd[4242]: Failed password for root from "
            f"203.0.113.{index % 250} port 51000 ssh2"
            for minute in range(3)
            for second in range(0, 60, 5)
        ]
        lines.append(
            f"Nov 14 10:04:00 web{index} sshd[4242]: Accepted password for root from 203.0.113.{index % 250} "
            "port 51001 ssh2"
        )
        text = "\n".join(lines) + "\n"
        name = root / "var" / "log" / f"auth{index}.log"
        if index % 3 == 0:
            name.with_suffix(".log.1.gz").write_bytes(gzip.compress(text.encode()))
        else:
            name.write_text(text)
    return root


def test_parallel_log_pass_finds_what_one_process_finds(
    demo_home: tuple[Store, Path], tmp_path: Path
) -> None:
    store, home = demo_home
    root = _tree(tmp_path / "target", 24)
    engines = ("intel", "detection")
    one = assess(store, root, AssessOptions(home=home, save=False, engines=engines, workers=1))
    two = assess(store, root, AssessOptions(home=home, save=False, engines=engines, workers=2))
    assert [f.fingerprint for f in one.findings] == [f.fingerprint for f in two.findings]
    assert [f.evidence for f in one.findings] == [f.evidence for f in two.findings]
    assert one.notes == two.notes and one.errors == two.errors
    assert sum(1 for f in one.findings if f.kind is FindingKind.DETECTION) >= 24  # a brute force per host


def test_a_file_is_classified_once(tmp_path: Path) -> None:
    root = _tree(tmp_path / "target", 3)
    (root / "var" / "lib" / "dpkg").mkdir(parents=True)
    (root / "var" / "lib" / "dpkg" / "status").write_text("Package: a\n")
    (root / "etc").mkdir()
    (root / "etc" / "os-release").write_text("ID=debian\n")
    (root / "var" / "log" / "messages").write_text("Nov 14 10:00:00 host kernel: up\n")
    (root / "node_modules" / "x").mkdir(parents=True)
    (root / "node_modules" / "x" / "debug.log").write_text("not walked for logs\n")
    found = {f.relpath: f.classes for f in collect(root, Classifier(InventoryEngine().claims)).files}
    assert found["app/requirements.txt"] == {FileClass.ANY, FileClass.PACKAGE}  # a lockfile, not a log
    assert found["var/lib/dpkg/status"] == {FileClass.ANY, FileClass.PACKAGE}
    assert found["etc/os-release"] == {FileClass.ANY, FileClass.PACKAGE}  # read beside the package database
    assert found["var/log/auth1.log"] == {FileClass.ANY, FileClass.LOG}
    assert found["var/log/auth0.log.1.gz"] == {FileClass.ANY, FileClass.LOG}
    # A suffixless file may be a log or a Go binary: its content decides, in each reader.
    assert found["var/log/messages"] == {FileClass.ANY, FileClass.LOG, FileClass.PACKAGE}
    assert found["app/module_1.py"] == {FileClass.ANY, FileClass.SOURCE}
    assert found["node_modules/x/debug.log"] == {FileClass.ANY}
