"""NVD CVE JSON 2.0 import (through the knowledge-base registry) and CPE matching of service versions."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import pytest

from tianmu.core.errors import KnowledgeBaseError
from tianmu.network.cpe import parse_cpe
from tianmu.road.knowledge import import_any
from tianmu.store import Store
from tianmu.store.knowledge import KbContext
from tianmu.vulns.kb import detect_kind
from tianmu.vulns.nvd import CpeMatcher, configuration_matches, version_order_key

DATA = Path(__file__).parent / "data"


def _import(store: Store, path: Path, tmp_path: Path) -> list:
    return import_any(KbContext(store=store, home=tmp_path), path)


def test_detected_by_content(tmp_path: Path) -> None:
    assert detect_kind(DATA / "nvd-sample.json") == "nvd"
    zipped = tmp_path / "feed.json.gz"
    zipped.write_bytes(gzip.compress((DATA / "nvd-sample.json").read_bytes()))
    assert detect_kind(zipped) == "nvd"
    folder = tmp_path / "nvd"
    folder.mkdir()
    shutil.copy(DATA / "nvd-sample.json", folder / "a.json")
    assert detect_kind(folder) == "nvd"


def test_import_and_match(store: Store, tmp_path: Path) -> None:
    [report] = _import(store, DATA / "nvd-sample.json", tmp_path)
    assert (report.source, report.kind, report.status, report.record_count) == (
        "nvd:file:nvd-sample",
        "nvd",
        "imported",
        7,
    )
    matcher = CpeMatcher(store)
    hits = {h.cve_id: h for h in matcher.match("cpe:2.3:a:openbsd:openssh:9.2p1:*:*:*:*:*:*:*")}
    # In range (8.5 <= 9.2p1 < 9.3p2); not: before 7.0, rejected, enterprise edition only.
    assert set(hits) == {"CVE-2098-0001"}
    assert hits["CVE-2098-0001"].score == 9.8 and hits["CVE-2098-0001"].severity_word == "CRITICAL"
    assert matcher.match("cpe:2.3:a:openbsd:openssh:9.3p2:*:*:*:*:*:*:*") == []
    assert [h.cve_id for h in matcher.match("cpe:2.3:a:redis:redis:7.0.15:*:*:*:*:*:*:*")] == [
        "CVE-2098-0003"
    ]
    assert matcher.match("cpe:2.3:a:redis:redis:7.2.4:*:*:*:*:*:*:*") == []
    # An AND configuration: the platform cannot be seen from the service, so it is named as a condition.
    [nginx] = matcher.match("cpe:2.3:a:f5:nginx:1.22.1:*:*:*:*:*:*:*")
    assert nginx.conditions == ["cpe:2.3:o:debian:debian_linux:12.0:*:*:*:*:*:*:*"]
    assert matcher.match("cpe:2.3:a:f5:nginx:1.24.0:*:*:*:*:*:*:*") == []
    # versionEndIncluding is inclusive; an unknown version matches nothing that has bounds.
    assert matcher.match("cpe:2.3:a:apache:http_server:2.4.57:*:*:*:*:*:*:*")
    assert matcher.match("cpe:2.3:a:apache:http_server:2.4.58:*:*:*:*:*:*:*") == []
    assert matcher.match("cpe:2.3:a:apache:http_server:*:*:*:*:*:*:*:*") == []


def test_reimport_unchanged_and_bad_records(store: Store, tmp_path: Path) -> None:
    _import(store, DATA / "nvd-sample.json", tmp_path)
    [again] = _import(store, DATA / "nvd-sample.json", tmp_path)
    assert again.status == "unchanged"
    [partial] = _import(store, DATA / "nvd-partly-bad.json", tmp_path)
    assert partial.record_count == 1
    assert len(partial.errors) == 2
    assert any("not-a-cve" in e for e in partial.errors)
    assert any("vulnerabilities[1]" in e and "CPE 2.3" in e for e in partial.errors)
    assert [
        h.cve_id for h in CpeMatcher(store).match("cpe:2.3:a:memcached:memcached:1.6.21:*:*:*:*:*:*:*")
    ] == ["CVE-2098-0102"]


def test_nothing_readable_is_an_error(store: Store, tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "NVD_CVE", "vulnerabilities": [{"cve": {"id": "nope"}}]}')
    with pytest.raises(KnowledgeBaseError, match="no NVD CVE record"):
        _import(store, bad, tmp_path)


def test_version_order() -> None:
    ordered = ["1.0rc1", "1.0", "1.0.1", "9.2", "9.2p1", "9.3", "9.3p2", "10.0"]
    assert sorted(ordered, key=lambda v: [*version_order_key(v), (1, "")]) == ordered


def test_negated_node() -> None:
    target = parse_cpe("cpe:2.3:a:example:app:2.0:*:*:*:*:*:*:*")
    assert target is not None
    config = {
        "operator": "AND",
        "nodes": [
            {
                "operator": "OR",
                "cpeMatch": [
                    {
                        "vulnerable": True,
                        "criteria": "cpe:2.3:a:example:app:*:*:*:*:*:*:*:*",
                        "versionEndExcluding": "3.0",
                    }
                ],
            },
            {
                "operator": "OR",
                "negate": True,
                "cpeMatch": [{"vulnerable": False, "criteria": "cpe:2.3:a:example:app:2.0:*:*:*:*:*:*:*"}],
            },
        ],
    }
    assert configuration_matches(config, target)[0] is False
    other = parse_cpe("cpe:2.3:a:example:app:2.5:*:*:*:*:*:*:*")
    assert other is not None and configuration_matches(config, other)[0] is True
