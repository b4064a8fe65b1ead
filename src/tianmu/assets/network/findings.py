"""Findings of one discovery scan, and the product sightings it hands the road.

Findings (conventions of `tianmu.core.models.Finding`; entities `ip` and `host`, `fingerprint_extra`
`address:port/tcp` so that each port of a host is its own problem):

| rule id                         | kind             | when                                                  |
| ------------------------------- | ---------------- | ----------------------------------------------------- |
| `network.port.new`              | exposure         | a re-scan finds a port open that was not open before  |
| `network.redis.no-auth`         | exposure         | Redis answers PING without authentication             |
| `network.mongodb.no-auth`       | exposure         | MongoDB lists databases without authentication        |
| `network.memcached.exposed`     | exposure         | memcached answers without authentication              |
| `network.mqtt.anonymous`        | exposure         | an MQTT broker accepts an anonymous CONNECT           |
| `network.postgresql.trust`      | misconfiguration | PostgreSQL lets an unknown user in without a password |
| `tls.certificate.expired`       | misconfiguration | the certificate's notAfter has passed                 |
| `tls.certificate.not-yet-valid` | misconfiguration | the certificate's notBefore is in the future          |
| `tls.certificate.self-signed`   | misconfiguration | subject equals issuer                                 |
| `tls.protocol.legacy`           | misconfiguration | TLS 1.0 or 1.1 is offered                             |
| CVE id (added by the road)      | vulnerability    | the service's CPE or package is in a CVE/OSV record   |

The first scan of a host is its baseline: ports are recorded, not reported as new.
"""

from __future__ import annotations

from typing import Any

from tianmu.assets.network.results import HostResult, host_asset
from tianmu.core.models import Finding, FindingKind, Service, Severity
from tianmu.network.sightings import ProductSighting

__all__ = ["new_port_findings", "service_findings", "sightings"]


def _evidence(host: HostResult, port: int, **extra: Any) -> dict[str, Any]:
    entities: dict[str, list[str]] = {"ip": [host.address]}
    if host.hostname:
        entities["host"] = [host.hostname]
    return {"entities": entities, "fingerprint_extra": f"{host.address}:{port}/tcp", "port": port, **extra}


def _finding(
    host: HostResult,
    svc: Service,
    tenant: str,
    kind: FindingKind,
    rule: str,
    title: str,
    severity: Severity,
    summary: str,
    **extra: Any,
) -> Finding:
    return Finding(
        kind=kind,
        rule_id=rule,
        title=title,
        severity=severity,
        asset=host_asset(host, tenant),
        summary=summary,
        evidence=_evidence(host, svc.port, service=svc.service, banner=svc.banner, **extra),
    )


def service_findings(host: HostResult, tenant: str) -> list[Finding]:
    """Exposure and TLS findings that one scan shows by itself (no history needed)."""
    out: list[Finding] = []
    where = f"{host.address}:{{port}}"
    for svc in host.services:
        info = host.infos.get(svc.port, {})
        at = where.format(port=svc.port)
        exp, mis = FindingKind.EXPOSURE, FindingKind.MISCONFIGURATION
        if svc.service == "redis" and info.get("auth_required") is False:
            out.append(
                _finding(
                    host,
                    svc,
                    tenant,
                    exp,
                    "network.redis.no-auth",
                    f"Redis without authentication at {at}",
                    Severity.HIGH,
                    "Anyone who can reach the port can read and write every key (and, through "
                    "CONFIG/MODULE, often run code). Set requirepass/ACLs and bind to trusted interfaces.",
                )
            )
        if svc.service == "mongodb" and info.get("auth_required") is False:
            out.append(
                _finding(
                    host,
                    svc,
                    tenant,
                    exp,
                    "network.mongodb.no-auth",
                    f"MongoDB without authentication at {at}",
                    Severity.HIGH,
                    "listDatabases succeeded without credentials. Enable authorization.",
                )
            )
        if svc.service == "memcached":
            out.append(
                _finding(
                    host,
                    svc,
                    tenant,
                    exp,
                    "network.memcached.exposed",
                    f"memcached reachable without authentication at {at}",
                    Severity.MEDIUM,
                    "memcached has no access control of its own; cached data can be read and "
                    "poisoned. Bind it to localhost or enable SASL.",
                )
            )
        if svc.service == "mqtt" and info.get("anonymous"):
            out.append(
                _finding(
                    host,
                    svc,
                    tenant,
                    exp,
                    "network.mqtt.anonymous",
                    f"MQTT broker accepts anonymous clients at {at}",
                    Severity.MEDIUM,
                    "An anonymous CONNECT was accepted: anyone can publish and subscribe. "
                    "Set allow_anonymous false and require credentials.",
                )
            )
        if svc.service == "postgresql" and info.get("auth") == "trust":
            out.append(
                _finding(
                    host,
                    svc,
                    tenant,
                    mis,
                    "network.postgresql.trust",
                    f"PostgreSQL trusts connections without a password at {at}",
                    Severity.HIGH,
                    "The server accepted an unknown user name without asking for a password "
                    "(pg_hba.conf `trust`). Use scram-sha-256.",
                )
            )
        out.extend(_tls_findings(host, svc, tenant, at))
    return out


def _tls_findings(host: HostResult, svc: Service, tenant: str, at: str) -> list[Finding]:
    tls = svc.tls or {}
    cert = tls.get("certificate") or {}
    mis = FindingKind.MISCONFIGURATION
    # (certificate flag, rule, title, severity, summary): one finding per flag the inspection set.
    checks = (
        (
            "expired",
            "tls.certificate.expired",
            f"Expired TLS certificate at {at}",
            Severity.HIGH,
            f"The certificate of {cert.get('subject')} expired on {cert.get('not_after')}.",
        ),
        (
            "not_yet_valid",
            "tls.certificate.not-yet-valid",
            f"TLS certificate not yet valid at {at}",
            Severity.MEDIUM,
            f"Valid from {cert.get('not_before')}.",
        ),
        (
            "self_signed",
            "tls.certificate.self-signed",
            f"Self-signed TLS certificate at {at}",
            Severity.MEDIUM,
            "Clients cannot verify who they talk to; use a certificate from a trusted CA.",
        ),
    )
    out = [
        _finding(host, svc, tenant, mis, rule, title, severity, summary, certificate=cert)
        for flag, rule, title, severity, summary in checks
        if cert.get(flag)
    ]
    legacy = [v for v in tls.get("versions") or [] if v in ("TLSv1.0", "TLSv1.1")]
    if legacy:
        out.append(
            _finding(
                host,
                svc,
                tenant,
                mis,
                "tls.protocol.legacy",
                f"Deprecated TLS versions offered at {at}: {', '.join(legacy)}",
                Severity.MEDIUM,
                "TLS 1.0 and 1.1 are deprecated (RFC 8996); offer TLS 1.2 and 1.3 only.",
                versions=tls.get("versions"),
            )
        )
    return out


def new_port_findings(host: HostResult, tenant: str) -> list[Finding]:
    if host.diff is None or host.diff.first_scan:
        return []
    out = []
    by_port = {s.port: s for s in host.services}
    for port in host.diff.appeared:
        svc = by_port.get(port) or Service(host.address, port)
        label = f"{port}/tcp" + (f" ({svc.service})" if svc.service and svc.service != "unknown" else "")
        out.append(
            _finding(
                host,
                svc,
                tenant,
                FindingKind.EXPOSURE,
                "network.port.new",
                f"New open port {label} on {host.hostname or host.address}",
                Severity.MEDIUM,
                "The port was not open at the previous scan. Check that the service is meant "
                "to be reachable.",
                product=svc.product,
                version=svc.version,
            )
        )
    return out


def sightings(host: HostResult, tenant: str) -> list[ProductSighting]:
    """What a vulnerability lookup needs of each service that named its product and version."""
    return [
        ProductSighting(
            host_asset(host, tenant),
            svc.product,
            svc.version,
            svc.cpe,
            _evidence(host, svc.port, service=svc.service, banner=svc.banner),
            f" at {host.address}:{svc.port}",
        )
        for svc in host.services
        if svc.product and svc.version
    ]
