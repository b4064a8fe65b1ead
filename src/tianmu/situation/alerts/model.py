"""What an alert is, what a channel must do with it, and how a delivery went.

A channel raises `DeliveryError` when it could not deliver, saying whether trying again may help;
`deliver` (in `delivery`) turns that into retries and a `DeliveryResult`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from tianmu.core.models import Severity

__all__ = [
    "Alert",
    "Channel",
    "DeliveryError",
    "DeliveryResult",
    "RetryPolicy",
    "make_test_alert",
]


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
    """Somewhere alerts go: `send` delivers one alert or raises `DeliveryError`."""

    name: str

    def send(self, alert: Alert) -> None: ...


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


def make_test_alert(tenant: str, now: datetime) -> Alert:
    """What `tianmu alerts test` sends: clearly a test, with a subject that is never deduplicated."""
    moment = now.isoformat()
    return Alert(
        "test",
        f"test:{moment}",
        "test",
        Severity.INFO,
        "Tianmu test alert: this channel works",
        tenant,
        {"type": "test", "tenant": tenant, "title": "Tianmu test alert", "sent_at": moment},
    )
