"""Fixtures for the report tests; the data itself lives in report_data.py."""

from __future__ import annotations

import pytest
from report_data import STARTED, build_assessment

from tianmu.core.models import Assessment, Asset, AssetKind


@pytest.fixture
def assessment() -> Assessment:
    return build_assessment()


@pytest.fixture
def empty_assessment() -> Assessment:
    return Assessment(target="/srv/empty", asset=Asset("/srv/empty", AssetKind.DIRECTORY), started=STARTED)
