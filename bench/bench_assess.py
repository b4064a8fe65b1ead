"""Benchmark of `tianmu assess` on the one road against the code before it, in the same run.

Run: `.venv/bin/python bench/bench_assess.py`. BENCH_ASSESS_BASELINE names the commit to compare with
(default: the last commit before the road, `940ac24`); BENCH_ASSESS_REPEAT the rounds (default 3).

Inputs, each assessed with every engine against the demo knowledge base (OSV, KEV, YARA, STIX, lists):

- `demo/target` (14 files: lockfiles, a dpkg database, logs, an archive with EICAR);
- a tree of 1,000 log files and 10,000 source files: the logs are copies of real logs from
  ../shared/data/logs (loghub's OpenSSH and Linux syslog, web access logs, Suricata EVE; the demo's own
  logs when the shared data is absent), a tenth of them gzip-rotated; the sources are real Python files
  of this machine's standard library and virtualenv, plus a lockfile.

Both versions run as the console command users run (`tianmu assess TARGET --fail-on none`) in fresh
processes, alternating (baseline, road, baseline, road...) so that drift of a shared machine hits
both alike; each has its own data directory with the knowledge base imported once beforehand. Printed:
min and median wall seconds of each, the ratio (baseline / road: above 1 is faster), and the load.
"""

from __future__ import annotations

import gzip
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED_LOGS = ROOT.parent / "shared" / "data" / "logs"
BASELINE = os.environ.get("BENCH_ASSESS_BASELINE", "940ac24")
REPEAT = int(os.environ.get("BENCH_ASSESS_REPEAT", "3"))
WORK = Path(tempfile.gettempdir()) / "tianmu-bench-assess"
LOGS = 1000
SOURCES = 10000


def _log_samples() -> list[Path]:
    wanted = [
        SHARED_LOGS / "loghub" / "OpenSSH" / "OpenSSH_2k.log",
        SHARED_LOGS / "loghub" / "Linux" / "Linux_2k.log",
        *sorted((SHARED_LOGS / "web").glob("*.log")),
        *sorted((SHARED_LOGS / "suricata").glob("*.json")),
    ]
    found = [path for path in wanted if path.is_file()]
    return found or sorted(p for p in (ROOT / "demo" / "target" / "logs").iterdir() if p.suffix != ".md")


def _python_sources() -> list[Path]:
    roots = [Path(sys.base_prefix) / "lib", ROOT / ".venv" / "lib"]
    found: list[Path] = []
    for root in roots:
        for path in sorted(root.rglob("*.py")):
            if path.is_file() and path.stat().st_size < 200_000:
                found.append(path)
            if len(found) >= SOURCES:
                return found
    return found


def build_tree() -> Path:
    tree = WORK / "tree"
    stamp = tree / ".complete"
    if stamp.exists():
        return tree
    shutil.rmtree(tree, ignore_errors=True)
    samples = _log_samples()
    for index in range(LOGS):
        sample = samples[index % len(samples)]
        folder = tree / "var" / "log" / f"host{index // 50:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        name = f"{sample.stem}-{index}{sample.suffix or '.log'}"
        if index % 10 == 9:
            (folder / f"{name}.1.gz").write_bytes(gzip.compress(sample.read_bytes()))
        else:
            shutil.copyfile(sample, folder / name)
    sources = _python_sources()
    for index, source in enumerate(sources):
        folder = tree / "src" / f"pkg{index // 200:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, folder / f"m{index}_{source.name}")
    shutil.copyfile(ROOT / "demo" / "target" / "shop-web" / "requirements.txt", tree / "requirements.txt")
    shutil.copyfile(ROOT / "demo" / "target" / "shop-web" / "common.txt", tree / "common.txt")
    stamp.write_text(f"{LOGS} logs, {len(sources)} sources\n")
    return tree


def _baseline_checkout() -> Path | None:
    checkout = WORK / f"baseline-{BASELINE}"
    if (checkout / "src" / "tianmu").is_dir():
        return checkout
    shutil.rmtree(checkout, ignore_errors=True)
    done = subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "add", "--detach", "--force", str(checkout), BASELINE],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        print(f"baseline {BASELINE} not available ({done.stderr.strip()}): measuring the road only")
        return None
    return checkout


def _command(source: Path) -> tuple[list[str], dict[str, str]]:
    env = {**os.environ, "PYTHONPATH": str(source / "src"), "TIANMU_DATABASE_URL": ""}
    return [sys.executable, "-c", "import sys; from tianmu.cli.main import run; sys.exit(run())"], env


def _prepare(name: str, source: Path) -> dict[str, str]:
    command, env = _command(source)
    home = WORK / f"home-{name}"
    shutil.rmtree(home, ignore_errors=True)
    env["TIANMU_HOME"] = str(home)
    subprocess.run(
        [*command, "kb", "import", str(ROOT / "demo" / "kb")], env=env, check=True, capture_output=True
    )
    return env


def _time(source: Path, env: dict[str, str], target: Path) -> float:
    command, _ = _command(source)
    began = time.perf_counter()
    done = subprocess.run(
        [*command, "assess", str(target), "--fail-on", "none", "--format", "json", "--output", os.devnull],
        env=env,
        capture_output=True,
        text=True,
    )
    elapsed = time.perf_counter() - began
    if done.returncode != 0:
        raise SystemExit(f"assess failed ({source}): {done.stderr[-2000:]}")
    return elapsed


def main() -> None:
    WORK.mkdir(parents=True, exist_ok=True)
    tree = build_tree()
    variants: dict[str, Path] = {"road": ROOT}
    baseline = _baseline_checkout()
    if baseline is not None:
        variants = {"baseline": baseline, "road": ROOT}
    envs = {name: _prepare(name, source) for name, source in variants.items()}
    targets = {"demo/target": ROOT / "demo" / "target", f"tree ({LOGS} logs, {SOURCES} sources)": tree}
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}; cpus {os.cpu_count()}")
    for label, target in targets.items():
        times: dict[str, list[float]] = {name: [] for name in variants}
        for name, source in variants.items():  # a warm-up round: page cache, compiled rule caches
            _time(source, envs[name], target)
        for _ in range(REPEAT):
            for name, source in variants.items():
                times[name].append(_time(source, envs[name], target))
        print(f"\n{label}: `tianmu assess TARGET --fail-on none`, {REPEAT} runs each, seconds")
        for name, values in times.items():
            print(f"  {name:9} min {min(values):7.2f}  median {statistics.median(values):7.2f}  all {values}")
        if "baseline" in times:
            ratio = statistics.median(times["baseline"]) / statistics.median(times["road"])
            best = min(times["baseline"]) / min(times["road"])
            print(f"  baseline/road: median {ratio:.2f}x, min {best:.2f}x (above 1: the road is faster)")
    print(f"\nload average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
