"""Python packages the distribution installed: upstream PyPI ranges are not reported as if they applied.

Debian's python3-cryptography 38.0.4-3+deb12u1 carries the fix of a flaw PyPI says is fixed in 41.0.6
(a backport). With osv:Debian imported and the Debian package inventoried, the PyPI match is dropped
and said so; without, it is kept and marked. Records and components are built here.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from vulns_helpers import ASSET, comp

from tianmu.core.engine import Inputs, JobContext
from tianmu.core.models import Component
from tianmu.store.database import Store
from tianmu.vulns.backports import owner_of
from tianmu.vulns.engine import VulnEngine, VulnMatcher
from tianmu.vulns.kb import import_path

OWNER = "Debian/python3-cryptography@38.0.4-3+deb12u1"
PIP_VIEW = Component(
    "cryptography",
    "38.0.4",
    "PyPI",
    "pkg:pypi/cryptography@38.0.4",
    distro_package=OWNER,
)
DEB = Component(
    "python3-cryptography",
    "38.0.4-3+deb12u1",
    "Debian",
    "pkg:deb/debian/python3-cryptography@38.0.4-3%2Bdeb12u1",
    source_name="python-cryptography",
    distro_release="12",
)
NOTE = (
    "upstream range; the distribution (Debian python3-cryptography 38.0.4-3+deb12u1) "
    "may have backported the fix"
)


def _write(folder: Path, record: dict[str, object]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{record['id']}.json").write_text(json.dumps(record), encoding="utf-8")


def _affected(name: str, ecosystem: str, fixed: str) -> list[dict[str, object]]:
    events = [{"introduced": "0"}, {"fixed": fixed}]
    return [
        {
            "package": {"name": name, "ecosystem": ecosystem},
            "ranges": [{"type": "ECOSYSTEM", "events": events}],
        }
    ]


@pytest.fixture()
def pypi(store: Store, tmp_path: Path) -> Store:
    record = {
        "id": "PYSEC-2099-1",
        "modified": "2024-01-01T00:00:00Z",
        "aliases": ["CVE-2099-1000"],
        "summary": "A flaw in cryptography",
        "affected": _affected("cryptography", "PyPI", "41.0.6"),
    }
    _write(tmp_path / "osv" / "PyPI", record)
    import_path(store, tmp_path / "osv" / "PyPI")
    return store


@pytest.fixture()
def pypi_and_debian(pypi: Store, tmp_path: Path) -> Store:
    record = {
        "id": "DSA-9999-1",
        "modified": "2024-01-02T00:00:00Z",
        "aliases": ["CVE-2099-1000"],
        "summary": "python-cryptography security update",
        # Debian fixed it in bookworm by a backport, without moving to 41.0.6.
        "affected": _affected("python-cryptography", "Debian:12", "38.0.4-3+deb12u1"),
    }
    _write(tmp_path / "osv" / "Debian", record)
    import_path(pypi, tmp_path / "osv" / "Debian")
    return pypi


def test_without_the_distributions_advisories_the_upstream_finding_is_kept_and_marked(pypi: Store) -> None:
    matcher = VulnMatcher(pypi)
    (finding,) = matcher.match([PIP_VIEW, DEB], ASSET)
    assert finding.rule_id == "PYSEC-2099-1" and finding.data["fixed_versions"] == ["41.0.6"]
    assert finding.data["backport_note"] == NOTE
    (note,) = matcher.last_notes
    assert note.startswith(
        "vulnerability: 1 finding on 1 package the distribution installed use upstream ranges"
    )
    assert "import osv:Debian" in note and note.endswith(
        "cryptography 38.0.4 (Debian python3-cryptography 38.0.4-3+deb12u1)"
    )
    # A package pip installed itself is matched as before, with no such mark.
    (plain,) = matcher.match([comp("cryptography", "38.0.4")], ASSET)
    assert "backport_note" not in plain.data and matcher.last_notes == []


def test_with_the_distributions_advisories_the_debian_package_decides(pypi_and_debian: Store) -> None:
    matcher = VulnMatcher(pypi_and_debian)
    # Debian's fix is backported into 38.0.4-3+deb12u1: nothing affects this system.
    assert matcher.match([PIP_VIEW, DEB], ASSET) == []
    (note,) = matcher.last_notes
    assert note == (
        "vulnerability: 1 upstream advisory not applied to 1 package the distribution installed, checked "
        "as its own packages instead (their fixes are backported): cryptography 38.0.4 "
        "(Debian python3-cryptography 38.0.4-3+deb12u1)"
    )
    assert matcher.last_stats["backported"] == 1
    # An older Debian build is affected: reported once, on the Debian package, with Debian's fix.
    old_deb = Component(
        "python3-cryptography",
        "38.0.4-3",
        "Debian",
        DEB.purl,
        source_name="python-cryptography",
        distro_release="12",
    )
    old_pip = Component(
        "cryptography", "38.0.4", "PyPI", PIP_VIEW.purl, distro_package="Debian/python3-cryptography@38.0.4-3"
    )
    (finding,) = matcher.match([old_pip, old_deb], ASSET)
    assert (finding.rule_id, finding.component) == ("DSA-9999-1", old_deb)
    assert finding.data["fixed_versions"] == ["38.0.4-3+deb12u1"]


def test_the_owner_not_inventoried_keeps_the_upstream_finding_marked(pypi_and_debian: Store) -> None:
    # A site-packages folder assessed alone: dpkg's database was not read, the Debian package is unknown.
    matcher = VulnMatcher(pypi_and_debian)
    (finding,) = matcher.match([PIP_VIEW], ASSET)
    assert finding.data["backport_note"] == NOTE


def test_the_engine_reports_the_decision_in_its_notes(pypi: Store) -> None:
    engine = VulnEngine(pypi)
    result = engine.analyse(Inputs(components=[PIP_VIEW, DEB]), JobContext(asset=ASSET))
    assert [f.data.get("backport_note") for f in result.findings] == [NOTE]
    assert any("use upstream ranges" in n for n in result.notes)


@pytest.mark.parametrize(
    "text", ["", "python3-cryptography", "Debian/python3-cryptography", "Debian/@1.0", "/x@1", "Debian/x@"]
)
def test_a_malformed_owner_is_no_owner(text: str) -> None:
    assert owner_of(Component("x", "1", "PyPI", "pkg:pypi/x@1", distro_package=text)) is None


def test_owner_with_a_release_suffix() -> None:
    owner = owner_of(Component("x", "1", "PyPI", "pkg:pypi/x@1", distro_package="Debian:12/python3-x@1.0-1"))
    assert owner is not None and (owner.ecosystem, owner.name, owner.version) == (
        "Debian",
        "python3-x",
        "1.0-1",
    )
