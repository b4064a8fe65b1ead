"""Network and service discovery: which hosts listen on which TCP ports, and what answers there.

`discover()` is the discovery engine (targets → sweep → fingerprints → findings); the road's
`tianmu.road.network.run_discover` is the one entry point the CLI and job runners call (it adds the
vulnerabilities of the versions seen and finishes). The pieces: `sweep` (the epoll connect sweep),
`probes`, `banners` and `wire` (protocol-correct fingerprints), `nmap` (the optional nmap engine),
`inventory` (services in the store, re-scan diffs), `findings` (what a scan shows by itself) and
`results` (what a run returns). Targets, TLS, CPE names and the scan audit trail
are shared with the website checks and live in `tianmu.network`.
"""

from __future__ import annotations

from tianmu.assets.network.engine import DiscoverOptions, discover
from tianmu.assets.network.inventory import HostDiff, StoredService, list_services
from tianmu.assets.network.probes import Identification, ProbeOptions, identify
from tianmu.assets.network.results import DiscoveryResult, HostResult

__all__ = [
    "DiscoverOptions",
    "DiscoveryResult",
    "HostDiff",
    "HostResult",
    "Identification",
    "ProbeOptions",
    "StoredService",
    "discover",
    "identify",
    "list_services",
]
