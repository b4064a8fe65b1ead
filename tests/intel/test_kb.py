"""The intel knowledge base: imports versioned per source, merges, expiry, the built index, ATT&CK."""

from __future__ import annotations

import shutil
from pathlib import Path

from intel_helpers import FIXTURES

from tianmu.intel.attack import tactic_order, technique_info
from tianmu.intel.engine import IntelMatcher
from tianmu.intel.index import IntelIndex, index_digest, load_index
from tianmu.intel.kb import IntelKnowledgeBase, import_feed
from tianmu.road.knowledge import import_any, kb_status
from tianmu.store.database import Store
from tianmu.store.knowledge import ImportMode, KbContext


def test_sources_are_versioned_and_unchanged_imports_are_skipped(loaded: Store, home: Path) -> None:
    rows = {r.name: r for r in kb_status(loaded)}
    assert {"stix:partner-cert", "misp:misp", "csv:iocs", "analyst-notes"} <= set(rows)
    assert all(rows[name].kind == "intel" for name in ("stix:partner-cert", "misp:misp", "analyst-notes"))
    assert rows["analyst-notes"].record_count == 6
    again = import_feed(loaded, FIXTURES / "plain.txt", home=home, source="analyst-notes", confidence=60)
    assert [r.status for r in again] == ["unchanged"]


def test_duplicates_are_merged_with_every_source(loaded: Store, home: Path) -> None:
    matcher = IntelMatcher.open(loaded, home)
    [record] = matcher.lookup("203.0.113.66")
    assert set(record.sources) == {"stix:partner-cert", "csv:iocs"}
    assert record.confidence == 90
    assert "NightOwl RAT" in record.malware and "Sandy Ledger" in record.actors
    assert record.techniques == ("T1071.001",)
    assert len(record.origins) == 2


def test_a_changed_feed_replaces_its_source_only(store: Store, tmp_path: Path, home: Path) -> None:
    feed = tmp_path / "blocklist.txt"
    feed.write_text("bad-one.example\nbad-two.example\n", encoding="utf-8")
    first = import_feed(store, feed, home=home)
    assert (first[0].status, first[0].added) == ("imported", 2)
    other = tmp_path / "other.txt"
    other.write_text("bad-two.example\n", encoding="utf-8")
    import_feed(store, other, home=home)
    feed.write_text("bad-two.example\nbad-three.example\n", encoding="utf-8")
    # `--replace`: the changed file is authoritative for its source (the default merge keeps bad-one).
    [report] = import_feed(store, feed, home=home, mode=ImportMode.REPLACE)
    assert (report.status, report.added, report.removed, report.record_count) == ("updated", 1, 1, 2)
    matcher = IntelMatcher.open(store, home)
    assert matcher.lookup("bad-one.example") == []
    assert set(matcher.lookup("bad-two.example")[0].sources) == {"list:blocklist", "list:other"}


def test_expired_indicators_do_not_hit_but_lookup_shows_them(loaded: Store, home: Path) -> None:
    matcher = IntelMatcher.open(loaded, home)
    assert matcher.scan_text("beacon to retired-c2.example and expired-c2.example") == []
    [record] = matcher.lookup("retired-c2.example")
    assert record.valid_until is not None and record.expired(matcher.now)


def test_the_index_is_built_once_and_reloaded_by_digest(loaded: Store, home: Path) -> None:
    digest = index_digest(loaded)
    files = list((home / "intel").glob("index-*.bin"))
    assert [f.name for f in files] == [f"index-{digest[:24]}.bin"]
    index = IntelIndex.loads(files[0].read_bytes())
    assert index.digest == digest and "nightowl-c2.example" in index.domains
    stamp = files[0].stat().st_mtime_ns
    assert load_index(loaded, home).digest == digest
    assert files[0].stat().st_mtime_ns == stamp  # loaded, not rebuilt
    files[0].write_bytes(b"damaged")
    assert "nightowl-c2.example" in load_index(loaded, home).domains  # rebuilt from the store


def test_registry_routes_intel_and_attack_bundle_folders(store: Store, tmp_path: Path, home: Path) -> None:
    bundle = tmp_path / "kb"
    shutil.copytree(FIXTURES / "misp", bundle / "intel" / "misp")
    shutil.copy(FIXTURES / "plain.txt", bundle / "intel" / "plain.txt")
    (bundle / "intel" / "README.md").write_text("# our feeds\n", encoding="utf-8")
    reports = import_any(KbContext(store=store, home=home), bundle)
    assert {r.source for r in reports} == {"misp:misp", "list:plain"}
    assert IntelKnowledgeBase().claims(FIXTURES / "misp")
    assert not IntelKnowledgeBase().claims(FIXTURES / "iocs.csv")


def test_attack_enterprise_bundle(sqlite_store: Store, shared_data: Path, home: Path) -> None:
    bundle = shared_data / "attack" / "enterprise-attack.json.gz"
    [report] = import_feed(sqlite_store, bundle, home=home)
    assert (report.source, report.kind, report.status) == ("attack:enterprise", "attack", "imported")
    assert report.record_count > 690
    info = technique_info(sqlite_store, ["T1059.001", "t1566", "T9999"])
    assert info["T1059.001"]["name"] == "PowerShell"
    assert info["T1059.001"]["full_name"] == "Command and Scripting Interpreter: PowerShell"
    assert info["T1059.001"]["tactics"] == ["Execution"]
    assert info["T1566"]["tactics"] == ["Initial Access"] and info["T1566"]["tactic_ids"] == ["TA0001"]
    assert "T9999" not in info
    order = [t["shortname"] for t in tactic_order(sqlite_store)]
    assert len(order) == 14 and order[0] == "reconnaissance" and order[-1] == "impact"
    assert import_feed(sqlite_store, bundle, home=home)[0].status == "unchanged"


def test_technique_info_without_attack_is_empty(store: Store) -> None:
    assert technique_info(store, ["T1059"]) == {}
