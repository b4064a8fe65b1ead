"""Jobs on server paths: only under the folders the operator gave the tenant (TIANMU_ASSESS_ROOTS) or
the tenant's own uploads, whoever asks — no `..`, symbolic link or other tenant's folder leads out."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from platform_data import Platform, bearer, build_platform

from tianmu.core.errors import ConfigError
from tianmu.service.settings import ServiceSettings, parse_assess_roots


@pytest.fixture
def server(tmp_path: Path) -> Path:
    for folder in ("srv/acme/app", "srv/globex", "srv/shared"):
        (tmp_path / folder).mkdir(parents=True)
    (tmp_path / "srv/acme/app/requirements.txt").write_text("django==3.2.0\n")
    (tmp_path / "srv/acme/escape").symlink_to(tmp_path / "srv/globex")
    return tmp_path / "srv"


@pytest.fixture
def platform(tmp_path: Path, server: Path) -> Platform:
    roots = parse_assess_roots(f"acme={server / 'acme'};globex={server / 'globex'};*={server / 'shared'}")
    return build_platform(tmp_path / "home", assess_roots=roots)


@pytest.fixture
def client(platform: Platform) -> TestClient:
    # No `with`: the runner is not started, jobs stay queued (only the submission is under test).
    return TestClient(platform.app, base_url="http://localhost:8000")


def _assess(client: TestClient, headers: dict[str, str], path: str, kind: str = "assess") -> tuple[int, str]:
    response = client.post("/api/v1/jobs", headers=headers, json={"kind": kind, "params": {"path": path}})
    body = response.json()
    return response.status_code, str(body.get("detail") or body["params"]["path"])


def test_paths_under_the_tenants_roots_are_assessed(
    client: TestClient, platform: Platform, server: Path
) -> None:
    code, path = _assess(client, bearer(platform, "anna"), str(server / "acme" / "app" / "."))
    assert code == 202 and path == str((server / "acme" / "app").resolve())  # an analyst may, resolved
    assert _assess(client, bearer(platform, "gina"), str(server / "shared"))[0] == 202  # "*": every tenant


@pytest.mark.parametrize(
    "where",
    ["/etc", "/", "acme/../globex", "acme/escape", "acme/escape/x", "globex", "acme-evil"],
)
def test_other_paths_are_refused_for_everyone(
    client: TestClient, platform: Platform, server: Path, where: str
) -> None:
    path = where if where.startswith("/") else str(server / where)
    for user in ("alice", "anna", "alice-token"):  # the admin too, and by token
        code, detail = _assess(client, bearer(platform, user), path)
        assert code == 403, (user, path, detail)
        assert "TIANMU_ASSESS_ROOTS" in detail and "upload" in detail


def test_another_tenants_root_and_uploads_are_refused(
    client: TestClient, platform: Platform, server: Path
) -> None:
    assert _assess(client, bearer(platform, "gina"), str(server / "acme"))[0] == 403
    home = platform.app.state.settings.home
    (home / "uploads" / "acme" / "abc").mkdir(parents=True)
    (home / "uploads" / "globex" / "def").mkdir(parents=True)
    assert _assess(client, bearer(platform, "anna"), str(home / "uploads" / "acme" / "abc"))[0] == 202
    assert _assess(client, bearer(platform, "anna"), str(home / "uploads" / "globex" / "def"))[0] == 403
    assert (
        _assess(client, bearer(platform, "anna"), str(home / "uploads" / "acme" / ".." / "globex"))[0] == 403
    )


def test_relative_paths_and_kb_imports(client: TestClient, platform: Platform, server: Path) -> None:
    code, detail = _assess(client, bearer(platform, "alice"), "acme/app")
    assert code == 422 and "absolute" in detail
    assert (
        _assess(client, bearer(platform, "anna"), str(server / "acme"), "kb_import")[0] == 403
    )  # admins only
    assert _assess(client, bearer(platform, "alice"), "/etc", "kb_import")[0] == 403
    assert _assess(client, bearer(platform, "alice"), str(server / "acme"), "kb_import")[0] == 202


def test_without_roots_only_uploads_are_a_way_in(tmp_path: Path) -> None:
    platform = build_platform(tmp_path / "bare")
    client = TestClient(platform.app, base_url="http://localhost:8000")
    code, detail = _assess(client, bearer(platform, "alice"), str(tmp_path))
    assert code == 403 and "TIANMU_ASSESS_ROOTS: none" in detail


def test_roots_setting_is_parsed_strictly(tmp_path: Path) -> None:
    env = {"TIANMU_HOME": str(tmp_path), "TIANMU_ASSESS_ROOTS": f"acme={tmp_path}:{tmp_path / 'b'}; *=/srv"}
    settings = ServiceSettings.from_env(env)
    assert settings.roots_for("acme") == (tmp_path.resolve(), (tmp_path / "b").resolve(), Path("/srv"))
    assert settings.roots_for("globex") == (Path("/srv"),)
    for bad in ("acme", "acme=", "=/srv", "acme=relative/folder"):
        with pytest.raises(ConfigError, match="TIANMU_ASSESS_ROOTS"):
            parse_assess_roots(bad)
