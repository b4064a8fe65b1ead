"""What an alert is, what a channel must do with it, and how a delivery went.

A channel raises `DeliveryError` when it could not deliver, saying whether trying again may help;
`deliver` (in `delivery`) turns that into retries and a `DeliveryResult`.

Every alert goes out with the audit chain's tip (`AuditTip`, stamped by `deliver` from the source the
composition root gives; the situation floor knows no identity), so each receiver keeps an outside copy
of the chain's progress.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Protocol

from tianmu.core.models import Severity

__all__ = [
    "Alert",
    "AuditTip",
    "AuditTipSource",
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
class AuditTip:
    """Where the platform's audit chain ended when an alert was sent."""

    seq: int
    """The sequence number of the last entry (0: an empty chain, or no tip to be found)."""
    hash: str
    """The SM3 hash of that entry, hex."""

    def as_dict(self) -> dict[str, Any]:
        return {"seq": self.seq, "hash": self.hash}


_HASH = re.compile(r"[0-9a-f]{64}")

AuditTipSource = Callable[[], tuple[int, str]]
"""Reads the chain's (seq, hash) now; called just before each delivery, so the tip sent is current."""


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
    audit_tip: AuditTip | None = None
    """The audit chain's tip at delivery (`deliver` stamps it); None where no source was given."""

    def with_audit_tip(self, source: AuditTipSource | None) -> Alert:
        """This alert stamped with the tip `source` reads now (unchanged without a source)."""
        if source is None:
            return self
        seq, entry_hash = source()
        # The tip comes from a file anyone with the data directory can edit: never let it put a line
        # break into a mail header or a quote into syslog; an odd value is sent as "invalid".
        sound = _HASH.fullmatch(entry_hash) is not None
        return replace(self, audit_tip=AuditTip(int(seq), entry_hash if sound else "invalid"))

    def document(self) -> dict[str, Any]:
        """What a webhook posts and an e-mail attaches: the payload, and the audit tip when stamped."""
        if self.audit_tip is None:
            return self.payload
        return {**self.payload, "audit_tip": self.audit_tip.as_dict()}

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
