"""Benchmark of situation awareness: correlation, risk scoring, the store path, evidence bundles.

Run: `.venv/bin/python bench/bench_situation.py`. Writes bench/results/bench_situation.json.
Sizes: BENCH_SITUATION_FINDINGS (default 100,000 event findings), BENCH_SITUATION_VULNS (100,000).

Input, generated with a fixed seed so runs compare: event findings (detection 70 %, intel 20 %,
malware 10 %) over 2,000 hosts and 30 days, each with a source IP from a pool of 20,000 (a few hundred
"campaign" IPs hit many hosts), users, ATT&CK tactic tags; and vulnerability findings with CVSS, EPSS,
KEV flags on the same hosts. Measured:

- correlate: `correlate()` batch, findings/s and the incidents formed;
- stream: `Correlator.add` one finding at a time in arrival (shuffled) order, then `flush()`, findings/s;
- burst: BENCH_SITUATION_BURST (20,000) findings on one host within two hours (a scanner), findings/s;
- store: `update_incidents` against SQLite in batches of 1,000 (load the active incidents, correlate,
  upsert), findings/s;
- risk: `score_findings` over events + vulnerabilities, findings/s;
- evidence: export and verify a bundle of the largest incident (members, bytes, seconds).

There is no peer open-source tool that correlates findings into kill-chain incidents and scores risk
this way, so no ratio is printed; the floor reported is a plain union-find over the same links without
time windows or tactics (the least any entity grouping must do), to show the correlator's overhead.
"""

from __future__ import annotations

import json
import os
import random
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tianmu.core.models import Asset, AssetKind, Finding, FindingKind, Severity
from tianmu.situation import Correlator, correlate, export_bundle, load_signer, score_findings, verify_bundle
from tianmu.situation.repository import update_incidents
from tianmu.store.database import Store

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
EVENTS = int(os.environ.get("BENCH_SITUATION_FINDINGS", "100000"))
VULNS = int(os.environ.get("BENCH_SITUATION_VULNS", "100000"))
BURST = int(os.environ.get("BENCH_SITUATION_BURST", "20000"))
HOSTS = 2000
T0 = datetime(2026, 10, 1, tzinfo=UTC)
TACTIC_TAGS = [
    "attack.reconnaissance",
    "attack.initial_access",
    "attack.execution",
    "attack.persistence",
    "attack.privilege_escalation",
    "attack.credential_access",
    "attack.discovery",
    "attack.lateral_movement",
    "attack.command_and_control",
]


def _ip(rng: random.Random) -> str:
    if rng.random() < 0.3:  # campaign addresses that touch many hosts
        return f"203.0.113.{rng.randrange(1, 255)}"
    return f"198.{rng.randrange(18, 20)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"


def make_findings(rng: random.Random) -> tuple[list[Finding], list[Finding], list[Asset]]:
    assets = [
        Asset(
            f"host{i:04d}",
            AssetKind.HOST,
            criticality=rng.randint(1, 5),
            tags=("internet-facing",) if i % 5 == 0 else ("internal",),
        )
        for i in range(HOSTS)
    ]
    events: list[Finding] = []
    for n in range(EVENTS):
        asset = assets[rng.randrange(HOSTS)]
        roll = rng.random()
        kind = (
            FindingKind.DETECTION if roll < 0.7 else FindingKind.INTEL if roll < 0.9 else FindingKind.MALWARE
        )
        moment = T0 + timedelta(seconds=rng.randrange(30 * 86400))
        entities: dict[str, list[str]] = {"ip": [_ip(rng)]}
        if rng.random() < 0.5:
            entities["user"] = [rng.choice(["root", "admin", "deploy", "www-data", f"u{rng.randrange(500)}"])]
        if kind is FindingKind.MALWARE:
            entities = {"hash": [f"{rng.getrandbits(256):064x}"]}
        events.append(
            Finding(
                kind,
                f"rule-{rng.randrange(300)}",
                "synthetic",
                rng.choice(list(Severity)),
                asset,
                evidence={
                    "path": "var/log/auth.log",
                    "line": n + 1,
                    "time": moment.isoformat(),
                    "entities": entities,
                    "fingerprint_extra": n,
                },
                data={"tags": [rng.choice(TACTIC_TAGS)]} if kind is FindingKind.DETECTION else {},
            )
        )
    vulns = [
        Finding(
            FindingKind.VULNERABILITY,
            f"CVE-2024-{n:05d}",
            "synthetic",
            Severity.from_cvss_score(score := round(rng.uniform(2, 10), 1)),
            assets[rng.randrange(HOSTS)],
            score=score,
            data={"epss": rng.random() ** 4, "kev": rng.random() < 0.02},
            first_seen=T0 - timedelta(days=rng.randrange(200)),
        )
        for n in range(VULNS)
    ]
    return events, vulns, assets


def make_burst(rng: random.Random) -> list[Finding]:
    """A web scanner's two hours against one server: BURST findings on one asset from 50 addresses."""
    host = Asset("web01", AssetKind.HOST, criticality=4, tags=("internet-facing",))
    return [
        Finding(
            FindingKind.DETECTION,
            "web-scanner",
            "Known web scanner user agent",
            Severity.MEDIUM,
            host,
            evidence={
                "path": "var/log/nginx/access.log",
                "line": n + 1,
                "time": (T0 + timedelta(seconds=rng.randrange(7200))).isoformat(),
                "entities": {
                    "ip": [f"198.51.100.{rng.randrange(50)}"],
                    "url": [f"/probe/{rng.randrange(5000)}"],
                },
                "fingerprint_extra": n,
            },
            data={"tags": ["attack.reconnaissance"]},
        )
        for n in range(BURST)
    ]


def _union_find_floor(findings: list[Finding]) -> tuple[float, int]:
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    start = time.perf_counter()
    for finding in findings:
        keys = [f"asset:{finding.asset.name}"] + [
            f"{k}:{v}" for k, vs in finding.evidence["entities"].items() for v in vs
        ]
        root = find(keys[0])
        for key in keys[1:]:
            parent[find(key)] = root
    groups = len({find(f"asset:{f.asset.name}") for f in findings})
    return time.perf_counter() - start, groups


def main() -> int:
    rng = random.Random(20261125)
    events, vulns, assets = make_findings(rng)
    out: dict[str, Any] = {"events": EVENTS, "vulnerabilities": VULNS, "hosts": HOSTS}

    start = time.perf_counter()
    incidents = correlate(events)
    seconds = time.perf_counter() - start
    out["correlate"] = {
        "seconds": round(seconds, 3),
        "findings_per_s": round(EVENTS / seconds),
        "incidents": len(incidents),
    }

    shuffled = list(events)
    random.Random(1).shuffle(shuffled)
    correlator = Correlator()
    start = time.perf_counter()
    for finding in shuffled:
        correlator.add(finding, materialise=False)
    correlator.flush()
    seconds = time.perf_counter() - start
    out["stream"] = {
        "seconds": round(seconds, 3),
        "findings_per_s": round(EVENTS / seconds),
        "incidents": len(correlator.incidents),
    }

    burst = make_burst(random.Random(7))
    start = time.perf_counter()
    burst_incidents = correlate(burst)
    seconds = time.perf_counter() - start
    out["burst_one_host"] = {
        "findings": len(burst),
        "seconds": round(seconds, 3),
        "findings_per_s": round(len(burst) / seconds),
        "incidents": len(burst_incidents),
    }

    floor_seconds, groups = _union_find_floor(events)
    out["floor_union_find"] = {
        "seconds": round(floor_seconds, 3),
        "findings_per_s": round(EVENTS / floor_seconds),
        "groups": groups,
    }
    out["correlate_vs_floor"] = round(out["correlate"]["seconds"] / floor_seconds, 2)

    start = time.perf_counter()
    report = score_findings(events + vulns, assets)
    seconds = time.perf_counter() - start
    out["risk"] = {
        "seconds": round(seconds, 3),
        "findings_per_s": round((EVENTS + VULNS) / seconds),
        "tenant_score": round(report.score, 1),
    }

    with tempfile.TemporaryDirectory() as tmp:
        store = Store(f"sqlite:///{tmp}/bench.db")
        ordered = sorted(events[: min(EVENTS, 20000)], key=lambda f: f.evidence["time"])
        start = time.perf_counter()
        for i in range(0, len(ordered), 1000):
            update_incidents(store, "default", ordered[i : i + 1000])
        seconds = time.perf_counter() - start
        out["store_sqlite"] = {
            "findings": len(ordered),
            "seconds": round(seconds, 3),
            "findings_per_s": round(len(ordered) / seconds),
        }
        store.close()

        biggest = max(incidents, key=lambda i: len(i.finding_fingerprints))
        signer = load_signer(Path(tmp) / "home")
        bundle = Path(tmp) / "bundle.zip"
        start = time.perf_counter()
        manifest = export_bundle(biggest, events, bundle, signer)
        export_s = time.perf_counter() - start
        start = time.perf_counter()
        ok = verify_bundle(bundle).ok
        verify_s = time.perf_counter() - start
        out["evidence"] = {
            "incident_findings": len(biggest.finding_fingerprints),
            "members": len(manifest["files"]) + 2,
            "bytes": bundle.stat().st_size,
            "export_seconds": round(export_s, 3),
            "verify_seconds": round(verify_s, 3),
            "verified": ok,
            "signature": signer.algorithm,
        }

    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "bench_situation.json").write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
