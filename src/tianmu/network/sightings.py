"""A product version seen on the network, as discovery and website checks report it to the road.

Neither capability looks up vulnerabilities itself (capabilities never call each other): each reports
what it saw — a service banner's OpenSSH 9.2p1, a `Server: nginx/1.22.1` header — with the evidence a
finding about it must carry, and the road hands the sightings to `tianmu.vulns.services`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tianmu.core.models import Asset

__all__ = ["ProductSighting"]


@dataclass(frozen=True, slots=True)
class ProductSighting:
    asset: Asset
    """The host or website the product runs on: findings about it belong to this asset."""
    product: str
    """As fingerprinted (`OpenSSH`, `nginx`, `Werkzeug`)."""
    version: str
    cpe: str | None
    """The CPE 2.3 name the fingerprint gave it, if any (`tianmu.network.cpe`)."""
    evidence: Mapping[str, Any] = field(default_factory=dict)
    """Copied into every finding about the product (entities, port or URL, `fingerprint_extra`)."""
    where: str = ""
    """Appended to finding titles (` at 10.0.0.5:22`); empty where the asset says it all."""
