"""`check_websites`: the website checks of `tianmu web`, from URLs to findings (and the store).

For each URL: one GET of the page (redirects on the same site followed, at most 5), then TLS (versions
offered, weak cipher suites, certificate validity, chain, host-name match, expiry soon), HSTS, the
plain-HTTP redirect, security headers, cookies, CORS (a GET with a foreign `Origin`), mixed content,
disclosed product versions, and every check template. Requests are GET/HEAD only, rate-limited, with
Tianmu's User-Agent (see `client.py`), through `WebOptions.transport` when one is given (an
`httpx.MockTransport` in tests: no server needed for the HTTP checks).

The engine does not look up vulnerabilities (capabilities never call each other): each site's
`sightings` name the product versions it disclosed, and the road (`tianmu.road.network.run_web`)
matches them with `tianmu.vulns.services`, then stores one assessment per site and updates the
situation. With a store, the engine reads the imported check templates and writes the scan audit trail.

Findings: asset `website` named by the origin (`https://host:port`); evidence `url`, entities `url`,
`host`/`domain`, `ip`; `fingerprint_extra` is what tells two issues of one rule apart (cookie name,
template path, product).
"""

from __future__ import annotations

import ipaddress
import secrets
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx

from tianmu.core.errors import InputError
from tianmu.core.models import Asset, AssetKind, Finding, FindingKind, Severity, utcnow
from tianmu.core.serialize import finding_to_dict
from tianmu.network.audit import record_scan_end, record_scan_start
from tianmu.network.connection import run_sync
from tianmu.network.cpe import cpe_for
from tianmu.network.httpfp import Product
from tianmu.network.sightings import ProductSighting
from tianmu.network.targets import expand_targets
from tianmu.network.tls import inspect_tls
from tianmu.store.database import Store
from tianmu.websec import site
from tianmu.websec.client import PoliteClient, WebResponse
from tianmu.websec.kb import stored_checks
from tianmu.websec.site import Issue
from tianmu.websec.templates import BUILTIN_CHECKS, CheckTemplate, load_templates
from tianmu.websec.tlscheck import tls_issues, weak_ciphers

__all__ = ["SiteResult", "WebOptions", "WebResult", "check_websites"]

Progress = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class WebOptions:
    rate: float = 5.0
    """Requests per second to one site."""
    timeout: float = 10.0
    expiry_days: int = 30
    templates: tuple[Path, ...] = ()
    """Extra template folders/files, in addition to the built-in checks."""
    builtin_templates: bool = True
    stored_templates: bool = True
    """Also run the templates imported with `tianmu kb import` (when a store is given)."""
    authorized: bool = False
    tenant: str = "default"
    save: bool = True
    """Whether the road stores the findings (the engine itself only writes the scan audit trail)."""
    ca_file: Path | None = None
    """Trust anchors for the chain check instead of the system store (an internal PKI)."""
    transport: httpx.BaseTransport | None = field(default=None, compare=False)
    """Where HTTP requests go (default: the network). TLS checks still open their own connections."""


def _site_order(finding: Finding) -> tuple[int, str]:
    """A site's findings are listed most severe first, then by rule."""
    return (-finding.severity.rank, finding.rule_id)


@dataclass(slots=True)
class SiteResult:
    url: str
    reachable: bool
    status: int | None = None
    tls: dict[str, Any] | None = None
    products: list[dict[str, Any]] = field(default_factory=list)
    requests: int = 0
    asset: Asset | None = None
    """The website (its origin) this site's findings belong to."""
    findings: list[Finding] = field(default_factory=list)
    sightings: list[ProductSighting] = field(default_factory=list)
    """The product versions the site disclosed, for vulnerability matching."""
    started: datetime | None = None
    finished: datetime | None = None

    def add_findings(self, findings: Sequence[Finding]) -> None:
        """Add findings (the road's vulnerabilities) and keep the site's order: most severe first."""
        self.findings.extend(findings)
        self.findings.sort(key=_site_order)


@dataclass(slots=True)
class WebResult:
    sites: list[SiteResult]
    findings: list[Finding]
    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    upgraded: list[str] = field(default_factory=list)
    """HTTPS URLs that plain-HTTP URLs redirected to, checked in their place."""

    def regroup(self) -> None:
        """`findings` again from the sites' findings, after some were added to a site."""
        self.findings = [f for s in self.sites for f in s.findings]

    def as_json(self) -> dict[str, Any]:
        return {
            "sites": [
                {
                    "url": s.url,
                    "reachable": s.reachable,
                    "status": s.status,
                    "tls": s.tls,
                    "products": s.products,
                    "requests": s.requests,
                }
                for s in self.sites
            ],
            "findings": [finding_to_dict(f) for f in self.findings],
            "errors": self.errors,
            "notes": self.notes,
        }


def _https_upgrade(first: WebResponse | None, url: str) -> str | None:
    """The https:// URL a plain-HTTP answer redirects to on the same host name, if it does."""
    if first is None or first.status not in (301, 302, 303, 307, 308):
        return None
    target = urljoin(url, first.header("Location") or "")
    parts = urlsplit(target)
    if parts.scheme != "https" or parts.hostname != urlsplit(url).hostname:
        return None
    return f"https://{parts.netloc}/"


def _same_site_redirects(
    client: PoliteClient, url: str
) -> tuple[WebResponse | None, WebResponse | None, list[str]]:
    """(final response, first response, URLs visited): redirects followed on the same site only."""
    chain = [url]
    response = first = client.get(url)
    for _ in range(5):
        if response is None or response.status not in (301, 302, 303, 307, 308):
            break
        location = response.header("Location")
        if not location:
            break
        target = urljoin(chain[-1], location)
        if urlsplit(target).netloc != urlsplit(url).netloc or urlsplit(target).scheme != urlsplit(url).scheme:
            break
        chain.append(target)
        response = client.get(target)
    return response, first, chain


def _run_templates(
    client: PoliteClient, base: str, templates: Sequence[CheckTemplate], notes: list[str]
) -> list[tuple[CheckTemplate, str, WebResponse]]:
    # A path that cannot exist: a template that also matches it would match anything (a soft-404 site).
    canary = client.get(urljoin(base, f"/tianmu-{secrets.token_hex(8)}"))
    hits: list[tuple[CheckTemplate, str, WebResponse]] = []
    for template in templates:
        if canary is not None and template.matches(canary):
            notes.append(f"{base}: template {template.id} skipped (it matches a page that does not exist)")
            continue
        for path in template.paths:
            response = client.request(template.method, urljoin(base, path), template.headers or None)
            if response is not None and template.matches(response):
                hits.append((template, path, response))
    return hits


def _addresses(host: str, port: int) -> list[str]:
    try:
        return [str(ipaddress.ip_address(host.strip("[]")))]
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise InputError(f"{host}: cannot resolve the host name ({exc.strerror})") from exc
    return sorted({str(i[4][0]) for i in infos})


def _check_site(
    url: str,
    options: WebOptions,
    templates: Sequence[CheckTemplate],
    result: WebResult,
) -> SiteResult:
    parts = urlsplit(url)
    host = parts.hostname or ""
    https = parts.scheme == "https"
    port = parts.port or (443 if https else 80)
    origin = f"{parts.scheme}://{parts.netloc}"
    addresses = _addresses(host, port)
    asset = Asset(name=origin, kind=AssetKind.WEBSITE, tenant=options.tenant)
    entities: dict[str, list[str]] = {"url": [url], "ip": addresses}
    try:
        ipaddress.ip_address(host)
    except ValueError:
        entities["host"] = [host.lower()]
        entities["domain"] = [host.lower()]
    issues: list[tuple[Issue, str]] = []
    summary = SiteResult(url, reachable=False, asset=asset, started=utcnow())
    with PoliteClient(rate=options.rate, timeout=options.timeout, transport=options.transport) as client:
        response, first, chain = _same_site_redirects(client, url)
        if response is None:
            result.errors.append(f"{url}: not reachable")
            summary.requests = client.requests
            return summary
        summary.reachable, summary.status = True, response.status
        final = chain[-1]
        upgrade = _https_upgrade(first, url) if not https else None
        if upgrade is not None:
            # The site upgrades to HTTPS as it should: judge the HTTPS site, not the redirect page.
            result.upgraded.append(upgrade)
            summary.requests = client.requests
            return summary
        if https:
            tls = run_sync(
                inspect_tls(
                    addresses[0],
                    port,
                    server_name=host,
                    timeout=options.timeout,
                    cafile=str(options.ca_file) if options.ca_file else None,
                )
            )
            if tls is not None:
                weak, untested = weak_ciphers(addresses[0], port, host, options.timeout)
                tls["weak_ciphers"] = weak
                if untested:
                    result.notes.append(
                        f"{url}: cipher families this OpenSSL cannot test: {', '.join(untested)}"
                    )
                summary.tls = tls
                issues += [(i, final) for i in tls_issues(tls, host, options.expiry_days)]
                if weak:
                    issues.append(
                        (
                            Issue(
                                "tls.cipher.weak",
                                f"Weak cipher suites accepted: {', '.join(weak)}",
                                Severity.MEDIUM,
                                summary="Disable them; offer AEAD suites with ECDHE only.",
                                extra={"weak": weak},
                            ),
                            final,
                        )
                    )
            issues += [(i, final) for i in site.check_hsts(response)]
            issues += [(i, final) for i in site.check_mixed_content(response)]
        else:
            issues += [(i, url) for i in site.check_https_redirect(first)]
        issues += [(i, final) for i in site.check_headers(response)]
        issues += [(i, final) for i in site.check_cookies(response, https)]
        issues += [(i, final) for i in site.check_cors(client.get(final, {"Origin": site.EVIL_ORIGIN}))]
        products = site.disclosed_products(response)
        summary.products = [{"name": p.name, "version": p.version, "source": p.source} for p in products]
        for product in products:
            if product.version:
                issues.append(
                    (
                        Issue(
                            "web.version.disclosure",
                            f"{product.name} {product.version} disclosed ({product.source})",
                            Severity.LOW,
                            FindingKind.EXPOSURE,
                            "Version banners tell attackers which exploits to try; remove them.",
                            {"product": product.name, "version": product.version},
                            key=product.name,
                        ),
                        final,
                    )
                )
        for template, path, hit in _run_templates(client, origin + "/", templates, result.notes):
            issue = Issue(
                template.rule_id,
                template.name,
                template.severity,
                template.kind,
                template.description,
                {"status": hit.status, "template": template.source, "references": list(template.references)},
                key=path,
            )
            issues.append((issue, hit.url))
        summary.requests = client.requests
    summary.findings = [_to_finding(asset, i, where, entities) for i, where in issues]
    summary.sightings = _sightings(asset, products, final, entities)
    return summary


def _to_finding(asset: Asset, issue: Issue, url: str, entities: dict[str, list[str]]) -> Finding:
    evidence: dict[str, Any] = {"url": url, "entities": {**entities, "url": sorted({url, *entities["url"]})}}
    evidence.update(issue.extra)
    if issue.key is not None:
        evidence["fingerprint_extra"] = issue.key
    return Finding(
        kind=issue.kind,
        rule_id=issue.rule,
        title=issue.title,
        severity=issue.severity,
        asset=asset,
        summary=issue.summary,
        evidence=evidence,
        references=tuple(issue.extra.get("references") or ()),
    )


def _sightings(
    asset: Asset, products: Sequence[Product], url: str, entities: dict[str, list[str]]
) -> list[ProductSighting]:
    return [
        ProductSighting(
            asset,
            product.name,
            product.version,
            cpe_for(product.name, product.version),
            {"url": url, "entities": entities, "disclosed_by": product.source},
        )
        for product in products
        if product.version
    ]


def _templates(store: Store | None, opts: WebOptions) -> tuple[list[CheckTemplate], list[str]]:
    """Built-in checks, then those imported into the store, then `--templates`; a later one with the
    same id replaces an earlier one (an organisation's version of a check wins over ours)."""
    chosen: dict[str, CheckTemplate] = {}
    errors: list[str] = []
    if opts.builtin_templates:
        builtin, problems = load_templates(BUILTIN_CHECKS)
        chosen.update((t.id, t) for t in builtin)
        errors += problems
    if store is not None and opts.stored_templates:
        stored, problems = stored_checks(store)
        chosen.update((t.id, t) for t in stored)
        errors += problems
    if opts.templates:
        extra, problems = load_templates(*opts.templates)
        if problems and not extra:
            raise InputError(f"no check template could be loaded: {problems[0]}")
        chosen.update((t.id, t) for t in extra)
        errors += problems
    return list(chosen.values()), errors


def _validate(urls: Sequence[str], authorized: bool) -> list[str]:
    out = []
    for raw in urls:
        url = raw if "://" in raw else f"https://{raw}"
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise InputError(f"{raw!r} is not an http(s) URL")
        expand_targets([parts.hostname], authorized=authorized)  # the same safety rule as discovery
        out.append(url if parts.path else url + "/")
    return out


def check_websites(
    store: Store | None,
    urls: Sequence[str],
    options: WebOptions | None = None,
    *,
    progress: Progress | None = None,
) -> WebResult:
    """Check each URL (and the HTTPS site a plain-HTTP one upgrades to); unreachable ones are errors.

    Raises `TargetError` before any request when a site is outside the private ranges without
    `authorized`, and InputError when a URL is no http(s) URL or a host name does not resolve.
    """
    opts = options or WebOptions()
    checked = _validate(urls, opts.authorized)
    templates, template_errors = _templates(store, opts)
    result = WebResult([], [], errors=list(template_errors))
    audit_id = None
    if store is not None:
        audit_id = record_scan_start(
            store,
            tenant=opts.tenant,
            action="web",
            targets=checked,
            ports=None,
            authorized=opts.authorized,
            engine="websec",
        )
    queue = list(checked)
    while queue:
        url = queue.pop(0)
        summary = _check_site(url, opts, templates, result)
        if result.upgraded and result.upgraded[-1] not in checked:
            checked.append(result.upgraded[-1])
            queue.append(result.upgraded[-1])
            result.notes.append(f"{url} redirects to {result.upgraded[-1]}: the HTTPS site was checked")
        summary.findings.sort(key=_site_order)
        summary.finished = utcnow()
        result.sites.append(summary)
        result.findings.extend(summary.findings)
        if progress is not None:
            progress(url)
    if store is not None and audit_id is not None:
        record_scan_end(
            store,
            audit_id,
            {
                "sites": len(checked),
                "findings": len(result.findings),
                "requests": sum(s.requests for s in result.sites),
            },
        )
    return result
