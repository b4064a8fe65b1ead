"""The API's and dashboard's read side, on SQLite and PostgreSQL: filters, keyset pages, tenants, overview."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import insert, text

from tianmu.core.errors import InputError
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
)
from tianmu.store import Store
from tianmu.store.queries import (
    FindingQuery,
    FindingSort,
    bulk_set_status,
    find_findings,
    get_asset,
    list_assets,
    list_components,
    overview,
)
from tianmu.store.repository import save_assessment
from tianmu.store.schema import findings

T0 = datetime(2026, 11, 1, 8, 0, tzinfo=UTC)
SHOP = Asset("/srv/shop", AssetKind.DIRECTORY, tenant="acme", criticality=5)
GATEWAY = Asset("/srv/gateway", AssetKind.REPOSITORY, tenant="acme")
RIVAL = Asset("/srv/shop", AssetKind.DIRECTORY, tenant="globex")


def _vuln(asset: Asset, n: int, severity: Severity, *, kev: bool = False) -> Finding:
    comp = Component(
        f"pkg{n}", "1.0.0", "PyPI", f"pkg:pypi/pkg{n}@1.0.0", Location("requirements.txt", n + 1)
    )
    return Finding(
        kind=FindingKind.VULNERABILITY,
        rule_id=f"PYSEC-2026-{n:03d}",
        title=f"pkg{n} flaw {n}",
        severity=severity,
        asset=asset,
        component=comp,
        data={"kev": kev, "fixed_versions": ["1.0.1"]},
    )


def _detection(asset: Asset, n: int) -> Finding:
    return Finding(
        kind=FindingKind.DETECTION,
        rule_id=f"tianmu-ssh-bruteforce-{n}",
        title="SSH brute force then success",
        severity=Severity.HIGH,
        asset=asset,
        evidence={"path": "logs/auth.log", "line": 10 + n, "fingerprint_extra": f"203.0.113.{n}"},
    )


def _save(store: Store, asset: Asset, found: list[Finding], when: datetime) -> None:
    save_assessment(
        store,
        Assessment(
            target=asset.name,
            asset=asset,
            started=when,
            finished=when,
            components=[f.component for f in found if f.component],
            findings=found,
        ),
    )


@pytest.fixture
def data(store: Store) -> Store:
    severities = [Severity.CRITICAL, Severity.HIGH, Severity.MEDIUM, Severity.LOW, Severity.INFO]
    shop = [_vuln(SHOP, n, severities[n % 5], kev=(n == 7)) for n in range(25)]
    _save(store, SHOP, shop, T0)
    _save(
        store, GATEWAY, [_vuln(GATEWAY, 100 + n, Severity.MEDIUM) for n in range(5)], T0 + timedelta(hours=1)
    )
    _save(store, GATEWAY, [_detection(GATEWAY, 1), _detection(GATEWAY, 2)], T0 + timedelta(hours=2))
    _save(store, RIVAL, [_vuln(RIVAL, 900, Severity.CRITICAL, kev=True)], T0 + timedelta(hours=3))
    return store


def test_pages_walk_every_finding_once_in_order(data: Store) -> None:
    for sort in FindingSort:
        seen: list[int] = []
        cursor = None
        pages = 0
        while True:
            page = find_findings(data, "acme", FindingQuery(sort=sort), limit=4, cursor=cursor)
            seen += [item.id for item in page.items]
            pages += 1
            cursor = page.next_cursor
            if cursor is None:
                break
        assert len(seen) == len(set(seen)) == 32, sort
        assert pages == 8
    by_severity = find_findings(data, "acme", FindingQuery(sort=FindingSort.SEVERITY), limit=100).items
    ranks = [item.finding.severity.rank for item in by_severity]
    assert ranks == sorted(ranks, reverse=True) and ranks[0] == Severity.CRITICAL.rank


def test_filters_combine(data: Store) -> None:
    def ids(q: FindingQuery) -> set[str]:
        return {i.finding.rule_id for i in find_findings(data, "acme", q, limit=1000).items}

    assert len(ids(FindingQuery(min_severity=Severity.HIGH))) == 10 + 2  # 5 critical, 5 high, 2 detections
    assert ids(FindingQuery(kinds=(FindingKind.DETECTION,))) == {
        "tianmu-ssh-bruteforce-1",
        "tianmu-ssh-bruteforce-2",
    }
    assert ids(FindingQuery(kev=True)) == {"PYSEC-2026-007"}
    assert len(ids(FindingQuery(kev=False))) == 31
    assert ids(FindingQuery(text="FLAW 7")) == {"PYSEC-2026-007"}
    gateway = next(a for a in list_assets(data, "acme") if a.asset.name == "/srv/gateway")
    assert len(ids(FindingQuery(asset_id=gateway.id))) == 7
    assert len(ids(FindingQuery(since=T0 + timedelta(minutes=30)))) == 7
    assert len(ids(FindingQuery(until=T0 + timedelta(minutes=30)))) == 25
    assert ids(FindingQuery(severities=(Severity.LOW, Severity.INFO))) == {
        f"PYSEC-2026-{n:03d}" for n in range(25) if n % 5 in (3, 4)
    }


def test_tenants_never_see_each_other(data: Store) -> None:
    rival = find_findings(data, "globex", limit=100).items
    assert [i.finding.rule_id for i in rival] == ["PYSEC-2026-900"]
    assert bulk_set_status(data, "acme", [rival[0].id], TriageStatus.FALSE_POSITIVE) == 0
    assert find_findings(data, "globex").items[0].finding.status is TriageStatus.OPEN
    assert get_asset(data, "acme", find_findings(data, "globex").items[0].asset_id) is None
    assert all(c["asset_id"] != rival[0].asset_id for c in list_components(data, "acme"))


def test_bulk_triage_and_overview(data: Store) -> None:
    before = overview(data, "acme")
    assert before["assets"] == 2 and before["open_findings"] == 32
    assert before["by_severity"] == {"critical": 5, "high": 7, "medium": 10, "low": 5, "info": 5}
    assert before["by_kind"]["detection"] == 2 and before["by_kind"]["vulnerability"] == 30
    assert before["kev_open"] == 1 and before["kev"][0].finding.rule_id == "PYSEC-2026-007"
    assert [d.finding.rule_id for d in before["newest_detections"]] == [
        "tianmu-ssh-bruteforce-2",
        "tianmu-ssh-bruteforce-1",
    ]
    assert before["top_assets"][0]["name"] == "/srv/shop"  # five criticals outweigh everything else
    criticals = find_findings(data, "acme", FindingQuery(severities=(Severity.CRITICAL,))).items
    assert bulk_set_status(data, "acme", [c.id for c in criticals], TriageStatus.ACKNOWLEDGED) == 5
    after = overview(data, "acme")
    assert after["by_severity"]["critical"] == 0 and after["open_findings"] == 27


def test_assets_and_components(data: Store) -> None:
    summaries = {a.asset.name: a for a in list_assets(data, "acme")}
    assert set(summaries) == {"/srv/shop", "/srv/gateway"}
    shop = summaries["/srv/shop"]
    assert shop.components == 25 and shop.asset.criticality == 5
    assert shop.open_by_severity == {"critical": 5, "high": 5, "medium": 5, "low": 5, "info": 5}
    assert get_asset(data, "acme", shop.id) == shop
    comps = list_components(data, "acme", asset_id=shop.id, name="PKG1")
    assert {c["name"] for c in comps} == {"pkg1"} | {f"pkg{n}" for n in range(10, 20)}
    assert comps[0]["location"]["path"] == "requirements.txt"


def test_bad_cursor_and_limit_are_input_errors(data: Store) -> None:
    with pytest.raises(InputError, match="invalid cursor"):
        find_findings(data, "acme", cursor="not-a-cursor")
    with pytest.raises(InputError, match="limit must be between"):
        find_findings(data, "acme", limit=0)


def test_postgres_serves_the_pages_from_indexes(postgres_store: Store) -> None:
    """EXPLAIN on 20,000 findings: the default and the severity page read an index, never sort a table."""
    store = postgres_store
    _save(store, SHOP, [_vuln(SHOP, 1, Severity.HIGH)], T0)
    rng = random.Random(7)
    rows = [
        {
            "tenant": rng.choice(["acme", "globex", "initech", "umbrella"]),
            "fingerprint": f"{n:064x}",
            "asset_id": 1,
            "kind": "vulnerability",
            "rule_id": f"GHSA-{n}",
            "title": "t",
            "severity": "high",
            "severity_rank": rng.randint(0, 4),
            "summary": "",
            "evidence": {},
            "aliases": [],
            "references": [],
            "techniques": [],
            "data": {},
            "status": rng.choice(["open", "open", "open", "resolved"]),
            "first_seen": T0,
            "last_seen": T0 + timedelta(seconds=n),
        }
        for n in range(20_000)
    ]
    with store.begin() as conn:
        conn.execute(insert(findings), rows)
        conn.execute(text("ANALYZE findings"))
    plans = {}
    for sort in (FindingSort.LAST_SEEN, FindingSort.SEVERITY):
        plans[sort] = _explain(store, FindingQuery(statuses=(TriageStatus.OPEN,), sort=sort))
    for sort, plan in plans.items():
        assert "Index" in plan, (sort, plan)
        assert "Seq Scan on findings" not in plan, (sort, plan)
        assert "Sort Key" not in plan, (sort, plan)


def _explain(store: Store, q: FindingQuery) -> str:
    """The plan of the very statement `find_findings` runs (captured on its way to the database)."""
    captured: list[str] = []
    original = store.connect

    class Explaining:
        def __enter__(self) -> Explaining:
            self.cm = original()
            self.conn = self.cm.__enter__()
            return self

        def __exit__(self, *exc: object) -> None:
            self.cm.__exit__(*exc)

        def execute(self, statement: object) -> object:
            compiled = statement.compile(self.conn, compile_kwargs={"literal_binds": True})  # type: ignore[attr-defined]
            captured.append("\n".join(r[0] for r in self.conn.execute(text(f"EXPLAIN {compiled}"))))
            return self.conn.execute(statement)  # type: ignore[arg-type]

    store.connect = Explaining  # type: ignore[method-assign, assignment]
    try:
        find_findings(store, "acme", q, limit=50)
    finally:
        store.connect = original  # type: ignore[method-assign]
    return captured[0]


def _unscored_case(asset: Asset, n: int, severity: Severity, score: float | None, **data: object) -> Finding:
    found = _vuln(asset, n, severity)
    return Finding(
        kind=found.kind,
        rule_id=found.rule_id,
        title=found.title,
        severity=severity,
        asset=asset,
        component=found.component,
        score=score,
        data=data,
    )


def test_unscored_filter_and_counts_in_sql(store: Store) -> None:
    """The store selects unscored findings itself (before, FindingQuery had no such condition and the
    dashboard paged through every finding in Python); exactly those `is_unscored` names."""
    from tianmu.situation.risk import is_unscored  # the rule the SQL must agree with

    cases = [
        _unscored_case(SHOP, 1, Severity.MEDIUM, None, unscored=True, severity_source="unknown"),
        _unscored_case(SHOP, 2, Severity.MEDIUM, None, severity_source="unknown"),  # stored before the flag
        _unscored_case(SHOP, 3, Severity.HIGH, None, unscored=True, kev=True),
        _unscored_case(SHOP, 4, Severity.MEDIUM, None, severity_source="ghsa"),  # rated
        _unscored_case(SHOP, 5, Severity.HIGH, 7.5, unscored=True),  # a score: not unscored
        _unscored_case(SHOP, 6, Severity.LOW, None, unscored="yes"),  # not the flag's JSON type
        _unscored_case(SHOP, 7, Severity.LOW, None, unscored=False),
        _unscored_case(SHOP, 8, Severity.LOW, None),  # no data at all
    ]
    _save(store, SHOP, cases, T0)
    _save(store, GATEWAY, [_detection(GATEWAY, 1)], T0)
    rival = _unscored_case(RIVAL, 9, Severity.MEDIUM, None, unscored=True)
    _save(store, RIVAL, [rival], T0)

    def rules(unscored: bool | None, **extra: object) -> set[str]:
        query = FindingQuery(unscored=unscored, **extra)  # type: ignore[arg-type]
        return {i.finding.rule_id for i in find_findings(store, "acme", query, limit=1000).items}

    everything = find_findings(store, "acme", limit=1000).items
    expected = {i.finding.rule_id for i in everything if is_unscored(i.finding)}
    assert expected == {"PYSEC-2026-001", "PYSEC-2026-002", "PYSEC-2026-003"}
    assert rules(True) == expected
    assert rules(False) == {i.finding.rule_id for i in everything} - expected
    assert "tianmu-ssh-bruteforce-1" in rules(False)
    assert rules(True, severities=(Severity.MEDIUM,)) == {"PYSEC-2026-001", "PYSEC-2026-002"}
    assert rules(True, kev=True) == {"PYSEC-2026-003"}
    # Pages of one: the store's cursor, nothing lost or repeated.
    seen: list[str] = []
    cursor = None
    while True:
        page = find_findings(store, "acme", FindingQuery(unscored=True), limit=1, cursor=cursor)
        seen += [i.finding.rule_id for i in page.items]
        if (cursor := page.next_cursor) is None:
            break
    assert sorted(seen) == sorted(expected)
    numbers = overview(store, "acme")
    assert numbers["unscored"] == {"critical": 0, "high": 1, "medium": 2, "low": 0, "info": 0}
    bulk_set_status(
        store,
        "acme",
        [i.id for i in everything if i.finding.rule_id == "PYSEC-2026-003"],
        TriageStatus.FALSE_POSITIVE,
    )
    assert overview(store, "acme")["unscored"]["high"] == 0  # open findings only
    assert overview(store, "globex")["unscored"]["medium"] == 1
