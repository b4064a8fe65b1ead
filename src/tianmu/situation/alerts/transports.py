"""How alerts reach the outside world: HTTP, syslog sockets, SMTP and the clock, each behind a seam.

The channels (`channels`) decide what to send and what a failure means; what actually leaves the
machine goes through one of these:

- webhook: an `httpx.BaseTransport` (httpx's own pool by default; `MemoryWebhook` records requests and
  answers from a script);
- syslog: a `SyslogSender` (`SocketSyslog` over UDP, or TCP with RFC 6587 octet counting;
  `MemorySyslog` records messages);
- email: a `Mailer` (`SmtpMailer` over smtplib; `MemoryMailer` records messages);
- waiting between retries and the timestamps in messages: a `tianmu.core.clock.Clock`;
- the audit chain's tip sent with every alert: an `AuditTipSource` (none by default; the road and the
  CLI give `tianmu.identity.audittip.exported_tip` of the data directory).

`AlertTransports` bundles them; `load_config` builds the channels of `alerts.toml` over one. A twin
fails on request: give it the errors (or HTTP statuses) to answer with first, in order.
"""

from __future__ import annotations

import smtplib
import socket
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Protocol

import httpx

from tianmu.core.clock import Clock, SystemClock

from .model import AuditTipSource

__all__ = [
    "AlertTransports",
    "Mailer",
    "MemoryMailer",
    "MemorySyslog",
    "MemoryWebhook",
    "SmtpMailer",
    "SmtpServer",
    "SocketSyslog",
    "SyslogSender",
]


# --- syslog ---------------------------------------------------------------------------------------------


class SyslogSender(Protocol):
    def send(self, host: str, port: int, protocol: str, message: bytes, timeout: float) -> None:
        """Send one syslog message over `protocol` (`udp` or `tcp`); raises `OSError` on failure."""
        ...


class SocketSyslog:
    """Syslog over the network: one datagram per message, or a TCP connection per message."""

    def send(self, host: str, port: int, protocol: str, message: bytes, timeout: float) -> None:
        if protocol == "udp":
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            with socket.socket(family, socket.SOCK_DGRAM) as sock:
                sock.sendto(message, (host, port))
            return
        with socket.create_connection((host, port), timeout=timeout) as sock:
            # RFC 6587 octet counting: the length prefix frames messages that contain newlines.
            sock.sendall(str(len(message)).encode() + b" " + message)


@dataclass(slots=True)
class MemorySyslog:
    """Records `(host, port, protocol, message)`; raises the queued `failures` first, one per send."""

    sent: list[tuple[str, int, str, bytes]] = field(default_factory=list)
    failures: list[OSError] = field(default_factory=list)

    def send(self, host: str, port: int, protocol: str, message: bytes, timeout: float) -> None:
        if self.failures:
            raise self.failures.pop(0)
        self.sent.append((host, port, protocol, message))


# --- mail -----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SmtpServer:
    """Where and how to submit mail."""

    host: str
    port: int = 25
    ssl: bool = False
    """Implicit TLS (SMTPS, usually port 465) instead of plain SMTP with optional STARTTLS."""
    starttls: bool = False
    username: str | None = None
    password: str | None = None
    timeout: float = 10.0


class Mailer(Protocol):
    def send(self, server: SmtpServer, message: EmailMessage) -> None:
        """Submit one message; raises smtplib's exceptions (or `OSError`) as smtplib does."""
        ...


class SmtpMailer:
    """Mail through smtplib: one SMTP session per message."""

    def send(self, server: SmtpServer, message: EmailMessage) -> None:
        kind = smtplib.SMTP_SSL if server.ssl else smtplib.SMTP
        with kind(server.host, server.port, timeout=server.timeout) as smtp:
            if server.starttls:
                smtp.starttls()
            if server.username:
                smtp.login(server.username, server.password or "")
            smtp.send_message(message)


@dataclass(slots=True)
class MemoryMailer:
    """Records `(server, message)`; raises the queued `failures` first (e.g. `SMTPResponseException`)."""

    sent: list[tuple[SmtpServer, EmailMessage]] = field(default_factory=list)
    failures: list[Exception] = field(default_factory=list)

    def send(self, server: SmtpServer, message: EmailMessage) -> None:
        if self.failures:
            raise self.failures.pop(0)
        self.sent.append((server, message))


# --- http -----------------------------------------------------------------------------------------------


class MemoryWebhook(httpx.BaseTransport):
    """An HTTP receiver in memory: records every request and answers 204, or first the queued `replies`
    (an HTTP status, or an `httpx.TransportError` to raise, such as `httpx.ConnectError`)."""

    def __init__(self, replies: list[int | httpx.TransportError] | None = None) -> None:
        self.requests: list[httpx.Request] = []
        self.replies: list[int | httpx.TransportError] = list(replies or [])

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        request.read()
        self.requests.append(request)
        reply = self.replies.pop(0) if self.replies else 204
        if isinstance(reply, httpx.TransportError):
            raise reply
        return httpx.Response(reply, request=request)


# --- all of them ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AlertTransports:
    """The outside world as the alert channels see it; the defaults are the real one."""

    http: httpx.BaseTransport | None = None
    """None: httpx's own connection pool, opened per delivery. A transport given here is shared and
    never closed by a channel."""
    syslog: SyslogSender = field(default_factory=SocketSyslog)
    mail: Mailer = field(default_factory=SmtpMailer)
    clock: Clock = field(default_factory=SystemClock)
    audit_tip: AuditTipSource | None = None
    """Reads the audit chain's (seq, hash) before each delivery; None sends no tip."""
