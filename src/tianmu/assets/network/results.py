"""What one discovery run found: hosts with their services, findings and product sightings.

`HostResult.as_json` and `DiscoveryResult.as_json` are what `tianmu discover --json` prints.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from tianmu.assets.network.inventory import HostDiff
from tianmu.core.models import Asset, AssetKind, Finding, Service
from tianmu.core.serialize import finding_to_dict
from tianmu.network.sightings import ProductSighting

__all__ = ["DiscoveryResult", "HostResult", "host_asset", "sort_findings"]


@dataclass(slots=True)
class HostResult:
    address: str
    hostname: str | None
    services: list[Service] = field(default_factory=list)
    infos: dict[int, dict[str, Any]] = field(default_factory=dict)
    filtered: list[int] = field(default_factory=list)
    closed: int = 0
    diff: HostDiff | None = None
    findings: list[Finding] = field(default_factory=list)
    """This host's findings (the road adds the vulnerabilities of its sightings)."""
    sightings: list[ProductSighting] = field(default_factory=list)
    """The product versions seen on this host's services, for vulnerability matching."""

    def as_json(self) -> dict[str, Any]:
        return {
            "address": self.address,
            "hostname": self.hostname,
            "services": [
                {
                    "port": s.port,
                    "transport": s.transport,
                    "service": s.service,
                    "product": s.product,
                    "version": s.version,
                    "cpe": s.cpe,
                    "tls": s.tls,
                    "banner": s.banner,
                }
                for s in self.services
            ],
        }


@dataclass(slots=True)
class DiscoveryResult:
    hosts: list[HostResult]
    findings: list[Finding]
    ports_scanned: int
    elapsed: float
    self_connects: int = 0
    audit_id: int | None = None
    engine: str = "builtin"
    notes: list[str] = field(default_factory=list)
    scanned_at: datetime | None = None
    """When the services were recorded (the time of the hosts' assessments)."""
    tenant: str = "default"

    def as_json(self) -> dict[str, Any]:
        return {
            "hosts": [h.as_json() for h in self.hosts if h.services],
            "findings": [finding_to_dict(f) for f in self.findings],
        }


def host_asset(host: HostResult, tenant: str) -> Asset:
    """The asset a host's findings belong to: named by its host name when it has one."""
    return Asset(name=host.hostname or host.address, kind=AssetKind.HOST, tenant=tenant)


def sort_findings(findings: list[Finding]) -> None:
    """The order `discover` reports findings in: most severe first, then by rule and port."""
    findings.sort(key=lambda f: (-f.severity.rank, f.rule_id, f.evidence.get("fingerprint_extra", "")))
