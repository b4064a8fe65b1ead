"""Incidents, posture and traces through the store, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tianmu.core.errors import InputError
from tianmu.core.models import Assessment, Event, Location, TriageStatus
from tianmu.situation import (
    find_incident,
    load_incidents,
    posture_history,
    record_posture,
    score_findings,
    set_incident,
    trace,
    update_incidents,
)
from tianmu.store import Store
from tianmu.store.repository import save_assessment

from .scenario import ATTACKER, DB01, MALWARE_SHA256, WEB01, scenario_findings


def _save(store: Store, findings: list, asset: object) -> int:
    now = datetime(2026, 11, 24, tzinfo=UTC)
    assessment = Assessment(target=asset.name, asset=asset, started=now, finished=now, findings=findings)  # type: ignore[attr-defined]
    return save_assessment(store, assessment).assessment_id


def test_incidents_stream_into_the_store_and_keep_triage(store: Store) -> None:
    findings = scenario_findings()
    first = update_incidents(store, "default", findings[:3])
    assert len(first) == 1 and first[0].created  # one change per incident, however many findings joined
    [stored] = load_incidents(store, "default")
    assert stored.stage == "initial-access" and len(stored.finding_fingerprints) == 3
    key = stored.id
    set_incident(store, "default", key[:8], status=TriageStatus.ACKNOWLEDGED, assignee="li.wei")

    changes = update_incidents(store, "default", findings[3:])
    assert {c.incident.id for c in changes if not c.created} == {key}
    incidents = {i.id: i for i in load_incidents(store, "default")}
    assert len(incidents) == 3
    main = incidents[key]
    assert main.stage == "persistence" and main.severity.value == "critical"
    assert main.status is TriageStatus.ACKNOWLEDGED and main.assignee == "li.wei"
    assert [e["rule_id"] for e in main.timeline][-2:] == ["sigma:linux-useradd", "yara:Linux_Trojan_Mirai"]
    assert main.first_seen == datetime(2026, 11, 20, 3, 12, 5, tzinfo=UTC)

    # Replaying the same findings changes nothing (idempotent), resolving and new evidence reopens.
    assert update_incidents(store, "default", findings) == []
    set_incident(store, "default", key, status=TriageStatus.RESOLVED)
    late = scenario_findings()[1]
    late.rule_id = "sigma:ssh-brute-force-again"
    late.evidence["time"] = "2026-11-20T04:00:00+00:00"
    [change] = update_incidents(store, "default", [late])
    assert change.incident.id == key and change.state_changed
    assert find_incident(store, "default", key).status is TriageStatus.OPEN
    assert load_incidents(store, "other-tenant") == []


def test_find_incident_errors_are_clear(store: Store) -> None:
    with pytest.raises(InputError, match="no incident"):
        find_incident(store, "default", "INC-abc")
    with pytest.raises(InputError, match="not an incident id"):
        find_incident(store, "default", "INC-%")


def test_posture_history_is_kept_per_assessment(store: Store) -> None:
    t0 = datetime(2026, 11, 1, tzinfo=UTC)
    findings = scenario_findings()
    for day, count in ((0, 1), (1, 3), (2, 7)):
        report = score_findings(findings[:count], [WEB01, DB01], now=t0 + timedelta(days=day))
        record_posture(store, report, open_incidents=day)
    history = posture_history(store, "default")
    assert [p.open_findings for p in history] == [1, 3, 7]
    assert [p.open_incidents for p in history] == [0, 1, 2]
    assert history[0].score < history[1].score < history[2].score
    assert [p.as_dict()["taken_at"][:10] for p in posture_history(store, "default", limit=2)] == [
        "2026-11-02",
        "2026-11-03",
    ]


def test_trace_tells_the_story_of_an_ip_a_hash_a_user_and_a_host(store: Store) -> None:
    findings = scenario_findings()
    _save(store, [f for f in findings if f.asset.name == "web01"], WEB01)
    _save(store, [f for f in findings if f.asset.name == "db01"], DB01)
    update_incidents(store, "default", findings)

    story = trace(store, "default", ATTACKER)
    assert story.types == ("ip",)
    titles = [(i.source, i.title) for i in story.items]
    assert titles == [
        ("incident", "Persistence on web01 from 203.0.113.45"),
        ("finding", "Connection from 203.0.113.45, listed as an SSH scanner"),
        ("finding", "SSH brute force"),
        ("finding", "Successful SSH login after repeated failures"),
    ]
    assert story.items[1].where == "var/log/auth.log:1"

    by_hash = trace(store, "default", MALWARE_SHA256.upper())
    assert [i.source for i in by_hash.items] == ["incident", "finding"]
    assert by_hash.items[1].detail["rule_id"] == "yara:Linux_Trojan_Mirai"

    by_user = trace(store, "default", "deploy")
    assert [(i.source, i.ref) for i in by_user.items if i.source == "finding"] == [
        ("finding", findings[2].fingerprint)
    ]

    host = trace(store, "default", "web01")
    assert host.items[0].source == "asset" and host.items[0].detail == {
        "criticality": 4,
        "tags": ["internet-facing", "prod"],
    }
    assert host.counts() == {"asset": 1, "finding": 6, "incident": 2}

    event = Event(
        fields={"source.ip": ATTACKER, "user.name": "deploy"},
        raw="Nov 20 03:15:40 web01 sshd[2242]: Accepted password for deploy from 203.0.113.45",
        origin=Location("var/log/auth.log", 5),
        timestamp=datetime(2026, 11, 20, 3, 15, 40, tzinfo=UTC),
    )
    with_events = trace(store, "default", ATTACKER, events=[event])
    assert [i.source for i in with_events.items][-1] == "event"
    assert with_events.items[-1].where == "var/log/auth.log:5"
    with pytest.raises(InputError):
        trace(store, "default", "  ")


def test_rebuild_keeps_triage_and_drops_incidents_that_no_longer_form(store: Store) -> None:
    from tianmu.situation import rebuild_incidents

    findings = scenario_findings()
    update_incidents(store, "default", findings)
    main = next(i for i in load_incidents(store, "default") if i.stage == "persistence")
    set_incident(store, "default", main.id, status=TriageStatus.ACKNOWLEDGED, assignee="li.wei")
    # Without the db01 finding its incident no longer forms; the others are rebuilt with their triage.
    rebuilt = rebuild_incidents(store, "default", [f for f in findings if f.asset.name == "web01"])
    assert len(rebuilt) == 2
    stored = {i.id: i for i in load_incidents(store, "default")}
    assert set(stored) == {i.id for i in rebuilt}
    assert stored[main.id].status is TriageStatus.ACKNOWLEDGED and stored[main.id].assignee == "li.wei"
