"""Benchmark of the threat-intel base and matcher: 1,000,000 indicators against 1,000,000 log lines.

Run: `.venv/bin/python bench/bench_intel.py` (needs ../shared/data/intel).
Writes bench/results/bench_intel.json.
Sizes can be lowered for a quick look: BENCH_INTEL_INDICATORS, BENCH_INTEL_LINES.

Indicators: every real one we have (signature-base LOKI C2 and hash lists, then maltrail trails) up to
70 % of the total, the rest generated (domains, addresses, networks, URLs, SHA-256 digests), imported
through the real path (`store_feed` into SQLite, then the index build). Measured:

- build: reading + normalising + storing the indicators, and building and saving the index;
- load: `load_index` of the built base in a fresh process (digest query + file read), and the memory
  that process gains (RSS delta; the target is < 500 MB for 1M indicators, load < 2 s);
- scan: lines/s of `IntelMatcher.scan_lines` (URLs, hosts with the parent walk, IPv4 with CIDR probes,
  hashes, refanging) over 1M generated log lines, ~1 % of which hold a known indicator;
- match: lines/s of `match_lines`, which adds the provenance look-up of each hit and the findings;
- floor, in the same run on the same lines and the same index sets: per line, a regex extracting host
  names and IPv4 addresses and a plain `set` look-up of each, with and without the parent-domain walk
  (the issue's reference: ≈840,000 and ≈470,000 lines/s on this machine kind). Target: scan ≥ 0.8× the
  floor with the walk.
"""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tianmu.core.models import Asset, AssetKind
from tianmu.intel.engine import IntelMatcher
from tianmu.intel.index import IntelIndex, load_index
from tianmu.intel.kb import store_feed
from tianmu.intel.lists import read_maltrail, read_signature_base
from tianmu.intel.models import FeedResult, IntelEntry
from tianmu.store.database import Store

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
SHARED = ROOT.parent / "shared" / "data" / "intel"
INDICATORS = int(os.environ.get("BENCH_INTEL_INDICATORS", "1000000"))
LINES = int(os.environ.get("BENCH_INTEL_LINES", "1000000"))
HIT_RATE = 0.01
ROUNDS = int(os.environ.get("BENCH_INTEL_ROUNDS", "3"))


def _real_feeds(limit: int) -> list[FeedResult]:
    feeds = read_signature_base(SHARED / "signature-base-iocs") + read_maltrail(SHARED / "maltrail")
    kept: list[FeedResult] = []
    total = 0
    for feed in feeds:
        room = limit - total
        if room <= 0:
            break
        # Within a feed duplicates merge: count distinct values.
        unique = list({(e.type, e.value): e for e in feed.entries}.values())[:room]
        feed.entries = unique
        total += len(unique)
        kept.append(feed)
    return kept


def _generated(count: int, rng: random.Random) -> FeedResult:
    entries: list[IntelEntry] = []
    for i in range(count):
        kind = i % 10
        if kind < 4:
            entries.append(IntelEntry("domain", f"gen{i}-{rng.getrandbits(24):x}.bad-{i % 997}.example", 60))
        elif kind < 6:
            entries.append(IntelEntry("sha256", f"{rng.getrandbits(256):064x}", 70))
        elif kind < 8:
            octets = (rng.randint(1, 223), rng.randint(0, 255), rng.randint(0, 255), rng.randint(1, 254))
            entries.append(IntelEntry("ip", ".".join(map(str, octets)), 50))
        elif kind < 9:
            entries.append(IntelEntry("url", f"http://gen{i}.drop.example/p/{rng.getrandbits(32):x}.php", 60))
        else:
            # Distinct networks of three prefix lengths.
            c = i // 10
            if c % 8 == 0:
                value = f"{100 + c // 8192}.{64 + (c // 128) % 64}.{((c // 8) % 16) * 16}.0/20"
            elif c % 2:
                value = f"100.{64 + (c // 4096) % 64}.{(c // 16) % 256}.{(c % 16) * 16}/28"
            else:
                value = f"{110 + c // 32768}.{64 + (c // 512) % 64}.{(c // 2) % 256}.0/24"
            entries.append(IntelEntry("cidr", value, 40))
    return FeedResult(source="bench:generated", kind="list", entries=entries)


def _log_lines(count: int, index: IntelIndex, rng: random.Random) -> list[str]:
    domains = sorted(index.domains)[:50_000]
    ips = sorted(index.ips)[:50_000]
    hashes = sorted(index.hashes)[:20_000]
    urls = sorted(index.urls.values())[:20_000]
    benign = [
        "www.example.org",
        "cdn.jsdelivr.net",
        "api.github.com",
        "updates.vendor.example",
        "mail.corp.example",
    ]
    lines = []
    for n in range(count):
        a, b = f"10.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}", rng.choice(benign)
        if rng.random() < HIT_RATE:
            pick = rng.random()
            if pick < 0.4:
                b = ("x." if rng.random() < 0.5 else "") + rng.choice(domains)
                b = b.upper() if rng.random() < 0.1 else b
            elif pick < 0.7:
                a = rng.choice(ips)
            elif pick < 0.85:
                b = rng.choice(urls).replace("http://", "hxxp://").replace(".", "[.]", 1)
            else:
                b = rng.choice(hashes)
        kind = n % 4
        if kind == 0:
            stamp = f"Nov 20 03:{n % 60:02d}:{n % 59:02d}"
            sshd = f"web01 sshd[{4000 + n % 900}]"
            lines.append(f"{stamp} {sshd}: Failed password for root from {a} port 4{n % 9999} ssh2")
        elif kind == 1:
            referer = b if "://" in b else f"https://{b}/"
            request = f"GET /static/app.css?v={n} HTTP/1.1"
            lines.append(
                f'{a} - - [20/Nov/2026:03:05:40 +0000] "{request}" 200 20481 "{referer}" "Mozilla/5.0"'
            )
        elif kind == 2:
            lines.append(f"2026-11-20T03:11:54Z named[812]: client {a}#40412 (query): query: {b} IN A +E(0)K")
        else:
            lines.append(f"2026-11-20T03:12:30Z proxy[77]: {a} CONNECT {b}:443 bytes=1930/5210 user=alice")
    return lines


_FLOOR_RE = re.compile(r"(?:[a-z0-9-]+\.)+[a-z]{2,}|\d+\.\d+\.\d+\.\d+")


def _floor(
    lines: list[str], domains: set[str], ips: set[str], walk: bool, block: int = 0
) -> tuple[float, int]:
    """Per line (or, with `block`, per block of lines joined): regex extraction and set look-ups."""
    hits = 0
    start = time.perf_counter()
    findall = _FLOOR_RE.findall
    texts = lines if not block else ["\n".join(lines[i : i + block]) for i in range(0, len(lines), block)]
    for text in texts:
        for host in findall(text.lower()):
            if host in ips or host in domains:
                hits += 1
            elif walk:
                name = host
                while True:
                    dot = name.find(".")
                    if dot < 0:
                        break
                    name = name[dot + 1 :]
                    if name in domains:
                        hits += 1
                        break
    return time.perf_counter() - start, hits


_LOADER = """
import json, resource, sys, time
from pathlib import Path
from tianmu.store.database import Store
from tianmu.intel.index import load_index

def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()

store = Store(sys.argv[1])
before = rss()
start = time.perf_counter()
index = load_index(store, Path(sys.argv[2]))
seconds = time.perf_counter() - start
print(json.dumps({"load_seconds": seconds, "rss_delta_mb": (rss() - before) / 2**20, "entries": len(index)}))
"""


def main() -> None:
    if not SHARED.is_dir():
        print(f"shared data not found at {SHARED}: skipped")
        return
    rng = random.Random(7)
    with tempfile.TemporaryDirectory(prefix="bench-intel-") as tmp:
        home = Path(tmp) / "home"
        url = f"sqlite:///{Path(tmp) / 'intel.db'}"
        store = Store(url)
        start = time.perf_counter()
        real = _real_feeds(int(INDICATORS * 0.7))
        # The same value in two feeds is one indicator (with both sources): count distinct values.
        real_count = len({(e.type, e.value) for f in real for e in f.entries})
        feeds = [*real, _generated(INDICATORS - real_count, rng)]
        read_seconds = time.perf_counter() - start
        for feed in feeds:
            store_feed(store, feed, f"bench:{feed.source}", f"bench-{feed.source}")
        store_seconds = time.perf_counter() - start - read_seconds
        index = load_index(store, home, rebuild=True)
        build_seconds = time.perf_counter() - start
        index_file = next((home / "intel").glob("index-*.bin"))
        index_mb = index_file.stat().st_size / 2**20
        print(f"built {INDICATORS:,} indicators ({real_count:,} real; {len(index):,} index entries, URLs")
        print(f"differing only in scheme or case are one) in {build_seconds:.1f} s", flush=True)

        loaded = json.loads(subprocess.run([sys.executable, "-c", _LOADER, url, str(home)], check=True,
                                           capture_output=True, text=True).stdout)  # fmt: skip
        print(f"load {loaded['load_seconds']:.2f} s, +{loaded['rss_delta_mb']:.0f} MB", flush=True)

        lines = _log_lines(LINES, index, rng)
        matcher = IntelMatcher(store, index)
        domains, ips = index.domains | index.exact_domains, index.ips
        # This machine is shared: each measurement is the best of ROUNDS, taken in turns so that a
        # burst of load elsewhere hits every contender alike.
        floor_walk = floor_plain = floor_block = scan_seconds = float("inf")
        floor_walk_hits = scan_hits = 0
        for _round in range(ROUNDS):
            seconds, floor_walk_hits = _floor(lines, domains, ips, walk=True)
            floor_walk = min(floor_walk, seconds)
            floor_plain = min(floor_plain, _floor(lines, domains, ips, walk=False)[0])
            floor_block = min(floor_block, _floor(lines, domains, ips, walk=True, block=2000)[0])
            start = time.perf_counter()
            scan_hits = 0
            for first in range(0, len(lines), 2000):
                scan_hits += len(matcher._scan("\n".join(lines[first : first + 2000])))
            scan_seconds = min(scan_seconds, time.perf_counter() - start)
        start = time.perf_counter()
        asset = Asset(name="bench", kind=AssetKind.DIRECTORY)
        findings = list(matcher.match_lines(iter(lines), "bench.log", asset))
        match_seconds = time.perf_counter() - start
        store.close()

    result: dict[str, Any] = {
        "indicators": INDICATORS,
        "index_entries": len(index),
        "real_indicators": real_count,
        "lines": LINES,
        "rounds": ROUNDS,
        "build_seconds": round(build_seconds, 2),
        "build_read_seconds": round(read_seconds, 2),
        "build_store_seconds": round(store_seconds, 2),
        "index_file_mb": round(index_mb, 1),
        "load_seconds": round(loaded["load_seconds"], 3),
        "load_rss_delta_mb": round(loaded["rss_delta_mb"], 1),
        "scan_lines_per_second": round(LINES / scan_seconds),
        "scan_sightings": scan_hits,
        "match_lines_per_second": round(LINES / match_seconds),
        "match_findings": len(findings),
        "floor_walk_lines_per_second": round(LINES / floor_walk),
        "floor_walk_hits": floor_walk_hits,
        "floor_plain_lines_per_second": round(LINES / floor_plain),
        "floor_walk_blocks_lines_per_second": round(LINES / floor_block),
        "ratio_scan_vs_floor_walk": round(floor_walk / scan_seconds, 2),
        "ratio_scan_vs_floor_plain": round(floor_plain / scan_seconds, 2),
        "ratio_scan_vs_floor_walk_blocks": round(floor_block / scan_seconds, 2),
        "ratio_match_vs_floor_walk": round(floor_walk / match_seconds, 2),
        "targets": {"ratio_vs_floor_walk": 0.8, "load_seconds": 2.0, "memory_mb": 500},
        "targets_met": {
            "ratio_vs_floor_walk": floor_walk / scan_seconds >= 0.8,
            "load_seconds": loaded["load_seconds"] < 2.0,
            "memory_mb": loaded["rss_delta_mb"] < 500,
        },
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "bench_intel.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
