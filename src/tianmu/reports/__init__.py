"""Renderings of an assessment: JSON, SARIF 2.1.0, CycloneDX 1.6 and a self-contained HTML report.

Every format is a function `Assessment -> str` registered in `FORMATS`; the CLI and the API call
`render(assessment, fmt)` or `write_report(...)` and never a format module directly. Findings are
rendered in the order given: sorting is the caller's decision.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from tianmu.core.errors import ConfigError
from tianmu.core.models import Assessment

from .cyclonedx import render_cyclonedx
from .html import render_html
from .json_report import finding_to_dict, render_json
from .sarif import render_sarif

__all__ = ["FORMATS", "Renderer", "finding_to_dict", "render", "write_report"]

Renderer = Callable[[Assessment], str]

FORMATS: dict[str, Renderer] = {
    "json": render_json,
    "sarif": render_sarif,
    "cyclonedx": render_cyclonedx,
    "html": render_html,
}


def render(assessment: Assessment, fmt: str) -> str:
    """Render in the named format; an unknown name is a ConfigError listing the known ones."""
    try:
        renderer = FORMATS[fmt.lower()]
    except KeyError:
        raise ConfigError(f"unknown report format {fmt!r}; choose one of {', '.join(FORMATS)}") from None
    return renderer(assessment)


def write_report(assessment: Assessment, fmt: str, path: str | Path) -> Path:
    """Render and write as UTF-8, creating parent folders; returns the path written."""
    text = render(assessment, fmt)
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    # newline="" writes the text as rendered: no platform line-ending translation inside JSON/HTML.
    target.write_text(text, encoding="utf-8", newline="")
    return target
