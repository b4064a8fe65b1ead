"""Benchmark of the Sigma engine against the SQLite approach (Zircolite's) on the same EVTX and rules.

Run: `.venv/bin/python bench/bench_detect.py` (needs ../shared/data/evtx and ../shared/data/sigma).
Writes bench/results/bench_detect.json. BENCH_DETECT_EVENTS sets the steady-state stream length
(default 1,000,000), BENCH_DETECT_REPEAT the rounds (default 3; the best time of each is kept).

Input: every EVTX file in ../shared/data/evtx (41 files, 513 records) and SigmaHQ `rules/windows`
(≈2,400 rules). Measured, each in a fresh process so interpreter start and imports count:

- tianmu cold: `tianmu detect EVTX --rules rules/windows` with an empty data directory: the rules are
  parsed with pySigma, compiled, cached on disk, then the files are read and matched in parallel;
- tianmu warm: the same command again: the compiled rules come from the cache (target: < 3 s);
- sqlite: the SQLite approach: parse the rules with pySigma, convert each with pySigma's SQLite backend,
  load the records (flattened the same way) into an SQLite table, run every query (target: Tianmu
  cold ≥ 3× faster end to end). The issue's reference on this machine kind: Zircolite took 26.9 s
  (24.7 s converting the rules);
- evtx parse: records/s of the `evtx` parser alone (reference ≈105,000 records/s);
- steady state: events/s of one process matching the shared records replayed to BENCH_DETECT_EVENTS
  events against all the rules (target ≥ 10,000/s per core; Hayabusa publishes ≈17,000/s).

The two approaches must agree: the (rule, record) hits of the SQL run and of Tianmu are compared and
the count of differing rules is printed (0 expected).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

_START = time.perf_counter()
ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
SHARED = ROOT.parent / "shared" / "data"
EVTX = SHARED / "evtx"
RULES = SHARED / "sigma" / "rules" / "windows"
EVENTS = int(os.environ.get("BENCH_DETECT_EVENTS", "1000000"))
REPEAT = int(os.environ.get("BENCH_DETECT_REPEAT", "3"))
sys.path.insert(0, str(ROOT / "tests" / "detect"))


def _sqlite_approach() -> dict[str, Any]:
    """Child process: the SQLite approach end to end; prints its timings and hits as JSON."""
    started = time.perf_counter()
    from sigma_oracle import load_table, parse_rules, run_oracle

    from tianmu.detect.kb import rule_files
    from tianmu.readers import iter_events

    rules = parse_rules(rule_files(RULES))
    parsed = time.perf_counter()
    events = list(iter_events(EVTX))
    conn = load_table(events)
    loaded = time.perf_counter()
    run = run_oracle(conn, rules)
    finished = time.perf_counter()
    return {
        "wall_s": finished - started,
        "parse_s": parsed - started,
        "load_s": loaded - parsed,
        "convert_and_query_s": finished - loaded,
        "rules_converted": len(run.hits),
        "rules_unconverted": len(run.unconverted),
        "events": len(events),
        "hits": {rule: sorted([p, r] for p, r in found) for rule, found in run.hits.items() if found},
    }


def _library_run(cache: str) -> dict[str, Any]:
    """Child process: Tianmu's library path (what `tianmu detect` calls), timed from interpreter start."""
    from tianmu.core.models import Asset, AssetKind
    from tianmu.detect.engine import Detector, detect_paths
    from tianmu.detect.kb import STARTER_RULES, load_rule_base

    imported = time.perf_counter()
    base = load_rule_base([STARTER_RULES, RULES], cache_dir=Path(cache))
    loaded = time.perf_counter()
    result = detect_paths(Detector(base), [EVTX], Asset(str(EVTX), AssetKind.DIRECTORY), root=EVTX)
    done = time.perf_counter()
    return {
        "import_s": imported - _START,
        "load_s": loaded - imported,
        "detect_s": done - loaded,
        "from_cache": base.from_cache,
        "events": result.stats.events,
        "detections": len(result.findings),
    }


def _timed(command: list[str], env: dict[str, str]) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - started
    if done.returncode not in (0, 1):
        raise SystemExit(f"{' '.join(command)} failed ({done.returncode}): {done.stderr[-2000:]}")
    return elapsed, done.stdout


def _steady_state() -> dict[str, Any]:
    from tianmu.detect.engine import Detector
    from tianmu.detect.kb import load_rule_base
    from tianmu.readers import iter_events

    events = list(iter_events(EVTX))
    with tempfile.TemporaryDirectory() as cache:
        base = load_rule_base([RULES], cache_dir=Path(cache))
    detector = Detector(base)
    for event in events:  # builds the per-kind automata once, as any long run does
        detector.match(event)
    detector.evaluations = 0
    count = hits = 0
    started = time.perf_counter()
    while count < EVENTS:
        for event in events:
            hits += len(detector.match(event)[0])
        count += len(events)
    elapsed = time.perf_counter() - started
    return {
        "events": count,
        "seconds": elapsed,
        "events_per_s": count / elapsed,
        "rules": len(base.rules),
        "evaluated_rules_per_event": detector.evaluations / count,
        "hits": hits,
    }


def _parse_rate() -> float:
    import evtx

    files = sorted(EVTX.rglob("*.evtx"))
    count = 0
    started = time.perf_counter()
    for _ in range(20):
        for file in files:
            parser = evtx.PyEvtxParser(str(file), number_of_threads=1)
            count += sum(1 for _record in parser.records_json())
    return count / (time.perf_counter() - started)


def main() -> None:
    if "--sqlite-child" in sys.argv:
        print(json.dumps(_sqlite_approach()))
        return
    if "--library-child" in sys.argv:
        print(json.dumps(_library_run(sys.argv[-1])))
        return
    if not EVTX.is_dir() or not RULES.is_dir():
        print(f"bench_detect: shared data not found under {SHARED}; skipped")
        return
    tianmu = str(ROOT / ".venv" / "bin" / "tianmu")
    if not Path(tianmu).exists():
        tianmu = "tianmu"
    # The machine is shared: each measurement is repeated (interleaved) and the best time kept.
    command = [tianmu, "detect", str(EVTX), "--rules", str(RULES), "--json", "--fail-on", "none"]
    times: dict[str, list[float]] = {
        k: [] for k in ("cold", "warm", "start", "lib_cold", "lib_warm", "sqlite")
    }
    outputs: dict[str, str] = {}
    for _round in range(REPEAT):
        with tempfile.TemporaryDirectory() as home:
            env = {**os.environ, "TIANMU_HOME": home, "TIANMU_DATABASE_URL": ""}
            for key, cmd in (("cold", command), ("warm", command), ("start", [tianmu, "version"])):
                elapsed, outputs[key] = _timed(cmd, env)
                times[key].append(elapsed)
        with tempfile.TemporaryDirectory() as cache:
            child = [sys.executable, __file__, "--library-child", cache]
            for key in ("lib_cold", "lib_warm"):
                elapsed, outputs[key] = _timed(child, dict(os.environ))
                times[key].append(elapsed)
        elapsed, outputs["sqlite"] = _timed([sys.executable, __file__, "--sqlite-child"], dict(os.environ))
        times["sqlite"].append(elapsed)
    cold, warm, cli_start = min(times["cold"]), min(times["warm"]), min(times["start"])
    lib_cold, lib_warm, sqlite_wall = min(times["lib_cold"]), min(times["lib_warm"]), min(times["sqlite"])
    library = {
        "cold_s": lib_cold,
        "warm_s": lib_warm,
        "cold": json.loads(outputs["lib_cold"]),
        "warm": json.loads(outputs["lib_warm"]),
    }
    tianmu_doc = json.loads(outputs["warm"])
    sqlite_out = outputs["sqlite"]
    sqlite = json.loads(sqlite_out)
    # Agreement: Tianmu's findings against the SQL hits, rule by rule.
    mine: dict[str, set[tuple[str, int]]] = {}
    for finding in tianmu_doc["findings"]:
        mine.setdefault(finding["rule"]["id"], set()).add(
            (str(EVTX / finding["event"]["path"]), int(finding["event"]["record"]))
        )
    theirs = {rule: {(p, int(r)) for p, r in found} for rule, found in sqlite["hits"].items()}
    differing = sorted(
        rule for rule in set(mine) | set(theirs) if mine.get(rule, set()) != theirs.get(rule, set())
    )
    events = tianmu_doc["summary"]["events"]
    steady = _steady_state()
    parse_rate = _parse_rate()
    result = {
        "input": {"evtx_files": len(list(EVTX.rglob("*.evtx"))), "events": events, "rules_dir": str(RULES)},
        "tianmu": {
            "cold_s": cold,
            "warm_s": warm,
            "cold_events_per_s": events / cold,
            "warm_events_per_s": events / warm,
            "rules": tianmu_doc["summary"]["rules"],
            "unusable_rules": tianmu_doc["summary"]["unusable_rules"],
            "detections": len(tianmu_doc["findings"]),
        },
        "sqlite_approach": {
            "wall_s": sqlite_wall,
            "events_per_s": sqlite["events"] / sqlite_wall,
            **{k: v for k, v in sqlite.items() if k != "hits"},
            "detections": sum(len(v) for v in theirs.values()),
        },
        "tianmu_library": library,
        "cli_startup_s": cli_start,
        "ratios": {
            "sqlite_over_tianmu_cli_cold": sqlite_wall / cold,
            "sqlite_over_tianmu_cli_warm": sqlite_wall / warm,
            "sqlite_over_tianmu_library_cold": sqlite_wall / lib_cold,
            "sqlite_over_tianmu_library_warm": sqlite_wall / lib_warm,
        },
        "agreement": {"rules_differing": len(differing), "examples": differing[:10]},
        "evtx_parse_records_per_s": parse_rate,
        "steady_state": steady,
        "cpus": os.cpu_count(),
        "load_average": os.getloadavg(),
        "all_times_s": times,
        "reference": {"zircolite_wall_s": 26.9, "zircolite_convert_s": 24.7, "hayabusa_events_per_s": 17000},
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "bench_detect.json").write_text(json.dumps(result, indent=2) + "\n")
    rules = result["tianmu"]["rules"]
    print(f"input: {result['input']['evtx_files']} EVTX files, {events} records; {rules} rules")
    print(f"tianmu CLI cold (compile + cache + detect): {cold:6.2f} s")
    print(f"tianmu CLI warm (cached rules):             {warm:6.2f} s   target < 3 s")
    print(f"  of which the CLI's own start (tianmu version): {cli_start:.2f} s")
    print(
        f"tianmu library cold:                        {lib_cold:6.2f} s  ({events / lib_cold:8.0f} events/s)"
    )
    print(
        f"tianmu library warm:                        {lib_warm:6.2f} s  ({events / lib_warm:8.0f} events/s)"
    )
    print(
        f"sqlite approach (pySigma SQLite backend):   {sqlite_wall:6.2f} s  "
        f"(parse {sqlite['parse_s']:.2f}, load {sqlite['load_s']:.2f}, "
        f"convert+query {sqlite['convert_and_query_s']:.2f})"
    )
    print(
        f"ratio sqlite/tianmu: CLI cold {sqlite_wall / cold:.1f}x, CLI warm {sqlite_wall / warm:.1f}x, "
        f"library cold {sqlite_wall / lib_cold:.1f}x, library warm {sqlite_wall / lib_warm:.1f}x "
        "(target >= 3x)"
    )
    print(f"Zircolite reference (26.9 s on this machine kind) over Tianmu CLI warm: {26.9 / warm:.1f}x")
    print(
        f"agreement: {len(differing)} rules with different hits ({result['tianmu']['detections']} detections)"
    )
    print(f"evtx parser alone: {parse_rate:,.0f} records/s")
    print(
        f"steady state: {steady['events_per_s']:,.0f} events/s on one core over {steady['events']:,} events "
        f"({steady['evaluated_rules_per_event']:.1f} of {steady['rules']} rules evaluated per event; "
        "target >= 10,000; Hayabusa ~17,000)"
    )


if __name__ == "__main__":
    main()
