"""Fixtures for the threat-intelligence tests: fixture feeds, a STIX bundle built here, a populated base."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from intel_helpers import FIXTURES, build_stix_bundle

from tianmu.intel.kb import import_feed
from tianmu.store.database import Store


@pytest.fixture
def stix_bundle(tmp_path: Path) -> Path:
    path = tmp_path / "partner-cert.json"
    path.write_text(json.dumps(build_stix_bundle(), indent=2), encoding="utf-8")
    return path


@pytest.fixture
def home(tmp_path: Path) -> Path:
    path = tmp_path / "home"
    path.mkdir()
    return path


@pytest.fixture
def loaded(store: Store, stix_bundle: Path, home: Path) -> Store:
    """A base with the built STIX bundle, the fixture MISP feed, CSV (with a column map) and plain list."""
    import_feed(store, stix_bundle, home=home)
    import_feed(store, FIXTURES / "misp", home=home)
    import_feed(
        store,
        FIXTURES / "iocs.csv",
        home=home,
        columns={"value": "indicator", "type": "kind", "confidence": "conf", "valid_until": "expires",
                 "malware": "family", "technique": "ttp"},
    )  # fmt: skip
    import_feed(store, FIXTURES / "plain.txt", home=home, source="analyst-notes", confidence=60)
    return store
