"""The three kinds of channel: webhook (signed JSON), syslog (RFC 5424) and email.

A channel turns an alert into its message and decides what a failure means (`DeliveryError`, transient
or not); sending goes through the seams of `transports`, so the same channel runs against the network
or against in-memory twins.

- Webhook: the payload as JSON, HMAC-SHA256 over `timestamp.body` in `X-Tianmu-Signature`; network
  errors, HTTP 5xx, 408 and 429 are transient, other 4xx permanent.
- Syslog: one RFC 5424 message over UDP, or over TCP with RFC 6587 octet counting; socket errors are
  transient.
- Email: a text message with the payload attached as JSON, over SMTP (optional STARTTLS and login, or
  implicit TLS); SMTP 4xx is transient, 5xx permanent.

The audit chain's tip, when the alert carries one, is the `audit_tip` field of the webhook's JSON (under
its signature), a `[tianmu-audit@32473 seq="…" tip="…"]` structured-data element in syslog, and the
`X-Tianmu-Audit-Tip: seq=…; tip=…` header (and JSON field) of an e-mail.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import smtplib
import socket
from dataclasses import dataclass, field
from datetime import datetime
from email.message import EmailMessage

import httpx

from tianmu.core.clock import Clock, SystemClock
from tianmu.core.models import Severity

from .model import Alert, DeliveryError
from .transports import Mailer, SmtpMailer, SmtpServer, SocketSyslog, SyslogSender

__all__ = ["EmailChannel", "SyslogChannel", "WebhookChannel", "format_syslog", "sign_webhook"]

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


def sign_webhook(secret: bytes, timestamp: str, body: bytes) -> str:
    """`sha256=` + hex HMAC-SHA256 over `timestamp.body` (the timestamp stops replays of old bodies)."""
    return "sha256=" + hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


@dataclass(slots=True)
class WebhookChannel:
    name: str
    url: str
    secret: bytes
    timeout: float = 10.0
    transport: httpx.BaseTransport | None = None
    """None: httpx's own pool, opened and closed per delivery (see `AlertTransports.http`)."""
    clock: Clock = field(default_factory=SystemClock)

    def _post(self, body: bytes, headers: dict[str, str]) -> httpx.Response:
        if self.transport is None:
            with httpx.Client(timeout=self.timeout) as client:
                return client.post(self.url, content=body, headers=headers)
        # A transport passed in is shared (a pool, a twin): leaving the client unclosed keeps it open.
        return httpx.Client(transport=self.transport, timeout=self.timeout).post(
            self.url, content=body, headers=headers
        )

    def send(self, alert: Alert) -> None:
        body = json.dumps(alert.document(), sort_keys=True, ensure_ascii=False).encode()
        stamp = str(int(self.clock.now().timestamp()))
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "tianmu-alerts",
            "X-Tianmu-Timestamp": stamp,
            "X-Tianmu-Signature": sign_webhook(self.secret, stamp, body),
            "X-Tianmu-Delivery": alert.delivery_id,
        }
        try:
            response = self._post(body, headers)
        except httpx.HTTPError as exc:
            raise DeliveryError(f"{self.url}: {exc.__class__.__name__}: {exc}") from exc
        if response.status_code >= 300:
            transient = response.status_code >= 500 or response.status_code in (408, 429)
            raise DeliveryError(f"{self.url}: HTTP {response.status_code}", transient=transient)


def _sd_escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


def _sd_element(sd_id: str, params: dict[str, str]) -> str:
    return "[" + sd_id + "".join(f' {k}="{_sd_escape(v)}"' for k, v in params.items()) + "]"


def format_syslog(
    alert: Alert,
    now: datetime,
    *,
    facility: int = 4,
    hostname: str | None = None,
    app_name: str = "tianmu",
    sd_id: str = _SD_ID,
) -> bytes:
    """One RFC 5424 message stamped `now`. Hand-written: the format is a single line, and the stdlib
    handler only speaks the older BSD format (RFC 3164)."""
    pri = facility * 8 + _SYSLOG_SEVERITY[alert.severity]
    stamp = now.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    host = (hostname or socket.gethostname() or "-")[:255].replace(" ", "_")
    params = {
        "rule": alert.rule,
        "subject": alert.subject,
        "severity": alert.severity.value,
        "state": alert.state,
        "tenant": alert.tenant,
    }
    sd = _sd_element(sd_id, params)
    if alert.audit_tip is not None:
        # Its own element, named after the alert's (`tianmu-audit@32473` beside `tianmu@32473`), so a
        # receiver can file the chain's progress apart from the alert.
        name, at, number = sd_id.partition("@")
        tip = {"seq": str(alert.audit_tip.seq), "tip": alert.audit_tip.hash}
        sd += _sd_element(f"{name}-audit{at}{number}", tip)
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
    """`udp` or `tcp`."""
    facility: int = 4
    hostname: str | None = None
    timeout: float = 10.0
    sender: SyslogSender = field(default_factory=SocketSyslog)
    clock: Clock = field(default_factory=SystemClock)

    def send(self, alert: Alert) -> None:
        message = format_syslog(alert, self.clock.now(), facility=self.facility, hostname=self.hostname)
        try:
            self.sender.send(self.host, self.port, self.transport, message, self.timeout)
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
    mailer: Mailer = field(default_factory=SmtpMailer)

    def message(self, alert: Alert) -> EmailMessage:
        message = EmailMessage()
        message["Subject"] = f"[Tianmu] {alert.severity.value.upper()}: {alert.title}"
        message["From"] = self.sender
        message["To"] = ", ".join(self.recipients)
        message["X-Tianmu-Delivery"] = alert.delivery_id
        if alert.audit_tip is not None:
            message["X-Tianmu-Audit-Tip"] = f"seq={alert.audit_tip.seq}; tip={alert.audit_tip.hash}"
        document = json.dumps(alert.document(), indent=2, sort_keys=True, ensure_ascii=False)
        body = alert.text() + "\n\n" + document
        message.set_content(body)
        return message

    def send(self, alert: Alert) -> None:
        server = SmtpServer(
            self.host, self.port, self.ssl, self.starttls, self.username, self.password, self.timeout
        )
        where = f"smtp {self.host}:{self.port}"
        try:
            self.mailer.send(server, self.message(alert))
        except smtplib.SMTPResponseException as exc:
            raise DeliveryError(
                f"{where}: {exc.smtp_code} {exc.smtp_error!r}", transient=exc.smtp_code < 500
            ) from exc
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            raise DeliveryError(
                f"{where}: recipients refused {codes}", transient=all(c < 500 for c in codes)
            ) from exc
        except (smtplib.SMTPException, OSError) as exc:
            raise DeliveryError(f"{where}: {exc}") from exc
