"""Helpers every test directory may import by this unique name (several `conftest` modules exist, so
`from conftest import ...` would depend on which one Python found first)."""

from __future__ import annotations

import os

import pytest

__all__ = ["services_required", "skip_or_fail"]


def services_required() -> bool:
    return os.environ.get("TIANMU_REQUIRE_SERVICES") == "1"


def skip_or_fail(reason: str) -> None:
    """Where services are promised (CI), a missing one is a failure, not a skip."""
    if services_required():
        pytest.fail(f"{reason} (TIANMU_REQUIRE_SERVICES=1)")
    pytest.skip(reason)
