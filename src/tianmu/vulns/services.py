"""Known vulnerabilities of a product seen on the network (a service banner, an HTTP `Server` header).

Discovery and website checks report what they saw as `ProductSighting`s; the road hands them here.
Two ways, both through the vulnerability knowledge base:

- by CPE: the product's CPE 2.3 name against the `configurations` of imported NVD CVE records
  (`tianmu.vulns.nvd.CpeMatcher`);
- by OSV, where the product is also a package of an ecosystem OSV covers (Werkzeug and gunicorn are
  PyPI packages, Express and Next.js npm packages, Jetty and Tomcat Maven artifacts...): the same
  matcher `tianmu assess` uses, on a component made from the product and its version.

A CVE found both ways is reported once (the OSV record's aliases name the CVE).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType

from sqlalchemy import select

from tianmu.core.models import Component, Finding, FindingKind, Severity
from tianmu.network.cpe import parse_cpe
from tianmu.network.sightings import ProductSighting
from tianmu.store.database import Store
from tianmu.store.schema import kb_sources
from tianmu.vulns.engine import VulnMatcher
from tianmu.vulns.nvd import CpeMatcher

__all__ = [
    "NO_NVD_NOTE",
    "PACKAGE_ECOSYSTEMS",
    "ServiceMatcher",
    "nvd_imported",
]

NO_NVD_NOTE = (
    "no NVD CVE data imported: service versions were matched against OSV only "
    "(`tianmu kb import nvdcve-2.0-<year>.json.gz`)"
)

# product as fingerprinted (lower-case) -> (OSV ecosystem, package name, purl type)
PACKAGE_ECOSYSTEMS: Mapping[str, tuple[str, str, str]] = MappingProxyType(
    {
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
)


def _purl(kind: str, name: str, version: str) -> str:
    if kind == "maven" and ":" in name:
        group, artifact = name.split(":", 1)
        return f"pkg:maven/{group}/{artifact}@{version}"
    return f"pkg:{kind}/{name}@{version}"


def nvd_imported(store: Store) -> bool:
    """Whether any NVD CVE feed was imported (without one, CPE matching cannot find anything)."""
    with store.connect() as conn:
        query = select(kb_sources.c.name).where(kb_sources.c.kind == "nvd").limit(1)
        return conn.execute(query).first() is not None


class ServiceMatcher:
    """Matches the products of one job's sightings, with one OSV and one CPE matcher for the job."""

    def __init__(self, store: Store) -> None:
        self.osv = VulnMatcher(store)
        self.cpe = CpeMatcher(store)

    def match_all(self, sightings: Iterable[ProductSighting]) -> list[Finding]:
        return [finding for sighting in sightings for finding in self.match(sighting)]

    def match(self, sighting: ProductSighting) -> list[Finding]:
        """Vulnerability findings for one product version; its evidence is copied into each finding."""
        product, version, evidence = sighting.product, sighting.version, sighting.evidence
        out: list[Finding] = []
        seen: set[str] = set()
        package = PACKAGE_ECOSYSTEMS.get(product.lower())
        if package is not None:
            ecosystem, name, kind = package
            component = Component(
                name=name, version=version, ecosystem=ecosystem, purl=_purl(kind, name, version)
            )
            for finding in self.osv.match([component], sighting.asset):
                finding.evidence = {
                    **evidence,
                    **{k: v for k, v in finding.evidence.items() if k not in evidence},
                }
                finding.title = f"{finding.rule_id}: {product} {version}{sighting.where}"
                finding.data = {**finding.data, "matched_by": "osv"}
                out.append(finding)
                seen.update([finding.rule_id, *finding.aliases])
        name_cpe = parse_cpe(sighting.cpe) if sighting.cpe else None
        if name_cpe is None or sighting.cpe is None:
            return out
        for hit in self.cpe.match(sighting.cpe):
            if hit.cve_id in seen:
                continue
            severity = (
                Severity.parse(hit.severity_word)
                if hit.severity_word
                else Severity.from_cvss_score(hit.score)
            )
            if hit.kev and not severity.at_least(Severity.HIGH):
                severity = Severity.HIGH  # known exploited: at least high, as for package advisories
            out.append(
                Finding(
                    kind=FindingKind.VULNERABILITY,
                    rule_id=hit.cve_id,
                    title=f"{hit.cve_id}: {product} {version}{sighting.where}",
                    severity=severity,
                    asset=sighting.asset,
                    score=hit.score,
                    summary=hit.summary,
                    component=Component(
                        name=product,
                        version=version,
                        ecosystem="CPE",
                        purl=f"pkg:generic/{name_cpe.vendor}/{name_cpe.product}@{version}",
                    ),
                    evidence={**evidence, "cpe": sighting.cpe},
                    references=tuple(hit.references[:10]),
                    data={"kev": hit.kev, "conditions": hit.conditions, "matched_by": "cpe"},
                )
            )
        return out
