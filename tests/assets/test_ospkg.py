"""dpkg status (Debian, Ubuntu, distroless status.d) and Alpine apk databases."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tianmu.assets.ospkg import ApkInstalledExtractor, DpkgStatusExtractor, read_os_release
from tianmu.core.errors import ParseError
from tianmu.core.models import Component, Location

STATUS = "var/lib/dpkg/status"


def test_dpkg_debian(fixtures: Path) -> None:
    root = fixtures / "debian-rootfs"
    extractor = DpkgStatusExtractor()
    assert extractor.matches(Path(STATUS)) and extractor.matches(Path("image/var/lib/dpkg/status"))
    assert not extractor.matches(Path("docs/status"))
    items = list(extractor.extract(root / STATUS, STATUS))
    assert items == [
        Component(
            "libssl1.1",
            "1.1.1n-0+deb11u3",
            "Debian",
            "pkg:deb/debian/libssl1.1@1.1.1n-0%2Bdeb11u3?arch=amd64&distro=debian-11",
            Location(STATUS, 1),
            source_name="openssl",
            distro_release="11",
        ),
        Component(
            "openssl",
            "1.1.1n-0+deb11u3",
            "Debian",
            "pkg:deb/debian/openssl@1.1.1n-0%2Bdeb11u3?arch=amd64&distro=debian-11",
            Location(STATUS, 19),
            source_name="openssl",
            distro_release="11",
        ),
        # `Source: systemd (247.3-7+deb11u1)`: source name without its version; binary version kept
        Component(
            "libsystemd0",
            "247.3-7+deb11u4",
            "Debian",
            "pkg:deb/debian/libsystemd0@247.3-7%2Bdeb11u4?arch=amd64&distro=debian-11",
            Location(STATUS, 35),
            source_name="systemd",
            distro_release="11",
        ),
        # `telnet` (deinstall ok config-files) is not installed; `bash` (hold ok installed) is
        Component(
            "bash",
            "5.1-2+deb11u1",
            "Debian",
            "pkg:deb/debian/bash@5.1-2%2Bdeb11u1?arch=amd64&distro=debian-11",
            Location(STATUS, 49),
            source_name="bash",
            distro_release="11",
        ),
    ]


def test_dpkg_ubuntu(fixtures: Path) -> None:
    [curl] = list(DpkgStatusExtractor().extract(fixtures / "ubuntu-rootfs" / STATUS, STATUS))
    assert isinstance(curl, Component)
    assert (curl.ecosystem, curl.distro_release, curl.purl) == (
        "Ubuntu",
        "22.04",
        "pkg:deb/ubuntu/curl@7.81.0-1ubuntu1.13?arch=amd64&distro=ubuntu-22.04",
    )


def test_dpkg_without_os_release_defaults_to_debian(fixtures: Path, tmp_path: Path) -> None:
    status = tmp_path / STATUS
    status.parent.mkdir(parents=True)
    shutil.copy(fixtures / "ubuntu-rootfs" / STATUS, status)
    [curl] = list(DpkgStatusExtractor().extract(status, STATUS))
    assert isinstance(curl, Component)
    assert (curl.ecosystem, curl.distro_release, curl.purl) == (
        "Debian",
        None,
        "pkg:deb/debian/curl@7.81.0-1ubuntu1.13?arch=amd64",
    )


def test_os_release_symlink_is_not_followed(fixtures: Path, tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "os-release").symlink_to(fixtures / "ubuntu-rootfs" / "etc" / "os-release")
    assert read_os_release(tmp_path) == {}
    (tmp_path / "usr" / "lib").mkdir(parents=True)
    (tmp_path / "usr" / "lib" / "os-release").write_text('ID=debian\nVERSION_ID="12"\n')
    assert read_os_release(tmp_path) == {"ID": "debian", "VERSION_ID": "12"}


def test_distroless_status_d(tmp_path: Path) -> None:
    entry = tmp_path / "var/lib/dpkg/status.d/libc6"
    entry.parent.mkdir(parents=True)
    entry.write_text("Package: libc6\nVersion: 2.36-9+deb12u4\nArchitecture: amd64\nSource: glibc\n")
    extractor = DpkgStatusExtractor()
    assert extractor.matches(Path("var/lib/dpkg/status.d/libc6"))
    assert not extractor.matches(Path("var/lib/dpkg/status.d/libc6.md5sums"))
    [libc] = list(extractor.extract(entry, "var/lib/dpkg/status.d/libc6"))
    assert isinstance(libc, Component)
    assert (libc.name, libc.version, libc.source_name) == ("libc6", "2.36-9+deb12u4", "glibc")


def test_dpkg_malformed_line(tmp_path: Path) -> None:
    status = tmp_path / "status"
    status.write_text("Package: openssl\nStatus: install ok installed\nthis line has no colon\n")
    with pytest.raises(ParseError) as caught:
        list(DpkgStatusExtractor().extract(status, "status"))
    assert (caught.value.path, caught.value.line) == ("status", 3)


def test_apk_installed(fixtures: Path) -> None:
    db = "lib/apk/db/installed"
    extractor = ApkInstalledExtractor()
    assert extractor.matches(Path(db))
    assert list(extractor.extract(fixtures / "alpine-rootfs" / db, db)) == [
        Component(
            "musl",
            "1.2.4-r2",
            "Alpine",
            "pkg:apk/alpine/musl@1.2.4-r2?arch=x86_64&distro=alpine-3.18.4",
            Location(db, 1),
            source_name="musl",
            distro_release="3.18.4",
        ),
        Component(
            "libcrypto3",
            "3.1.3-r0",
            "Alpine",
            "pkg:apk/alpine/libcrypto3@3.1.3-r0?arch=x86_64&distro=alpine-3.18.4",
            Location(db, 18),
            source_name="openssl",
            distro_release="3.18.4",
        ),
    ]


def test_apk_entry_without_version(tmp_path: Path) -> None:
    db = tmp_path / "installed"
    db.write_text("P:musl\nV:1.2.4-r2\n\nP:busybox\nA:x86_64\n")
    with pytest.raises(ParseError) as caught:
        list(ApkInstalledExtractor().extract(db, "installed"))
    assert caught.value.line == 4
