"""Test helpers for the intel tests: fixture locations and a STIX bundle built with the stix2 library."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import stix2

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "intel"
DROPPER_SHA256 = "2b56dc25e45c4aee0fad7e4cbbac1c240060ccb14fe3bf594f0f9b537959119b"
UA_PATTERN = "[network-traffic:extensions.'http-request-ext'.request_header.'User-Agent' = 'NightOwl/2.1']"


def build_stix_bundle() -> dict[str, object]:
    """A STIX 2.1 bundle as a sharing partner would send it: indicators with context and one bad object."""
    identity = stix2.Identity(name="Partner CERT", identity_class="organization")
    malware = stix2.Malware(name="NightOwl RAT", is_family=True, malware_types=["remote-access-trojan"])
    actor = stix2.IntrusionSet(name="Sandy Ledger")
    technique = stix2.AttackPattern(
        name="Web Protocols",
        external_references=[{"source_name": "mitre-attack", "external_id": "T1071.001"}],
    )
    live = datetime(2024, 1, 1, tzinfo=UTC)
    c2_domain = stix2.Indicator(
        name="NightOwl C2",
        pattern="[domain-name:value = 'nightowl-c2.example']",
        pattern_type="stix",
        valid_from=live,
        confidence=90,
        indicator_types=["malicious-activity"],
        created_by_ref=identity.id,
    )
    c2_ip = stix2.Indicator(
        pattern="[ipv4-addr:value = '203.0.113.66'] OR [ipv4-addr:value ISSUBSET '198.51.100.0/25']",
        pattern_type="stix",
        valid_from=live,
        confidence=80,
    )
    dropper = stix2.Indicator(
        pattern=f"[file:hashes.'SHA-256' = '{DROPPER_SHA256}']",
        pattern_type="stix",
        valid_from=live,
    )
    compound = stix2.Indicator(
        pattern="[file:name = 'svch0st.exe' AND file:hashes.MD5 = '0123456789ABCDEF0123456789ABCDEF']",
        pattern_type="stix",
        valid_from=live,
    )
    url = stix2.Indicator(
        pattern="[url:value = 'http://Update.NightOwl.example:80/get?id=7#frag']",
        pattern_type="stix",
        valid_from=live,
    )
    agent = stix2.Indicator(
        pattern=UA_PATTERN,
        pattern_type="stix",
        valid_from=live,
    )
    expired = stix2.Indicator(
        pattern="[domain-name:value = 'retired-c2.example']",
        pattern_type="stix",
        valid_from=datetime(2019, 1, 1, tzinfo=UTC),
        valid_until=datetime(2020, 1, 1, tzinfo=UTC),
    )
    relations = [
        stix2.Relationship(source_ref=i.id, relationship_type="indicates", target_ref=t.id)
        for i in (c2_domain, c2_ip, dropper, url)
        for t in (malware, actor, technique)
    ]
    objects = [identity, malware, actor, technique, c2_domain, c2_ip, dropper, compound, url, agent, expired]
    serialised = [json.loads(o.serialize()) for o in objects + relations]
    serialised.append(
        {
            "type": "indicator",
            "spec_version": "2.1",
            "id": "indicator--00000000-0000-4000-8000-000000000bad",
            "created": "2024-01-01T00:00:00Z",
            "modified": "2024-01-01T00:00:00Z",
            "pattern": "[domain-name:value = ",
            "pattern_type": "stix",
            "valid_from": "2024-01-01T00:00:00Z",
        }
    )
    return {"type": "bundle", "id": "bundle--6e1f9a43-2b0c-4a8e-9d6b-1f2e3d4c5b6a", "objects": serialised}
