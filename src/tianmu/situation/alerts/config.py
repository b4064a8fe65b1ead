"""`alerts.toml`: channels, rules and the retry policy, read into an `AlertConfig`.

Errors name the file, the table and what was expected (see docs/situation.md for the format). Secrets
come from the file or, better, from the environment (`secret_env`, `password_env`). The channels are
built over an `AlertTransports` (the real network by default, twins in tests).
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tianmu.core.clock import Clock, SystemClock
from tianmu.core.errors import InputError
from tianmu.core.models import FindingKind, Severity

from .channels import EmailChannel, SyslogChannel, WebhookChannel
from .model import AuditTipSource, Channel, RetryPolicy
from .rules import SUBJECTS, AlertRule
from .transports import AlertTransports

__all__ = ["AlertConfig", "load_config"]


@dataclass(slots=True)
class AlertConfig:
    channels: dict[str, Channel] = field(default_factory=dict)
    rules: list[AlertRule] = field(default_factory=list)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    clock: Clock = field(default_factory=SystemClock)
    """What `deliver` waits through between attempts."""
    audit_tip: AuditTipSource | None = None
    """Where `deliver` reads the audit chain's tip to send with each alert (from `AlertTransports`)."""


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


def _channel(
    name: str, table: Mapping[str, Any], where: str, environ: Mapping[str, str], world: AlertTransports
) -> Channel:
    kind = table.get("type")
    if kind == "webhook":
        url = _need(table, "url", str, where)
        if not url.startswith(("http://", "https://")):
            raise InputError(f"{where}: `url` must be an http(s) URL")
        return WebhookChannel(
            name,
            url,
            _secret(table, where, environ),
            float(table.get("timeout", 10.0)),
            transport=world.http,
            clock=world.clock,
        )
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
            sender=world.syslog,
            clock=world.clock,
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
            mailer=world.mail,
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


def load_config(
    path: Path, *, environ: Mapping[str, str] | None = None, transports: AlertTransports | None = None
) -> AlertConfig:
    """Read `alerts.toml`; errors name the file, the table and what was expected. The channels send
    through `transports` (default: the network and the system clock)."""
    env = os.environ if environ is None else environ
    world = transports or AlertTransports()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror}", str(path)) from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"not valid TOML: {exc}", str(path)) from exc
    config = AlertConfig(clock=world.clock, audit_tip=world.audit_tip)
    channels = data.get("channels", {})
    if not isinstance(channels, dict) or not channels:
        raise InputError("expected at least one [channels.NAME] table", str(path))
    for name, table in channels.items():
        where = f"{path}: [channels.{name}]"
        if not isinstance(table, dict):
            raise InputError(f"{where}: expected a table")
        config.channels[name] = _channel(name, table, where, env, world)
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
