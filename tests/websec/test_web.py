"""`check_websites` end to end against sites we serve on 127.0.0.1: a careless one, a hardened one,
and single TLS faults; politeness (GET/HEAD, User-Agent, rate), safety, store and audit."""

from __future__ import annotations

import json
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from network.servers import Certs, Page, Site, make_cert, serve_http
from network.tests_support import assert_situation_moved, cli_env, home_store
from tianmu.cli.console import out_console
from tianmu.cli.main import app
from tianmu.network.audit import list_scans
from tianmu.network.targets import TargetError
from tianmu.road.knowledge import import_any
from tianmu.road.network import run_web
from tianmu.situation import posture_history
from tianmu.store import Store
from tianmu.store.knowledge import KbContext
from tianmu.store.repository import list_findings
from tianmu.websec.engine import WebOptions, check_websites
from tianmu.websec.tlscheck import hostname_matches

NETWORK_DATA = Path(__file__).resolve().parents[1] / "network" / "data"
CUSTOM = Path(__file__).resolve().parents[1] / "fixtures" / "websec" / "custom-templates"
HTML = ("Content-Type", "text/html; charset=utf-8")
HARDENED = [
    HTML,
    ("Content-Security-Policy", "default-src 'self'; frame-ancestors 'none'"),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("Permissions-Policy", "geolocation=()"),
    ("Strict-Transport-Security", "max-age=63072000; includeSubDomains"),
]


def careless_site() -> Site:
    home = (
        b'<html><head><title>Shop</title><script src="http://cdn.example.test/app.js"></script></head>'
        b"<body>hello</body></html>"
    )
    return Site(
        pages={
            "/": Page(
                200,
                [HTML, ("Server", "Apache/2.4.57 (Debian)"), ("Set-Cookie", "sessionid=abc123; Path=/")],
                home,
            ),
            "/.git/HEAD": Page(200, [("Content-Type", "text/plain")], b"ref: refs/heads/main\n"),
            "/.env": Page(200, [("Content-Type", "text/plain")], b"DB_PASSWORD=secret\nSECRET_KEY=abc\n"),
            "/uploads/": Page(
                200, [HTML], b"<html><head><title>Index of /uploads</title></head><body></body></html>"
            ),
            "/server-status": Page(200, [HTML], b"<html><h1>Apache Server Status for 127.0.0.1</h1></html>"),
            "/robots.txt": Page(
                200, [("Content-Type", "text/plain")], b"User-agent: *\nDisallow: /secret/\n"
            ),
        },
        reflect_origin=True,
        cors_credentials=True,
    )


@pytest.fixture(scope="module")
def rsa_cert(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    files, _cert, _key = make_cert(tmp_path_factory.mktemp("rsa"), "rsa", "localhost", rsa_bits=2048)
    return files


@pytest.fixture
def careless(rsa_cert) -> Iterator[tuple[Site, int]]:  # type: ignore[no-untyped-def]
    site = careless_site()
    with serve_http(
        site,
        cert=rsa_cert,
        min_version=ssl.TLSVersion.TLSv1,
        ciphers="AES128-SHA:ECDHE-RSA-AES128-GCM-SHA256:@SECLEVEL=0",
    ) as port:
        yield site, port


def test_careless_site(store: Store, careless: tuple[Site, int], tmp_path: Path) -> None:
    import_any(KbContext(store=store, home=tmp_path), NETWORK_DATA / "nvd-sample.json")
    site, port = careless
    url = f"https://localhost:{port}/"
    result = run_web(store, [url], WebOptions(rate=200, templates=(CUSTOM,)))
    found = {f.rule_id for f in result.findings}
    expected = {
        "tls.protocol.legacy",
        "tls.cipher.weak",
        "tls.certificate.self-signed",
        "web.tls.hsts-missing",
        "web.mixed-content.active",
        "web.header.csp-missing",
        "web.header.framing-allowed",
        "web.header.nosniff-missing",
        "web.header.referrer-policy-missing",
        "web.header.permissions-policy-missing",
        "web.cookie.flags",
        "web.cors.origin-reflected",
        "web.version.disclosure",
        "CVE-2098-0006",
        "web.git-head-exposed",
        "web.env-file-exposed",
        "web.directory-listing",
        "web.server-status-exposed",
        "web.custom-robots-secret",
    }
    assert expected <= found, expected - found
    assert "tls.certificate.hostname-mismatch" not in found and "tls.certificate.expired" not in found
    git = next(f for f in result.findings if f.rule_id == "web.git-head-exposed")
    assert git.evidence["url"] == f"https://localhost:{port}/.git/HEAD"
    assert git.evidence["entities"]["domain"] == ["localhost"] and git.severity.value == "high"
    assert git.asset.name == f"https://localhost:{port}" and git.asset.kind.value == "website"
    cve = next(f for f in result.findings if f.rule_id == "CVE-2098-0006")
    assert cve.kind.value == "vulnerability" and cve.evidence["cpe"].startswith(
        "cpe:2.3:a:apache:http_server:2.4.57"
    )
    # Polite: only GET and HEAD, always with Tianmu's User-Agent.
    assert {method for method, _path, _h in site.requests} <= {"GET", "HEAD"}
    assert all(h.get("User-Agent", "").startswith("Tianmu-WebCheck/") for _m, _p, h in site.requests)
    stored = {s.finding.rule_id for s in list_findings(store, "default")}
    assert expected <= stored
    [audit] = list_scans(store, "default")
    assert (audit.action, audit.targets) == ("web", [url])


def test_hardened_site_has_no_finding(certs: Certs) -> None:
    site = Site(
        pages={
            "/": Page(
                200,
                [*HARDENED, ("Set-Cookie", "sessionid=x; Secure; HttpOnly; SameSite=Strict")],
                b"<html><title>Fine</title></html>",
            )
        }
    )
    with serve_http(site, cert=certs.good) as port:
        result = check_websites(
            None, [f"https://localhost:{port}/"], WebOptions(rate=200, ca_file=certs.ca.cert)
        )
    assert result.findings == [], [(f.rule_id, f.title) for f in result.findings]
    assert result.sites[0].tls is not None and result.sites[0].tls["trusted"] is True


@pytest.mark.parametrize(
    ("cert_name", "rule", "severity"),
    [
        ("expired", "tls.certificate.expired", "high"),
        ("expiring", "tls.certificate.expiring", "medium"),
        ("wrong_host", "tls.certificate.hostname-mismatch", "high"),
        ("good", "tls.certificate.untrusted-chain", "high"),  # our CA is not in the system store
    ],
)
def test_certificate_faults(certs: Certs, cert_name: str, rule: str, severity: str) -> None:
    cert = getattr(certs, cert_name)
    ca = None if cert_name == "good" else certs.ca.cert
    with serve_http(Site(pages={"/": Page(200, HARDENED, b"")}), cert=cert) as port:
        result = check_websites(
            None, [f"https://localhost:{port}/"], WebOptions(rate=200, builtin_templates=False, ca_file=ca)
        )
    found = {f.rule_id: f for f in result.findings}
    assert rule in found and found[rule].severity.value == severity
    others = {
        "tls.certificate.expired",
        "tls.certificate.expiring",
        "tls.certificate.hostname-mismatch",
        "tls.certificate.untrusted-chain",
    } - {rule}
    assert not others & set(found), set(found)


def test_plain_http_redirect(certs: Certs) -> None:
    with serve_http(Site(pages={"/": Page(200, HARDENED, b"")})) as port:
        result = check_websites(
            None, [f"http://127.0.0.1:{port}/"], WebOptions(rate=200, builtin_templates=False)
        )
    assert "web.http.no-https-redirect" in {f.rule_id for f in result.findings}
    secure = Site(pages={"/": Page(200, HARDENED, b"")})
    with serve_http(secure, cert=certs.good) as https_port:
        moved = Site(pages={"/": Page(301, [("Location", f"https://localhost:{https_port}/")], b"")})
        with serve_http(moved, host="127.0.0.1") as port:
            result = check_websites(
                None,
                [f"http://localhost:{port}/"],
                WebOptions(rate=200, builtin_templates=False, ca_file=certs.ca.cert),
            )
    # The redirect is what it should be; the HTTPS site it leads to is checked in its place (and is sound).
    assert result.findings == [], [f.rule_id for f in result.findings]
    assert [s.url for s in result.sites] == [f"http://localhost:{port}/", f"https://localhost:{https_port}/"]
    assert result.sites[1].tls is not None and any("HTTPS site was checked" in n for n in result.notes)
    assert secure.requests, "the HTTPS site was visited"


def test_soft_404_site_does_not_trip_templates(tmp_path: Path) -> None:
    loose = tmp_path / "loose.yaml"
    loose.write_text(
        "id: loose\nname: Loose\nseverity: low\nrequest:\n  paths: ['/admin-panel']\n"
        "matchers:\n  - type: word\n    words: ['ok']\n"
    )
    with serve_http(Site(soft_404=True)) as port:
        result = check_websites(None, [f"http://127.0.0.1:{port}/"], WebOptions(rate=200, templates=(loose,)))
    assert not [f for f in result.findings if f.rule_id.startswith("web.loose")]
    assert any("template loose skipped" in n for n in result.notes)


def test_rate_limit() -> None:
    site = Site(pages={"/": Page(200, HARDENED, b"")})
    with serve_http(site) as port:
        started = time.monotonic()
        result = check_websites(
            None, [f"http://127.0.0.1:{port}/"], WebOptions(rate=20, builtin_templates=False)
        )
        elapsed = time.monotonic() - started
    requests = result.sites[0].requests
    assert requests >= 3 and elapsed >= (requests - 1) / 20


def test_public_site_needs_authorization() -> None:
    with pytest.raises(TargetError, match="--i-am-authorized"):
        check_websites(None, ["https://8.8.8.8/"])


def test_hostname_matching() -> None:
    assert hostname_matches("www.example.test", ["*.example.test"])
    assert not hostname_matches("a.b.example.test", ["*.example.test"])
    assert not hostname_matches("example.test", ["*.example.test"])
    assert hostname_matches("LOCALHOST", ["localhost"])


def test_cli(careless: tuple[Site, int], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(out_console, "width", 200)
    env = {"TIANMU_HOME": str(tmp_path / "home"), "TIANMU_DATABASE_URL": "", "TIANMU_TENANT": ""}
    _site, port = careless
    result = CliRunner().invoke(
        app, ["web", f"https://localhost:{port}/", "--json", "--rate", "200", "--fail-on", "high"], env=env
    )
    assert result.exit_code == 1, result.output
    data = json.loads(result.stdout)
    assert set(data) == {"sites", "findings", "errors", "notes"}
    assert any(f["id"] == "web.env-file-exposed" and f["severity"] == "critical" for f in data["findings"])
    down = CliRunner().invoke(app, ["web", "http://127.0.0.1:1/"], env=env)
    assert down.exit_code == 2


def test_cli_updates_the_situation(careless: tuple[Site, int], tmp_path: Path) -> None:
    """`tianmu web` finishes like `assess`: the findings are stored and the tenant's risk moves."""
    home = tmp_path / "home"
    store = home_store(home)
    try:
        assert posture_history(store, "default") == []
        _site, port = careless
        url = f"https://localhost:{port}/"
        result = CliRunner().invoke(app, ["web", url, "--rate", "200"], env=cli_env(home))
        assert result.exit_code == 0, result.output
        assert_situation_moved(store, {"web.env-file-exposed", "tls.certificate.self-signed"})
    finally:
        store.close()


def test_disclosed_package_version_matched_by_osv(store: Store, tmp_path: Path) -> None:
    import_any(KbContext(store=store, home=tmp_path), NETWORK_DATA / "osv-werkzeug.json")
    site = Site(pages={"/": Page(200, [*HARDENED, ("Server", "Werkzeug/2.0.1 Python/3.11.4")], b"")})
    with serve_http(site) as port:
        result = run_web(store, [f"http://127.0.0.1:{port}/"], WebOptions(rate=200, builtin_templates=False))
    [hit] = [f for f in result.findings if f.rule_id == "TIANMU-TEST-0001"]
    assert hit.data["matched_by"] == "osv" and hit.component is not None
    assert (hit.component.ecosystem, hit.component.name, hit.component.version) == (
        "PyPI",
        "werkzeug",
        "2.0.1",
    )
    assert hit.evidence["url"] == f"http://127.0.0.1:{port}/" and hit.severity.value == "high"
    with serve_http(Site(pages={"/": Page(200, [*HARDENED, ("Server", "Werkzeug/3.0.1")], b"")})) as port:
        fixed = run_web(store, [f"http://127.0.0.1:{port}/"], WebOptions(rate=200, builtin_templates=False))
    assert not [f for f in fixed.findings if f.rule_id == "TIANMU-TEST-0001"]
