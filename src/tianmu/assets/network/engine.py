"""`discover`: targets → sweep → fingerprints → findings, the discovery engine the road runs.

The engine records what it sees: the services of each host (product, version, CPE) in the service
inventory, with the re-scan diff, and the scan audit trail around the traffic it sends. It does not look
up vulnerabilities (capabilities never call each other): each host's `sightings` name the product
versions it saw, and the road (`tianmu.road.network.run_discover`) matches them with
`tianmu.vulns.services`, then stores one assessment per host and updates the situation.

Findings (conventions of `tianmu.core.models.Finding`; entities `ip` and `host`, `fingerprint_extra`
`address:port/tcp` so that each port of a host is its own problem):

| rule id                         | kind             | when                                                  |
| ------------------------------- | ---------------- | ----------------------------------------------------- |
| `network.port.new`              | exposure         | a re-scan finds a port open that was not open before  |
| `network.redis.no-auth`         | exposure         | Redis answers PING without authentication             |
| `network.mongodb.no-auth`       | exposure         | MongoDB lists databases without authentication        |
| `network.memcached.exposed`     | exposure         | memcached answers without authentication              |
| `network.mqtt.anonymous`        | exposure         | an MQTT broker accepts an anonymous CONNECT           |
| `network.postgresql.trust`      | misconfiguration | PostgreSQL lets an unknown user in without a password |
| `tls.certificate.expired`       | misconfiguration | the certificate's notAfter has passed                 |
| `tls.certificate.not-yet-valid` | misconfiguration | the certificate's notBefore is in the future          |
| `tls.certificate.self-signed`   | misconfiguration | subject equals issuer                                 |
| `tls.protocol.legacy`           | misconfiguration | TLS 1.0 or 1.1 is offered                             |
| CVE id (added by the road)      | vulnerability    | the service's CPE or package is in a CVE/OSV record   |

The first scan of a host is its baseline: ports are recorded, not reported as new.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from tianmu.assets.network.inventory import HostDiff, save_host_services
from tianmu.assets.network.nmap import NmapHost, read_nmap_xml, run_nmap
from tianmu.assets.network.probes import Identification, ProbeOptions, identify
from tianmu.assets.network.sweep import SweepOptions, sweep
from tianmu.core.errors import InputError
from tianmu.core.models import Asset, AssetKind, Finding, FindingKind, Service, Severity, utcnow
from tianmu.core.serialize import finding_to_dict
from tianmu.network.audit import record_scan_end, record_scan_start
from tianmu.network.connection import run_sync
from tianmu.network.cpe import cpe_for, current_vendor, parse_cpe
from tianmu.network.sightings import ProductSighting
from tianmu.network.targets import Target, expand_targets, parse_ports
from tianmu.store.database import Store

__all__ = [
    "DiscoverOptions",
    "DiscoveryResult",
    "HostResult",
    "discover",
    "host_asset",
    "service_findings",
    "sort_findings",
]

Progress = Callable[[str, int], None]
"""`progress(stage, n)`: `("sweep", attempts done)`, `("fingerprint", services done)`."""


@dataclass(frozen=True, slots=True)
class DiscoverOptions:
    ports: str = "top"
    rate: float | None = None
    timeout: float = 1.5
    retries: int = 1
    per_host: int = 1024
    max_inflight: int = 4096
    fingerprint: bool = True
    engine: str = "builtin"
    authorized: bool = False
    tenant: str = "default"
    save: bool = True
    probe: ProbeOptions = field(default_factory=ProbeOptions)
    concurrency: int = 64
    """Services fingerprinted at once."""
    nmap_xml: Path | None = None
    """Import this nmap XML file (a scan made elsewhere) instead of scanning."""


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


def _service(address: str, port: int, ident: Identification) -> Service:
    cpe = cpe_for(
        ident.cpe_product or ident.product, ident.cpe_version if ident.cpe_product else ident.version
    )
    return Service(
        address, port, "tcp", ident.service, ident.product, ident.version, cpe, ident.banner, ident.tls
    )


async def _fingerprint_all(
    work: list[tuple[HostResult, int]], options: DiscoverOptions, progress: Progress | None
) -> None:
    gate = asyncio.Semaphore(max(1, options.concurrency))

    async def one(host: HostResult, port: int) -> tuple[HostResult, int, Identification]:
        async with gate:
            try:
                ident = await identify(host.address, port, host.hostname, options.probe)
            except (OSError, ValueError, EOFError) as exc:
                ident = Identification("unknown", info={"error": f"{exc.__class__.__name__}: {exc}"})
        if progress is not None:
            progress("fingerprint", 1)
        return host, port, ident

    for host, port, ident in await asyncio.gather(*(one(h, p) for h, p in work)):
        host.services.append(_service(host.address, port, ident))
        if ident.info:
            host.infos[port] = ident.info


def host_asset(host: HostResult, tenant: str) -> Asset:
    """The asset a host's findings belong to: named by its host name when it has one."""
    return Asset(name=host.hostname or host.address, kind=AssetKind.HOST, tenant=tenant)


def sort_findings(findings: list[Finding]) -> None:
    """The order `discover` reports findings in: most severe first, then by rule and port."""
    findings.sort(key=lambda f: (-f.severity.rank, f.rule_id, f.evidence.get("fingerprint_extra", "")))


def _evidence(host: HostResult, port: int, **extra: Any) -> dict[str, Any]:
    entities: dict[str, list[str]] = {"ip": [host.address]}
    if host.hostname:
        entities["host"] = [host.hostname]
    return {"entities": entities, "fingerprint_extra": f"{host.address}:{port}/tcp", "port": port, **extra}


def _finding(
    host: HostResult,
    svc: Service,
    tenant: str,
    kind: FindingKind,
    rule: str,
    title: str,
    severity: Severity,
    summary: str,
    **extra: Any,
) -> Finding:
    return Finding(
        kind=kind,
        rule_id=rule,
        title=title,
        severity=severity,
        asset=host_asset(host, tenant),
        summary=summary,
        evidence=_evidence(host, svc.port, service=svc.service, banner=svc.banner, **extra),
    )


def service_findings(host: HostResult, tenant: str) -> list[Finding]:
    """Exposure and TLS findings that one scan shows by itself (no history needed)."""
    out: list[Finding] = []
    where = f"{host.address}:{{port}}"
    for svc in host.services:
        info = host.infos.get(svc.port, {})
        at = where.format(port=svc.port)
        exp, mis = FindingKind.EXPOSURE, FindingKind.MISCONFIGURATION
        if svc.service == "redis" and info.get("auth_required") is False:
            out.append(
                _finding(
                    host,
                    svc,
                    tenant,
                    exp,
                    "network.redis.no-auth",
                    f"Redis without authentication at {at}",
                    Severity.HIGH,
                    "Anyone who can reach the port can read and write every key (and, through "
                    "CONFIG/MODULE, often run code). Set requirepass/ACLs and bind to trusted interfaces.",
                )
            )
        if svc.service == "mongodb" and info.get("auth_required") is False:
            out.append(
                _finding(
                    host,
                    svc,
                    tenant,
                    exp,
                    "network.mongodb.no-auth",
                    f"MongoDB without authentication at {at}",
                    Severity.HIGH,
                    "listDatabases succeeded without credentials. Enable authorization.",
                )
            )
        if svc.service == "memcached":
            out.append(
                _finding(
                    host,
                    svc,
                    tenant,
                    exp,
                    "network.memcached.exposed",
                    f"memcached reachable without authentication at {at}",
                    Severity.MEDIUM,
                    "memcached has no access control of its own; cached data can be read and "
                    "poisoned. Bind it to localhost or enable SASL.",
                )
            )
        if svc.service == "mqtt" and info.get("anonymous"):
            out.append(
                _finding(
                    host,
                    svc,
                    tenant,
                    exp,
                    "network.mqtt.anonymous",
                    f"MQTT broker accepts anonymous clients at {at}",
                    Severity.MEDIUM,
                    "An anonymous CONNECT was accepted: anyone can publish and subscribe. "
                    "Set allow_anonymous false and require credentials.",
                )
            )
        if svc.service == "postgresql" and info.get("auth") == "trust":
            out.append(
                _finding(
                    host,
                    svc,
                    tenant,
                    mis,
                    "network.postgresql.trust",
                    f"PostgreSQL trusts connections without a password at {at}",
                    Severity.HIGH,
                    "The server accepted an unknown user name without asking for a password "
                    "(pg_hba.conf `trust`). Use scram-sha-256.",
                )
            )
        out.extend(_tls_findings(host, svc, tenant, at))
    return out


def _tls_findings(host: HostResult, svc: Service, tenant: str, at: str) -> list[Finding]:
    tls = svc.tls or {}
    cert = tls.get("certificate") or {}
    mis = FindingKind.MISCONFIGURATION
    # (certificate flag, rule, title, severity, summary): one finding per flag the inspection set.
    checks = (
        (
            "expired",
            "tls.certificate.expired",
            f"Expired TLS certificate at {at}",
            Severity.HIGH,
            f"The certificate of {cert.get('subject')} expired on {cert.get('not_after')}.",
        ),
        (
            "not_yet_valid",
            "tls.certificate.not-yet-valid",
            f"TLS certificate not yet valid at {at}",
            Severity.MEDIUM,
            f"Valid from {cert.get('not_before')}.",
        ),
        (
            "self_signed",
            "tls.certificate.self-signed",
            f"Self-signed TLS certificate at {at}",
            Severity.MEDIUM,
            "Clients cannot verify who they talk to; use a certificate from a trusted CA.",
        ),
    )
    out = [
        _finding(host, svc, tenant, mis, rule, title, severity, summary, certificate=cert)
        for flag, rule, title, severity, summary in checks
        if cert.get(flag)
    ]
    legacy = [v for v in tls.get("versions") or [] if v in ("TLSv1.0", "TLSv1.1")]
    if legacy:
        out.append(
            _finding(
                host,
                svc,
                tenant,
                mis,
                "tls.protocol.legacy",
                f"Deprecated TLS versions offered at {at}: {', '.join(legacy)}",
                Severity.MEDIUM,
                "TLS 1.0 and 1.1 are deprecated (RFC 8996); offer TLS 1.2 and 1.3 only.",
                versions=tls.get("versions"),
            )
        )
    return out


def _new_port_findings(host: HostResult, tenant: str) -> list[Finding]:
    if host.diff is None or host.diff.first_scan:
        return []
    out = []
    by_port = {s.port: s for s in host.services}
    for port in host.diff.appeared:
        svc = by_port.get(port) or Service(host.address, port)
        label = f"{port}/tcp" + (f" ({svc.service})" if svc.service and svc.service != "unknown" else "")
        out.append(
            _finding(
                host,
                svc,
                tenant,
                FindingKind.EXPOSURE,
                "network.port.new",
                f"New open port {label} on {host.hostname or host.address}",
                Severity.MEDIUM,
                "The port was not open at the previous scan. Check that the service is meant "
                "to be reachable.",
                product=svc.product,
                version=svc.version,
            )
        )
    return out


def _sightings(host: HostResult, tenant: str) -> list[ProductSighting]:
    """What a vulnerability lookup needs of each service that named its product and version."""
    return [
        ProductSighting(
            host_asset(host, tenant),
            svc.product,
            svc.version,
            svc.cpe,
            _evidence(host, svc.port, service=svc.service, banner=svc.banner),
            f" at {host.address}:{svc.port}",
        )
        for svc in host.services
        if svc.product and svc.version
    ]


def _nmap_hosts(items: Sequence[NmapHost], hosts: dict[str, HostResult]) -> list[HostResult]:
    for item in items:
        host = hosts.setdefault(item.address, HostResult(item.address, item.hostname))
        for port in item.ports:
            if port.state != "open":
                if port.state == "filtered":
                    host.filtered.append(port.port)
                continue
            # nmap's version is prose (`9.2p1 Debian 2+deb12u3`); its CPE carries the bare version.
            named = parse_cpe(port.cpe) if port.cpe else None
            version = (
                named.version if named is not None and named.version not in ("*", "-", "") else port.version
            )
            cpe = port.cpe if named is not None and named.version not in ("*", "") else None
            cpe = cpe or cpe_for(port.product, version) or port.cpe
            cpe = current_vendor(cpe) if cpe else None
            words = (port.product, port.version, f"({port.extrainfo})" if port.extrainfo else None)
            banner = " ".join(x for x in words if x) or None
            service = Service(
                item.address, port.port, port.transport, port.service, port.product, version, cpe, banner
            )
            host.services.append(service)
    return list(hosts.values())


def _from_nmap(targets: Sequence[Target], ports: list[int], options: DiscoverOptions) -> list[HostResult]:
    hosts = {t.address: HostResult(t.address, t.hostname) for t in targets}
    return _nmap_hosts(run_nmap(targets, ports, version_scan=options.fingerprint, rate=options.rate), hosts)


def discover(
    store: Store | None,
    specs: Sequence[str],
    options: DiscoverOptions | None = None,
    *,
    progress: Progress | None = None,
) -> DiscoveryResult:
    """Scan, fingerprint and judge; with a store, audit the scan and (with `save`) record the services.

    The findings are what the scan shows by itself (exposures, TLS, new ports); vulnerabilities of the
    services' versions are for the road to add (each host's `sightings`).

    Raises `TargetError` (an InputError) before any packet is sent when a target is unreadable or
    outside the private ranges without `authorized`.
    """
    opts = options or DiscoverOptions()
    if opts.engine not in ("builtin", "nmap", "nmap-xml"):
        raise InputError(f"unknown engine {opts.engine!r} (expected builtin or nmap)")
    imported: list[NmapHost] = []
    if opts.nmap_xml is not None:
        # A scan made elsewhere: nothing is sent, so no target check; the file says what was covered.
        imported, ports = read_nmap_xml(opts.nmap_xml)
        opts = replace(opts, engine="nmap-xml", ports=str(opts.nmap_xml))
        targets = [Target(h.address, h.hostname) for h in imported]
        specs = [t.address for t in targets]
    else:
        targets = expand_targets(list(specs), authorized=opts.authorized)
        ports = parse_ports(opts.ports)
    if not targets:
        raise InputError("no target to scan")
    audit_id = None
    if store is not None:
        audit_id = record_scan_start(
            store,
            tenant=opts.tenant,
            action="discover",
            targets=list(specs),
            ports=opts.ports,
            authorized=opts.authorized,
            engine=opts.engine,
        )
    begin = time.monotonic()
    self_connects = 0
    notes: list[str] = []
    if opts.engine == "nmap-xml":
        hosts = _nmap_hosts(imported, {})
    elif opts.engine == "nmap":
        hosts = _from_nmap(targets, ports, opts)
    else:
        swept = sweep(
            targets,
            ports,
            SweepOptions(
                timeout=opts.timeout,
                retries=opts.retries,
                rate=opts.rate,
                max_inflight=opts.max_inflight,
                per_host=opts.per_host,
            ),
            progress=(lambda n: progress("sweep", n)) if progress else None,
        )
        self_connects = swept.self_connects
        hosts = [HostResult(t.address, t.hostname) for t in targets]
        for host in hosts:
            host.filtered = swept.filtered.get(host.address, [])
            host.closed = swept.closed.get(host.address, 0)
        work = [(h, p) for h in hosts for p in swept.open.get(h.address, [])]
        if opts.fingerprint:
            run_sync(_fingerprint_all(work, opts, progress))
        else:
            for host, port in work:
                host.services.append(Service(host.address, port))
    for host in hosts:
        host.services.sort(key=lambda s: s.port)
    findings: list[Finding] = []
    now = utcnow()
    for host in hosts:
        if store is not None and opts.save:
            host.diff = save_host_services(
                store, host_asset(host, opts.tenant), host.address, host.services, ports, now, host.infos
            )
        host.findings = service_findings(host, opts.tenant) + _new_port_findings(host, opts.tenant)
        host.sightings = _sightings(host, opts.tenant)
        findings.extend(host.findings)
    sort_findings(findings)
    elapsed = time.monotonic() - begin
    result = DiscoveryResult(
        hosts,
        findings,
        len(ports) * len(targets),
        elapsed,
        self_connects,
        audit_id,
        opts.engine,
        notes,
        scanned_at=now,
        tenant=opts.tenant,
    )
    if store is not None and audit_id is not None:
        summary = {
            "hosts": len(targets),
            "hosts_with_open_ports": sum(1 for h in hosts if h.services),
            "open_ports": sum(len(h.services) for h in hosts),
            "findings": len(findings),
            "elapsed_s": round(elapsed, 3),
        }
        record_scan_end(store, audit_id, summary)
    return result
