"""Helpers for detection tests: compile Sigma YAML written in a test, match events built in a test."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tianmu.core.models import Event, Location
from tianmu.detect.engine import Detector
from tianmu.detect.kb import RuleBase, load_rule_base

RuleLoader = Callable[[str], RuleBase]


@pytest.fixture
def load_rules(tmp_path: Path) -> RuleLoader:
    """Compile one YAML text (one or more Sigma documents) into a rule base."""
    counter = iter(range(10_000))

    def load(text: str) -> RuleBase:
        folder = tmp_path / f"rules{next(counter)}"
        folder.mkdir()
        (folder / "rule.yml").write_text(text)
        return load_rule_base([folder])

    return load


def evtx_event(
    fields: dict[str, Any], record: int = 1, channel: str = "Microsoft-Windows-Sysmon/Operational"
) -> Event:
    return Event(
        fields={"Channel": channel, **fields},
        raw="{}",
        origin=Location("test.evtx", record),
        timestamp=datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=record),
        source_type="evtx",
    )


def matches(base: RuleBase, event: Event) -> list[str]:
    detector = Detector(base)
    hits, _ = detector.match(event)
    return [detector.rules[i].title for i in hits]
