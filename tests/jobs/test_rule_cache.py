"""A process that runs many jobs keeps its loaded malware rule sets: one `RuleCache` per runner, and
its fork server's, inherited by every job's process."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import yara_x

from tianmu.core.config import Settings
from tianmu.jobs import InProcessRunner, get_job, submit_job
from tianmu.jobs.celery_app import create_celery
from tianmu.malware import rulecache
from tianmu.malware.rulecache import RuleCache
from tianmu.store import Store

RULES = Path(__file__).resolve().parents[1] / "fixtures" / "malware" / "rules" / "web"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home", database_url="unused", job_lease_seconds=5)


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Every rule file deserialised (what the cache is there to spare)."""
    seen: list[Path] = []
    original = rulecache.read_rules

    def counting(path: Path) -> yara_x.Rules:
        seen.append(path)
        return original(path)

    monkeypatch.setattr(rulecache, "read_rules", counting)
    return seen


def _site(root: Path) -> Path:
    (root / "web").mkdir(parents=True)
    (root / "web" / "shell.php").write_bytes(b"<?php system($_POST['x']); ?>")
    return root


@pytest.mark.parametrize("isolation", [True, False])
def test_two_assessments_by_one_runner_load_the_rule_sets_once(
    sqlite_store: Store, settings: Settings, tmp_path: Path, isolation: bool
) -> None:
    # Isolated, each job's process reads from disk only the rule sets its fork server has not loaded
    # (the server loads them after the first job); in-thread, the runner's own cache keeps them.
    runner = InProcessRunner(sqlite_store, replace(settings, job_isolation=isolation), workers=1)
    try:
        imported, _ = submit_job(sqlite_store, runner, "kb_import", {"path": str(RULES)})
        assert runner.wait(imported.id, 60).status == "done"
        outcomes = []
        for name in ("first", "second"):
            job, _ = submit_job(
                sqlite_store, runner, "assess", {"path": str(_site(tmp_path / name)), "engines": ["malware"]}
            )
            outcome = runner.wait(job.id, 60)
            assert outcome.status == "done"
            outcomes.append((get_job(sqlite_store, job.id), outcome.rules_read))
    finally:
        runner.shutdown()
    (first, read_first), (second, read_second) = outcomes
    # Each job found the web shell, so each scanned with the rules; only the first read them from disk.
    assert first is not None and first.result is not None and first.result["findings"] == 1
    assert second is not None and second.result is not None and second.result["findings"] == 1
    assert read_first >= 1 and read_second == 0
    if not isolation:
        assert len(runner.rules) == read_first


def test_a_cache_counts_what_it_reads(tmp_path: Path, reads: list[Path]) -> None:
    compiled = tmp_path / "rules.yarc"
    with compiled.open("wb") as handle:
        yara_x.compile((RULES / "php_shell.yar").read_text()).serialize_into(handle)
    cache = RuleCache()
    cache.load(compiled)
    cache.load(compiled)
    assert cache.reads == len(reads) == 1


def test_a_runner_keeps_the_cache_it_is_given(sqlite_store: Store, settings: Settings) -> None:
    shared = RuleCache()
    assert InProcessRunner(sqlite_store, settings, rules=shared).rules is shared
    # Two runners never share one by accident: each owns its own.
    assert InProcessRunner(sqlite_store, settings).rules is not InProcessRunner(sqlite_store, settings).rules


def test_each_celery_app_owns_one_cache(settings: Settings) -> None:
    first, second = create_celery(settings), create_celery(settings)
    assert isinstance(first.conf.tianmu_rules, RuleCache)
    assert first.conf.tianmu_rules is not second.conf.tianmu_rules
    # And one fork server each, started at its first job (none here).
    assert first.conf.tianmu_forks is not second.conf.tianmu_forks and first.conf.tianmu_forks.pid is None
