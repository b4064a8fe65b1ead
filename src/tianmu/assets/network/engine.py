"""`discover`: targets → sweep → fingerprints → findings, the discovery engine the road runs.

The engine records what it sees: the services of each host (product, version, CPE) in the service
inventory, with the re-scan diff, and the scan audit trail around the traffic it sends. It does not look
up vulnerabilities (capabilities never call each other): each host's `sightings` name the product
versions it saw, and the road (`tianmu.road.network.run_discover`) matches them with
`tianmu.vulns.services`, then stores one assessment per host and updates the situation.

The rules of the findings a scan shows by itself are in `findings.py`; what a run returns, in
`results.py`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from tianmu.assets.network.findings import new_port_findings, service_findings, sightings
from tianmu.assets.network.inventory import save_host_services
from tianmu.assets.network.nmap import NmapHost, read_nmap_xml, run_nmap
from tianmu.assets.network.probes import Identification, ProbeOptions, identify
from tianmu.assets.network.results import DiscoveryResult, HostResult, host_asset, sort_findings
from tianmu.assets.network.sweep import SweepOptions, sweep
from tianmu.core.errors import InputError
from tianmu.core.models import Finding, Service, utcnow
from tianmu.network.audit import record_scan_end, record_scan_start
from tianmu.network.connection import run_sync
from tianmu.network.cpe import cpe_for, current_vendor, parse_cpe
from tianmu.network.targets import Target, expand_targets, parse_ports
from tianmu.store.database import Store

__all__ = ["DiscoverOptions", "Progress", "discover"]

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
        host.findings = service_findings(host, opts.tenant) + new_port_findings(host, opts.tenant)
        host.sightings = sightings(host, opts.tenant)
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
