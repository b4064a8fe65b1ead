"""Feed readers: plain lists, CSV with a column map, MISP, STIX, and the real maltrail and LOKI files."""

from __future__ import annotations

import json
from pathlib import Path

from intel_helpers import DROPPER_SHA256, FIXTURES, build_stix_bundle

from tianmu.intel.kb import detect_format
from tianmu.intel.lists import read_csv, read_maltrail, read_plain, read_signature_base
from tianmu.intel.misp import read_misp_feed
from tianmu.intel.stix import read_stix_bundle


def _values(result: object) -> set[tuple[str, str]]:
    return {(e.type, e.value) for e in result.entries}  # type: ignore[attr-defined]


def test_plain_list_refangs_and_reports_bad_lines_with_location() -> None:
    path = FIXTURES / "plain.txt"
    result = read_plain(path, "notes", 60)
    assert _values(result) == {
        ("url", "http://payload-drop.example/stage2.bin"),
        ("domain", "evil-updates.example"),
        ("ip", "198.51.100.23"),
        ("cidr", "192.0.2.0/24"),
        ("md5", "44d88612fea8a8f36de82e1f5c9c9b3f"),
        ("ip", "2001:db8::bad"),
    }
    assert all(e.confidence == 60 for e in result.entries)
    assert [e.split(": ")[0] for e in result.errors] == [f"{path}:7", f"{path}:8"]
    md5 = next(e for e in result.entries if e.type == "md5")
    assert md5.description == "EICAR test file (MD5)" and md5.origin == f"{path}:6"


def test_csv_with_a_column_map_keeps_good_rows() -> None:
    path = FIXTURES / "iocs.csv"
    columns = {"value": "indicator", "type": "kind", "confidence": "conf", "valid_until": "expires",
               "malware": "family", "technique": "ttp"}  # fmt: skip
    result = read_csv(path, "csv:iocs", 50, columns)
    by_value = {e.value: e for e in result.entries}
    assert set(by_value) == {
        "203.0.113.66",
        "c2.nightowl.example",
        "expired-c2.example",
        "https://cdn.nightowl.example/g.php?id=1",
    }
    assert by_value["203.0.113.66"].confidence == 90
    assert by_value["c2.nightowl.example"].techniques == ["T1071.001", "T1573"]
    assert by_value["expired-c2.example"].valid_until is not None
    assert by_value["203.0.113.66"].malware == ["NightOwl RAT"]
    # Row 5 is not an IP, row 7 has an unreadable expiry: reported at their lines, the rest kept.
    assert [e.split(": ")[0] for e in result.errors] == [f"{path}:5", f"{path}:7"]


def test_csv_without_the_value_column_says_so() -> None:
    result = read_csv(FIXTURES / "iocs.csv", "csv:iocs", 50)
    assert result.entries == []
    assert "no column 'value'" in result.errors[0]


def test_misp_feed_takes_to_ids_attributes_with_event_context() -> None:
    result = read_misp_feed(FIXTURES / "misp")
    assert result.source == "misp:misp"
    assert _values(result) == {
        ("url", "https://login-micros0ft.example/auth"),
        ("domain", "invoice-portal.example"),
        ("ip", "198.51.100.77"),
        ("email", "billing@invoice-portal.example"),
        ("sha256", DROPPER_SHA256),
    }
    entry = result.entries[0]
    assert entry.actors == ["Sandy Ledger"]
    assert entry.techniques == ["T1566.002"]
    assert entry.confidence == 85  # threat level 1 (high)
    assert "tlp:green" in entry.labels
    assert result.skipped == 2  # the context-only attributes
    bad_event = FIXTURES / "misp" / "7a8b9c0d-1e2f-4a5b-9c8d-7e6f5a4b3c2d.json"
    assert any(e.startswith(f"{bad_event}:") for e in result.errors)
    assert any("999.1.1.1" in e and "Attribute[4]" in e for e in result.errors)


def test_stix_bundle_indicators_with_relationships(tmp_path: Path) -> None:
    path = tmp_path / "bundle.json"
    path.write_text(json.dumps(build_stix_bundle()), encoding="utf-8")
    assert detect_format(path) == "stix"
    result = read_stix_bundle(path)
    values = {(e.type, e.value): e for e in result.entries}
    assert set(values) == {
        ("domain", "nightowl-c2.example"),
        ("ip", "203.0.113.66"),
        ("cidr", "198.51.100.0/25"),
        ("sha256", DROPPER_SHA256),
        ("md5", "0123456789abcdef0123456789abcdef"),  # only the hash of the AND pattern
        ("url", "http://update.nightowl.example/get?id=7"),
        ("user-agent", "NightOwl/2.1"),
        ("domain", "retired-c2.example"),
    }
    c2 = values[("domain", "nightowl-c2.example")]
    assert (c2.confidence, c2.malware, c2.actors, c2.techniques) == (
        90,
        ["NightOwl RAT"],
        ["Sandy Ledger"],
        ["T1071.001"],
    )
    assert values[("domain", "retired-c2.example")].valid_until is not None
    assert len(result.errors) == 1 and "indicator--00000000-0000-4000-8000-000000000bad" in result.errors[0]
    assert {o["type"] for o in result.objects} == {
        "malware",
        "intrusion-set",
        "attack-pattern",
        "relationship",
    }


def test_stix_file_that_is_not_json_is_reported_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text('{"type": "bundle",\n "objects": [\n oops ]}', encoding="utf-8")
    result = read_stix_bundle(path)
    assert result.entries == [] and result.errors[0].startswith(f"{path}:3:")


def test_real_signature_base_iocs(shared_data: Path) -> None:
    results = {r.source: r for r in read_signature_base(shared_data / "intel" / "signature-base-iocs")}
    c2, hashes = results["signature-base:c2"], results["signature-base:hash"]
    assert ("domain", "suroot.com") in _values(c2)
    assert ("ip", "58.64.143.244") in _values(c2)
    snowman = next(e for e in c2.entries if e.value == "suroot.com")
    assert "Snowman" in snowman.description
    assert len(c2.entries) > 1700 and len(hashes.entries) > 3000
    assert {e.type for e in hashes.entries} == {"md5", "sha1", "sha256"}
    caracal = next(e for e in hashes.entries if e.value.startswith("ce583821191345274cd954b2db7da974"))
    assert caracal.description.startswith("Dark Caracal")
    scored = [e for e in hashes.entries if e.confidence != 75]
    assert scored, "the `hash;score;comment` lines carry their own score"
    names = results["signature-base:filename"]
    assert len(names.entries) > 3800 and not names.errors
    whatsapp = next(e for e in names.entries if e.value == r"\\whatsapp\.exe")
    assert whatsapp.confidence == 55 and whatsapp.labels[1].startswith(r"exclude:(\\WhatsApp|")


def test_real_maltrail_files(shared_data: Path, tmp_path: Path) -> None:
    trails = shared_data / "intel" / "maltrail"
    sample = tmp_path / "static"
    for part, names in {"malware": ["emotet.txt", "cobaltstrike.txt"], "suspicious": ["domain.txt"]}.items():
        (sample / part).mkdir(parents=True)
        for name in names:
            (sample / part / name).write_bytes((trails / part / name).read_bytes())
    (sample / "mass_scanner.txt").write_bytes((trails / "mass_scanner.txt").read_bytes())
    assert detect_format(sample) == "maltrail"
    results = {r.source: r for r in read_maltrail(sample)}
    assert set(results) == {"maltrail:malware", "maltrail:suspicious", "maltrail:mass_scanner"}
    emotet = [e for e in results["maltrail:malware"].entries if "emotet" in [m.lower() for m in e.malware]]
    assert ("ip", "66.210.228.178") in {(e.type, e.value) for e in emotet}  # written `66.210.228.178:443`
    assert "Heodo" in emotet[0].malware  # from `# Aliases:`
    assert emotet[0].references and emotet[0].references[0].startswith("https://")
    scanners = results["maltrail:mass_scanner"]
    assert all(e.confidence == 30 and "mass-scanner" in e.labels for e in scanners.entries)
    # `1.2.3.4 # comment` lines are read; the few truly malformed ones are reported with file:line.
    assert len(scanners.entries) > 15000
    assert all(":" in error.split(": ")[0] for error in scanners.errors)
    suspicious = results["maltrail:suspicious"]
    assert any(e.endswith("not a domain name: '.cc'") for e in suspicious.errors)
