"""The registry of built-in extractors."""

from __future__ import annotations

import pytest

from tianmu.assets.registry import EXTRACTORS, default_extractors


def test_registry_names_are_stable_and_unique() -> None:
    assert len(EXTRACTORS) == 20
    assert {
        "python-requirements",
        "npm-lock",
        "go-binary",
        "dpkg-status",
        "cyclonedx-json",
    } <= EXTRACTORS.keys()
    for name, cls in EXTRACTORS.items():
        assert cls.name == name


def test_default_extractors_can_switch_some_off() -> None:
    chosen = default_extractors({"go-binary"})
    assert len(chosen) == 19 and all(x.name != "go-binary" for x in chosen)
    with pytest.raises(ValueError, match="unknown extractor"):
        default_extractors({"nope"})
