"""Delivery: retries with exponential backoff, and deduplication against the stored alert state.

- A transient failure (network errors, HTTP 5xx, 408 and 429, SMTP 4xx) is retried after the policy's
  delays, waited through a `Clock` (a `ManualClock` in tests: nobody sleeps); a permanent one (other
  HTTP 4xx, SMTP 5xx) stops at once.
- The last state delivered per (rule, channel, subject) is stored, so an incident alerts once per state
  change (status, stage, severity) and a KEV entry once per affected finding. A failed delivery leaves
  the state unrecorded, so the next run tries again.
- Each attempt is stamped with the audit chain's tip read just then (`AuditTipSource`, given by whoever
  delivers: the road or the CLI), so every alert sent carries the chain's progress.
"""

from __future__ import annotations

from collections.abc import Iterable

from tianmu.core.clock import Clock, SystemClock
from tianmu.core.models import Asset, Finding, Incident
from tianmu.store.database import Store

from ..repository import alert_state, set_alert_state
from .config import AlertConfig
from .model import Alert, AuditTipSource, Channel, DeliveryError, DeliveryResult, RetryPolicy
from .rules import pending_alerts

__all__ = ["deliver", "run_alerts"]


def deliver(
    channel: Channel,
    alert: Alert,
    policy: RetryPolicy = RetryPolicy(),
    *,
    clock: Clock | None = None,
    audit_tip: AuditTipSource | None = None,
) -> DeliveryResult:
    """Send with retries, each attempt stamped with the tip `audit_tip` reads then; never raises for a
    delivery problem (the result says what happened)."""
    waiter = clock or SystemClock()
    delays = policy.delays()
    attempt = 0
    while True:
        attempt += 1
        sent = alert.with_audit_tip(audit_tip)
        try:
            channel.send(sent)
            return DeliveryResult(channel.name, sent, True, attempt)
        except DeliveryError as exc:
            if not exc.transient or attempt > len(delays):
                return DeliveryResult(channel.name, sent, False, attempt, str(exc))
            waiter.sleep(delays[attempt - 1])


def run_alerts(
    store: Store,
    tenant: str,
    config: AlertConfig,
    *,
    incidents: Iterable[Incident] = (),
    findings: Iterable[Finding] = (),
    assets: Iterable[Asset] = (),
) -> list[DeliveryResult]:
    """Deliver what is new since the last run (per rule, channel and subject); returns every attempt made.

    Retries wait through `config.clock`."""
    results: list[DeliveryResult] = []
    for alert in pending_alerts(config.rules, incidents, findings, assets):
        rule = next(r for r in config.rules if r.name == alert.rule)
        names = rule.channels or tuple(config.channels)
        for name in names:
            channel = config.channels[name]
            key = f"{alert.rule}>{name}"
            if alert_state(store, tenant, key, alert.subject) == alert.state:
                continue
            result = deliver(channel, alert, config.retry, clock=config.clock, audit_tip=config.audit_tip)
            results.append(result)
            if result.ok:
                set_alert_state(store, tenant, key, alert.subject, alert.state, [name], at=config.clock.now())
    return results
