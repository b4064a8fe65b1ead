"""Benchmark of the REST API's findings list on PostgreSQL with 100,000 findings: p50/p95 per query.

Run: `.venv/bin/python bench/bench_api.py` (needs PostgreSQL at 127.0.0.1:5432/test, or
TIANMU_TEST_POSTGRES_URL). Writes bench/results/bench_api.json.

A fresh schema gets 100,000 findings of one tenant over 200 assets (and 20,000 of another tenant, so
that the tenant filter has work to do), with realistic JSON (component, evidence, data). The service
runs under uvicorn on 127.0.0.1 and an httpx client with a bearer token sends each query 200 times,
after 20 warm-up calls; the figures are wall-clock latencies seen by the client, HTTP included.
Target (issue 7): p95 < 100 ms.
"""

from __future__ import annotations

import json
import os
import random
import socket
import statistics
import sys
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import httpx
import uvicorn
from sqlalchemy import create_engine, insert, text

from tianmu.core.config import Settings
from tianmu.identity import IdentityService, Principal, Role, cli_principal
from tianmu.service import ServiceSettings
from tianmu.service.platform import create_platform_app
from tianmu.store.database import Store
from tianmu.store.schema import assets, findings

RESULTS = Path(__file__).resolve().parents[1] / "bench" / "results"
POSTGRES_URL = os.environ.get("TIANMU_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
FINDINGS = 100_000
OTHER_TENANT = 20_000
ROUNDS = 200
SEVERITIES = ["critical", "high", "medium", "low", "info"]
RANK = {s: 4 - i for i, s in enumerate(SEVERITIES)}
KINDS = ["vulnerability"] * 6 + ["detection"] * 2 + ["malware", "intel"]


def _populate(store: Store) -> None:
    rng = random.Random(100_000)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    with store.begin() as conn:
        for tenant, count in (("acme", 200), ("globex", 40)):
            conn.execute(
                insert(assets),
                [
                    {
                        "tenant": tenant,
                        "kind": "host",
                        "name": f"{tenant}-host-{n:03d}",
                        "criticality": rng.randint(1, 5),
                        "tags": [],
                        "first_seen": start,
                        "last_seen": start,
                    }
                    for n in range(count)
                ],
            )
        asset_ids = {
            t: [r.id for r in conn.execute(text("SELECT id FROM assets WHERE tenant = :t"), {"t": t})]
            for t in ("acme", "globex")
        }
        for tenant, total in (("acme", FINDINGS), ("globex", OTHER_TENANT)):
            rows = []
            for n in range(total):
                severity = rng.choices(SEVERITIES, weights=[3, 12, 40, 30, 15])[0]
                kind = rng.choice(KINDS)
                seen = start + timedelta(seconds=rng.randint(0, 300 * 86400))
                rows.append(
                    {
                        "tenant": tenant,
                        "fingerprint": uuid.UUID(int=rng.getrandbits(128)).hex * 2,
                        "asset_id": rng.choice(asset_ids[tenant]),
                        "kind": kind,
                        "rule_id": f"GHSA-{n:06d}",
                        "title": f"package{n % 3000} flaw {n}",
                        "severity": severity,
                        "severity_rank": RANK[severity],
                        "score": round(rng.uniform(0, 10), 1),
                        "summary": "A realistic summary of the flaw, a sentence or two, as advisories have.",
                        "component": {
                            "purl": f"pkg:pypi/package{n % 3000}@1.{n % 20}.0",
                            "name": f"package{n % 3000}",
                            "version": f"1.{n % 20}.0",
                            "ecosystem": "PyPI",
                            "path": "requirements.txt",
                            "line": n % 80 + 1,
                        }
                        if kind == "vulnerability"
                        else None,
                        "evidence": {"path": "logs/auth.log", "line": n % 5000 + 1}
                        if kind != "vulnerability"
                        else {},
                        "aliases": [f"CVE-2025-{n:05d}"],
                        "references": [f"https://osv.dev/vulnerability/GHSA-{n:06d}"],
                        "techniques": [],
                        "data": {"kev": n % 97 == 0, "fixed_versions": ["9.9.9"], "epss": None},
                        "status": rng.choices(
                            ["open", "acknowledged", "resolved", "false_positive"], [70, 10, 15, 5]
                        )[0],
                        "first_seen": seen,
                        "last_seen": seen,
                    }
                )
                if len(rows) == 5000:
                    conn.execute(insert(findings), rows)
                    rows = []
            if rows:
                conn.execute(insert(findings), rows)
        conn.execute(text("ANALYZE"))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def main() -> int:
    try:
        create_engine(POSTGRES_URL).connect().close()
    except Exception as exc:
        print(f"PostgreSQL not reachable: {exc.__class__.__name__}: {exc}", file=sys.stderr)
        return 2
    schema = f"tianmu_bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(POSTGRES_URL)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"
    results: dict[str, Any] = {"findings": FINDINGS, "other_tenant_findings": OTHER_TENANT, "rounds": ROUNDS}
    try:
        with TemporaryDirectory() as home:
            store = Store(url)
            started = time.perf_counter()
            _populate(store)
            results["populate_s"] = round(time.perf_counter() - started, 1)
            port = _free_port()
            core = Settings(home=Path(home), database_url=url, tenant="acme")
            app = create_platform_app(
                ServiceSettings(core=core, origin=f"http://localhost:{port}"),
                store=store,
                runner_kind="local",
            )
            identity: IdentityService = app.state.identity
            identity.create_tenant("acme", "Acme")
            identity.create_user(
                cli_principal("acme"), "acme", "bench", Role.ADMIN, password="bench bench bench"
            )
            user = identity.get_user("acme", "bench")
            acting = Principal(
                user_id=user.id, tenant="acme", username="bench", role=Role.ADMIN, via="session"
            )
            token = identity.create_token(acting, "bench")[0]
            server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
            thread = threading.Thread(target=server.run, daemon=True)
            thread.start()
            while not server.started:
                time.sleep(0.05)
            client = httpx.Client(
                base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {token}"}
            )
            first = client.get("/api/v1/findings", params={"limit": 50}).json()
            deep_cursor = first["next_cursor"]
            for _ in range(40):  # walk 40 pages in to measure a deep page
                deep_cursor = client.get(
                    "/api/v1/findings", params={"limit": 50, "cursor": deep_cursor}
                ).json()["next_cursor"]
            queries: dict[str, dict[str, Any]] = {
                "newest 50": {"limit": 50},
                "open, most severe first": {"status": "open", "sort": "severity", "limit": 50},
                "open high+ vulnerabilities": {
                    "status": "open",
                    "min_severity": "high",
                    "kind": "vulnerability",
                },
                "one asset's open findings": {"status": "open", "asset_id": 7},
                "KEV-listed open": {"status": "open", "kev": "true"},
                "page 41 (cursor)": {"limit": 50, "cursor": deep_cursor},
                "text search": {"q": "package123 ", "limit": 50},
            }
            table: dict[str, dict[str, float]] = {}
            for name, params in queries.items():
                for _ in range(20):
                    client.get("/api/v1/findings", params=params).raise_for_status()
                timings = []
                for _ in range(ROUNDS):
                    begin = time.perf_counter()
                    response = client.get("/api/v1/findings", params=params)
                    timings.append((time.perf_counter() - begin) * 1000)
                    response.raise_for_status()
                table[name] = {
                    "p50_ms": round(statistics.median(timings), 1),
                    "p95_ms": round(_percentile(timings, 0.95), 1),
                    "items": len(response.json()["items"]),
                }
            overview = []
            for _ in range(50):
                begin = time.perf_counter()
                client.get("/api/v1/overview").raise_for_status()
                overview.append((time.perf_counter() - begin) * 1000)
            table["overview numbers"] = {
                "p50_ms": round(statistics.median(overview), 1),
                "p95_ms": round(_percentile(overview, 0.95), 1),
                "items": 0,
            }
            results["queries"] = table
            server.should_exit = True
            thread.join(timeout=10)
            store.close()
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()
    width = max(len(k) for k in results["queries"])
    print(f"{FINDINGS} findings (+{OTHER_TENANT} of another tenant) on PostgreSQL")
    print(f"populated in {results['populate_s']} s")
    print(f"{'query':<{width}}  {'p50 ms':>7}  {'p95 ms':>7}  items")
    for name, row in results["queries"].items():
        print(f"{name:<{width}}  {row['p50_ms']:>7}  {row['p95_ms']:>7}  {row['items']}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "bench_api.json").write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
