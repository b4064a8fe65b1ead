"""A platform app with two tenants, their users and realistic findings, for the API and dashboard tests.

A plain module (not conftest) so that tests import it by name; the identity helper owns conftest.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import insert

from tianmu.core.config import Settings
from tianmu.core.models import (
    Assessment,
    Asset,
    AssetKind,
    Component,
    Finding,
    FindingKind,
    Location,
    Severity,
)
from tianmu.identity import IdentityService, Principal, Role, cli_principal
from tianmu.jobs import queue
from tianmu.service import ServiceSettings
from tianmu.service.platform import create_platform_app
from tianmu.situation import update_situation
from tianmu.situation.repository import load_incidents
from tianmu.store.queries import FindingQuery, find_findings, list_assets
from tianmu.store.repository import save_assessment
from tianmu.store.schema import identity_passkeys

PASSWORD = "correct horse battery"
T0 = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)


@dataclass
class Platform:
    app: FastAPI
    headers: dict[str, dict[str, str]]
    """Request headers by user name, for a signed-in browser session (cookie + CSRF token): alice (acme
    admin), anna (acme analyst), victor (acme viewer), gina (globex admin); and `alice-token`, alice's
    bearer API token."""
    foreign: dict[str, str]
    """Ids that belong to globex, for the isolation walk: finding_id, asset_id, job_id, key."""


def _vuln(
    asset: Asset, name: str, version: str, rule: str, severity: Severity, line: int, kev: bool = False
) -> Finding:
    comp = Component(
        name, version, "PyPI", f"pkg:pypi/{name.lower()}@{version}", Location("requirements.txt", line)
    )
    return Finding(
        kind=FindingKind.VULNERABILITY,
        rule_id=rule,
        title=f"{name} {version}: {rule}",
        severity=severity,
        asset=asset,
        component=comp,
        data={"kev": kev, "fixed_versions": ["9.9.9"], "advisories": [rule]},
    )


def _detection(asset: Asset, rule: str, title: str, line: int, ip: str) -> Finding:
    return Finding(
        kind=FindingKind.DETECTION,
        rule_id=rule,
        title=title,
        severity=Severity.HIGH,
        asset=asset,
        evidence={
            "path": "logs/auth.log",
            "line": line,
            "time": (T0 + timedelta(minutes=line)).isoformat(),
            "entities": {"ip": [ip], "user": ["root"]},
            "fingerprint_extra": ip,
        },
        techniques=("T1110",),
    )


def _save(app: FastAPI, asset: Asset, findings: list[Finding], when: datetime) -> None:
    """Store an assessment and its situation (incidents, risk, posture), as `tianmu assess` does."""
    assessment = Assessment(
        target=asset.name,
        asset=asset,
        started=when,
        finished=when,
        components=[f.component for f in findings if f.component],
        findings=findings,
    )
    saved = save_assessment(app.state.store, assessment)
    update_situation(app.state.store, assessment, assessment_id=saved.assessment_id)


def build_platform(
    home: Path,
    origin: str = "http://localhost:8000",
    assess_roots: tuple[tuple[str, tuple[Path, ...]], ...] = (),
) -> Platform:
    home.mkdir(parents=True, exist_ok=True)
    core = Settings(home=home, database_url=f"sqlite:///{home / 'tianmu.db'}", tenant="acme")
    settings = ServiceSettings(core=core, origin=origin, assess_roots=assess_roots)
    app = create_platform_app(settings, runner_kind="local")
    identity: IdentityService = app.state.identity
    headers: dict[str, dict[str, str]] = {}
    # Without `with`: no lifespan, so the app's job runner is started only by the test's own client.
    minting = TestClient(app, base_url=origin)
    for tenant, users in (
        ("acme", [("alice", Role.ADMIN), ("anna", Role.ANALYST), ("victor", Role.VIEWER)]),
        ("globex", [("gina", Role.ADMIN)]),
    ):
        identity.create_tenant(tenant, tenant.title())
        for username, role in users:
            identity.create_user(cli_principal(tenant), tenant, username, role, password=PASSWORD)
            step = identity.password_login(tenant, username, PASSWORD)
            assert step.done and step.session_secret
            session = f"tianmu_session={step.session_secret}"
            # A CSRF token is bound to its session: ask for one as this signed-in browser.
            minted = minting.get("/api/auth/csrf", headers={"Cookie": session})
            minting.cookies.clear()
            headers[username] = {
                "Cookie": f"{session}; tianmu_csrf={minted.cookies['tianmu_csrf']}",
                "X-CSRF-Token": minted.json()["csrf_token"],
            }
    alice = identity.get_user("acme", "alice")
    acting = Principal(user_id=alice.id, tenant="acme", username="alice", role=Role.ADMIN, via="session")
    headers["alice-token"] = {"Authorization": f"Bearer {identity.create_token(acting, 'tests')[0]}"}
    gina = identity.get_user("globex", "gina")
    gina_acting = Principal(user_id=gina.id, tenant="globex", username="gina", role=Role.ADMIN, via="session")
    gina_token = identity.create_token(gina_acting, "globex-automation")[1]
    # A passkey row of gina's (its key material is never used: the walk only tries to reach it).
    with app.state.store.begin() as conn:
        conn.execute(
            insert(identity_passkeys).values(
                id="Z2luYS1wYXNza2V5",
                tenant="globex",
                user_id=gina.id,
                name="gina's laptop",
                public_key="pQECAyYgASFYIA",
                sign_count=0,
                transports=["internal"],
                backed_up=False,
                created_at=T0,
            )
        )

    shop = Asset("/srv/shop", AssetKind.DIRECTORY, tenant="acme", criticality=5)
    gateway = Asset("/srv/gateway", AssetKind.REPOSITORY, tenant="acme")
    _save(
        app,
        shop,
        [
            _vuln(shop, "Django", "3.2.0", "PYSEC-2021-98", Severity.CRITICAL, 3),
            _vuln(shop, "salt", "3000.1", "PYSEC-2020-102", Severity.HIGH, 12, kev=True),
            _vuln(shop, "urllib3", "1.24.1", "PYSEC-2023-192", Severity.HIGH, 4),
            _vuln(shop, "PyYAML", "5.3.1", "PYSEC-2021-142", Severity.MEDIUM, 5),
        ],
        T0,
    )
    _save(
        app,
        gateway,
        [
            _detection(gateway, "ssh-bruteforce", "SSH brute force", 12, "203.0.113.45"),
            _detection(gateway, "new-user", "New local user", 29, "203.0.113.45"),
        ],
        T0 + timedelta(hours=1),
    )
    rival = Asset("/srv/globex-secret", AssetKind.DIRECTORY, tenant="globex")
    _save(
        app,
        rival,
        [
            _vuln(rival, "Django", "3.2.0", "PYSEC-2021-98", Severity.CRITICAL, 1),
            _detection(rival, "ssh-bruteforce", "SSH brute force", 5, "198.51.100.9"),
        ],
        T0,
    )
    store = app.state.store
    foreign_finding = find_findings(store, "globex", FindingQuery(kinds=(FindingKind.VULNERABILITY,))).items[
        0
    ]
    (foreign_incident,) = load_incidents(store, "globex")
    foreign_job, _ = queue.submit(store, "reassess", {}, tenant="globex")
    foreign = {
        "finding_id": str(foreign_finding.id),
        "asset_id": str(list_assets(store, "globex")[0].id),
        "job_id": foreign_job.id,
        "key": foreign_incident.id,
        "username": "gina",
        "token_id": gina_token.id,
        "credential_id": "Z2luYS1wYXNza2V5",
        "value": "198.51.100.9",
    }
    return Platform(app, headers, foreign)


def bearer(platform: Platform, user: str) -> dict[str, str]:
    """The headers that make a request come from `user` (named for the common case of API clients)."""
    return dict(platform.headers[user])
