"""Early warning: alert rules over incidents and findings, delivered by webhook, syslog and email.

- `rules`: what to alert on (`on`: incident state changes, new findings, KEV entries newly affecting an
  asset), with a severity threshold, finding kinds, asset name patterns and asset tags.
- `channels`: webhook (JSON body, HMAC-SHA256 over `timestamp.body` in `X-Tianmu-Signature`), syslog
  (RFC 5424 over UDP, or over TCP with RFC 6587 octet counting), email over SMTP (optional STARTTLS and
  login).
- `transports`: the outside world behind seams (an `httpx.BaseTransport`, a `SyslogSender`, a `Mailer`,
  a `Clock`), with in-memory twins that record what was sent.
- `delivery`: retries with exponential backoff on transient failures, and deduplication: the last state
  delivered per (rule, channel, subject) is stored, so an incident alerts once per state change and a
  KEV entry once per affected finding.
- `config`: `alerts.toml` (in the data directory by default; see docs/situation.md).

Every alert carries the audit chain's tip (seq and hash of its last entry) when its deliverer gives a
source for it (`AlertTransports.audit_tip`): the situation floor may not read identity's files itself.
"""

from __future__ import annotations

from .channels import EmailChannel, SyslogChannel, WebhookChannel, format_syslog, sign_webhook
from .config import AlertConfig, load_config
from .delivery import deliver, run_alerts
from .model import (
    Alert,
    AuditTip,
    AuditTipSource,
    Channel,
    DeliveryError,
    DeliveryResult,
    RetryPolicy,
    make_test_alert,
)
from .rules import SUBJECTS, AlertRule, pending_alerts
from .transports import (
    AlertTransports,
    Mailer,
    MemoryMailer,
    MemorySyslog,
    MemoryWebhook,
    SmtpMailer,
    SmtpServer,
    SocketSyslog,
    SyslogSender,
)

__all__ = [
    "SUBJECTS",
    "Alert",
    "AlertConfig",
    "AlertRule",
    "AlertTransports",
    "AuditTip",
    "AuditTipSource",
    "Channel",
    "DeliveryError",
    "DeliveryResult",
    "EmailChannel",
    "Mailer",
    "MemoryMailer",
    "MemorySyslog",
    "MemoryWebhook",
    "RetryPolicy",
    "SmtpMailer",
    "SmtpServer",
    "SocketSyslog",
    "SyslogChannel",
    "SyslogSender",
    "WebhookChannel",
    "deliver",
    "format_syslog",
    "load_config",
    "make_test_alert",
    "pending_alerts",
    "run_alerts",
    "sign_webhook",
]
