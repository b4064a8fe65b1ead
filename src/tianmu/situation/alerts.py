"""Early warning: alert rules over incidents and findings, delivered by webhook, syslog and email.

- A rule selects what to alert on (`on`: incident state changes, new findings, KEV entries newly
  affecting an asset), with a severity threshold, finding kinds, asset name patterns and asset tags.
- Channels: webhook (JSON body, HMAC-SHA256 over `timestamp.body` in `X-Tianmu-Signature`), syslog
  (RFC 5424 over UDP, or over TCP with RFC 6587 octet counting), email over SMTP (optional STARTTLS and
  login).
- Each delivery is retried with exponential backoff on transient failures (network errors, HTTP 5xx,
  408 and 429, SMTP 4xx); permanent ones (other HTTP 4xx, SMTP 5xx) stop at once.
- Deduplication: the last state delivered per (rule, channel, subject) is stored, so an incident alerts
  once per state change (status, stage, severity) and a KEV entry once per affected finding. A failed
  delivery leaves the state unrecorded, so the next run tries again.

Configuration is a TOML file (`alerts.toml` in the data directory by default; see docs/situation.md).
"""

from __future__ import annotations

import fnmatch
import hashlib
import hmac
import json
import os
import smtplib
import socket
import time
import tomllib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any, Protocol

import httpx

from tianmu.core.errors import InputError
from tianmu.core.models import Asset, Finding, FindingKind, Incident, Severity, TriageStatus, utcnow
from tianmu.store.database import Store

from .correlation import incident_state
from .repository import alert_state, set_alert_state

__all__ = [
    "Alert",
    "AlertConfig",
    "AlertRule",
    "Channel",
    "DeliveryError",
    "DeliveryResult",
    "EmailChannel",
    "RetryPolicy",
    "SyslogChannel",
    "WebhookChannel",
    "deliver",
    "format_syslog",
    "load_config",
    "make_test_alert",
    "pending_alerts",
    "run_alerts",
    "sign_webhook",
]

SUBJECTS = ("incident", "finding", "kev")
_SYSLOG_SEVERITY = {
    Severity.CRITICAL: 2,
    Severity.HIGH: 3,
    Severity.MEDIUM: 4,
    Severity.LOW: 5,
    Severity.INFO: 6,
}
# 32473 is the private enterprise number RFC 5612 reserves for documentation and examples; an
# organisation with its own number sets `sd_id` on the channel.
_SD_ID = "tianmu@32473"


class DeliveryError(Exception):
    """A channel could not deliver; `transient` says whether trying again may help."""

    def __init__(self, message: str, *, transient: bool = True) -> None:
        super().__init__(message)
        self.transient = transient


@dataclass(frozen=True, slots=True)
class Alert:
    rule: str
    subject: str
    """`INC-…`, `finding:<fingerprint>` or `kev:<fingerprint>`."""
    state: str
    severity: Severity
    title: str
    tenant: str
    payload: dict[str, Any]

    @property
    def delivery_id(self) -> str:
        """Same alert, same id: lets a receiver drop a duplicate after a retried delivery."""
        return hashlib.sha256(f"{self.tenant}|{self.rule}|{self.subject}|{self.state}".encode()).hexdigest()[
            :32
        ]

    def text(self) -> str:
        lines = [
            self.title,
            f"severity: {self.severity.value}",
            f"subject: {self.subject}",
            f"rule: {self.rule}",
        ]
        for key in ("stage", "status", "assignee", "assets", "sources", "asset", "id"):
            value = self.payload.get(key)
            if value:
                lines.append(f"{key}: {', '.join(value) if isinstance(value, list) else value}")
        return "\n".join(lines)


class Channel(Protocol):
    name: str

    def send(self, alert: Alert) -> None: ...


def sign_webhook(secret: bytes, timestamp: str, body: bytes) -> str:
    """`sha256=` + hex HMAC-SHA256 over `timestamp.body` (the timestamp stops replays of old bodies)."""
    return "sha256=" + hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


@dataclass(slots=True)
class WebhookChannel:
    name: str
    url: str
    secret: bytes
    timeout: float = 10.0

    def send(self, alert: Alert) -> None:
        body = json.dumps(alert.payload, sort_keys=True, ensure_ascii=False).encode()
        stamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "tianmu-alerts",
            "X-Tianmu-Timestamp": stamp,
            "X-Tianmu-Signature": sign_webhook(self.secret, stamp, body),
            "X-Tianmu-Delivery": alert.delivery_id,
        }
        try:
            response = httpx.post(self.url, content=body, headers=headers, timeout=self.timeout)
        except httpx.HTTPError as exc:
            raise DeliveryError(f"{self.url}: {exc.__class__.__name__}: {exc}") from exc
        if response.status_code >= 300:
            transient = response.status_code >= 500 or response.status_code in (408, 429)
            raise DeliveryError(f"{self.url}: HTTP {response.status_code}", transient=transient)


def _sd_escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


def format_syslog(
    alert: Alert,
    *,
    facility: int = 4,
    hostname: str | None = None,
    app_name: str = "tianmu",
    sd_id: str = _SD_ID,
) -> bytes:
    """One RFC 5424 message. Hand-written: the format is a single line, and the stdlib handler only
    speaks the older BSD format (RFC 3164)."""
    pri = facility * 8 + _SYSLOG_SEVERITY[alert.severity]
    stamp = utcnow().isoformat(timespec="milliseconds").replace("+00:00", "Z")
    host = (hostname or socket.gethostname() or "-")[:255].replace(" ", "_")
    params = {
        "rule": alert.rule,
        "subject": alert.subject,
        "severity": alert.severity.value,
        "state": alert.state,
        "tenant": alert.tenant,
    }
    sd = "[" + sd_id + "".join(f' {k}="{_sd_escape(v)}"' for k, v in params.items()) + "]"
    msgid = alert.payload.get("type", "alert")
    header = f"<{pri}>1 {stamp} {host} {app_name} {os.getpid()} {msgid} {sd} "
    # The BOM marks MSG as UTF-8, as RFC 5424 §6.4 asks.
    return header.encode() + b"\xef\xbb\xbf" + alert.title.encode()


@dataclass(slots=True)
class SyslogChannel:
    name: str
    host: str
    port: int = 514
    transport: str = "udp"
    facility: int = 4
    hostname: str | None = None
    timeout: float = 10.0

    def send(self, alert: Alert) -> None:
        message = format_syslog(alert, facility=self.facility, hostname=self.hostname)
        try:
            if self.transport == "udp":
                family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
                with socket.socket(family, socket.SOCK_DGRAM) as sock:
                    sock.sendto(message, (self.host, self.port))
                return
            with socket.create_connection((self.host, self.port), timeout=self.timeout) as sock:
                # RFC 6587 octet counting: the length prefix frames messages that contain newlines.
                sock.sendall(str(len(message)).encode() + b" " + message)
        except OSError as exc:
            raise DeliveryError(f"syslog {self.transport}://{self.host}:{self.port}: {exc}") from exc


@dataclass(slots=True)
class EmailChannel:
    name: str
    host: str
    sender: str
    recipients: tuple[str, ...]
    port: int = 25
    starttls: bool = False
    username: str | None = None
    password: str | None = None
    timeout: float = 10.0
    ssl: bool = False
    """Implicit TLS (SMTPS, usually port 465) instead of plain SMTP with optional STARTTLS."""

    def send(self, alert: Alert) -> None:
        message = EmailMessage()
        message["Subject"] = f"[Tianmu] {alert.severity.value.upper()}: {alert.title}"
        message["From"] = self.sender
        message["To"] = ", ".join(self.recipients)
        message["X-Tianmu-Delivery"] = alert.delivery_id
        body = alert.text() + "\n\n" + json.dumps(alert.payload, indent=2, sort_keys=True, ensure_ascii=False)
        message.set_content(body)
        try:
            kind = smtplib.SMTP_SSL if self.ssl else smtplib.SMTP
            with kind(self.host, self.port, timeout=self.timeout) as smtp:
                if self.starttls:
                    smtp.starttls()
                if self.username:
                    smtp.login(self.username, self.password or "")
                smtp.send_message(message)
        except smtplib.SMTPResponseException as exc:
            raise DeliveryError(
                f"smtp {self.host}:{self.port}: {exc.smtp_code} {exc.smtp_error!r}",
                transient=exc.smtp_code < 500,
            ) from exc
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            raise DeliveryError(
                f"smtp {self.host}:{self.port}: recipients refused {codes}",
                transient=all(c < 500 for c in codes),
            ) from exc
        except (smtplib.SMTPException, OSError) as exc:
            raise DeliveryError(f"smtp {self.host}:{self.port}: {exc}") from exc


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    attempts: int = 4
    backoff: float = 1.0
    """Seconds before the second attempt; each further wait is `factor` times longer, up to `max_delay`."""
    factor: float = 2.0
    max_delay: float = 60.0

    def delays(self) -> list[float]:
        return [min(self.max_delay, self.backoff * self.factor**i) for i in range(max(0, self.attempts - 1))]


@dataclass(frozen=True, slots=True)
class DeliveryResult:
    channel: str
    alert: Alert
    ok: bool
    attempts: int
    error: str | None = None


def deliver(
    channel: Channel,
    alert: Alert,
    policy: RetryPolicy = RetryPolicy(),
    *,
    sleep: Callable[[float], None] = time.sleep,
) -> DeliveryResult:
    """Send with retries; never raises for a delivery problem (the result says what happened)."""
    delays = policy.delays()
    attempt = 0
    while True:
        attempt += 1
        try:
            channel.send(alert)
            return DeliveryResult(channel.name, alert, True, attempt)
        except DeliveryError as exc:
            if not exc.transient or attempt > len(delays):
                return DeliveryResult(channel.name, alert, False, attempt, str(exc))
            sleep(delays[attempt - 1])


@dataclass(frozen=True, slots=True)
class AlertRule:
    name: str
    on: tuple[str, ...] = ("incident", "kev")
    min_severity: Severity = Severity.HIGH
    kinds: tuple[FindingKind, ...] = ()
    """Only incidents containing, or findings of, these kinds (empty: any)."""
    assets: tuple[str, ...] = ()
    """Shell-style patterns over asset names (empty: any)."""
    tags: tuple[str, ...] = ()
    """Only assets carrying one of these tags (empty: any)."""
    channels: tuple[str, ...] = ()
    """Channel names (empty: every channel)."""


@dataclass(slots=True)
class AlertConfig:
    channels: dict[str, Channel] = field(default_factory=dict)
    rules: list[AlertRule] = field(default_factory=list)
    retry: RetryPolicy = field(default_factory=RetryPolicy)


def _asset_ok(rule: AlertRule, names: Sequence[str], records: Mapping[str, Asset]) -> bool:
    if rule.assets and not any(fnmatch.fnmatchcase(n, p) for n in names for p in rule.assets):
        return False
    if rule.tags:
        tags = {t for n in names if n in records for t in records[n].tags}
        if not tags & set(rule.tags):
            return False
    return True


def _incident_payload(incident: Incident, state: str) -> dict[str, Any]:
    return {
        "type": "incident",
        "id": incident.id,
        "tenant": incident.tenant,
        "title": incident.title,
        "severity": incident.severity.value,
        "stage": incident.stage,
        "status": incident.status.value,
        "assignee": incident.assignee,
        "tactics": incident.tactics,
        "assets": incident.assets,
        "sources": incident.sources,
        "findings": len(incident.finding_fingerprints),
        "first_seen": incident.first_seen.isoformat() if incident.first_seen else None,
        "last_seen": incident.last_seen.isoformat() if incident.last_seen else None,
        "state": state,
    }


def _finding_payload(finding: Finding, kind: str, state: str) -> dict[str, Any]:
    return {
        "type": kind,
        "id": finding.rule_id,
        "tenant": finding.asset.tenant,
        "title": finding.title,
        "severity": finding.severity.value,
        "kind": finding.kind.value,
        "asset": finding.asset.name,
        "fingerprint": finding.fingerprint,
        "aliases": list(finding.aliases),
        "kev": bool(finding.data.get("kev")),
        "state": state,
    }


def pending_alerts(
    rules: Iterable[AlertRule],
    incidents: Iterable[Incident] = (),
    findings: Iterable[Finding] = (),
    assets: Iterable[Asset] = (),
) -> list[Alert]:
    """Every alert the rules ask for in the current situation (before deduplication)."""
    records = {a.name: a for a in assets}
    incidents, findings = list(incidents), list(findings)
    out: list[Alert] = []
    for rule in rules:
        if "incident" in rule.on:
            for incident in incidents:
                if not incident.severity.at_least(rule.min_severity):
                    continue
                kinds = {e.get("kind") for e in incident.timeline}
                if rule.kinds and not kinds & {k.value for k in rule.kinds}:
                    continue
                if not _asset_ok(rule, incident.assets, records):
                    continue
                state = incident_state(incident)
                out.append(
                    Alert(
                        rule.name,
                        incident.id,
                        state,
                        incident.severity,
                        incident.title,
                        incident.tenant,
                        _incident_payload(incident, state),
                    )
                )
        for finding in findings:
            if finding.status not in (TriageStatus.OPEN, TriageStatus.ACKNOWLEDGED):
                continue
            if not finding.severity.at_least(rule.min_severity):
                continue
            if rule.kinds and finding.kind not in rule.kinds:
                continue
            if not _asset_ok(rule, [finding.asset.name], records):
                continue
            if "kev" in rule.on and finding.kind is FindingKind.VULNERABILITY and finding.data.get("kev"):
                title = f"Known exploited vulnerability {finding.rule_id} on {finding.asset.name}"
                out.append(
                    Alert(
                        rule.name,
                        f"kev:{finding.fingerprint}",
                        "kev",
                        finding.severity,
                        title,
                        finding.asset.tenant,
                        _finding_payload(finding, "kev", "kev"),
                    )
                )
            elif "finding" in rule.on:
                out.append(
                    Alert(
                        rule.name,
                        f"finding:{finding.fingerprint}",
                        "open",
                        finding.severity,
                        finding.title,
                        finding.asset.tenant,
                        _finding_payload(finding, "finding", "open"),
                    )
                )
    return out


def run_alerts(
    store: Store,
    tenant: str,
    config: AlertConfig,
    *,
    incidents: Iterable[Incident] = (),
    findings: Iterable[Finding] = (),
    assets: Iterable[Asset] = (),
    sleep: Callable[[float], None] = time.sleep,
) -> list[DeliveryResult]:
    """Deliver what is new since the last run (per rule, channel and subject); returns every attempt made."""
    results: list[DeliveryResult] = []
    for alert in pending_alerts(config.rules, incidents, findings, assets):
        rule = next(r for r in config.rules if r.name == alert.rule)
        names = rule.channels or tuple(config.channels)
        for name in names:
            channel = config.channels[name]
            key = f"{alert.rule}>{name}"
            if alert_state(store, tenant, key, alert.subject) == alert.state:
                continue
            result = deliver(channel, alert, config.retry, sleep=sleep)
            results.append(result)
            if result.ok:
                set_alert_state(store, tenant, key, alert.subject, alert.state, [name])
    return results


# --- configuration --------------------------------------------------------------------------------------


def _need(table: Mapping[str, Any], key: str, kind: type, where: str) -> Any:
    value = table.get(key)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise InputError(f"{where}: `{key}` must be a {kind.__name__}")
    return value


def _secret(table: Mapping[str, Any], where: str, environ: Mapping[str, str]) -> bytes:
    if isinstance(table.get("secret_env"), str):
        value = environ.get(table["secret_env"])
        if not value:
            raise InputError(f"{where}: environment variable {table['secret_env']} is not set")
        return value.encode()
    return str(_need(table, "secret", str, where)).encode()


def _channel(name: str, table: Mapping[str, Any], where: str, environ: Mapping[str, str]) -> Channel:
    kind = table.get("type")
    if kind == "webhook":
        url = _need(table, "url", str, where)
        if not url.startswith(("http://", "https://")):
            raise InputError(f"{where}: `url` must be an http(s) URL")
        return WebhookChannel(name, url, _secret(table, where, environ), float(table.get("timeout", 10.0)))
    if kind == "syslog":
        transport = table.get("transport", "udp")
        if transport not in ("udp", "tcp"):
            raise InputError(f"{where}: `transport` must be udp or tcp")
        facility = int(table.get("facility", 4))
        if not 0 <= facility <= 23:
            raise InputError(f"{where}: `facility` must be 0..23")
        return SyslogChannel(
            name,
            _need(table, "host", str, where),
            int(table.get("port", 514)),
            transport,
            facility,
            table.get("hostname"),
        )
    if kind == "email":
        recipients = table.get("to")
        if isinstance(recipients, str):
            recipients = [recipients]
        if not isinstance(recipients, list) or not recipients:
            raise InputError(f"{where}: `to` must list at least one address")
        password = environ.get(table["password_env"]) if isinstance(table.get("password_env"), str) else None
        return EmailChannel(
            name,
            _need(table, "host", str, where),
            _need(table, "from", str, where),
            tuple(str(r) for r in recipients),
            int(table.get("port", 25)),
            bool(table.get("starttls", False)),
            table.get("username"),
            password,
            ssl=bool(table.get("ssl", False)),
        )
    raise InputError(f"{where}: `type` must be webhook, syslog or email, not {kind!r}")


def _rule(table: Mapping[str, Any], where: str, channels: Mapping[str, Channel]) -> AlertRule:
    name = _need(table, "name", str, where)
    on = tuple(table.get("on", ("incident", "kev")))
    if not on or any(item not in SUBJECTS for item in on):
        raise InputError(f"{where}: `on` must list some of {', '.join(SUBJECTS)}")
    try:
        severity = Severity.parse(str(table.get("min_severity", "high")))
        kinds = tuple(FindingKind(k) for k in table.get("kinds", ()))
    except ValueError as exc:
        raise InputError(f"{where}: {exc}") from exc
    wanted = tuple(str(c) for c in table.get("channels", ()))
    unknown = [c for c in wanted if c not in channels]
    if unknown:
        raise InputError(f"{where}: unknown channel(s) {', '.join(unknown)}")
    return AlertRule(
        name,
        on,
        severity,
        kinds,
        tuple(str(a) for a in table.get("assets", ())),
        tuple(str(t) for t in table.get("tags", ())),
        wanted,
    )


def load_config(path: Path, *, environ: Mapping[str, str] | None = None) -> AlertConfig:
    """Read `alerts.toml`; errors name the file, the table and what was expected."""
    env = os.environ if environ is None else environ
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror}", str(path)) from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"not valid TOML: {exc}", str(path)) from exc
    config = AlertConfig()
    channels = data.get("channels", {})
    if not isinstance(channels, dict) or not channels:
        raise InputError("expected at least one [channels.NAME] table", str(path))
    for name, table in channels.items():
        where = f"{path}: [channels.{name}]"
        if not isinstance(table, dict):
            raise InputError(f"{where}: expected a table")
        config.channels[name] = _channel(name, table, where, env)
    for index, table in enumerate(data.get("rules", []), start=1):
        config.rules.append(_rule(table, f"{path}: [[rules]] #{index}", config.channels))
    retry = data.get("retry", {})
    try:
        config.retry = RetryPolicy(
            int(retry.get("attempts", 4)),
            float(retry.get("backoff", 1.0)),
            float(retry.get("factor", 2.0)),
            float(retry.get("max_delay", 60.0)),
        )
    except (TypeError, ValueError) as exc:
        raise InputError(f"{path}: [retry]: {exc}") from exc
    return config


def make_test_alert(tenant: str, now: datetime | None = None) -> Alert:
    """What `tianmu alerts test` sends: clearly a test, with a subject that is never deduplicated."""
    moment = (now or utcnow()).isoformat()
    return Alert(
        "test",
        f"test:{moment}",
        "test",
        Severity.INFO,
        "Tianmu test alert: this channel works",
        tenant,
        {"type": "test", "tenant": tenant, "title": "Tianmu test alert", "sent_at": moment},
    )
