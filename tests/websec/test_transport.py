"""Website checks against in-memory sites (`httpx.MockTransport`, `SiteTransport`): no server, no socket.

The address is a private IP literal, so the safety rule passes and no name is resolved; the URLs are
plain HTTP, so no TLS handshake is attempted. Every request goes through the transport.
"""

from __future__ import annotations

from pathlib import Path

import httpx

from tianmu.network.http import Page, SiteTransport
from tianmu.road.knowledge import import_any
from tianmu.road.network import run_web
from tianmu.store import Store
from tianmu.store.knowledge import KbContext
from tianmu.store.repository import list_findings
from tianmu.websec.engine import WebOptions, check_websites

URL = "http://10.0.0.5/"
NETWORK_DATA = Path(__file__).resolve().parents[1] / "network" / "data"
HTML = ("Content-Type", "text/html; charset=utf-8")
HARDENED = [
    HTML,
    ("Content-Security-Policy", "default-src 'self'; frame-ancestors 'none'"),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("Permissions-Policy", "geolocation=()"),
]
HEADER_RULES = {
    "web.header.csp-missing",
    "web.header.framing-allowed",
    "web.header.nosniff-missing",
    "web.header.referrer-policy-missing",
    "web.header.permissions-policy-missing",
}


def _options(transport: httpx.BaseTransport, **extra: object) -> WebOptions:
    return WebOptions(rate=0, builtin_templates=False, transport=transport, **extra)  # type: ignore[arg-type]


def test_missing_security_headers() -> None:
    site = SiteTransport({"/": Page(200, [HTML], b"<html><title>Shop</title></html>")})
    result = check_websites(None, [URL], _options(site))
    rules = {f.rule_id for f in result.findings}
    assert rules >= HEADER_RULES, HEADER_RULES - rules
    assert "web.http.no-https-redirect" in rules  # plain HTTP that stays plain
    header = next(f for f in result.findings if f.rule_id == "web.header.csp-missing")
    assert header.asset.name == "http://10.0.0.5" and header.evidence["entities"]["ip"] == ["10.0.0.5"]
    assert [s.reachable for s in result.sites] == [True] and result.errors == []


def test_hardened_headers_leave_only_the_missing_redirect() -> None:
    site = SiteTransport({"/": Page(200, HARDENED, b"<html><title>Fine</title></html>")})
    result = check_websites(None, [URL], _options(site))
    assert [f.rule_id for f in result.findings] == ["web.http.no-https-redirect"]


def test_version_disclosure_header_is_a_finding_and_a_sighting() -> None:
    site = SiteTransport({"/": Page(200, [*HARDENED, ("Server", "nginx/1.22.1")], b"")})
    result = check_websites(None, [URL], _options(site))
    [disclosed] = [f for f in result.findings if f.rule_id == "web.version.disclosure"]
    assert disclosed.evidence["product"] == "nginx" and disclosed.evidence["version"] == "1.22.1"
    assert disclosed.evidence["fingerprint_extra"] == "nginx"
    # What the road hands to the vulnerability matcher: the product, its CPE and the finding's evidence.
    [seen] = result.sites[0].sightings
    assert (seen.product, seen.version, seen.cpe) == (
        "nginx",
        "1.22.1",
        "cpe:2.3:a:f5:nginx:1.22.1:*:*:*:*:*:*:*",
    )
    assert seen.evidence["url"] == URL and seen.evidence["disclosed_by"] == "Server header"


def test_exposed_file_found_by_a_builtin_template_politely() -> None:
    site = SiteTransport(
        {
            "/": Page(200, HARDENED, b"<html></html>"),
            "/.env": Page(200, [("Content-Type", "text/plain")], b"DB_PASSWORD=secret\n"),
        }
    )
    result = check_websites(None, [URL], WebOptions(rate=0, transport=site))
    [exposed] = [f for f in result.findings if f.rule_id == "web.env-file-exposed"]
    assert exposed.evidence["url"] == "http://10.0.0.5/.env" and exposed.severity.value == "critical"
    assert {r.method for r in site.requests} <= {"GET", "HEAD"}
    assert all(r.headers["User-Agent"].startswith("Tianmu-WebCheck/") for r in site.requests)
    assert result.sites[0].requests == len(site.requests)


def test_unreachable_site_through_a_mock_transport() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    result = check_websites(None, [URL], _options(httpx.MockTransport(refuse)))
    assert result.findings == [] and result.errors == [f"{URL}: not reachable"]
    assert result.sites[0].reachable is False


def test_road_matches_disclosed_versions_and_stores_the_site(store: Store, tmp_path: Path) -> None:
    import_any(KbContext(store=store, home=tmp_path), NETWORK_DATA / "osv-werkzeug.json")
    site = SiteTransport({"/": Page(200, [*HARDENED, ("Server", "Werkzeug/2.0.1 Python/3.11.4")], b"")})
    result = run_web(store, [URL], _options(site))
    [hit] = [f for f in result.findings if f.rule_id == "TIANMU-TEST-0001"]
    assert hit.data["matched_by"] == "osv" and hit.evidence["url"] == URL
    assert result.findings == result.sites[0].findings  # one site: the road kept the two lists one
    stored = {s.finding.rule_id for s in list_findings(store, "default")}
    assert {"TIANMU-TEST-0001", "web.version.disclosure", "web.http.no-https-redirect"} <= stored
