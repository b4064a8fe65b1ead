"""Assets are named by what the user gave, identified by the resolved path (issue 21).

Before, `tianmu assess ../shared/data/logs` showed the asset only as the symlink-resolved absolute path.
Now the asset keeps that path as its identity (`name`: re-assessing the same place updates the same
asset, two folders both called `logs` stay two) and carries a `label` for people: the host name for
`/`, the repository's remote without credentials, else the folder's or file's name as typed.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from tianmu.cli.main import app
from tianmu.core.models import AssetKind
from tianmu.road.assess import AssessOptions, assess
from tianmu.road.targets import asset_for_path
from tianmu.store import Store
from tianmu.store.queries import list_assets
from tianmu.store.schema import assets

_AUTH = "Nov 20 03:00:00 web01 sshd[1]: Accepted password for deploy from 10.0.0.5 port 22 ssh2\n"


def _repo(root: Path, config: str) -> Path:
    (root / ".git").mkdir(parents=True)
    (root / ".git" / "config").write_text(config)
    return root


def test_a_folder_typed_relative_or_through_a_symlink_is_labelled_by_what_was_typed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = tmp_path / "shared" / "data" / "logs"
    real.mkdir(parents=True)
    (tmp_path / "work").mkdir()
    (tmp_path / "work" / "mylogs").symlink_to(real)
    monkeypatch.chdir(tmp_path / "work")
    typed = asset_for_path(Path("../shared/data/logs"), "default")
    assert (typed.name, typed.label, typed.kind) == (str(real), "logs", AssetKind.DIRECTORY)
    linked = asset_for_path(Path("mylogs"), "default")
    assert (linked.name, linked.label) == (str(real), "mylogs")
    assert linked == typed  # one identity: the label is not part of it
    here = asset_for_path(Path("."), "default")
    assert here.label == "work"
    (real / "auth.log").write_text(_AUTH)
    file = asset_for_path(Path("mylogs/auth.log"), "default")
    assert (file.name, file.label) == (str(real / "auth.log"), "auth.log")
    assert typed.display == f"logs ({real})"


def test_a_live_root_is_labelled_by_the_host_name() -> None:
    asset = asset_for_path(Path("/"), "default")
    assert (asset.name, asset.label) == ("/", socket.gethostname())


def test_a_repository_is_labelled_by_its_remote_without_credentials(tmp_path: Path) -> None:
    repo = _repo(
        tmp_path / "shop",
        '[core]\n\tbare = false\n[remote "upstream"]\n\turl = https://example.org/up.git\n'
        '[remote "origin"]\n\turl = https://alice:ghp_s3cret@github.com:8443/acme/shop.git?token=x#frag\n'
        "\tfetch = +refs/heads/*:refs/remotes/origin/*\n",
    )
    asset = asset_for_path(repo, "default")
    assert asset.kind is AssetKind.REPOSITORY
    assert asset.label == "https://github.com:8443/acme/shop.git"
    assert "s3cret" not in asset.label and "alice" not in asset.label


def test_a_repository_without_origin_takes_its_first_remote_or_its_folder_name(tmp_path: Path) -> None:
    scp = _repo(tmp_path / "a", '[remote "mirror"]\n\turl = git@git.example.org:team/a.git\n')
    assert asset_for_path(scp, "default").label == "git@git.example.org:team/a.git"
    none = _repo(tmp_path / "b", "[core]\n\turl = https://not-a-remote.example/\n")
    assert asset_for_path(none, "default").label == "b"
    bad_port = _repo(tmp_path / "c", '[remote "origin"]\n\turl = https://u:p@host:99999999/x\n')
    assert asset_for_path(bad_port, "default").label == "c"


def test_a_worktree_takes_the_remote_of_its_main_checkout(tmp_path: Path) -> None:
    main = _repo(tmp_path / "main", '[remote "origin"]\n\turl = https://example.org/main.git\n')
    gitdir = main / ".git" / "worktrees" / "wt"
    gitdir.mkdir(parents=True)
    (gitdir / "commondir").write_text("../..\n")
    tree = tmp_path / "wt"
    tree.mkdir()
    (tree / ".git").write_text(f"gitdir: {gitdir}\n")
    assert asset_for_path(tree, "default").label == "https://example.org/main.git"


def test_a_hostile_git_config_gives_a_short_printable_label(tmp_path: Path) -> None:
    url = "https://example.org/" + "\x1b[31m[bold]x" * 5000
    repo = _repo(tmp_path / "evil", f'[remote "origin"]\n\turl = {url}\n' + "#" * (1 << 20))
    label = asset_for_path(repo, "default").label
    assert len(label) <= 200 and label.startswith("https://example.org/")
    assert not any(ord(ch) < 32 or ord(ch) == 127 for ch in label)


def test_two_folders_called_logs_are_two_assets_and_a_path_again_is_the_same(
    sqlite_store: Store, tmp_path: Path
) -> None:
    first, second = tmp_path / "a" / "logs", tmp_path / "b" / "logs"
    for folder in (first, second):
        folder.mkdir(parents=True)
        (folder / "auth.log").write_text(_AUTH)
    options = AssessOptions(engines=(), home=tmp_path / "home")
    results = [assess(sqlite_store, path, options) for path in (first, second)]
    (tmp_path / "again").symlink_to(first)
    again = assess(sqlite_store, tmp_path / "again", options)
    with sqlite_store.connect() as conn:
        rows = conn.execute(select(assets.c.id, assets.c.name, assets.c.label).order_by(assets.c.id)).all()
    assert [(r.name, r.label) for r in rows] == [(str(first), "again"), (str(second), "logs")]
    assert results[0].asset.label == results[1].asset.label == "logs"
    assert again.asset.name == str(first)
    listed = {summary.asset.name: summary.asset.label for summary in list_assets(sqlite_store, "default")}
    assert listed == {str(first): "again", str(second): "logs"}


def test_the_report_and_the_summary_show_the_label_with_the_path(tmp_path: Path) -> None:
    logs = tmp_path / "data" / "logs"
    logs.mkdir(parents=True)
    (logs / "auth.log").write_text(_AUTH)
    env = {"TIANMU_HOME": str(tmp_path / "home"), "TIANMU_DATABASE_URL": "", "TIANMU_TENANT": ""}
    runner = CliRunner()
    cwd = os.getcwd()
    os.chdir(tmp_path / "data")
    try:
        report = runner.invoke(app, ["assess", "logs", "-f", "json", "--fail-on", "none"], env=env)
        summary = runner.invoke(app, ["assess", "logs", "--fail-on", "none"], env=env, terminal_width=300)
    finally:
        os.chdir(cwd)
    assert report.exit_code == 0, report.output
    document = json.loads(report.stdout)
    assert document["target"] == "logs"
    assert document["asset"]["name"] == str(logs) and document["asset"]["label"] == "logs"
    assert summary.exit_code == 0, summary.output
    assert f"Asset: logs ({logs}) (directory)" in summary.stdout
