"""`tianmu tenant|user|audit|login`: administration, the audit check's exit codes, certificate login."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import update
from typer.testing import CliRunner

from testsupport import free_port, serve_app
from tianmu.cli.main import app
from tianmu.cli.session import os_user
from tianmu.core.config import Settings
from tianmu.store.database import Store
from tianmu.store.schema import identity_audit

runner = CliRunner()


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    home = tmp_path / "home"
    values = {"TIANMU_HOME": str(home), "TIANMU_MASTER_KEY": "00112233445566778899aabbccddeeff"}
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("TIANMU_DATABASE_URL", raising=False)
    return values


def run(*args: str | Path, stdin: str | None = None) -> tuple[int, str, str]:
    result = runner.invoke(app, [str(a) for a in args], input=stdin)
    return result.exit_code, result.stdout, result.stderr


def test_administration_and_audit_verify(env: dict[str, str]) -> None:
    assert run("tenant", "add", "acme", "--name", "Acme Corp")[0] == 0
    code, _, err = run("tenant", "add", "acme")
    assert code == 2 and "already exists" in err
    assert (
        run(
            "user",
            "add",
            "acme",
            "alice",
            "--role",
            "admin",
            "--password-stdin",
            stdin="correct horse battery\n",
        )[0]
        == 0
    )
    code, _, err = run("user", "add", "acme", "bob", "--role", "wizard", "--no-password")
    assert code == 2 and "role must be one of" in err
    code, out, _ = run(
        "tenant",
        "policy",
        "acme",
        "--require",
        "password+totp",
        "--require",
        "certificate",
        "--max-failures",
        "3",
    )
    policy = json.loads(out)
    assert code == 0 and policy["required_factors"] == [["password", "totp"], ["certificate"]]
    code, _, err = run("tenant", "policy", "acme", "--require", "password+iris")
    assert code == 2 and "required_factors" in err
    code, out, _ = run("user", "totp", "acme", "alice")
    assert code == 0 and "otpauth://totp/" in out
    code, out, _ = run("user", "list", "acme", "--json")
    assert json.loads(out)[0] == {
        "username": "alice",
        "role": "admin",
        "password": True,
        "totp": True,
        "disabled": False,
        "locked_until": None,
    }
    code, out, _ = run("user", "token", "acme", "alice", "--name", "ci", "--scope", "findings:read")
    assert code == 0 and out.startswith("tmu_")

    code, out, _ = run("audit", "verify", "--json")
    report = json.loads(out)
    assert code == 0 and report["ok"] and report["entries"] >= 5
    code, out, _ = run("audit", "list", "--json", "--limit", "4")
    entries = json.loads(out)
    # A token made at the command line: the user's own (identity), and who made it here (the CLI).
    assert [e["action"] for e in entries] == ["token.issue", "token.create", "user.totp", "policy.set"]
    assert entries[0]["actor"] == f"cli:{os_user()}" and entries[0]["details"]["user"] == "alice"
    assert entries[2]["actor"] == f"cli:{os_user()}"  # identity's own entry names the OS user too

    store = Store(Settings.from_env().database_url)
    with store.begin() as conn:
        conn.execute(update(identity_audit).where(identity_audit.c.seq == 2).values(target="mallory"))
    store.close()
    code, out, err = run("audit", "verify")
    assert code == 1 and "entry 2 was altered" in err and "NOT intact" in out


def test_login_with_certificate_against_a_server(
    env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = free_port()
    origin = f"http://localhost:{port}"
    monkeypatch.setenv("TIANMU_ORIGIN", origin)
    monkeypatch.setenv("TIANMU_TENANT", "acme")
    run("tenant", "add", "acme")
    run("user", "add", "acme", "alice", "--role", "analyst", "--no-password")
    assert run("tenant", "ca-init", "acme", "--out", tmp_path / "ca.pem")[0] == 0
    key, pub, cert = tmp_path / "alice.key", tmp_path / "alice.pub", tmp_path / "alice.pem"
    run("crypto", "sm2", "keygen", "--out", key, "--pub-out", pub)
    code, out, _ = run("user", "cert", "acme", "alice", "--pub", pub, "--out", cert)
    assert code == 0 and "issued serial" in out

    from tianmu.service import ServiceSettings, create_app

    server_app = create_app(ServiceSettings.from_env())
    with serve_app(server_app, port, lifespan="off"):
        code, out, err = run("login", "--cert", cert, "--key", key, "--server", origin)
        assert code == 0, err
        assert "signed in" in out and "certificate" in out
        saved = json.loads((Path(env["TIANMU_HOME"]) / "session.json").read_text())
        assert saved["tenant"] == "acme" and saved["cookies"]
        assert (Path(env["TIANMU_HOME"]) / "session.json").stat().st_mode & 0o777 == 0o600
        # someone else's key with alice's certificate is refused
        other = tmp_path / "other.key"
        run("crypto", "sm2", "keygen", "--out", other)
        code, _, err = run("login", "--cert", cert, "--key", other, "--server", origin)
        assert code == 2 and "does not verify" in err
        # a server that names another audience gets no signature
        code, _, err = run("login", "--cert", cert, "--key", key, "--server", f"http://127.0.0.1:{port}")
        assert code == 2 and "refusing" in err
