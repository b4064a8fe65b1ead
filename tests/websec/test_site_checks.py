"""Each website check on a response that should trip it and on one that should not."""

from __future__ import annotations

import httpx

from tianmu.websec import site
from tianmu.websec.client import WebResponse
from tianmu.websec.tlscheck import tls_issues


def resp(headers: list[tuple[str, str]] | None = None, body: bytes = b"", status: int = 200) -> WebResponse:
    return WebResponse("https://127.0.0.1/", status, httpx.Headers(headers or []), body, 0.0)


HARDENED = [
    ("Content-Type", "text/html"),
    ("Content-Security-Policy", "default-src 'self'; frame-ancestors 'none'"),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("Permissions-Policy", "geolocation=()"),
    ("Strict-Transport-Security", "max-age=63072000; includeSubDomains"),
]


def rules(issues: list[site.Issue]) -> set[str]:
    return {i.rule for i in issues}


def test_headers_missing_and_present() -> None:
    bare = rules(site.check_headers(resp([("Content-Type", "text/html")])))
    assert bare == {
        "web.header.csp-missing",
        "web.header.framing-allowed",
        "web.header.nosniff-missing",
        "web.header.referrer-policy-missing",
        "web.header.permissions-policy-missing",
    }
    assert site.check_headers(resp(HARDENED)) == []


def test_framing_by_x_frame_options_or_frame_ancestors() -> None:
    xfo = resp([("Content-Type", "text/html"), ("X-Frame-Options", "DENY")])
    assert "web.header.framing-allowed" not in rules(site.check_headers(xfo))
    weak = resp([("Content-Type", "text/html"), ("X-Frame-Options", "ALLOW-FROM https://x.test")])
    assert "web.header.framing-allowed" in rules(site.check_headers(weak))


def test_csp_unsafe_inline() -> None:
    loose = resp([("Content-Security-Policy", "script-src 'self' 'unsafe-inline'")])
    assert "web.header.csp-unsafe-inline" in rules(site.check_headers(loose))
    assert "web.header.csp-unsafe-inline" not in rules(site.check_headers(resp(HARDENED)))


def test_hsts() -> None:
    assert rules(site.check_hsts(resp())) == {"web.tls.hsts-missing"}
    assert rules(site.check_hsts(resp([("Strict-Transport-Security", "max-age=300")]))) == {
        "web.tls.hsts-short"
    }
    assert site.check_hsts(resp(HARDENED)) == []


def test_https_redirect() -> None:
    assert rules(site.check_https_redirect(resp(status=200))) == {"web.http.no-https-redirect"}
    assert site.check_https_redirect(resp([("Location", "https://127.0.0.1/")], status=301)) == []
    # A redirect to another plain-HTTP page is not an upgrade.
    assert site.check_https_redirect(resp([("Location", "http://127.0.0.1/home")], status=302)) != []


def test_cookies() -> None:
    issues = site.check_cookies(
        resp([("Set-Cookie", "sessionid=abc; Path=/"), ("Set-Cookie", "theme=dark; Path=/")]), https=True
    )
    by_cookie = {i.extra["cookie"]: i for i in issues}
    assert set(by_cookie) == {"sessionid", "theme"}
    assert by_cookie["sessionid"].severity.value == "medium" and by_cookie["theme"].severity.value == "low"
    assert set(by_cookie["sessionid"].extra["missing"]) == {"Secure", "HttpOnly", "SameSite"}
    good = resp([("Set-Cookie", "sessionid=abc; Path=/; Secure; HttpOnly; SameSite=Lax")])
    assert site.check_cookies(good, https=True) == []
    none_without_secure = resp([("Set-Cookie", "sid=1; HttpOnly; SameSite=None")])
    assert (
        "Secure (required by SameSite=None)"
        in site.check_cookies(none_without_secure, https=False)[0].extra["missing"]
    )


def test_cors() -> None:
    evil = site.EVIL_ORIGIN
    with_creds = resp([("Access-Control-Allow-Origin", evil), ("Access-Control-Allow-Credentials", "true")])
    [issue] = site.check_cors(with_creds)
    assert (issue.rule, issue.severity.value) == ("web.cors.origin-reflected", "high")
    [plain] = site.check_cors(resp([("Access-Control-Allow-Origin", evil)]))
    assert plain.severity.value == "medium"
    null = resp([("Access-Control-Allow-Origin", "null"), ("Access-Control-Allow-Credentials", "true")])
    assert rules(site.check_cors(null)) == {"web.cors.null-origin"}
    assert site.check_cors(resp([("Access-Control-Allow-Origin", "*")])) == []
    assert site.check_cors(resp([("Access-Control-Allow-Origin", "https://app.example.test")])) == []


def test_mixed_content() -> None:
    page = (
        b'<html><script src="http://cdn.example.test/a.js"></script><link rel="stylesheet" '
        b'href="http://cdn.example.test/a.css"><link rel="canonical" href="http://example.test/">'
        b'<img src="http://img.example.test/x.png"></html>'
    )
    issues = {i.rule: i for i in site.check_mixed_content(resp([("Content-Type", "text/html")], page))}
    assert set(issues) == {"web.mixed-content.active", "web.mixed-content.passive"}
    assert issues["web.mixed-content.active"].extra["resources"] == [
        "http://cdn.example.test/a.css",
        "http://cdn.example.test/a.js",
    ]
    clean = b'<html><script src="https://cdn.example.test/a.js"></script><img src="/x.png"></html>'
    assert site.check_mixed_content(resp([("Content-Type", "text/html")], clean)) == []


def test_disclosed_products() -> None:
    products = site.disclosed_products(
        resp([("Server", "Apache/2.4.57 (Debian) OpenSSL/3.0.11"), ("X-Powered-By", "PHP/8.1.2")])
    )
    assert [(p.name, p.version) for p in products] == [
        ("Apache httpd", "2.4.57"),
        ("OpenSSL", "3.0.11"),
        ("PHP", "8.1.2"),
    ]
    assert site.disclosed_products(resp([("Server", "Apache")]))[0].version is None


def test_tls_issue_rules() -> None:
    good_cert = {"san": ["www.example.test"], "days_left": 200, "expired": False, "self_signed": False}
    sound = {"versions": ["TLSv1.2", "TLSv1.3"], "certificate": good_cert, "trusted": True}
    assert tls_issues(sound, "www.example.test", 30) == []
    old_only = {**sound, "versions": ["TLSv1.0", "TLSv1.1"]}
    assert {i.rule for i in tls_issues(old_only, "www.example.test", 30)} == {
        "tls.protocol.legacy",
        "tls.protocol.no-modern",
    }
    future = {**sound, "certificate": {**good_cert, "not_yet_valid": True, "not_before": "2099-01-01"}}
    assert [i.rule for i in tls_issues(future, "www.example.test", 30)] == ["tls.certificate.not-yet-valid"]
    soon = {**sound, "certificate": {**good_cert, "days_left": 20}}
    [expiring] = tls_issues(soon, "www.example.test", 30)
    assert (expiring.rule, expiring.severity.value) == ("tls.certificate.expiring", "low")
    assert tls_issues(soon, "www.example.test", 14) == []
