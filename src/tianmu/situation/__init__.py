"""Situation awareness on top of the findings every engine produces (see docs/situation.md, docs/risk.md).

Public surface:

- `correlate(findings) -> list[Incident]` and the streaming `Correlator`; `update_incidents(store, ...)`
  folds new findings into the stored incidents.
- `score_findings(findings, assets) -> RiskReport` (0–100 per finding, asset and tenant, with factors);
  `record_posture` / `posture_history` keep the trend; `insurance_summary` the expected exposure.
- `trace(store, tenant, value)`: the time-ordered story of an IP, user, hash or host.
- `export_bundle` / `verify_bundle`: signed evidence bundles (SM3 manifest, SM2 signature).
- `alerts`: rules and channels (webhook, syslog, email) with retries and deduplication.
- `update_situation(store, assessment, ...)`: the last part of `tianmu.road.finish`, after the save.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from tianmu.core.clock import Clock, SystemClock
from tianmu.core.errors import InputError
from tianmu.core.models import Assessment, Asset, Finding, Incident, TriageStatus
from tianmu.store.database import Store

from .alerts import AlertTransports, load_config, run_alerts
from .correlation import DEFAULT_WINDOW, Correlator, IncidentChange, correlate
from .evidence import BundleReport, export_bundle, load_signer, verify_bundle
from .insurance import InsuranceSummary, insurance_summary
from .repository import (
    PosturePoint,
    find_incident,
    load_assets,
    load_incidents,
    open_findings,
    posture_history,
    rebuild_incidents,
    record_posture,
    set_incident,
    update_incidents,
)
from .risk import AssetRisk, Factor, FindingRisk, RiskReport, score_finding, score_findings
from .tactics import TACTICS, finding_tactics, store_technique_resolver
from .timeline import finding_time
from .trace import TraceStory, trace

__all__ = [
    "DEFAULT_WINDOW",
    "TACTICS",
    "AssetRisk",
    "BundleReport",
    "Correlator",
    "Factor",
    "FindingRisk",
    "IncidentChange",
    "InsuranceSummary",
    "PosturePoint",
    "RiskReport",
    "TraceStory",
    "correlate",
    "export_bundle",
    "find_incident",
    "finding_tactics",
    "finding_time",
    "insurance_summary",
    "load_assets",
    "load_incidents",
    "load_signer",
    "open_findings",
    "posture_history",
    "rebuild_incidents",
    "record_posture",
    "score_finding",
    "score_findings",
    "set_incident",
    "store_technique_resolver",
    "trace",
    "update_incidents",
    "update_situation",
    "verify_bundle",
]

_ACTIVE = (TriageStatus.OPEN, TriageStatus.ACKNOWLEDGED)


def update_situation(
    store: Store,
    assessment: Assessment,
    *,
    assessment_id: int | None = None,
    home: Path | None = None,
    alert_transports: AlertTransports | None = None,
    clock: Clock | None = None,
) -> None:
    """Incidents, risk and posture after an assessment; fills `assessment.incidents` and `.risk`.

    With `assessment_id` (the assessment was saved) the work is against the store: the findings join the
    tenant's stored incidents, the tenant's risk is scored over all its open findings, a posture point is
    recorded, and alert rules in `home/alerts.toml` (when present) are run, sending through
    `alert_transports` (default: the network, and `clock`). Without it, the same is computed for this
    assessment's findings alone and nothing is written. Risk ages findings and posture is stamped at
    `clock.now()` (default: the system clock).
    """
    now = (clock or SystemClock()).now()
    if alert_transports is None and clock is not None:
        alert_transports = AlertTransports(clock=clock)
    tenant = assessment.asset.tenant
    resolver = store_technique_resolver(store)
    if assessment_id is None:
        assessment.incidents = correlate(assessment.findings, tenant=tenant, resolver=resolver)
        report = score_findings(assessment.findings, [assessment.asset], tenant=tenant, now=now)
        summary = insurance_summary(assessment.findings, [assessment.asset], resolver=resolver)
    else:
        update_incidents(store, tenant, assessment.findings, resolver=resolver)
        mine = {f.fingerprint for f in assessment.findings}
        assessment.incidents = [
            i for i in load_incidents(store, tenant) if mine & set(i.finding_fingerprints)
        ]
        assets = load_assets(store, tenant)
        current = open_findings(store, tenant)
        report = score_findings(current, assets, tenant=tenant, now=now)
        active = load_incidents(store, tenant, statuses=_ACTIVE)
        record_posture(store, report, assessment_id=assessment_id, open_incidents=len(active))
        report.history = [point.as_dict() for point in posture_history(store, tenant)]
        summary = insurance_summary(current, assets, resolver=resolver)
        if home is not None and (home / "alerts.toml").is_file():
            _run_configured_alerts(
                store, assessment, home / "alerts.toml", alert_transports, active, current, assets
            )
    # Most severe first, then the oldest: the order a report reader should take them in.
    far = datetime.max.replace(tzinfo=UTC)
    assessment.incidents.sort(key=lambda i: (-i.severity.rank, i.first_seen or far, i.id))
    assessment.risk = report.as_dict() | {"insurance": summary.as_dict()}


def _run_configured_alerts(
    store: Store,
    assessment: Assessment,
    config_path: Path,
    transports: AlertTransports | None,
    incidents: list[Incident],
    findings: list[Finding],
    assets: list[Asset],
) -> None:
    try:
        config = load_config(config_path, transports=transports)
    except InputError as exc:
        assessment.notes.append(f"alerts: not sent: {exc}")
        return
    results = run_alerts(
        store, assessment.asset.tenant, config, incidents=incidents, findings=findings, assets=assets
    )
    failed = [r for r in results if not r.ok]
    if results:
        assessment.notes.append(f"alerts: {len(results) - len(failed)} delivered, {len(failed)} failed")
    for result in failed:
        assessment.notes.append(f"alerts: {result.channel}: {result.error}")
