"""Known vulnerabilities of a product seen on the network (a service banner, an HTTP `Server` header).

Two ways, both through the vulnerability knowledge base:

- by CPE: the product's CPE 2.3 name against the `configurations` of imported NVD CVE records
  (`tianmu.vulns.nvd.CpeMatcher`);
- by OSV, where the product is also a package of an ecosystem OSV covers (Werkzeug and gunicorn are
  PyPI packages, Express and Next.js npm packages, Jetty and Tomcat Maven artifacts...): the same
  matcher `tianmu assess` uses, on a component made from the product and its version.

A CVE found both ways is reported once (the OSV record's aliases name the CVE).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tianmu.assets.network.cpe import parse_cpe
from tianmu.core.models import Asset, Component, Finding, FindingKind, Severity
from tianmu.store.database import Store

__all__ = ["PACKAGE_ECOSYSTEMS", "product_vulnerabilities"]

# product as fingerprinted (lower-case) -> (OSV ecosystem, package name, purl type)
PACKAGE_ECOSYSTEMS: dict[str, tuple[str, str, str]] = {
    "werkzeug": ("PyPI", "werkzeug", "pypi"),
    "gunicorn": ("PyPI", "gunicorn", "pypi"),
    "tornado": ("PyPI", "tornado", "pypi"),
    "aiosmtpd": ("PyPI", "aiosmtpd", "pypi"),
    "pyftpdlib": ("PyPI", "pyftpdlib", "pypi"),
    "uvicorn": ("PyPI", "uvicorn", "pypi"),
    "express": ("npm", "express", "npm"),
    "next.js": ("npm", "next", "npm"),
    "jetty": ("Maven", "org.eclipse.jetty:jetty-server", "maven"),
    "apache tomcat": ("Maven", "org.apache.tomcat:tomcat", "maven"),
    "grafana": ("Go", "github.com/grafana/grafana", "golang"),
    "minio": ("Go", "github.com/minio/minio", "golang"),
    "nats-server": ("Go", "github.com/nats-io/nats-server/v2", "golang"),
}


def _purl(kind: str, name: str, version: str) -> str:
    if kind == "maven" and ":" in name:
        group, artifact = name.split(":", 1)
        return f"pkg:maven/{group}/{artifact}@{version}"
    return f"pkg:{kind}/{name}@{version}"


def product_vulnerabilities(
    store: Store,
    asset: Asset,
    product: str,
    version: str,
    cpe: str | None,
    evidence: Mapping[str, Any],
    title_suffix: str,
) -> list[Finding]:
    """Vulnerability findings for one product version; `evidence` is copied into each finding."""
    from tianmu.vulns.engine import VulnMatcher
    from tianmu.vulns.nvd import CpeMatcher

    out: list[Finding] = []
    seen: set[str] = set()
    package = PACKAGE_ECOSYSTEMS.get(product.lower())
    if package is not None:
        ecosystem, name, kind = package
        component = Component(
            name=name, version=version, ecosystem=ecosystem, purl=_purl(kind, name, version)
        )
        for finding in VulnMatcher(store).match([component], asset):
            finding.evidence = {
                **evidence,
                **{k: v for k, v in finding.evidence.items() if k not in evidence},
            }
            finding.title = f"{finding.rule_id}: {product} {version}{title_suffix}"
            finding.data = {**finding.data, "matched_by": "osv"}
            out.append(finding)
            seen.update([finding.rule_id, *finding.aliases])
    name_cpe = parse_cpe(cpe) if cpe else None
    if name_cpe is None:
        return out
    for hit in CpeMatcher(store).match(cpe or ""):
        if hit.cve_id in seen:
            continue
        severity = (
            Severity.parse(hit.severity_word) if hit.severity_word else Severity.from_cvss_score(hit.score)
        )
        if hit.kev and not severity.at_least(Severity.HIGH):
            severity = Severity.HIGH  # known exploited: at least high, as for package advisories
        out.append(
            Finding(
                kind=FindingKind.VULNERABILITY,
                rule_id=hit.cve_id,
                title=f"{hit.cve_id}: {product} {version}{title_suffix}",
                severity=severity,
                asset=asset,
                score=hit.score,
                summary=hit.summary,
                component=Component(
                    name=product,
                    version=version,
                    ecosystem="CPE",
                    purl=f"pkg:generic/{name_cpe.vendor}/{name_cpe.product}@{version}",
                ),
                evidence={**evidence, "cpe": cpe},
                references=tuple(hit.references[:10]),
                data={"kev": hit.kev, "conditions": hit.conditions, "matched_by": "cpe"},
            )
        )
    return out
