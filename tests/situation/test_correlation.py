"""Correlation: the intrusion scenario becomes one incident at stage persistence, noise stays apart."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tianmu.core.models import Finding, FindingKind, Severity, TriageStatus
from tianmu.situation import Correlator, correlate
from tianmu.situation.correlation import incident_state
from tianmu.situation.tactics import TACTICS, finding_tactics, normalise_tactic, store_technique_resolver
from tianmu.store import Store

from .scenario import ATTACKER, MALWARE_SHA256, WEB01, scenario_findings


def test_tactic_order_is_the_enterprise_kill_chain() -> None:
    assert TACTICS[0] == "reconnaissance" and TACTICS[-1] == "impact"
    assert len(TACTICS) == 14
    assert TACTICS.index("initial-access") < TACTICS.index("persistence") < TACTICS.index("credential-access")
    assert normalise_tactic("attack.credential_access") == "credential-access"
    assert normalise_tactic("Command and Control") == "command-and-control"
    assert normalise_tactic("attack.t1110") is None


def test_tactics_from_tags_then_techniques_through_a_resolver() -> None:
    brute, login = scenario_findings()[1:3]
    assert finding_tactics(brute) == ["credential-access"]
    untagged = Finding(FindingKind.DETECTION, "x", "x", Severity.LOW, WEB01, techniques=("T1078.003",))
    assert finding_tactics(untagged) == []
    table = {"T1078": ["defense-evasion", "persistence", "privilege-escalation", "initial-access"]}
    # A multi-tactic technique counts as its earliest tactic; a sub-technique falls back to its parent.
    assert finding_tactics(untagged, lambda t: table.get(t, [])) == ["initial-access"]
    assert finding_tactics(login, lambda t: ["impact"]) == ["initial-access"]  # tags win over techniques


def test_scenario_is_one_incident_at_persistence_with_its_timeline() -> None:
    incidents = correlate(scenario_findings())
    assert len(incidents) == 3
    main = incidents[0]
    assert main.stage == "persistence"
    assert main.tactics == ["initial-access", "persistence", "credential-access"]
    assert main.severity is Severity.CRITICAL  # the Mirai sample
    assert main.assets == ["web01"]
    assert main.sources == [ATTACKER]
    assert main.title == "Persistence on web01 from 203.0.113.45"
    assert [e["rule_id"] for e in main.timeline] == [
        "intel:ip:203.0.113.45",
        "sigma:ssh-brute-force",
        "sigma:ssh-login-after-failures",
        "sigma:linux-useradd",
        "yara:Linux_Trojan_Mirai",
    ]
    assert [e["time"][11:19] for e in main.timeline] == [
        "03:12:05",
        "03:14:02",
        "03:15:40",
        "03:18:02",
        "03:21:30",
    ]
    assert main.entities["user"] == ["root", "admin", "deploy", "backup2"]
    assert main.entities["hash"] == [MALWARE_SHA256]
    assert main.first_seen is not None and main.first_seen.isoformat() == "2026-11-20T03:12:05+00:00"
    assert main.last_seen is not None and main.last_seen.isoformat() == "2026-11-20T03:21:30+00:00"
    assert main.id.startswith("INC-") and len(main.id) == 16

    db, scan = incidents[1], incidents[2]
    assert db.assets == ["db01"] and db.stage == "credential-access" and db.sources == ["192.0.2.77"]
    assert db.severity is Severity.MEDIUM
    assert scan.assets == ["web01"] and scan.stage == "discovery" and scan.sources == ["198.51.100.23"]


def test_order_of_arrival_does_not_change_the_result() -> None:
    expected = [(i.id, i.stage, i.finding_fingerprints) for i in correlate(scenario_findings())]
    for seed in range(5):
        shuffled = scenario_findings()
        random.Random(seed).shuffle(shuffled)
        correlator = Correlator()
        for finding in shuffled:  # one at a time: streaming, not a sorted batch
            correlator.add(finding)
        got = sorted((i.stage, i.finding_fingerprints) for i in correlator.incidents)
        assert got == sorted((stage, fps) for _, stage, fps in expected)


def test_streaming_updates_report_state_changes_and_merges() -> None:
    intel, brute, login, useradd, malware = scenario_findings()[:5]
    correlator = Correlator()
    first = correlator.add(intel)
    assert first is not None and first.created and first.incident.stage is None
    change = correlator.add(brute)
    assert change is not None and not change.created and change.state_changed
    assert change.incident.stage == "credential-access"
    # The login turns the brute force into a way in: the stage is initial access, not further.
    change = correlator.add(login)
    assert change is not None and change.incident.stage == "initial-access"
    change = correlator.add(useradd)
    assert change is not None and change.incident.stage == "persistence" and change.state_changed
    before = incident_state(change.incident)
    assert correlator.add(useradd) is None  # the same finding again changes nothing
    change = correlator.add(malware)
    assert change is not None and change.state_changed and incident_state(change.incident) != before
    assert len(correlator.incidents) == 1


def test_a_finding_linking_two_incidents_merges_them_into_the_older() -> None:
    intel, brute, _login, useradd, _malware = scenario_findings()[:5]
    other_asset = WEB01.__class__("bastion", WEB01.kind)
    hop = Finding(
        FindingKind.DETECTION,
        "sigma:ssh-from-bastion",
        "SSH from the bastion",
        Severity.LOW,
        other_asset,
        evidence={"time": "2026-11-20T03:30:00+00:00", "entities": {"ip": ["10.0.0.5"]}},
    )
    bridge = Finding(
        FindingKind.DETECTION,
        "sigma:bridge",
        "Attacker IP on the bastion",
        Severity.LOW,
        other_asset,
        evidence={"time": "2026-11-20T03:31:00+00:00", "entities": {"ip": [ATTACKER, "10.0.0.5"]}},
    )
    correlator = Correlator()
    correlator.add_all([intel, brute, useradd])
    separate = correlator.add(hop)
    assert separate is not None and separate.created
    older = correlator.incidents[0].id
    change = correlator.add(bridge)
    assert change is not None and change.incident.id == older and change.merged == [separate.incident.id]
    assert len(correlator.incidents) == 1
    assert change.incident.assets == ["web01", "bastion"]


def test_users_link_only_on_the_same_host_and_windows_bound_incidents() -> None:
    a = Finding(
        FindingKind.DETECTION,
        "r1",
        "t",
        Severity.LOW,
        WEB01,
        evidence={"time": "2026-11-20T01:00:00+00:00", "entities": {"user": ["root"]}},
    )
    b = Finding(
        FindingKind.DETECTION,
        "r2",
        "t",
        Severity.LOW,
        WEB01.__class__("other", WEB01.kind),
        evidence={"time": "2026-11-20T01:05:00+00:00", "entities": {"user": ["root"]}},
    )
    assert len(correlate([a, b])) == 2
    late = Finding(
        FindingKind.DETECTION,
        "r3",
        "t",
        Severity.LOW,
        WEB01,
        evidence={"time": "2026-11-21T02:00:01+00:00", "entities": {"user": ["root"]}},
    )
    assert len(correlate([a, late])) == 2
    assert len(correlate([a, late], window=timedelta(hours=26))) == 1


def test_vulnerabilities_are_not_incidents_and_resolved_incidents_reopen() -> None:
    vuln = Finding(FindingKind.VULNERABILITY, "CVE-2024-6387", "regreSSHion", Severity.HIGH, WEB01)
    assert correlate([vuln]) == []
    intel, brute = scenario_findings()[:2]
    correlator = Correlator()
    correlator.add(intel)
    correlator.incidents[0].status = TriageStatus.RESOLVED
    change = correlator.add(brute)
    assert change is not None and change.incident.status is TriageStatus.OPEN and change.state_changed


def _as_detect_makes_them() -> list[Finding]:
    """The scenario as the detect engine emits findings: technique ids only, no tactic tags."""
    findings = scenario_findings()
    for finding in findings:
        finding.data.pop("tags", None)
        finding.data["attack"] = list(finding.techniques)
    return findings


def test_tactics_from_the_intel_annotation() -> None:
    useradd = _as_detect_makes_them()[3]
    assert finding_tactics(useradd) == []
    useradd.data["attack"] = [
        {"id": "T1136.001", "tactic_shortnames": ["persistence"]},
        {"id": "T1078", "tactic_shortnames": ["defense-evasion", "persistence", "initial-access"]},
    ]
    assert finding_tactics(useradd) == ["initial-access", "persistence"]


def test_scenario_with_the_real_attack_base(sqlite_store: Store, shared_data: Path, tmp_path: Path) -> None:
    from tianmu.intel.kb import import_feed

    import_feed(sqlite_store, shared_data / "attack" / "enterprise-attack.json.gz", home=tmp_path)
    resolver = store_technique_resolver(sqlite_store)
    assert list(resolver("T1110")) == ["credential-access"]
    assert "initial-access" in resolver("T1078") and "persistence" in resolver("T1078")
    assert list(resolver("T1136.001")) == ["persistence"]
    assert list(resolver("T9999")) == []
    [main, db, scan] = correlate(_as_detect_makes_them(), resolver=resolver)
    assert main.stage == "persistence"
    assert main.tactics == ["initial-access", "persistence", "credential-access"]
    assert db.stage == "credential-access" and scan.stage is None  # the scanner rule has no technique


def test_incidents_do_not_depend_on_arrival_order() -> None:
    """Random small worlds (3 hosts, 3 addresses, 80 hours): streaming in any order gives the batch's
    incidents, i.e. the connected groups of 'shares a link within the window'."""
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    for seed in range(300):
        rng = random.Random(seed)
        findings = [
            Finding(
                FindingKind.DETECTION,
                f"r{n}",
                "t",
                Severity.LOW,
                WEB01.__class__(f"h{rng.randrange(3)}", WEB01.kind),
                evidence={
                    "time": (t0 + timedelta(hours=rng.randrange(80))).isoformat(),
                    "entities": {"ip": [f"192.0.2.{rng.randrange(3)}"]},
                },
            )
            for n in range(6)
        ]
        batch = sorted(sorted(i.finding_fingerprints) for i in correlate(findings))
        shuffled = list(findings)
        rng.shuffle(shuffled)
        correlator = Correlator()
        for finding in shuffled:
            correlator.add(finding)
        assert sorted(sorted(i.finding_fingerprints) for i in correlator.incidents) == batch, seed


def _sweep_and_campaign() -> tuple[list[Finding], list[Finding]]:
    """A scanner's address on 60 hosts (noise), and one attacker's C2 address on three of them."""
    sweep = [
        Finding(
            FindingKind.DETECTION,
            "sigma:port-scan",
            "Port scan",
            Severity.LOW,
            WEB01.__class__(f"host{n:02d}", WEB01.kind),
            evidence={"time": f"2026-11-20T02:{n:02d}:00+00:00", "entities": {"ip": ["198.51.100.7"]}},
        )
        for n in range(60)
    ]
    campaign = [
        Finding(
            FindingKind.INTEL,
            "intel:c2",
            "Beacon to a known C2 address",
            Severity.HIGH,
            WEB01.__class__(f"host{n:02d}", WEB01.kind),
            evidence={"time": f"2026-11-20T04:{n:02d}:00+00:00", "entities": {"ip": ["203.0.113.66"]}},
        )
        for n in (3, 17, 41)
    ]
    return sweep, campaign


def test_an_address_on_too_many_assets_stops_joining_their_incidents() -> None:
    sweep, campaign = _sweep_and_campaign()
    unlimited = correlate(sweep + campaign, fanout=None)
    assert len(unlimited) == 1 and len(unlimited[0].assets) == 60  # everything in one incident
    incidents = correlate(sweep + campaign)
    # The scanner is on 60 hosts (over the limit of 50): one incident per host; the C2 address, on
    # three, still joins theirs. The scanner stays an entity of each incident.
    assert len(incidents) == 58
    joined = [i for i in incidents if len(i.assets) > 1]
    assert [sorted(i.assets) for i in joined] == [["host03", "host17", "host41"]]
    assert all("198.51.100.7" in i.entities["ip"] for i in incidents)
    shuffled = sweep + campaign
    random.Random(7).shuffle(shuffled)
    assert [(i.id, i.assets) for i in correlate(shuffled)] == [(i.id, i.assets) for i in incidents]
    assert len(correlate(sweep + campaign, fanout=100)) == 1


def test_streaming_stops_joining_once_a_link_crosses_the_limit() -> None:
    sweep, _campaign = _sweep_and_campaign()
    correlator = Correlator(fanout=5)
    for finding in sweep[:6]:
        correlator.add(finding)
    # The first five hosts joined through the address; the sixth crossed the limit and stands alone,
    # as does every later one; what was merged stays merged.
    assert sorted(len(i.assets) for i in correlator.incidents) == [1, 5]
    for finding in sweep[6:]:
        correlator.add(finding)
    assert len(correlator.incidents) == 56
    assert ("ip", "198.51.100.7") in correlator.hubs
