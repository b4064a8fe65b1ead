"""The road for network jobs: `tianmu discover`, `tianmu web` and `tianmu domain`.

Each job function runs the capability's engine (discovery, website checks, domain checks), hands the
product versions it saw to `tianmu.vulns.services` (the two capabilities never call each other), makes
one `Assessment` per host, site or domain, and ends with `finish()` like every other job: annotated,
saved, and joined to the tenant's incidents, risk and posture. The CLI commands and the job handlers
call these functions, so both take the same road.

What stays in the engines: the service inventory (`save_host_services`, whose re-scan diff the
`network.port.new` findings are drawn from before anything reaches the road) and the scan audit trail,
which must be opened after the target safety rule passed and before the first packet — both moments
only the engine knows. The audit summary therefore counts the scan's own findings, not the
vulnerabilities matched afterwards from the knowledge base (which send no traffic).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from tianmu.assets.network.engine import DiscoverOptions, Progress, discover
from tianmu.assets.network.results import DiscoveryResult, host_asset, sort_findings
from tianmu.core.models import Assessment, utcnow
from tianmu.road.finish import FinishOptions, finish
from tianmu.store.database import Store
from tianmu.vulns.services import NO_NVD_NOTE, ServiceMatcher, nvd_imported
from tianmu.websec.domain import DomainOptions, DomainResult, check_domains
from tianmu.websec.engine import Progress as WebProgress
from tianmu.websec.engine import WebOptions, WebResult, check_websites

__all__ = ["run_discover", "run_domain", "run_web"]


def run_discover(
    store: Store,
    specs: Sequence[str],
    options: DiscoverOptions | None = None,
    *,
    progress: Progress | None = None,
    home: Path | None = None,
) -> DiscoveryResult:
    """Discover hosts and services, add the vulnerabilities of the versions seen, and finish."""
    opts = options or DiscoverOptions()
    result = discover(store, specs, opts, progress=progress)
    matcher = ServiceMatcher(store)
    for host in result.hosts:
        host.findings += matcher.match_all(host.sightings)
    result.findings = [f for host in result.hosts for f in host.findings]
    sort_findings(result.findings)
    if any(s.version for h in result.hosts for s in h.services) and not nvd_imported(store):
        result.notes.append(NO_NVD_NOTE)
    when = result.scanned_at or utcnow()
    assessments = [
        Assessment(
            target=f"discover {host.address}",
            asset=host_asset(host, result.tenant),
            started=when,
            finished=when,
            findings=host.findings,
            engines=["discover"],
        )
        # An address where nothing listens, and nothing closed since the last scan, is no asset.
        for host in result.hosts
        if host.services or (host.diff and host.diff.disappeared)
    ]
    finish(store, assessments, FinishOptions(save=opts.save, home=home))
    return result


def run_web(
    store: Store,
    urls: Sequence[str],
    options: WebOptions | None = None,
    *,
    progress: WebProgress | None = None,
    home: Path | None = None,
) -> WebResult:
    """Check websites, add the vulnerabilities of the versions they disclose, and finish."""
    opts = options or WebOptions()
    result = check_websites(store, urls, opts, progress=progress)
    matcher = ServiceMatcher(store)
    for site in result.sites:
        site.add_findings(matcher.match_all(site.sightings))
    result.regroup()
    assessments = [
        Assessment(
            target=site.url,
            asset=site.asset,
            started=site.started or utcnow(),
            finished=site.finished,
            findings=site.findings,
            engines=["websec"],
        )
        for site in result.sites
        if site.reachable and site.asset is not None
    ]
    finish(store, assessments, FinishOptions(save=opts.save, home=home))
    return result


def run_domain(
    store: Store,
    domains: Sequence[str],
    options: DomainOptions | None = None,
    *,
    progress: WebProgress | None = None,
    home: Path | None = None,
) -> DomainResult:
    """Check domain names and finish (domain checks see no product versions to match)."""
    opts = options or DomainOptions()
    result = check_domains(store, domains, opts, progress=progress)
    assessments = [
        Assessment(
            target=checked.asset.name,
            asset=checked.asset,
            started=checked.started,
            finished=checked.finished,
            findings=checked.findings,
            engines=["domain"],
        )
        for checked in result.checked
    ]
    finish(store, assessments, FinishOptions(save=opts.save, home=home))
    return result
