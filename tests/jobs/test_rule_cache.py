"""A process that runs many jobs keeps its loaded malware rule sets: one `RuleCache` per runner."""

from __future__ import annotations

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


def test_two_assessments_by_one_runner_load_the_rule_sets_once(
    sqlite_store: Store, settings: Settings, tmp_path: Path, reads: list[Path]
) -> None:
    runner = InProcessRunner(sqlite_store, settings, workers=1)
    try:
        imported, _ = submit_job(sqlite_store, runner, "kb_import", {"path": str(RULES)})
        assert runner.wait(imported.id, 60).status == "done"
        outcomes = []
        for name in ("first", "second"):
            job, _ = submit_job(
                sqlite_store, runner, "assess", {"path": str(_site(tmp_path / name)), "engines": ["malware"]}
            )
            assert runner.wait(job.id, 60).status == "done"
            outcomes.append((get_job(sqlite_store, job.id), len(reads)))
    finally:
        runner.shutdown()
    (first, after_first), (second, after_second) = outcomes
    # Each job found the web shell, so each scanned with the rules; only the first read them from disk.
    assert first is not None and first.result is not None and first.result["findings"] == 1
    assert second is not None and second.result is not None and second.result["findings"] == 1
    assert after_first >= 1 and after_second == after_first
    assert len(runner.rules) == after_first


def test_a_runner_keeps_the_cache_it_is_given(sqlite_store: Store, settings: Settings) -> None:
    shared = RuleCache()
    assert InProcessRunner(sqlite_store, settings, rules=shared).rules is shared
    # Two runners never share one by accident: each owns its own.
    assert InProcessRunner(sqlite_store, settings).rules is not InProcessRunner(sqlite_store, settings).rules


def test_each_celery_app_owns_one_cache(settings: Settings) -> None:
    first, second = create_celery(settings), create_celery(settings)
    assert isinstance(first.conf.tianmu_rules, RuleCache)
    assert first.conf.tianmu_rules is not second.conf.tianmu_rules
