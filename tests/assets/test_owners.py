"""Python distributions owned by dpkg are linked to their package (`Component.distro_package`).

The fake roots are what a Debian system holds: a status stanza per package, one `.list` of installed
paths per package (`name.list`, or `name:arch.list` for Multi-Arch: same), the dist-info or egg-info
the package installed, and pip's own installs under /usr/local that no package owns.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
from dataclasses import replace
from pathlib import Path
from types import FrameType
from typing import BinaryIO

import pytest

from tianmu.assets import owners
from tianmu.assets.inventory import scan_inventory
from tianmu.assets.ospkg import distro_ecosystem, read_os_release
from tianmu.assets.owners import OwnerLimits, link_distro_packages
from tianmu.core.models import Component
from tianmu.core.walk import MountTable, WalkRules
from tianmu.road.assess import AssessOptions, assess
from tianmu.store import Store

SITE = "usr/lib/python3/dist-packages"


def _stanza(package: str, version: str, status: str = "install ok installed") -> str:
    return (
        f"Package: {package}\nStatus: {status}\nPriority: optional\nArchitecture: amd64\n"
        f"Version: {version}\nDescription: {package}\n a description line\n\n"
    )


def _metadata(name: str, version: str) -> str:
    return f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n\nLong description.\n"


def _fake_root(root: Path, distro: str = "debian") -> Path:
    """A Debian (or Ubuntu) root with three dpkg-owned distributions and two that no package owns."""
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "os-release").write_text(f'ID={distro}\nVERSION_ID="12"\n')
    dpkg = root / "var" / "lib" / "dpkg"
    (dpkg / "info").mkdir(parents=True)
    (dpkg / "status").write_text(
        _stanza("python3-cryptography", "38.0.4-3+deb12u1")
        + _stanza("python3-cairo", "1.20.1-5+b1")
        + _stanza("yq", "3.1.0-3")
        + _stanza("python3-removed", "1.0-1", "deinstall ok config-files")
    )
    site = root / SITE
    crypto = site / "cryptography-38.0.4.dist-info"
    crypto.mkdir(parents=True)
    (crypto / "METADATA").write_text(_metadata("cryptography", "38.0.4"))
    (site / "cryptography").mkdir()
    (site / "pycairo-1.20.1.egg-info").write_text(_metadata("pycairo", "1.20.1"))
    (site / "yq-3.1.0.egg-info").mkdir()
    (site / "yq-3.1.0.egg-info" / "PKG-INFO").write_text(_metadata("yq", "3.1.0"))
    (site / "removed-1.0.dist-info").mkdir()
    (site / "removed-1.0.dist-info" / "METADATA").write_text(_metadata("removed", "1.0"))
    (site / "dropped-2.0.dist-info").mkdir()  # put there by hand: in no list
    (site / "dropped-2.0.dist-info" / "METADATA").write_text(_metadata("dropped", "2.0"))
    local = root / "usr" / "local" / "lib" / "python3.11" / "dist-packages" / "requests-2.31.0.dist-info"
    local.mkdir(parents=True)
    (local / "METADATA").write_text(_metadata("requests", "2.31.0"))
    lists = {
        "python3-cryptography.list": [
            "/.",
            "/usr/lib/python3/dist-packages/cryptography",
            "/usr/lib/python3/dist-packages/cryptography-38.0.4.dist-info",
            "/usr/lib/python3/dist-packages/cryptography-38.0.4.dist-info/METADATA",
        ],
        "python3-cairo:amd64.list": ["/usr/lib/python3/dist-packages/pycairo-1.20.1.egg-info"],
        # an application, not named python3-*, that ships its Python distribution
        "yq.list": ["/usr/bin/yq", "/usr/lib/python3/dist-packages/yq-3.1.0.egg-info/PKG-INFO"],
        # left after removal (config-files): listed, not installed
        "python3-removed.list": ["/usr/lib/python3/dist-packages/removed-1.0.dist-info/METADATA"],
        "libc6:amd64.list": ["/usr/lib/x86_64-linux-gnu/libc.so.6"],
    }
    for name, paths in lists.items():
        (dpkg / "info" / name).write_text("".join(f"{path}\n" for path in paths))
    return root


def _owned(components: list[Component]) -> dict[str, str | None]:
    return {c.name: c.distro_package for c in components if c.ecosystem == "PyPI"}


EXPECTED = {
    "cryptography": "Debian/python3-cryptography@38.0.4-3+deb12u1",
    "pycairo": "Debian/python3-cairo@1.20.1-5+b1",
    "yq": "Debian/yq@3.1.0-3",
    "removed": None,
    "dropped": None,
    "requests": None,
}


def test_a_dist_packages_distribution_is_linked_to_the_dpkg_package_that_listed_it(tmp_path: Path) -> None:
    root = _fake_root(tmp_path / "root")
    result = scan_inventory(root)
    assert _owned(result.components) == EXPECTED
    assert result.errors == []
    # the OS packages themselves are still there, and are not linked to anything
    debian = {c.name: c.distro_package for c in result.components if c.ecosystem == "Debian"}
    assert debian == {"python3-cryptography": None, "python3-cairo": None, "yq": None}


def test_the_site_folder_itself_finds_the_dpkg_database_of_its_tree_above_it(tmp_path: Path) -> None:
    root = _fake_root(tmp_path / "root")
    result = scan_inventory(root / SITE)
    assert _owned(result.components) == {k: v for k, v in EXPECTED.items() if k != "requests"}


def test_an_ubuntu_root_names_the_ubuntu_package(tmp_path: Path) -> None:
    root = _fake_root(tmp_path / "root", distro="ubuntu")
    owned = _owned(scan_inventory(root).components)
    assert owned["cryptography"] == "Ubuntu/python3-cryptography@38.0.4-3+deb12u1"


def test_a_copied_site_folder_is_never_matched_with_the_live_systems_lists(tmp_path: Path) -> None:
    # No dpkg under the copy: the nearest database above may be this machine's own /var/lib/dpkg,
    # whose lists name /usr/lib/python3/..., never /tmp/.../usr/lib/python3/...
    root = _fake_root(tmp_path / "root")
    copy = tmp_path / "copy" / SITE
    shutil.copytree(root / SITE, copy)
    assert set(_owned(scan_inventory(copy).components).values()) == {None}


def test_the_lists_are_read_only_when_needed_and_python_packages_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _fake_root(tmp_path / "root")
    opened: list[str] = []
    open_regular = owners._open_regular

    def spy(path: str) -> BinaryIO | None:
        opened.append(Path(path).name)
        return open_regular(path)

    monkeypatch.setattr(owners, "_open_regular", spy)
    shutil.rmtree(root / SITE)
    assert scan_inventory(root).components and opened == []  # no dist-packages distribution: no list
    crypto = root / SITE / "cryptography-38.0.4.dist-info"
    crypto.mkdir(parents=True)
    (crypto / "METADATA").write_text(_metadata("cryptography", "38.0.4"))
    assert _owned(scan_inventory(root).components)["cryptography"] == EXPECTED["cryptography"]
    # python3-cairo is read before python3-cryptography (sorted); found there: nothing else is read
    assert opened == ["python3-cairo:amd64.list", "python3-cryptography.list"]


def test_a_fifo_or_a_symlink_among_the_lists_is_never_opened(tmp_path: Path) -> None:
    root = _fake_root(tmp_path / "root")
    info = root / "var" / "lib" / "dpkg" / "info"
    os.mkfifo(info / "python3-aaa.list")  # sorted first: an open would block for ever
    secret = tmp_path / "host-file"
    secret.write_text("/usr/lib/python3/dist-packages/dropped-2.0.dist-info/METADATA\n")
    (info / "python3-aab.list").symlink_to(secret)
    previous = signal.signal(signal.SIGALRM, _expired)
    signal.alarm(20)
    try:
        result = scan_inventory(root)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    assert _owned(result.components) == EXPECTED
    assert result.errors == []


def _expired(_signum: int, _frame: FrameType | None) -> None:
    raise AssertionError("still running after 20 s: a FIFO was opened")


def test_list_limits_are_reported(tmp_path: Path) -> None:
    root = _fake_root(tmp_path / "root")
    found = scan_inventory(root).components
    linked, errors = link_distro_packages(
        [replace(c, distro_package=None) for c in found if c.ecosystem == "PyPI"],
        root,
        OwnerLimits(max_list_bytes=10),
    )
    assert set(_owned(linked).values()) == {None}
    assert [re.sub(r"^.*/info/", "info/", str(e)) for e in errors][:2] == [
        "info/python3-cairo:amd64.list: file list larger than 10 bytes: not read",
        "info/python3-cryptography.list: file list larger than 10 bytes: not read",
    ]


def test_assess_keeps_the_link_in_its_components(sqlite_store: Store, tmp_path: Path) -> None:
    root = _fake_root(tmp_path / "root")
    options = AssessOptions(engines=("vulnerability",), save=False, walk=WalkRules(mounts=MountTable()))
    found = assess(sqlite_store, root, options)
    assert _owned(found.components) == EXPECTED


_REAL_SITE = Path("/usr/lib/python3/dist-packages")
_REAL_LIST = Path("/var/lib/dpkg/info/python3-cryptography.list")


@pytest.mark.skipif(
    not (_REAL_SITE.is_dir() and _REAL_LIST.is_file()), reason="no dpkg-installed python3-cryptography"
)
def test_this_machines_dist_packages_are_linked_to_their_debian_packages() -> None:
    status = Path("/var/lib/dpkg/status").read_text(errors="replace")
    stanza = re.search(r"^Package: python3-cryptography\n(?:.+\n)*?Version: (\S+)", status, re.M)
    assert stanza is not None
    result = scan_inventory(_REAL_SITE)
    owned = _owned(result.components)
    ecosystem = distro_ecosystem(read_os_release(Path("/")))
    assert owned["cryptography"] == f"{ecosystem}/python3-cryptography@{stanza[1]}"
    # every distribution of /usr/lib/python3/dist-packages came from a package on a Debian system
    unowned = [name for name, package in owned.items() if package is None]
    assert len(unowned) <= len(owned) // 10, unowned


def _alpine_root(root: Path) -> Path:
    """An Alpine root: the apk database names each package's folders (F:) and files (R:)."""
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "os-release").write_text("ID=alpine\nVERSION_ID=3.18.4\n")
    (root / "lib" / "apk" / "db").mkdir(parents=True)
    (root / "lib" / "apk" / "db" / "installed").write_text(
        "C:Q1abc=\nP:python3\nV:3.11.6-r0\nA:x86_64\no:python3\n"
        "F:usr/lib/python3.11\nR:os.py\n\n"
        "C:Q1def=\nP:py3-cryptography\nV:41.0.3-r0\nA:x86_64\no:py3-cryptography\n"
        "F:usr/lib/python3.11/site-packages/cryptography\nR:__init__.py\n"
        "F:usr/lib/python3.11/site-packages/cryptography-41.0.3.dist-info\nR:METADATA\nZ:Q1xyz=\nR:RECORD\n\n"
    )
    site = root / "usr" / "lib" / "python3.11" / "site-packages"
    for name, version in (("cryptography", "41.0.3"), ("requests", "2.31.0")):
        (site / f"{name}-{version}.dist-info").mkdir(parents=True)
        (site / f"{name}-{version}.dist-info" / "METADATA").write_text(_metadata(name, version))
    venv = root / "app" / "venv" / "lib" / "python3.11" / "site-packages" / "flask-3.0.0.dist-info"
    venv.mkdir(parents=True)
    (venv / "METADATA").write_text(_metadata("flask", "3.0.0"))
    return root


def test_an_alpine_site_packages_distribution_is_linked_to_its_apk_package(tmp_path: Path) -> None:
    root = _alpine_root(tmp_path / "alpine")
    result = scan_inventory(root)
    # requests was put there by pip (in no package), flask lives in the application's venv
    assert _owned(result.components) == {
        "cryptography": "Alpine/py3-cryptography@41.0.3-r0",
        "requests": None,
        "flask": None,
    }
    assert result.errors == []
    site = scan_inventory(root / "usr" / "lib" / "python3.11" / "site-packages")
    assert _owned(site.components)["cryptography"] == "Alpine/py3-cryptography@41.0.3-r0"
