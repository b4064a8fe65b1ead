"""Fixtures for the commercial-cryptography tests: the `openssl` command line for interoperability."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest


def skip_or_fail(reason: str) -> None:
    """As tests/conftest.py: where services are promised (CI), a missing tool fails instead of skipping."""
    if os.environ.get("TIANMU_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{reason} (TIANMU_REQUIRE_SERVICES=1)")
    pytest.skip(reason)


Runner = Callable[..., subprocess.CompletedProcess[bytes]]


@pytest.fixture(scope="session")
def openssl() -> Runner:
    """Run `openssl` (3.x, which has SM2/SM3) and return the completed process."""
    binary = shutil.which("openssl")
    if binary is None:
        skip_or_fail("the openssl command line is not installed")
    version = subprocess.run([binary, "version"], capture_output=True, check=True).stdout
    if not version.startswith(b"OpenSSL 3"):
        skip_or_fail(f"openssl is not OpenSSL 3: {version!r}")

    def run(*args: str | Path, check: bool = True) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run([binary, *map(str, args)], capture_output=True, check=check)

    return run
