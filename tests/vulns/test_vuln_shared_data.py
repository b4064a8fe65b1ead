"""Acceptance against the real OSV data in ../shared/data (skipped when it is absent).

The expected answers are computed here, straight from the zip JSON, without the package's parsing,
normalisation or range code. For PyPI the expectation is the issue's rule: for a pinned, released
version, exactly the advisories whose record enumerates that version — plus, for the 39 records
that enumerate nothing, those whose ECOSYSTEM range holds it (see ENUMERATION_RULE in
tianmu.vulns.ranges). It is checked over every (package, version) pair the data enumerates.
"""

from __future__ import annotations

import json
import random
import re
import zipfile
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from vulns_helpers import ASSET, SHARED_DATA

from tianmu.core.models import Component
from tianmu.store.database import Store
from tianmu.vulns.engine import VulnMatcher
from tianmu.vulns.kb import import_path

pytestmark = [
    pytest.mark.shared_data,
    pytest.mark.skipif(not (SHARED_DATA / "osv").is_dir(), reason=f"shared data absent: {SHARED_DATA}"),
]

PYPI_ZIP = SHARED_DATA / "osv" / "PyPI" / "all.zip"
GO_ZIP = SHARED_DATA / "osv" / "Go" / "all.zip"


def load(path: Path) -> list[dict[str, Any]]:
    with zipfile.ZipFile(path) as archive:
        return [json.loads(archive.read(n)) for n in archive.namelist() if n.endswith(".json")]


@pytest.fixture(scope="module")
def kb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    store = Store("sqlite:///" + str(tmp_path_factory.mktemp("shared") / "kb.db"))
    reports = import_path(store, PYPI_ZIP) + import_path(store, GO_ZIP)
    assert [(r.source, r.record_count, len(r.errors)) for r in reports] == [
        ("osv:PyPI", 2661, 0),
        ("osv:Go", 4291, 0),
    ]
    yield store
    store.close()


def pep503(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pypi_in_ranges(version: str, ranges: list[dict[str, Any]]) -> bool:
    """The schema's IncludedInRanges pseudocode, literally, with PEP 440 ordering."""
    from packaging.version import InvalidVersion, Version

    try:
        v = Version(version)
    except InvalidVersion:
        return False
    for rng in ranges:
        if rng["type"] != "ECOSYSTEM":
            continue
        try:
            events = [
                (kind, Version("0") if value == "0" and kind == "introduced" else Version(value))
                for e in rng["events"]
                for kind, value in e.items()
            ]
        except InvalidVersion:
            continue  # an unorderable bound: the range cannot be evaluated
        floor = [(k, Version("0.dev0") if k == "introduced" and str(b) == "0" else b) for k, b in events]
        vulnerable = False
        for kind, bound in sorted(floor, key=lambda kb: kb[1]):
            if kind == "introduced" and (v >= bound or str(bound) == "0.dev0"):
                vulnerable = True
            elif (kind == "fixed" and v >= bound) or (kind == "last_affected" and v > bound):
                vulnerable = False
        if vulnerable:
            return True
    return False


def test_pypi_every_enumerated_version_reports_exactly_its_advisories(kb: Store) -> None:
    records = load(PYPI_ZIP)
    by_package: dict[str, list[tuple[str, dict[str, Any], bool]]] = defaultdict(list)
    for record in records:
        for affected in record.get("affected", []):
            by_package[pep503(affected["package"]["name"])].append(
                (record["id"], affected, bool(record.get("withdrawn")))
            )
    pairs_by_package = {
        pkg: sorted({v for _id, a, _w in entries for v in a.get("versions", [])})
        for pkg, entries in by_package.items()
    }
    sample = [(pkg, version) for pkg, versions in sorted(pairs_by_package.items()) for version in versions]
    assert len(sample) > 10_000

    components = [Component(pkg, version, "PyPI", f"pkg:pypi/{pkg}@{version}") for pkg, version in sample]
    reported: dict[tuple[str, str], set[str]] = defaultdict(set)
    for finding in VulnMatcher(kb).match(components, ASSET):
        assert finding.component is not None
        reported[(finding.component.name, finding.component.version)].update(finding.data["advisories"])

    for pkg, version in sample:
        live = [(vid, a) for vid, a, withdrawn in by_package[pkg] if not withdrawn]
        enumerated = {vid for vid, a in live if version in a.get("versions", [])}
        # Entries without a list (39 records) can only be matched on their range.
        unlisted = {
            vid for vid, a in live if not a.get("versions") and pypi_in_ranges(version, a.get("ranges", []))
        }
        got = reported[(pkg, version)]
        assert got == enumerated | unlisted, (pkg, version, got ^ (enumerated | unlisted))
    assert sum(len(v) for v in reported.values()) >= len(sample)


_SEMVER = re.compile(r"^(\d+)\.(\d+)\.(\d+)(?:-([0-9A-Za-z.-]+))?(?:\+[0-9A-Za-z.-]+)?$")


def semver_lt(a: str, b: str) -> bool:
    """SemVer 2.0 precedence, written out independently of the package."""
    ma, mb = _SEMVER.match(a), _SEMVER.match(b)
    assert ma and mb, (a, b)
    core_a, core_b = tuple(map(int, ma.groups()[:3])), tuple(map(int, mb.groups()[:3]))
    if core_a != core_b:
        return core_a < core_b
    pa, pb = ma.group(4), mb.group(4)
    if pa is None or pb is None:
        return pa is not None and pb is None
    for x, y in zip(pa.split("."), pb.split("."), strict=False):
        if x == y:
            continue
        if x.isdigit() and y.isdigit():
            return int(x) < int(y)
        if x.isdigit() != y.isdigit():
            return x.isdigit()
        return x < y
    return len(pa.split(".")) < len(pb.split("."))


def go_affected(version: str, ranges: list[dict[str, Any]]) -> bool:
    for rng in ranges:
        vulnerable = False
        events = [(k, v) for e in rng["events"] for k, v in e.items()]
        zero = [e for e in events if e == ("introduced", "0")]
        rest = sorted((e for e in events if e != ("introduced", "0")), key=lambda e: _Key(e[1]))
        for kind, bound in zero + rest:
            if kind == "introduced" and (bound == "0" or not semver_lt(version, bound)):
                vulnerable = True
            elif (kind == "fixed" and not semver_lt(version, bound)) or (
                kind == "last_affected" and semver_lt(bound, version)
            ):
                vulnerable = False
        if vulnerable:
            return True
    return False


class _Key:
    def __init__(self, v: str) -> None:
        self.v = v

    def __lt__(self, other: _Key) -> bool:
        return semver_lt(self.v, other.v)


def test_go_sample_from_semver_ranges(kb: Store) -> None:
    records = load(GO_ZIP)
    by_module: dict[str, list[tuple[str, dict[str, Any]]]] = defaultdict(list)
    for record in records:
        if record.get("withdrawn"):
            continue
        for affected in record["affected"]:
            by_module[affected["package"]["name"]].append((record["id"], affected))
    rng = random.Random(4291)
    chosen = rng.sample(sorted(records, key=lambda r: r["id"]), 150)
    sample: set[tuple[str, str]] = set()
    for record in chosen:
        for affected in record["affected"]:
            for r in affected["ranges"]:
                for event in r["events"]:
                    (value,) = event.values()
                    if value == "0":
                        continue
                    sample.add((affected["package"]["name"], value))
                    major, minor, patch = _SEMVER.match(value).groups()[:3]  # type: ignore[union-attr]
                    sample.add((affected["package"]["name"], f"{major}.{minor}.{int(patch) + 1}"))
                    if int(patch) > 0:
                        sample.add((affected["package"]["name"], f"{major}.{minor}.{int(patch) - 1}"))
    sample_list = sorted(sample)
    components = [Component(m, "v" + v, "Go", f"pkg:golang/{m}@v{v}") for m, v in sample_list]
    reported: dict[tuple[str, str], set[str]] = defaultdict(set)
    for finding in VulnMatcher(kb).match(components, ASSET):
        assert finding.component is not None
        reported[(finding.component.name, finding.component.version[1:])].update(finding.data["advisories"])
    positives = 0
    for module, version in sample_list:
        expected = {vid for vid, a in by_module.get(module, []) if go_affected(version, a["ranges"])}
        assert reported[(module, version)] == expected, (module, version)
        positives += bool(expected)
    assert len(sample_list) > 300 and 0 < positives < len(sample_list)
