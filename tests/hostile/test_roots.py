"""Live system roots: pseudo and other file systems, FIFOs, excludes and `.tianmuignore`.

Every job walks with `tianmu.core.walk`: the road's collector (assess, inventory, vulns), `tianmu malware
scan` and `tianmu detect`. Mounts cannot be made in a test, so the mount table is given (`WalkRules
.mounts`) where a folder of the generated tree plays a `/proc` or another disk; the real table is used
where only reading it is needed (`/proc/kmsg`, `/` itself).
"""

from __future__ import annotations

import io
import json
import os
import signal
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any, BinaryIO, cast

import pytest
from typer.testing import CliRunner

from tianmu.assets.engine import InventoryEngine
from tianmu.assets.inventory import InventoryReader, scan_inventory
from tianmu.cli.main import app
from tianmu.core.engine import FileClass
from tianmu.core.errors import InputError
from tianmu.core.walk import MountTable, WalkRules, WalkSkips, refuse_named, walk_tree
from tianmu.malware.report import ScanReport
from tianmu.malware.walk import walk_paths
from tianmu.readers import sources
from tianmu.readers._common import ReadStats
from tianmu.readers.limits import ReadLimits, ReadStopped
from tianmu.readers.sources import iter_file_events
from tianmu.road.assess import AssessOptions, assess
from tianmu.road.collect import Classifier, collect
from tianmu.road.knowledge import import_any
from tianmu.store import Store
from tianmu.store.knowledge import KbContext


@contextmanager
def _no_hang(seconds: int = 20) -> Iterator[None]:
    """Fail instead of hanging for ever when something opens a FIFO nobody writes to."""

    def expired(_signum: int, _frame: FrameType | None) -> None:
        raise AssertionError(f"still running after {seconds} s: a FIFO or pseudo file was opened")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def _tree(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    (root / "app").mkdir(parents=True)
    (root / "app" / "requirements.txt").write_text("requests==2.19.0\n")
    (root / "fakeproc" / "1").mkdir(parents=True)
    (root / "fakeproc" / "kmsg").write_text("never read\n")
    (root / "disk2").mkdir()
    (root / "disk2" / "requirements.txt").write_text("flask==0.12\n")
    os.mkfifo(root / "app" / "server.log")
    return root


def _mounts(root: Path) -> MountTable:
    real = os.path.realpath(root)
    return MountTable({"/": "ext4", f"{real}/fakeproc": "proc", f"{real}/disk2": "xfs"})


def _relpaths(root: Path, rules: WalkRules, skips: WalkSkips) -> list[str]:
    return [rel for _item, rel in walk_tree(root, on_error=lambda *_: None, rules=rules, skips=skips)]


def test_mountinfo_is_parsed_with_its_escapes() -> None:
    text = (
        "22 27 0:21 / /proc rw,relatime - proc proc rw\n"
        "30 27 8:2 / /mnt/my\\040disk rw shared:1 - ext4 /dev/sda2 rw\n"
        "31 30 0:40 / /mnt/my\\040disk rw - tmpfs tmpfs rw\n"
        "garbage line\n"
    )
    table = MountTable.parse(text)
    assert table.at("/proc") == "proc"
    assert table.at("/mnt/my disk") == "tmpfs"  # the mount listed later covers the earlier one
    assert table.containing("/proc/1/status") == ("/proc", "proc")
    assert table.containing("/etc/passwd") is None


def test_pseudo_and_other_file_systems_are_not_entered_and_are_noted(tmp_path: Path) -> None:
    root = _tree(tmp_path)
    skips = WalkSkips()
    seen = _relpaths(root, WalkRules(mounts=_mounts(root)), skips)
    assert seen == ["app/requirements.txt", "app/server.log"]
    assert skips.pseudo == ["fakeproc (proc)"] and skips.other_fs == ["disk2 (xfs)"]
    notes = " ".join(skips.notes())
    assert "pseudo file systems not entered: fakeproc" in notes and "--cross-filesystems" in notes


def test_cross_filesystems_enters_other_disks_but_never_pseudo_ones(tmp_path: Path) -> None:
    root = _tree(tmp_path)
    skips = WalkSkips()
    seen = _relpaths(root, WalkRules(mounts=_mounts(root), cross_filesystems=True), skips)
    assert "disk2/requirements.txt" in seen and not any(rel.startswith("fakeproc") for rel in seen)


def test_a_root_on_a_pseudo_file_system_is_refused(tmp_path: Path) -> None:
    root = _tree(tmp_path)
    mounts = _mounts(root)
    assert "pseudo file system (proc" in (refuse_named(root / "fakeproc" / "kmsg", mounts) or "")
    skips = WalkSkips()
    assert _relpaths(root / "fakeproc", WalkRules(mounts=mounts), skips) == []
    assert skips.pseudo


@pytest.mark.skipif(not os.path.exists("/proc/kmsg"), reason="needs a Linux /proc")
def test_proc_kmsg_and_the_system_pseudo_folders_are_known_from_the_real_mount_table() -> None:
    assert "pseudo file system (proc" in (refuse_named(Path("/proc/kmsg")) or "")
    skips = WalkSkips()
    # Only the top of `/` is walked here: every other folder is left out by the caller.
    keep = {"proc", "sys", "dev"}
    for _ in walk_tree(
        Path("/"), on_error=lambda *_: None, skip_dir=lambda _r, n: n not in keep, skips=skips
    ):
        pass
    left_out = {entry.split(" ")[0] for entry in skips.pseudo + skips.other_fs}
    assert keep <= left_out


def test_the_collector_never_opens_a_fifo_and_refuses_one_named(tmp_path: Path) -> None:
    root = _tree(tmp_path)
    found = collect(root, Classifier(InventoryEngine().claims), WalkRules(mounts=_mounts(root)))
    assert [f.relpath for f in found.files] == ["app/requirements.txt"]
    assert found.special == 1 and any("FIFO" in note for note in found.notes())
    named = collect(root / "app" / "server.log", Classifier(InventoryEngine().claims))
    assert named.files == [] and named.errors == [
        f"{root}/app/server.log: a FIFO, not a regular file: not read"
    ]


def test_assess_of_a_tree_with_a_fifo_log_finishes_and_says_what_it_skipped(
    sqlite_store: Store, tmp_path: Path
) -> None:
    root = _tree(tmp_path)
    with _no_hang():
        result = assess(sqlite_store, root, AssessOptions(save=False, walk=WalkRules(mounts=_mounts(root))))
    assert {c.name for c in result.components} == {"requests"}
    notes = " ".join(result.notes)
    assert "fakeproc" in notes and "disk2" in notes and "FIFO" in notes


def test_malware_walk_never_opens_a_fifo_or_a_pseudo_file(tmp_path: Path) -> None:
    root = _tree(tmp_path)
    report = ScanReport()
    rules = WalkRules(mounts=_mounts(root))
    with _no_hang():
        named = [root, root / "app" / "server.log", root / "fakeproc" / "kmsg"]
        files = [f.relpath for f in walk_paths(named, tmp_path, report, rules)]
    assert files == ["root/app/requirements.txt"]
    assert any("server.log: a FIFO, not a regular file" in error for error in report.errors)
    assert any("kmsg: on a pseudo file system (proc" in error for error in report.errors)
    assert any("FIFO" in note for note in report.notes) and any("fakeproc" in note for note in report.notes)


def test_exclude_and_tianmuignore_leave_entries_out_and_are_counted(tmp_path: Path) -> None:
    root = tmp_path / "t"
    for rel in ("a/keep.txt", "a/drop.tmp", "build/out.txt", "node/x/requirements.txt", "b/build/y.txt"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text("x\n")
    (root / ".tianmuignore").write_text("# comment\n/build/\n*.tmp\n\\\n")
    skips = WalkSkips()
    rules = WalkRules(exclude=("node/",), mounts=MountTable(), ignore_file=True)
    seen = _relpaths(root, rules, skips)
    assert seen == [".tianmuignore", "a/keep.txt", "b/build/y.txt"]
    assert (skips.excluded, skips.ignored) == (1, 2)
    assert skips.errors and skips.errors[0].startswith(f"{root}/.tianmuignore:4: not a glob")
    assert "1 entries excluded by --exclude" in skips.notes()
    assert any(note.startswith(f"{root}/.tianmuignore: used (owner uid") for note in skips.notes())
    without = _relpaths(root, WalkRules(ignore_file=False, mounts=MountTable()), WalkSkips())
    assert "build/out.txt" in without


def test_a_bad_exclude_glob_is_a_clear_error() -> None:
    with pytest.raises(InputError, match=r"--exclude '\\\\'"):
        WalkRules(exclude=("\\",))


_EICAR = "X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {"TIANMU_HOME": str(tmp_path / "home"), "TIANMU_DATABASE_URL": "", "TIANMU_TENANT": ""}


def test_vulns_runs_only_the_inventory_and_the_vulnerability_engine(
    tmp_path: Path, env: dict[str, str]
) -> None:
    root = tmp_path / "t"
    (root / "app").mkdir(parents=True)
    (root / "app" / "requirements.txt").write_text("requests==2.19.0\n")
    (root / "eicar.com").write_text(_EICAR)
    result = CliRunner().invoke(app, ["vulns", str(root), "--json"], env=env)
    document = json.loads(result.stdout)
    assert document["engines"] == ["vulnerability"]
    assert not any(note.startswith(("malware", "detection", "intel")) for note in document["notes"])
    inventory = CliRunner().invoke(app, ["inventory", str(root), "--json"], env=env)
    assert json.loads(inventory.stdout)["engines"] == []


def test_exclude_reaches_assess_inventory_and_vulns(tmp_path: Path, env: dict[str, str]) -> None:
    root = tmp_path / "t"
    for rel in ("app/requirements.txt", "vendor/requirements.txt"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text("requests==2.19.0\n")
    for command in ("inventory", "vulns"):
        result = CliRunner().invoke(app, [command, str(root), "--json", "--exclude", "vendor/"], env=env)
        document = json.loads(result.stdout)
        assert [c["location"]["path"] for c in document["components"]] == ["app/requirements.txt"], command
        assert "1 entries excluded by --exclude" in document["notes"]
    bad = CliRunner().invoke(app, ["inventory", str(root), "--exclude", "\\"], env=env)
    assert bad.exit_code == 2 and "not a glob" in bad.output


def test_malware_scan_and_detect_refuse_a_fifo_named_and_skip_one_found(
    tmp_path: Path, env: dict[str, str]
) -> None:
    root = tmp_path / "t"
    root.mkdir()
    os.mkfifo(root / "auth.log")
    (root / "eicar.com").write_text(_EICAR)
    (root / "skip").mkdir()
    (root / "skip" / "eicar2.com").write_text(_EICAR)
    runner = CliRunner()
    with _no_hang():
        named = runner.invoke(app, ["malware", "scan", str(root / "auth.log")], env=env)
        assert named.exit_code == 2 and "a FIFO, not a regular file" in named.output
        walked = runner.invoke(app, ["malware", "scan", str(root), "--json", "--exclude", "skip/"], env=env)
        report = json.loads(walked.stdout)
        assert [d["path"] for d in report["detections"]] == [f"{root}/eicar.com"]
        assert any("FIFO" in note for note in report["notes"])
        assert any("excluded by --exclude" in note for note in report["notes"])
        detect = runner.invoke(app, ["detect", str(root / "auth.log")], env=env)
        assert detect.exit_code == 2 and "a FIFO, not a regular file" in detect.output
        folder = runner.invoke(app, ["detect", str(root), "--json", "--exclude", "skip/"], env=env)
        assert any("FIFO" in note for note in json.loads(folder.stdout)["notes"])


def _inventory(root: Path) -> tuple[list[str], list[str]]:
    found = scan_inventory(root)
    return sorted(f"{c.name}=={c.version}" for c in found.components), [str(e) for e in found.errors]


def test_requirements_includes_stay_inside_the_tree_and_are_regular_files(tmp_path: Path) -> None:
    outside = tmp_path / "host-secret.txt"
    outside.write_text("rootpw==1.0\n")
    root = tmp_path / "t"
    (root / "sub").mkdir(parents=True)
    os.mkfifo(root / "sub" / "pipe.txt")
    os.symlink(outside, root / "sub" / "link.txt")
    (root / "sub" / "ok.txt").write_text("flask==2.0.0\n")
    (root / "requirements.txt").write_text(
        "requests==2.19.0\n-r /dev/zero\n-r ../host-secret.txt\n"
        "-r sub/pipe.txt\n-r sub/link.txt\n-r sub/ok.txt\n"
    )
    with _no_hang():
        components, errors = _inventory(root)
    assert components == ["flask==2.0.0", "requests==2.19.0"]
    assert errors == [
        "requirements.txt:2: included file /dev/zero not read: outside the scanned tree",
        "requirements.txt:3: included file ../host-secret.txt not read: outside the scanned tree",
        "requirements.txt:4: included file sub/pipe.txt not read: a FIFO, not a regular file: not read",
        "requirements.txt:5: included file sub/link.txt not read: outside the scanned tree",
    ]
    # Named on its own, the file's folder is the tree: its includes may not leave it either.
    single = scan_inventory(root / "requirements.txt")
    assert "flask" in {c.name for c in single.components} and "rootpw" not in {
        c.name for c in single.components
    }


def _metadata(name: str, version: str) -> str:
    return f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n\nA long description.\n"


def _site_packages(tmp_path: Path) -> Path:
    site = tmp_path / "usr" / "lib" / "python3" / "dist-packages"
    (site / "cryptography-38.0.4.dist-info").mkdir(parents=True)
    (site / "cryptography-38.0.4.dist-info" / "METADATA").write_text(_metadata("cryptography", "38.0.4"))
    # The same distribution also left an egg-info: one component, not two.
    (site / "cryptography-38.0.4.egg-info").mkdir()
    (site / "cryptography-38.0.4.egg-info" / "PKG-INFO").write_text(_metadata("Cryptography", "38.0.4"))
    # Legacy distutils installs leave a single file.
    (site / "pycairo-1.20.1.egg-info").write_text(_metadata("pycairo", "1.20.1"))
    # A package's own payload is not installed software.
    (site / "sphinxpkg" / "docs").mkdir(parents=True)
    (site / "sphinxpkg" / "docs" / "requirements.txt").write_text("sphinx==1.0\n")
    (site / "sphinxpkg" / "uv.lock").write_text('[[package]]\nname = "x"\nversion = "1"\n')
    return site


def test_installed_python_from_the_site_folder_itself_and_from_above(tmp_path: Path) -> None:
    site = _site_packages(tmp_path)
    expected = ["cryptography==38.0.4", "pycairo==1.20.1"]
    for root in (site, tmp_path / "usr"):
        components, errors = _inventory(root)
        assert (components, errors) == (expected, []), root


def test_vulns_reports_an_advisory_once_for_a_package_with_dist_info_and_egg_info(
    sqlite_store: Store, tmp_path: Path
) -> None:
    site = _site_packages(tmp_path)
    osv = tmp_path / "osv"
    osv.mkdir()
    affected = {
        "package": {"ecosystem": "PyPI", "name": "cryptography"},
        "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "39.0.1"}]}],
    }
    record = {"id": "GHSA-test-0001", "modified": "2024-01-01T00:00:00Z", "affected": [affected]}
    (osv / "GHSA-test-0001.json").write_text(json.dumps(record))
    import_any(KbContext(sqlite_store, tmp_path / "home"), osv)
    options = AssessOptions(engines=("vulnerability",), save=False, walk=WalkRules(mounts=MountTable()))
    found = assess(sqlite_store, site, options)
    assert sorted(c.name for c in found.components) == ["cryptography", "pycairo"]
    assert [f.rule_id for f in found.findings] == ["GHSA-test-0001"]


def test_vulns_and_inventory_read_one_file_in_the_format_named(tmp_path: Path, env: dict[str, str]) -> None:
    deps = tmp_path / "deps.in"
    deps.write_text("requests==2.19.0\n")
    lock = tmp_path / "frontend.lock.json"
    lock.write_text(
        json.dumps({"lockfileVersion": 3, "packages": {"node_modules/lodash": {"version": "4.17.4"}}})
    )
    runner = CliRunner()
    unnamed = runner.invoke(app, ["vulns", str(deps), "--json"], env=env)
    assert unnamed.exit_code == 2 or json.loads(unnamed.stdout)["components"] == []  # not by its name
    for command in ("vulns", "inventory"):
        result = runner.invoke(app, [command, str(deps), "--json", "--format", "requirements"], env=env)
        assert [c["name"] for c in json.loads(result.stdout)["components"]] == ["requests"], result.output
    npm = runner.invoke(app, ["inventory", str(lock), "--json", "--format", "package-lock"], env=env)
    assert [c["name"] for c in json.loads(npm.stdout)["components"]] == ["lodash"], npm.output
    unknown = runner.invoke(app, ["vulns", str(deps), "--format", "nope"], env=env)
    assert unknown.exit_code == 2 and "not a format Tianmu reads (known: requirements" in unknown.output
    folder = runner.invoke(app, ["vulns", str(tmp_path), "--format", "requirements"], env=env)
    assert folder.exit_code == 2 and "give a file, not a folder" in folder.output


def test_lockfile_sbom_and_pom_versions_that_are_no_versions_are_located_warnings(tmp_path: Path) -> None:
    root = tmp_path / "t"
    root.mkdir()
    (root / "uv.lock").write_text(
        'version = 1\n\n[[package]]\nname = "good"\nversion = "1.0"\n\n'
        '[[package]]\nname = "bad"\nversion = { major = 1 }\n\n[[package]]\nname = "num"\nversion = 2\n'
    )
    bom = {
        "bomFormat": "CycloneDX",
        "specVersion": "1.5",
        "components": [
            {"type": "library", "name": "requests", "purl": "pkg:pypi/requests@2.19.0"},
            {"type": "library", "name": "evil", "purl": "pkg:pypi/ev%zzil@1.0"},
        ],
    }
    (root / "bom.cdx.json").write_text(json.dumps(bom, indent=1))
    (root / "pom.xml").write_text(
        "<project><dependencies>\n"
        "<dependency><groupId>g</groupId><artifactId>ok</artifactId><version>1.2</version></dependency>\n"
        "<dependency><groupId>g</groupId><artifactId>odd</artifactId><version>1 2</version></dependency>\n"
        "</dependencies></project>\n"
    )
    components, errors = _inventory(root)
    assert components == ["g:ok==1.2", "good==1.0", "requests==2.19.0"]
    assert sorted(errors) == [
        "bom.cdx.json:13: invalid package URL 'pkg:pypi/ev%zzil@1.0': a % not followed by two hex digits",
        "pom.xml:3: dependency g:odd: the version '1 2' holds spaces, control characters or markup: "
        "not a component",
        "uv.lock:12: package 'num': the version is a int, not a string: not a component",
        "uv.lock:8: package 'bad': the version is a dict, not a string: not a component",
    ]


def test_a_file_gone_between_the_walk_and_its_reading_is_counted_not_an_error(tmp_path: Path) -> None:
    reader = InventoryReader(str(tmp_path))
    reader.read(tmp_path / "requirements.txt", "requirements.txt", Path("t/requirements.txt"))
    assert (reader.result.vanished, reader.result.errors, reader.result.files_read) == (1, [], 0)


def test_the_collector_keeps_only_the_files_the_engines_read(tmp_path: Path) -> None:
    root = tmp_path / "t"
    (root / "src").mkdir(parents=True)
    (root / "requirements.txt").write_text("requests==2.19.0\n")
    for index in range(50):
        (root / "src" / f"m{index}.py").write_text("x = 1\n")
    classifier = Classifier(InventoryEngine().claims)
    rules = WalkRules(mounts=MountTable())
    everything = collect(root, classifier, rules)
    assert len(everything.files) == 51
    assert len({id(f.classes) for f in everything.files}) == 2  # one class set object per kind
    packages = collect(root, classifier, rules, frozenset({FileClass.PACKAGE}))
    assert [f.relpath for f in packages.files] == ["requirements.txt"]


def test_a_deeply_nested_json_file_found_in_a_walk_does_not_fail_the_log_pass(
    sqlite_store: Store, tmp_path: Path
) -> None:
    root = tmp_path / "t"
    root.mkdir()
    (root / "app.log").write_text('{"a":' * 20_000 + "1" + "}" * 20_000 + "\n")
    options = AssessOptions(engines=("detection",), save=False, home=tmp_path / "home")
    result = assess(sqlite_store, root, options)
    assert not any("failed" in error for error in result.errors), result.errors


def test_an_encrypted_zip_member_is_a_located_error_not_a_failed_log_pass(tmp_path: Path) -> None:
    path = tmp_path / "logs.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("auth.log", "Jan  1 00:00:00 host sshd[1]: Accepted password for a\n")
    data = bytearray(path.read_bytes())
    # Set the "encrypted" flag in the local header and the central directory, as a password zip has.
    for signature, flag_at in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        at = data.find(signature)
        data[at + flag_at] |= 0x1
    path.write_bytes(bytes(data))
    stats = ReadStats()
    events = list(iter_file_events(path, stats, strict=False))
    assert events == []
    assert any("encrypted" in error or "password" in error for error in stats.errors), stats.errors


def test_a_damaged_stream_read_again_as_text_is_no_text_not_a_failed_log_pass(tmp_path: Path) -> None:
    # What `assess /` met: a compressed file whose first read broke off, read again as plain text.
    class Stopped(io.RawIOBase):
        def __init__(self, path: Path) -> None:
            self._file = path.open("rb")

        def readable(self) -> bool:
            return True

        def fileno(self) -> int:
            return self._file.fileno()

        def seek(self, offset: int, whence: int = 0) -> int:
            return 0

        def readinto(self, _buffer: Any) -> int:
            raise ReadStopped("damaged data (EOFError: Compressed file ended)")

    path = tmp_path / "notes.gz"
    path.write_bytes(b"\x1f\x8b")
    assert sources._text_lines(cast(BinaryIO, Stopped(path)), str(path), ReadLimits()) is None
