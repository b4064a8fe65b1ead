"""scan_inventory: the walk, error handling per file, locations, de-duplication, progress."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tianmu.assets.interface import Extracted, Extractor
from tianmu.assets.inventory import scan_inventory
from tianmu.assets.python import RequirementsExtractor
from tianmu.core.models import Component


def names(result_components: list[Component]) -> set[tuple[str, str, str]]:
    return {(c.ecosystem, c.name, c.version) for c in result_components}


def test_whole_fixture_tree(fixtures: Path) -> None:
    seen: list[str] = []
    result = scan_inventory(fixtures, progress=seen.append)
    assert result.root == str(fixtures)
    by_file: dict[str, int] = {}
    for c in result.components:
        assert c.location is not None
        by_file[c.location.path] = by_file.get(c.location.path, 0) + 1
    assert by_file["python/requirements.txt"] == 3
    assert by_file["js/npm-v3/package-lock.json"] == 5
    assert by_file["debian-rootfs/var/lib/dpkg/status"] == 4
    assert by_file["sbom/bom.json"] == 1
    assert "sbom/sbom-config.json" not in seen  # a generic name whose content is not an SBOM
    assert {
        ("Ubuntu", "curl", "7.81.0-1ubuntu1.13"),
        ("Alpine", "musl", "1.2.4-r2"),
        ("Go", "golang.org/x/text", "v0.3.5"),
        ("crates.io", "regex", "1.5.4"),
        ("RubyGems", "nokogiri", "1.13.1"),
    } <= names(result.components)
    # 28 inventory files in the fixture tree, all parsed; requirements/base.txt and requirements.txt
    # include each other, which is reported once per direction
    assert result.files_read == 28 == len(seen)
    assert sorted(str(e) for e in result.errors) == [
        "python/requirements.txt:2: include loop: requirements/base.txt is already being read",
        "python/requirements/base.txt:3: include loop: ../requirements.txt is already being read",
    ]
    # exact duplicates (base.txt read on its own and through requirements.txt) are reported once
    keys = [
        (c.ecosystem, c.name, c.version, c.location.path if c.location else "") for c in result.components
    ]
    assert len(keys) == len(set(keys))
    assert seen == sorted(seen, key=lambda p: p.split("/")[0])  # depth-first, sorted by name


def test_single_file_root(fixtures: Path) -> None:
    result = scan_inventory(fixtures / "rust" / "Cargo.lock")
    assert [(c.name, str(c.location)) for c in result.components] == [
        ("regex", "Cargo.lock:14"),
        ("smallvec", "Cargo.lock:20"),
    ]
    assert result.files_read == 1 and result.errors == []


def test_single_dpkg_status_file_sees_its_tree(fixtures: Path) -> None:
    result = scan_inventory(fixtures / "ubuntu-rootfs" / "var" / "lib" / "dpkg" / "status")
    [curl] = result.components
    assert (curl.ecosystem, str(curl.location)) == ("Ubuntu", "status:1")


def test_missing_root(tmp_path: Path) -> None:
    result = scan_inventory(tmp_path / "nope")
    assert [e.message for e in result.errors] == ["no such file or directory"]
    assert result.files_read == 0


@pytest.fixture
def messy_tree(tmp_path: Path, fixtures: Path) -> Path:
    """A tree with one good lockfile and every kind of bad input next to it."""
    root = tmp_path / "tree"
    root.mkdir()
    shutil.copy(fixtures / "rust" / "Cargo.lock", root / "Cargo.lock")
    (root / "broken").mkdir()
    (root / "broken" / "package-lock.json").write_text('{\n  "lockfileVersion": 3,\n  "packages": {,\n}\n')
    (root / "garbage").mkdir()
    (root / "garbage" / "yarn.lock").write_bytes(bytes(range(256)) * 64)
    (root / "latin1").mkdir()
    (root / "latin1" / "requirements.txt").write_bytes(b"django==3.2.0\ncaf\xe9==1.0\n")
    (root / "huge").mkdir()
    with (root / "huge" / "package-lock.json").open("wb") as handle:
        handle.truncate(1 << 30)  # sparse: 1 GiB by stat, nothing on disk
    (root / "loop").mkdir()
    (root / "loop" / "self").symlink_to(root / "loop", target_is_directory=True)
    (root / "loop" / "parent").symlink_to("..", target_is_directory=True)
    (root / "loop" / "requirements.txt").write_text("requests==2.19.1\n")
    (root / ".git").mkdir()
    (root / ".git" / "requirements.txt").write_text("evil==6.6.6\n")
    (root / "node_modules" / ".cache").mkdir(parents=True)
    (root / "node_modules" / ".cache" / "package-lock.json").write_text("{}")
    outside = tmp_path / "outside-requirements.txt"
    outside.write_text("leaked==1.0\n")
    (root / "requirements-link.txt").symlink_to(outside)
    (root / "requirements-dangling.txt").symlink_to(tmp_path / "missing.txt")
    return root


def test_bad_inputs_are_errors_and_the_walk_goes_on(messy_tree: Path) -> None:
    started = time.monotonic()
    result = scan_inventory(messy_tree)
    assert time.monotonic() - started < 5  # the 1 GiB file is refused by size, not read
    assert names(result.components) == {
        ("crates.io", "regex", "1.5.4"),
        ("crates.io", "smallvec", "1.6.0"),
        ("PyPI", "requests", "2.19.1"),
    }
    errors = {(e.path, e.line): e.message for e in result.errors}
    assert errors[("broken/package-lock.json", 3)].startswith("invalid JSON: Expecting property name")
    assert errors[("garbage/yarn.lock", None)] == "binary content where a text file was expected"
    assert errors[("latin1/requirements.txt", 2)].startswith("not valid UTF-8 text")
    assert errors[("huge/package-lock.json", None)] == (
        "file too large for npm-lock (1073741824 bytes; limit 268435456)"
    )
    assert len(result.errors) == 4
    assert result.files_read == 2  # Cargo.lock and loop/requirements.txt
    # the symlink loop was not followed: the only locations are the real paths
    assert {c.location.path for c in result.components if c.location} == {
        "Cargo.lock",
        "loop/requirements.txt",
    }


def test_unreadable_file_simulated(messy_tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_read_bytes = Path.read_bytes

    def deny(self: Path) -> bytes:
        if self.name == "Cargo.lock":
            raise PermissionError(13, "Permission denied", str(self))
        return real_read_bytes(self)

    monkeypatch.setattr(Path, "read_bytes", deny)
    result = scan_inventory(messy_tree)
    assert "cannot read file: Permission denied" in {
        e.message for e in result.errors if e.path == "Cargo.lock"
    }
    assert ("PyPI", "requests", "2.19.1") in names(result.components)


def test_unreadable_file_chmod(tmp_path: Path) -> None:
    """A file whose mode forbids reading is reported; the rest of the tree is still read.

    Root reads any file whatever its mode, and CI runs as root: there the scan runs in a child process
    whose capability bounding set lacks CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH (util-linux
    `setpriv`), so the kernel refuses the read exactly as it would for an ordinary user.
    """
    lock = tmp_path / "Cargo.lock"
    lock.write_text("version = 3\n")
    (tmp_path / "requirements.txt").write_text("requests==2.19.1\n")
    lock.chmod(0)
    try:
        if os.geteuid() != 0:
            result = scan_inventory(tmp_path)
            errors = [str(e) for e in result.errors]
            found = {(c.name, c.version) for c in result.components}
        else:
            setpriv = shutil.which("setpriv")
            if setpriv is None:
                pytest.skip("running as root and util-linux setpriv is missing: cannot drop DAC override")
            code = (
                "import json, sys\n"
                "from tianmu.assets.inventory import scan_inventory\n"
                "r = scan_inventory(sys.argv[1])\n"
                "pairs = [[c.name, c.version] for c in r.components]\n"
                "print(json.dumps([[str(e) for e in r.errors], pairs]))\n"
            )
            drop = "--bounding-set=-dac_override,-dac_read_search"
            child = subprocess.run(
                [setpriv, drop, "--", sys.executable, "-c", code, str(tmp_path)],
                capture_output=True,
                text=True,
                check=True,
            )
            errors, pairs = json.loads(child.stdout)
            found = {tuple(p) for p in pairs}
    finally:
        lock.chmod(0o644)
    assert errors == ["Cargo.lock: cannot read file: Permission denied"]
    assert ("requests", "2.19.1") in found


def test_extractor_bug_is_an_error_not_a_traceback(tmp_path: Path) -> None:
    class Broken(Extractor):
        name = "broken"

        def matches(self, relpath: Path) -> bool:
            return relpath.name == "thing.lock"

        def extract(self, path: Path, display_path: str) -> Iterator[Extracted]:
            raise KeyError("version")

    (tmp_path / "thing.lock").write_text("x")
    result = scan_inventory(tmp_path, extractors=[Broken(), RequirementsExtractor()])
    assert [str(e) for e in result.errors] == ["thing.lock: broken failed: KeyError: 'version'"]
    assert result.files_read == 0


def test_go_binary_found_by_magic(tmp_path: Path, go_binary: Callable[..., bytes]) -> None:
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "agent").write_bytes(
        go_binary("go1.21.3", "path\tex.com/agent\ndep\tgolang.org/x/text\tv0.3.5\th1:x=\n")
    )
    (tmp_path / "bin" / "plain-elf").write_bytes(b"\x7fELF" + b"\x00" * 4096)
    (tmp_path / "bin" / "script").write_text("#!/bin/sh\necho hi\n")
    seen: list[str] = []
    result = scan_inventory(tmp_path, progress=seen.append)
    assert [(c.name, c.version, str(c.location)) for c in result.components] == [
        ("stdlib", "1.21.3", "bin/agent"),
        ("golang.org/x/text", "v0.3.5", "bin/agent"),
    ]
    assert seen == ["bin/agent", "bin/plain-elf"]  # the shell script is never handed to an extractor
    assert result.files_read == 1  # an ELF without Go build info is not an inventory file
