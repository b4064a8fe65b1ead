"""The exposure and TLS findings discovery draws from one scan, each on a positive and a negative case."""

from __future__ import annotations

from typing import Any

import pytest

from tianmu.assets.network.findings import service_findings
from tianmu.assets.network.results import HostResult
from tianmu.core.models import Service


def rules(service: str, info: dict[str, Any], tls: dict[str, Any] | None = None) -> set[str]:
    host = HostResult("10.0.0.5", "db.internal")
    host.services = [Service("10.0.0.5", 1234, "tcp", service, tls=tls)]
    host.infos = {1234: info}
    found = service_findings(host, "default")
    for finding in found:
        assert finding.evidence["entities"] == {"ip": ["10.0.0.5"], "host": ["db.internal"]}
        assert finding.evidence["fingerprint_extra"] == "10.0.0.5:1234/tcp"
        assert finding.asset.name == "db.internal"
    return {f.rule_id for f in found}


@pytest.mark.parametrize(
    ("service", "exposed", "safe", "rule"),
    [
        ("redis", {"auth_required": False}, {"auth_required": True}, "network.redis.no-auth"),
        ("mongodb", {"auth_required": False}, {"auth_required": True}, "network.mongodb.no-auth"),
        ("mqtt", {"anonymous": True}, {"anonymous": False}, "network.mqtt.anonymous"),
        ("postgresql", {"auth": "trust"}, {"auth": "scram-sha-256"}, "network.postgresql.trust"),
    ],
)
def test_exposures(service: str, exposed: dict[str, Any], safe: dict[str, Any], rule: str) -> None:
    assert rules(service, exposed) == {rule}
    assert rules(service, safe) == set()


def test_memcached_is_always_exposed_and_others_not() -> None:
    assert rules("memcached", {"auth_required": False}) == {"network.memcached.exposed"}
    assert rules("http", {"status": 200}) == set()


def cert(**overrides: Any) -> dict[str, Any]:
    base = {
        "subject": "CN=db.internal",
        "not_after": "2099-01-01T00:00:00+00:00",
        "not_before": "2020-01-01",
        "expired": False,
        "not_yet_valid": False,
        "self_signed": False,
    }
    return {**base, **overrides}


@pytest.mark.parametrize(
    ("tls", "rule"),
    [
        ({"certificate": cert(expired=True)}, "tls.certificate.expired"),
        ({"certificate": cert(not_yet_valid=True)}, "tls.certificate.not-yet-valid"),
        ({"certificate": cert(self_signed=True)}, "tls.certificate.self-signed"),
        ({"certificate": cert(), "versions": ["TLSv1.0", "TLSv1.2"]}, "tls.protocol.legacy"),
    ],
)
def test_tls_findings(tls: dict[str, Any], rule: str) -> None:
    assert rules("https", {}, tls) == {rule}


def test_sound_tls_has_no_finding() -> None:
    assert rules("https", {}, {"certificate": cert(), "versions": ["TLSv1.2", "TLSv1.3"]}) == set()
