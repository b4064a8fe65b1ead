"""Checks over one website's responses: security headers, cookies, CORS, version disclosure, mixed
content, HTTPS redirect, HSTS. Each check is a function from responses to `Issue`s (no I/O here:
the engine makes the requests), so each is tested on a positive and a negative response.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urljoin, urlsplit

from tianmu.core.models import FindingKind, Severity
from tianmu.network.httpfp import HttpResponse, Product, products_of
from tianmu.websec.client import WebResponse

__all__ = [
    "EVIL_ORIGIN",
    "Issue",
    "check_cookies",
    "check_cors",
    "check_headers",
    "check_hsts",
    "check_https_redirect",
    "check_mixed_content",
    "disclosed_products",
]

EVIL_ORIGIN = "https://tianmu-cors-check.invalid"
MIN_HSTS_AGE = 15552000  # 180 days, the usual minimum (and what the HSTS preload list asks at least)


@dataclass(slots=True)
class Issue:
    rule: str
    title: str
    severity: Severity
    kind: FindingKind = FindingKind.MISCONFIGURATION
    summary: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    """What makes two issues of one rule different problems (a cookie name, a header) goes in `key`."""
    key: str | None = None


def _csp_directives(value: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in value.split(";"):
        bits = part.strip().split(None, 1)
        if bits:
            out[bits[0].lower()] = bits[1] if len(bits) > 1 else ""
    return out


def check_headers(response: WebResponse) -> list[Issue]:
    issues: list[Issue] = []
    csp = response.header("Content-Security-Policy")
    directives = _csp_directives(csp) if csp else {}
    html = "html" in (response.header("Content-Type") or "text/html").lower()
    if not csp:
        issues.append(
            Issue(
                "web.header.csp-missing",
                "No Content-Security-Policy",
                Severity.MEDIUM,
                summary="Without a CSP any injected script runs; start with `default-src 'self'`.",
            )
        )
    elif "'unsafe-inline'" in directives.get("script-src", directives.get("default-src", "")):
        issues.append(
            Issue(
                "web.header.csp-unsafe-inline",
                "Content-Security-Policy allows inline scripts",
                Severity.LOW,
                summary="`'unsafe-inline'` in script-src removes most of CSP's "
                "protection against cross-site scripting.",
                extra={"csp": csp},
            )
        )
    xfo = (response.header("X-Frame-Options") or "").strip().upper()
    if html and xfo not in ("DENY", "SAMEORIGIN") and "frame-ancestors" not in directives:
        issues.append(
            Issue(
                "web.header.framing-allowed",
                "Pages can be framed by any site (clickjacking)",
                Severity.MEDIUM,
                summary="Send `Content-Security-Policy: frame-ancestors 'self'` or `X-Frame-Options: DENY`.",
                extra={"x_frame_options": xfo or None},
            )
        )
    if (response.header("X-Content-Type-Options") or "").strip().lower() != "nosniff":
        issues.append(
            Issue(
                "web.header.nosniff-missing",
                "No X-Content-Type-Options: nosniff",
                Severity.LOW,
                summary="Browsers may sniff responses into executable types.",
            )
        )
    if not response.header("Referrer-Policy"):
        issues.append(
            Issue(
                "web.header.referrer-policy-missing",
                "No Referrer-Policy",
                Severity.LOW,
                summary="Full URLs (with tokens in query strings) may leak to other sites; "
                "send `Referrer-Policy: strict-origin-when-cross-origin`.",
            )
        )
    if not response.header("Permissions-Policy"):
        issues.append(
            Issue(
                "web.header.permissions-policy-missing",
                "No Permissions-Policy",
                Severity.INFO,
                summary="Powerful browser features (camera, geolocation...) are not restricted.",
            )
        )
    return issues


def check_hsts(response: WebResponse) -> list[Issue]:
    """HTTPS responses only."""
    value = response.header("Strict-Transport-Security")
    if not value:
        return [
            Issue(
                "web.tls.hsts-missing",
                "No HTTP Strict Transport Security",
                Severity.MEDIUM,
                summary="Without HSTS the first request can be downgraded to HTTP by an attacker on "
                "the path; send `Strict-Transport-Security: max-age=31536000; includeSubDomains`.",
            )
        ]
    match = re.search(r"max-age\s*=\s*\"?(\d+)", value, re.I)
    age = int(match.group(1)) if match else 0
    if age < MIN_HSTS_AGE:
        return [
            Issue(
                "web.tls.hsts-short",
                f"HSTS max-age too short ({age} s)",
                Severity.LOW,
                summary=f"Use at least {MIN_HSTS_AGE} seconds (180 days).",
                extra={"hsts": value},
            )
        ]
    return []


def check_https_redirect(http_response: WebResponse | None) -> list[Issue]:
    """The site's plain-HTTP answer: it should redirect to HTTPS."""
    if http_response is None:
        return []
    location = http_response.header("Location") or ""
    if http_response.status in (301, 302, 303, 307, 308) and location.lower().startswith("https://"):
        return []
    return [
        Issue(
            "web.http.no-https-redirect",
            "Plain HTTP is served without a redirect to HTTPS",
            Severity.MEDIUM,
            summary="Redirect every http:// request to https:// (301/308).",
            extra={"status": http_response.status},
        )
    ]


def check_cookies(response: WebResponse, https: bool) -> list[Issue]:
    issues: list[Issue] = []
    for raw in response.headers.get_list("Set-Cookie"):
        name = raw.split("=", 1)[0].strip()
        attributes = {
            a.strip().split("=", 1)[0].lower(): (a.split("=", 1)[1].strip() if "=" in a else "")
            for a in raw.split(";")[1:]
        }
        missing = []
        if https and "secure" not in attributes:
            missing.append("Secure")
        if "httponly" not in attributes:
            missing.append("HttpOnly")
        samesite = attributes.get("samesite", "").lower()
        if not samesite:
            missing.append("SameSite")
        elif samesite == "none" and "secure" not in attributes:
            missing.append("Secure (required by SameSite=None)")
        if missing:
            sessionish = re.search(r"sess|sid|auth|token|jwt|login", name, re.I) is not None
            severity = (
                Severity.MEDIUM
                if sessionish and ("Secure" in missing or "HttpOnly" in missing)
                else Severity.LOW
            )
            issues.append(
                Issue(
                    "web.cookie.flags",
                    f"Cookie {name!r} lacks {', '.join(missing)}",
                    severity,
                    summary="Session cookies need Secure (HTTPS only), HttpOnly (no script "
                    "access) and SameSite (no cross-site sending).",
                    extra={"cookie": name, "missing": missing},
                    key=name,
                )
            )
    return issues


def check_cors(response: WebResponse | None, origin: str = EVIL_ORIGIN) -> list[Issue]:
    """The answer to a GET sent with `Origin: <origin>` (an origin the site cannot know)."""
    if response is None:
        return []
    allow = (response.header("Access-Control-Allow-Origin") or "").strip()
    credentials = (response.header("Access-Control-Allow-Credentials") or "").strip().lower() == "true"
    extra = {"allow_origin": allow, "allow_credentials": credentials}
    if allow == origin:
        severity = Severity.HIGH if credentials else Severity.MEDIUM
        return [
            Issue(
                "web.cors.origin-reflected",
                "CORS reflects any Origin" + (" with credentials" if credentials else ""),
                severity,
                summary="Any web site can read this site's responses from a visitor's browser"
                + (" with the visitor's cookies." if credentials else "."),
                extra=extra,
            )
        ]
    if allow == "null" and credentials:
        return [
            Issue(
                "web.cors.null-origin",
                "CORS trusts the `null` origin with credentials",
                Severity.HIGH,
                summary="Sandboxed iframes and local files send `Origin: null`; any site can use one.",
                extra=extra,
            )
        ]
    if allow == "*" and credentials:
        return [
            Issue(
                "web.cors.wildcard-credentials",
                "CORS allows any origin and credentials",
                Severity.MEDIUM,
                summary="Browsers refuse this combination, but it shows a permissive policy.",
                extra=extra,
            )
        ]
    return []


def disclosed_products(response: WebResponse) -> list[Product]:
    parsed = HttpResponse(response.status, "", "1.1", list(response.headers.multi_items()), response.body)
    return products_of(parsed)


class _ResourceParser(HTMLParser):
    ACTIVE = frozenset(
        {
            ("script", "src"),
            ("link", "href"),
            ("iframe", "src"),
            ("object", "data"),
            ("embed", "src"),
            ("form", "action"),
        }
    )
    PASSIVE = frozenset({("img", "src"), ("audio", "src"), ("video", "src"), ("source", "src")})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.active: list[str] = []
        self.passive: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if not value or not value.lower().startswith("http://"):
                continue
            if tag == "link" and "stylesheet" not in (dict(attrs).get("rel") or "").lower():
                continue
            if (tag, name) in self.ACTIVE:
                self.active.append(value)
            elif (tag, name) in self.PASSIVE:
                self.passive.append(value)


def check_mixed_content(response: WebResponse) -> list[Issue]:
    """An HTTPS page that loads resources over plain HTTP."""
    if "html" not in (response.header("Content-Type") or "").lower():
        return []
    parser = _ResourceParser()
    # HTMLParser is lenient; should it still fail, the page is judged on what was read before.
    with contextlib.suppress(Exception):
        parser.feed(response.text[:1_000_000])
    issues = []
    if parser.active:
        issues.append(
            Issue(
                "web.mixed-content.active",
                "HTTPS page loads scripts/styles/frames over HTTP",
                Severity.MEDIUM,
                summary="Anyone on the path can replace them; load them over HTTPS.",
                extra={"resources": sorted(set(parser.active))[:20]},
            )
        )
    if parser.passive:
        issues.append(
            Issue(
                "web.mixed-content.passive",
                "HTTPS page loads images/media over HTTP",
                Severity.LOW,
                summary="Mixed passive content can be altered or tracked in transit.",
                extra={"resources": sorted(set(parser.passive))[:20]},
            )
        )
    return issues


def same_site(base: str, url: str) -> bool:
    return urlsplit(urljoin(base, url)).netloc == urlsplit(base).netloc
