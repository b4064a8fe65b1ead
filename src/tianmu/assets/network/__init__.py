"""Network and service discovery: which hosts listen on which TCP ports, and what answers there.

`discover()` is the one entry point the CLI, the API and job runners call (targets → sweep →
fingerprints → findings → store). The pieces: `targets` (what may be scanned), `sweep` (the epoll
connect sweep), `probes` and `tls` (protocol-correct fingerprints), `cpe` (CPE 2.3 names), `nmap`
(the optional nmap engine), `inventory` (services in the store, re-scan diffs), `audit` (the scan
audit trail), `vulnmatch` (known vulnerabilities of product versions).
"""

from __future__ import annotations

from tianmu.assets.network.audit import AuditRecord, list_scans, record_scan_end, record_scan_start
from tianmu.assets.network.engine import DiscoverOptions, DiscoveryResult, HostResult, discover
from tianmu.assets.network.inventory import HostDiff, StoredService, list_services
from tianmu.assets.network.probes import Identification, ProbeOptions, identify
from tianmu.assets.network.targets import Target, TargetError, expand_targets, parse_ports

__all__ = [
    "AuditRecord",
    "DiscoverOptions",
    "DiscoveryResult",
    "HostDiff",
    "HostResult",
    "Identification",
    "ProbeOptions",
    "StoredService",
    "Target",
    "TargetError",
    "discover",
    "expand_targets",
    "identify",
    "list_scans",
    "list_services",
    "parse_ports",
    "record_scan_end",
    "record_scan_start",
]
