"""The fingerprint rule and the assessment history, on SQLite and on PostgreSQL."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from sqlalchemy import inspect, select

from tianmu.core.models import (
    Assessment,
    Asset,
    AssetKind,
    Component,
    Finding,
    FindingKind,
    Location,
    Severity,
    TriageStatus,
    utcnow,
)
from tianmu.core.serialize import component_to_dict
from tianmu.store import Store
from tianmu.store.repository import count_assessments, list_findings, save_assessment, set_status
from tianmu.store.schema import assessments, components

ASSET = Asset(name="/srv/shop", kind=AssetKind.DIRECTORY)
DJANGO = Component(
    name="Django",
    version="3.2.0",
    ecosystem="PyPI",
    purl="pkg:pypi/django@3.2.0",
    location=Location("requirements.txt", 4),
)
REQUESTS = Component(
    name="requests",
    version="2.19.1",
    ecosystem="PyPI",
    purl="pkg:pypi/requests@2.19.1",
    location=Location("requirements.txt", 7),
)


def vuln(rule_id: str, component: Component, severity: Severity = Severity.HIGH) -> Finding:
    return Finding(
        kind=FindingKind.VULNERABILITY,
        rule_id=rule_id,
        title=f"{rule_id} in {component.name}",
        severity=severity,
        asset=ASSET,
        component=component,
        data={"fixed_versions": ["3.2.4"], "kev": False, "epss": None},
    )


def assessment(
    *found: Finding, comps: tuple[Component, ...] = (DJANGO, REQUESTS), minutes: int = 0
) -> Assessment:
    started = utcnow() + timedelta(minutes=minutes)
    return Assessment(
        target="/srv/shop",
        asset=ASSET,
        started=started,
        finished=started + timedelta(seconds=2),
        components=list(comps),
        findings=list(found),
    )


def test_schema_is_migrated_to_head(store: Store) -> None:
    tables = set(inspect(store.engine).get_table_names())
    assert {"assets", "components", "findings", "assessments", "advisories", "alembic_version"} <= tables


def test_same_problem_found_again_is_one_finding_with_triage_kept(store: Store) -> None:
    first = save_assessment(store, assessment(vuln("PYSEC-2021-98", DJANGO), vuln("PYSEC-2018-28", REQUESTS)))
    assert (first.new_findings, first.seen_again) == (2, 0)

    stored = {s.finding.rule_id: s.finding for s in list_findings(store, "default")}
    assert set_status(store, "default", stored["PYSEC-2021-98"].fingerprint, TriageStatus.ACKNOWLEDGED)

    # A line moved and the advisory's severity changed: still the same problem.
    moved = replace(DJANGO, location=Location("requirements.txt", 9))
    again = vuln("PYSEC-2021-98", moved, Severity.CRITICAL)
    second = save_assessment(store, assessment(again, minutes=5))
    assert (second.new_findings, second.seen_again) == (0, 1)
    assert again.status is TriageStatus.ACKNOWLEDGED

    rows = {s.finding.rule_id: s.finding for s in list_findings(store, "default")}
    assert len(rows) == 2
    django = rows["PYSEC-2021-98"]
    assert django.status is TriageStatus.ACKNOWLEDGED
    assert django.severity is Severity.CRITICAL
    assert django.last_seen is not None and django.first_seen is not None
    assert django.last_seen > django.first_seen
    assert django.component is not None and django.component.location == Location("requirements.txt", 9)


def test_resolved_finding_that_comes_back_is_reopened(store: Store) -> None:
    finding = vuln("PYSEC-2021-98", DJANGO)
    save_assessment(store, assessment(finding))
    assert set_status(store, "default", finding.fingerprint, TriageStatus.RESOLVED)
    result = save_assessment(store, assessment(vuln("PYSEC-2021-98", DJANGO), minutes=1))
    assert result.reopened == 1
    (row,) = list_findings(store, "default")
    assert row.finding.status is TriageStatus.OPEN


def test_a_different_version_is_a_different_finding(store: Store) -> None:
    save_assessment(store, assessment(vuln("PYSEC-2021-98", DJANGO)))
    upgraded_but_still_affected = replace(DJANGO, version="3.2.1", purl="pkg:pypi/django@3.2.1")
    result = save_assessment(store, assessment(vuln("PYSEC-2021-98", upgraded_but_still_affected), minutes=1))
    assert result.new_findings == 1
    assert len(list_findings(store, "default")) == 2


def test_tenants_do_not_see_each_other(store: Store) -> None:
    save_assessment(store, assessment(vuln("PYSEC-2021-98", DJANGO)))
    other_asset = replace(ASSET, tenant="acme")
    other = Finding(
        kind=FindingKind.VULNERABILITY,
        rule_id="PYSEC-2021-98",
        title="t",
        severity=Severity.HIGH,
        asset=other_asset,
        component=DJANGO,
    )
    run = assessment(other)
    run.asset = other_asset
    save_assessment(store, run)
    assert [s.finding.asset.tenant for s in list_findings(store, "acme")] == ["acme"]
    assert len(list_findings(store, "default")) == 1
    assert not set_status(store, "acme", "0" * 64, TriageStatus.RESOLVED)


def test_components_are_a_snapshot_and_assessments_are_history(store: Store) -> None:
    save_assessment(store, assessment(vuln("PYSEC-2021-98", DJANGO)))
    save_assessment(store, assessment(comps=(REQUESTS,), minutes=1))
    with store.connect() as conn:
        names = [r.name for r in conn.execute(select(components.c.name))]
        counts = [r.finding_counts for r in conn.execute(select(assessments).order_by(assessments.c.id))]
    assert names == ["requests"]
    assert counts == [{"high": 1}, {}]
    assert count_assessments(store, "default") == 2


def test_filters(store: Store) -> None:
    save_assessment(
        store,
        assessment(
            vuln("PYSEC-2021-98", DJANGO, Severity.CRITICAL), vuln("PYSEC-2018-28", REQUESTS, Severity.LOW)
        ),
    )
    high = list_findings(store, "default", min_severity=Severity.HIGH)
    assert [s.finding.rule_id for s in high] == ["PYSEC-2021-98"]
    assert list_findings(store, "default", kinds=[FindingKind.MALWARE]) == []
    assert len(list_findings(store, "default", statuses=[TriageStatus.OPEN], limit=1)) == 1


def test_the_os_package_that_owns_a_component_is_kept_with_its_findings(store: Store) -> None:
    owned = replace(
        DJANGO,
        name="cryptography",
        version="38.0.4",
        purl="pkg:pypi/cryptography@38.0.4",
        distro_package="Debian/python3-cryptography@38.0.4-3+deb12u1",
    )
    save_assessment(store, assessment(vuln("GHSA-x4qr-2fvf-3mr5", owned), comps=(owned,)))
    (stored,) = list_findings(store, "default")
    assert stored.finding.component is not None
    assert stored.finding.component.distro_package == "Debian/python3-cryptography@38.0.4-3+deb12u1"
    assert component_to_dict(owned)["distro_package"] == "Debian/python3-cryptography@38.0.4-3+deb12u1"
