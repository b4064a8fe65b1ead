"""Benchmark of the vulnerability knowledge base and matcher on the shared OSV data.

Run: `.venv/bin/python bench/bench_vulns.py` (needs ../shared/data). Prints a table and writes
bench/results/bench_vulns.json.

Measured, on a fresh SQLite database in a temporary directory:
- import of osv/PyPI/all.zip + osv/Go/all.zip, and the re-import of both (unchanged → skipped);
- matching a 10,000-component inventory (the worst case) drawn from the data with a fixed seed:
  real package names;
  half the versions from what advisories say is affected (PyPI `versions` lists, Go `introduced`
  bounds), half from `fixed` bounds (unaffected by that advisory, often by all); 60 % PyPI, 40 % Go.
  The first run is cold (empty version-parse cache); the second is warm;
- matching a typical 10,000-component inventory: 1,000 drawn as above, 9,000 with no advisory;
- peak memory: tracemalloc peak over a separate traced import+match (tracemalloc slows Python down, so
  timings come from the untraced runs), and the process's ru_maxrss.
"""

from __future__ import annotations

import json
import platform
import random
import resource
import sys
import tempfile
import time
import tracemalloc
import zipfile
from pathlib import Path
from typing import Any

from tianmu.core.models import Asset, AssetKind, Component
from tianmu.store.database import Store
from tianmu.vulns.engine import VulnMatcher
from tianmu.vulns.kb import import_path
from tianmu.vulns.versions import version_key

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "osv"
ZIPS = [DATA / "PyPI" / "all.zip", DATA / "Go" / "all.zip"]
RESULTS = ROOT / "bench" / "results"
ASSET = Asset("bench-host", AssetKind.HOST)
SIZE = 10_000


def _records(path: Path) -> list[dict[str, Any]]:
    with zipfile.ZipFile(path) as archive:
        return [json.loads(archive.read(n)) for n in archive.namelist() if n.endswith(".json")]


def inventory(size: int = SIZE, seed: int = 10_000) -> list[Component]:
    """Half the components drawn from affected versions, half from fixed bounds (mostly unaffected)."""
    rng = random.Random(seed)
    pools: dict[tuple[str, str], set[tuple[str, str]]] = {
        ("PyPI", "affected"): set(),
        ("PyPI", "fixed"): set(),
        ("Go", "affected"): set(),
        ("Go", "fixed"): set(),
    }
    for eco, path in (("PyPI", ZIPS[0]), ("Go", ZIPS[1])):
        prefix = "v" if eco == "Go" else ""
        for record in _records(path):
            for affected in record.get("affected", []):
                name = affected["package"]["name"]
                pools[(eco, "affected")].update((name, v) for v in affected.get("versions", []))
                for r in affected.get("ranges", []):
                    if r["type"] == "GIT":
                        continue
                    for event in r["events"]:
                        kind, value = next(iter(event.items()))
                        if kind == "fixed":
                            pools[(eco, "fixed")].add((name, prefix + value))
                        elif kind == "introduced" and value != "0" and eco == "Go":
                            pools[(eco, "affected")].add((name, prefix + value))
    quota = {("PyPI", "affected"): 0.3, ("PyPI", "fixed"): 0.3, ("Go", "affected"): 0.2, ("Go", "fixed"): 0.2}
    picked: list[tuple[str, str, str]] = []
    for (eco, kind), share in quota.items():
        pool = sorted(pools[(eco, kind)])
        picked += [
            (name, version, eco) for name, version in rng.sample(pool, min(len(pool), int(size * share)))
        ]
    # Top up from the affected PyPI pool if a pool was smaller than its share.
    rest = sorted(pools[("PyPI", "affected")] - {(n, v) for n, v, _e in picked})
    picked += [(n, v, "PyPI") for n, v in rng.sample(rest, size - len(picked))]
    return [
        Component(name, version, eco, f"pkg:{eco.lower()}/{name}@{version}") for name, version, eco in picked
    ]


def typical_inventory(size: int = SIZE, seed: int = 10_000) -> list[Component]:
    """A project-like mix: 10 % of the components from the worst case above, 90 % packages that no
    advisory names (in real lockfiles most packages have none; their names here are synthetic, since
    the cost of a component without advisories does not depend on its name)."""
    known = inventory(size // 10, seed)
    unknown = [
        Component(
            f"no-advisory-{i}", "1.0.0", "PyPI" if i % 2 else "npm", f"pkg:generic/no-advisory-{i}@1.0.0"
        )
        for i in range(size - len(known))
    ]
    return known + unknown


def run() -> dict[str, Any]:
    components = inventory()
    typical = typical_inventory()
    with tempfile.TemporaryDirectory() as tmp:
        store = Store("sqlite:///" + str(Path(tmp) / "bench.db"))
        start = time.perf_counter()
        reports = [r for z in ZIPS for r in import_path(store, z)]
        import_s = time.perf_counter() - start
        start = time.perf_counter()
        again = [r for z in ZIPS for r in import_path(store, z)]
        reimport_s = time.perf_counter() - start
        assert all(r.status == "unchanged" for r in again), again
        matcher = VulnMatcher(store)
        version_key.cache_clear()
        start = time.perf_counter()
        findings = matcher.match(components, ASSET)
        match_cold_s = time.perf_counter() - start
        start = time.perf_counter()
        matcher.match(components, ASSET)
        match_warm_s = time.perf_counter() - start
        version_key.cache_clear()
        start = time.perf_counter()
        typical_findings = matcher.match(typical, ASSET)
        typical_s = time.perf_counter() - start
        affected_components = len({(f.component.name, f.component.version) for f in findings if f.component})
        store.close()
    with tempfile.TemporaryDirectory() as tmp:
        version_key.cache_clear()
        tracemalloc.start()
        store = Store("sqlite:///" + str(Path(tmp) / "traced.db"))
        for z in ZIPS:
            import_path(store, z)
        VulnMatcher(store).match(components, ASSET)
        _current, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        store.close()
    maxrss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {
        "python": sys.version.split()[0],
        "machine": platform.machine(),
        "records": {r.source: r.record_count for r in reports},
        "import_s": round(import_s, 3),
        "reimport_unchanged_s": round(reimport_s, 4),
        "components": len(components),
        "affected_components": affected_components,
        "findings": len(findings),
        "findings_per_affected_component": round(len(findings) / max(affected_components, 1), 1),
        "match_cold_s": round(match_cold_s, 3),
        "match_warm_s": round(match_warm_s, 3),
        "components_per_s_cold": round(len(components) / match_cold_s),
        "components_per_s_warm": round(len(components) / match_warm_s),
        "typical_components": len(typical),
        "typical_findings": len(typical_findings),
        "typical_match_s": round(typical_s, 3),
        "typical_components_per_s": round(len(typical) / typical_s),
        "skipped_ranges": matcher.last_stats.get("skipped_ranges", 0),
        "tracemalloc_peak_mb": round(peak / 2**20, 1),
        "ru_maxrss_mb": round(maxrss_kb / 1024, 1),
    }


def main() -> int:
    if not all(z.is_file() for z in ZIPS):
        print(f"shared data absent: {DATA}", file=sys.stderr)
        return 2
    result = run()
    width = max(len(k) for k in result)
    for key, value in result.items():
        print(f"{key:<{width}}  {value}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "bench_vulns.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwritten to {RESULTS / 'bench_vulns.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
