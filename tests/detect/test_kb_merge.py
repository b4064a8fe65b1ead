"""`tianmu kb import` of Sigma rules merges into a source by id; `--replace` is authoritative; an official
copy that would remove most of a source is refused, naming what it would remove (issue 21)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from typer.testing import CliRunner

from tianmu.cli.main import app
from tianmu.detect.kb import import_rule_set, imported_rule_dirs, load_rule_base
from tianmu.road.knowledge import import_any
from tianmu.store import Store
from tianmu.store.knowledge import ImportMode, KbContext

RULE = """title: {title}
id: 00000000-0000-4000-8000-{number:012d}
status: test
logsource:
    product: linux
    service: auth
detection:
    sel:
        - '{word}'
    condition: sel
level: {level}
"""


def write_rule(folder: Path, name: str, number: int, level: str = "medium", word: str = "") -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        RULE.format(title=f"rule {number}", number=number, word=word or f"word{number}", level=level)
    )
    return path


def rule_id(number: int) -> str:
    return f"00000000-0000-4000-8000-{number:012d}"


def stored_ids(ctx: KbContext) -> list[str]:
    """The ids of the rules detection will run, from the imported sets on disk."""
    base = load_rule_base(imported_rule_dirs(ctx.store, ctx.home))
    return sorted(r.id for r in base.rules)


def full_and_partial(tmp_path: Path) -> tuple[Path, Path]:
    full = tmp_path / "full" / "rules"
    for number in range(1, 11):
        write_rule(full, f"r{number}.yml", number)
    partial = tmp_path / "demo" / "rules"  # the same source name: sigma:rules
    write_rule(partial, "r1.yml", 1, level="high")  # changed
    write_rule(partial, "r99.yml", 99)  # new
    return full, partial


def context(store: Store, tmp_path: Path, replace: bool = False) -> KbContext:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    return KbContext(store=store, home=home, replace=replace)


def test_a_partial_import_merges_by_id_and_says_what_it_kept(store: Store, tmp_path: Path) -> None:
    full, partial = full_and_partial(tmp_path)
    ctx = context(store, tmp_path)
    (first,) = import_any(ctx, full)
    assert (first.source, first.record_count) == ("sigma:rules", 10)
    (merged,) = import_any(ctx, partial)
    assert (merged.status, merged.added, merged.updated, merged.removed, merged.record_count) == (
        "updated",
        1,
        1,
        0,
        11,
    )
    assert merged.errors == [
        "sigma:rules: merged: 9 stored record(s) not in this import were kept (--replace removes them)"
    ]
    assert stored_ids(ctx) == sorted([rule_id(n) for n in range(1, 11)] + [rule_id(99)])
    levels = {r.id: r.level for r in load_rule_base(imported_rule_dirs(store, ctx.home)).rules}
    assert levels[rule_id(1)] == "high"  # the import's version of a rule wins
    (again,) = import_any(ctx, partial)
    assert (again.status, again.record_count) == ("unchanged", 11)
    # --replace makes the same copy the whole source, though the merge stored its digest.
    (replaced,) = import_any(context(store, tmp_path, replace=True), partial)
    assert (replaced.status, replaced.removed, replaced.record_count) == ("updated", 9, 2)
    assert stored_ids(ctx) == [rule_id(1), rule_id(99)]


def test_a_rule_that_moved_to_another_file_is_not_kept_twice(store: Store, tmp_path: Path) -> None:
    full, _ = full_and_partial(tmp_path)
    ctx = context(store, tmp_path)
    import_any(ctx, full)
    moved = tmp_path / "moved" / "rules"
    write_rule(moved, "linux/auth/r3.yml", 3, level="low")
    (report,) = import_any(ctx, moved)
    assert (report.added, report.updated, report.removed, report.record_count) == (0, 1, 0, 10)
    assert stored_ids(ctx) == sorted(rule_id(n) for n in range(1, 11))
    assert not (ctx.home / "detect" / "sigma" / "rules" / "r3.yml").exists()


def test_an_official_copy_that_would_remove_most_rules_is_refused(store: Store, tmp_path: Path) -> None:
    full, partial = full_and_partial(tmp_path)
    ctx = context(store, tmp_path)
    import_any(ctx, full)
    refused = import_rule_set(ctx, partial, ImportMode.OFFICIAL)
    assert (refused.status, refused.record_count) == ("refused", 10)
    (why,) = refused.errors
    assert why.startswith("sigma:rules: refused: this copy would remove 9 of its 10 records")
    assert f"rules it would remove: {rule_id(2)}, {rule_id(3)}, {rule_id(4)}" in why and "and 4 more" in why
    assert stored_ids(ctx) == sorted(rule_id(n) for n in range(1, 11))  # nothing changed on disk
    forced = import_rule_set(ctx, partial, ImportMode.REPLACE)
    assert (forced.status, forced.removed, forced.record_count) == ("updated", 9, 2)


def test_cli_import_merges_and_replace_is_authoritative(tmp_path: Path) -> None:
    full, partial = full_and_partial(tmp_path)
    env = {"TIANMU_HOME": str(tmp_path / "clihome"), "TIANMU_DATABASE_URL": "", "TIANMU_TENANT": ""}
    runner = CliRunner()
    assert runner.invoke(app, ["kb", "import", str(full)], env=env).exit_code == 0
    merged = runner.invoke(app, ["kb", "import", str(partial), "--json"], env=env)
    assert merged.exit_code == 0, merged.output
    (row,) = json.loads(merged.stdout)
    assert (row["removed"], row["record_count"]) == (0, 11)
    replaced = runner.invoke(app, ["kb", "import", str(partial), "--replace", "--json"], env=env)
    assert replaced.exit_code == 0, replaced.output
    (row,) = json.loads(replaced.stdout)
    assert (row["removed"], row["record_count"]) == (9, 2)


def test_real_rules_a_small_folder_after_the_full_set_keeps_it(
    store: Store, shared_data: Path, tmp_path: Path
) -> None:
    full = tmp_path / "full" / "rules"
    for part in ("web", "network"):
        shutil.copytree(shared_data / "sigma" / "rules" / part, full / part)
    ctx = context(store, tmp_path)
    (first,) = import_any(ctx, full)
    assert first.record_count > 40
    small = tmp_path / "small" / "rules"
    for file in sorted((full / "web").rglob("*.yml"))[:3]:
        destination = small / "web" / file.relative_to(full / "web")
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(file, destination)
    (merged,) = import_any(ctx, small)
    assert (merged.status, merged.removed, merged.record_count) == ("unchanged", 0, first.record_count)
    (replaced,) = import_any(context(store, tmp_path, replace=True), small)
    assert 0 < replaced.record_count <= 3 and replaced.removed == first.record_count - replaced.record_count
    assert len(stored_ids(ctx)) == replaced.record_count
