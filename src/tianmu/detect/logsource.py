"""Which Sigma log sources (product, category, service) an event belongs to.

Rules are indexed by their `logsource`; an event meets only the rules whose log source it belongs to.
An event belongs to a rule's log source when each of the rule's product, category and service that is
set is among the event's.

Windows: services from the Channel, with pySigma's own `windows_logsource_mapping` (service → channel);
categories from (Channel, EventID) with the Sysmon event ids of SigmaHQ's Sysmon pipeline plus the
Security/PowerShell sources SigmaHQ's Windows pipelines add (4688 for process_creation, 4104 for
ps_script...). The pySigma Sysmon and Windows pipeline packages hold these tables, but their releases
pin pySigma < 2 and would downgrade the pySigma we use, so the table is written here; it is the same data.

`pipeline_for_oracle()` turns the same table into a pySigma processing pipeline (conditions on Channel and
EventID added to each rule), which is what the SQLite oracle of the test suite and the benchmark use.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tianmu.core.models import Event
from tianmu.readers.auth import AUTH_PROGRAMS, SSHD_PROGRAMS

__all__ = ["SYSMON_CHANNEL", "WINDOWS_CATEGORIES", "EventSource", "event_source", "rule_applies"]

SYSMON_CHANNEL = "Microsoft-Windows-Sysmon/Operational"
_SECURITY = "Security"
_POWERSHELL = ("Microsoft-Windows-PowerShell/Operational", "PowerShellCore/Operational")
_POWERSHELL_CLASSIC = "Windows PowerShell"

WINDOWS_CATEGORIES: dict[str, tuple[tuple[str, tuple[int, ...]], ...]] = {
    # category: ((channel, event ids), ...)
    "process_creation": ((SYSMON_CHANNEL, (1,)), (_SECURITY, (4688,))),
    "file_change": ((SYSMON_CHANNEL, (2,)),),
    "network_connection": ((SYSMON_CHANNEL, (3,)),),
    "sysmon_status": ((SYSMON_CHANNEL, (4, 16)),),
    "process_termination": ((SYSMON_CHANNEL, (5,)),),
    "driver_load": ((SYSMON_CHANNEL, (6,)),),
    "image_load": ((SYSMON_CHANNEL, (7,)),),
    "create_remote_thread": ((SYSMON_CHANNEL, (8,)),),
    "raw_access_thread": ((SYSMON_CHANNEL, (9,)),),
    "process_access": ((SYSMON_CHANNEL, (10,)),),
    "file_event": ((SYSMON_CHANNEL, (11,)),),
    "registry_add": ((SYSMON_CHANNEL, (12,)),),
    "registry_delete": ((SYSMON_CHANNEL, (12,)),),
    "registry_set": ((SYSMON_CHANNEL, (13,)),),
    "registry_rename": ((SYSMON_CHANNEL, (14,)),),
    "registry_event": ((SYSMON_CHANNEL, (12, 13, 14)),),
    "create_stream_hash": ((SYSMON_CHANNEL, (15,)),),
    "pipe_created": ((SYSMON_CHANNEL, (17, 18)),),
    "wmi_event": ((SYSMON_CHANNEL, (19, 20, 21)),),
    "dns_query": ((SYSMON_CHANNEL, (22,)),),
    "file_delete": ((SYSMON_CHANNEL, (23, 26)),),
    "clipboard_capture": ((SYSMON_CHANNEL, (24,)),),
    "process_tampering": ((SYSMON_CHANNEL, (25,)),),
    "file_delete_detected": ((SYSMON_CHANNEL, (26,)),),
    "file_block_executable": ((SYSMON_CHANNEL, (27,)),),
    "file_block_shredding": ((SYSMON_CHANNEL, (28,)),),
    "file_executable_detected": ((SYSMON_CHANNEL, (29,)),),
    "sysmon_error": ((SYSMON_CHANNEL, (255,)),),
    "ps_module": ((_POWERSHELL[0], (4103,)), (_POWERSHELL[1], (4103,))),
    "ps_script": ((_POWERSHELL[0], (4104,)), (_POWERSHELL[1], (4104,))),
    "ps_classic_start": ((_POWERSHELL_CLASSIC, (400,)),),
    "ps_classic_provider_start": ((_POWERSHELL_CLASSIC, (600,)),),
    "ps_classic_script": ((_POWERSHELL_CLASSIC, (800,)),),
}


@functools.cache
def _windows_services() -> dict[str, str | Sequence[str]]:
    """pySigma's service → channel table (imported on first use: a warm start needs no pySigma)."""
    # pySigma: heavy, optional on a warm start (compiled rules from the cache need no pySigma).
    from sigma.pipelines.common import windows_logsource_mapping

    return dict(windows_logsource_mapping)


@functools.cache
def _channel_services() -> dict[str, tuple[str, ...]]:
    services: dict[str, tuple[str, ...]] = {}
    for service, channels in _windows_services().items():
        for channel in [channels] if isinstance(channels, str) else channels:
            services[channel.lower()] = (*services.get(channel.lower(), ()), service)
    return services


_CATEGORY_BY_CHANNEL_EVENT: dict[tuple[str, int], tuple[str, ...]] = {}
for _category, _pairs in WINDOWS_CATEGORIES.items():
    for _channel, _ids in _pairs:
        for _event_id in _ids:
            key = (_channel.lower(), _event_id)
            _CATEGORY_BY_CHANNEL_EVENT[key] = (*_CATEGORY_BY_CHANNEL_EVENT.get(key, ()), _category)

# Suricata EVE event types → Sigma categories our rules (and others') use.
_SURICATA_CATEGORIES = {
    "dns": ("dns",),
    "http": ("proxy",),
    "flow": ("network_connection",),
    "alert": ("ids",),
}


@dataclass(frozen=True, slots=True)
class EventSource:
    """The log sources of one kind of event; `key` identifies the kind (events with one key share them)."""

    key: tuple[Any, ...]
    products: frozenset[str]
    categories: frozenset[str]
    services: frozenset[str]


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def event_source(event: Event) -> tuple[Any, ...]:
    """The key that decides the log sources of an event (cheap: called once per event)."""
    fields = event.fields
    kind = event.source_type
    if kind == "evtx":
        return (kind, fields.get("Channel"), fields.get("EventID"))
    if kind in ("syslog", "journald"):
        return (kind, fields.get("program"))
    if kind == "suricata":
        return (kind, fields.get("event_type"))
    if kind == "webserver-error":
        return (kind, fields.get("server"))
    return (kind,)


def sources_of(key: tuple[Any, ...]) -> EventSource:
    """The products, categories and services of an event kind (cached by the engine per key)."""
    kind = key[0]
    products: set[str] = set()
    categories: set[str] = set()
    services: set[str] = set()
    if kind == "evtx":
        channel = str(key[1] or "").lower()
        products.add("windows")
        services.update(_channel_services().get(channel, ()))
        event_id = _int(key[2])
        if event_id is not None:
            categories.update(_CATEGORY_BY_CHANNEL_EVENT.get((channel, event_id), ()))
    elif kind in ("syslog", "journald", "auditd"):
        products.add("linux")
        if kind == "auditd":
            services.add("auditd")
        else:
            program = str(key[1] or "").split("(", 1)[0].split("/")[-1].lower()
            services.add("syslog")
            if program:
                services.add(program)
            if program in SSHD_PROGRAMS:
                services.add("sshd")
            if program in AUTH_PROGRAMS or program in ("pam_unix", "systemd-logind", "cron", "crond"):
                services.add("auth")
            if program in ("cron", "crond"):
                services.add("cron")
    elif kind == "webserver":
        categories.add("webserver")
    elif kind == "webserver-error":
        services.add(str(key[1] or ""))
    elif kind == "suricata":
        products.add("suricata")
        event_type = str(key[1] or "")
        services.add(event_type)
        categories.update(_SURICATA_CATEGORIES.get(event_type, ()))
    return EventSource(key, frozenset(products), frozenset(categories), frozenset(services))


def rule_applies(logsource: Mapping[str, str | None], source: EventSource) -> bool:
    """True when each of the rule's product, category, service that is set is one of the event's."""
    product = logsource.get("product")
    category = logsource.get("category")
    service = logsource.get("service")
    if product and product not in source.products:
        return False
    if category and category not in source.categories:
        return False
    return not (service and service not in source.services)


def pipeline_for_oracle() -> Any:
    """A pySigma pipeline adding Channel/EventID conditions per log source, as the SQLite oracle needs."""
    # pySigma's pipelines: heavy, optional for every run but the oracle's (tests, benchmark).
    from sigma.processing.conditions import LogsourceCondition  # pySigma: optional, as above
    from sigma.processing.pipeline import ProcessingItem, ProcessingPipeline  # pySigma: optional
    from sigma.processing.transformations import AddConditionTransformation  # pySigma: optional

    items: list[ProcessingItem] = []
    for category, pairs in WINDOWS_CATEGORIES.items():
        channels = sorted({channel for channel, _ in pairs})
        ids = sorted({event_id for _, event_ids in pairs for event_id in event_ids})
        items.append(
            ProcessingItem(
                identifier=f"tianmu_{category}",
                transformation=AddConditionTransformation(
                    {"Channel": channels, "EventID": ids}  # type: ignore[dict-item]  # ints are valid values
                ),
                rule_conditions=[LogsourceCondition(category=category, product="windows")],
            )
        )
    for service, channel_names in _windows_services().items():
        items.append(
            ProcessingItem(
                identifier=f"tianmu_service_{service}",
                transformation=AddConditionTransformation(
                    {"Channel": [channel_names] if isinstance(channel_names, str) else list(channel_names)}
                ),
                rule_conditions=[LogsourceCondition(service=service, product="windows")],
            )
        )
    return ProcessingPipeline(name="tianmu windows log sources", priority=10, items=items)


_KNOWN_CATEGORIES = frozenset(WINDOWS_CATEGORIES) | {"webserver", "dns", "proxy", "network_connection", "ids"}
_KNOWN_PRODUCTS = frozenset({"windows", "linux", "suricata"})
_WEB_SERVICES = frozenset({"apache", "nginx"})


def logsource_problem(product: str | None, category: str | None, service: str | None) -> str | None:
    """Why no event Tianmu reads can belong to this log source; None when some can.

    A rule over a log source we never produce (cloud audit logs, EDR-only Linux process events...)
    would never fire: it is reported as unusable rather than silently loaded.
    """
    where = "/".join(part for part in (product, category, service) if part) or "(none)"
    if product and product not in _KNOWN_PRODUCTS:
        return f"no field mapping for log source {where}: Tianmu reads no {product} logs"
    if product == "windows":
        if category and category not in WINDOWS_CATEGORIES:
            return f"no field mapping for log source {where}: no Windows event maps to category {category}"
        if service and service not in _windows_services():
            return f"no field mapping for log source {where}: no Windows channel for service {service}"
        return None
    if product == "linux":
        if category:
            return (
                f"no field mapping for log source {where}: Linux {category} events need an EDR/auditd mapping"
            )
        return None
    if product == "suricata":
        return None
    if category and category not in _KNOWN_CATEGORIES:
        return f"no field mapping for log source {where}"
    if not category and service and service not in _WEB_SERVICES:
        return f"no field mapping for log source {where}"
    if not category and not service:
        return None
    return None
