"""Helpers shared by the extractors: decoding, format loaders that report lines, purls, line finding.

Every loader turns the parser's own exception into a ParseError carrying the file and the line, so
the scanner can report `path:line: message` and go on with the next file.
"""

from __future__ import annotations

import bisect
import json
import re
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml
from packageurl import PackageURL

from tianmu.core.errors import ParseError

__all__ = [
    "LineIndex",
    "load_json",
    "load_toml",
    "make_purl",
    "read_text",
    "toml_table_lines",
    "version_problem",
    "yaml_compose",
    "yaml_mapping_items",
]

_YamlLoader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


_MAX_VERSION = 256
_VERSION_UNFIT = re.compile(r"[\s\x00-\x1f\x7f<>\"'`]")


def version_problem(version: object) -> str | None:
    """Why a version as read from a file is not one (None: it may be): not a string (a TOML table, a
    number where text is expected), empty, too long, or holding spaces, control characters or markup,
    which no package manager writes and which would make a wrong component, silently."""
    if not isinstance(version, str):
        return f"the version is a {type(version).__name__}, not a string"
    if not version:
        return "the version is empty"
    if len(version) > _MAX_VERSION:
        return f"the version is longer than {_MAX_VERSION} characters"
    if _VERSION_UNFIT.search(version):
        return f"the version {version[:40]!r} holds spaces, control characters or markup"
    return None


def read_text(path: Path, display: str) -> str:
    """Read a whole (size-checked) text file; binary content and bad UTF-8 become a ParseError."""
    data = path.read_bytes()
    # NUL never occurs in the text formats we read; finding one early means "binary, misnamed".
    if b"\x00" in data[:65536]:
        raise ParseError("binary content where a text file was expected", display)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ParseError(f"not valid UTF-8 text (byte offset {exc.start})", display, line) from None


def load_json(path: Path, display: str) -> tuple[Any, str]:
    """Parse JSON; returns the document and its text (for line look-ups)."""
    text = read_text(path, display)
    try:
        return json.loads(text), text
    except json.JSONDecodeError as exc:
        raise ParseError(f"invalid JSON: {exc.msg} (column {exc.colno})", display, exc.lineno) from None
    except RecursionError:
        raise ParseError("invalid JSON: nested too deeply", display) from None


_TOML_AT = re.compile(r"\(at line (\d+), column (\d+)\)")


def load_toml(path: Path, display: str) -> tuple[dict[str, Any], str]:
    """Parse TOML; tomllib (3.11) puts the position only in its message, so we read it from there."""
    text = read_text(path, display)
    try:
        return tomllib.loads(text), text
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        line: int | None = None
        found = _TOML_AT.search(message)
        if found:
            line = int(found.group(1))
            message = message[: found.start()].rstrip()
        elif "end of document" in message:
            line = text.count("\n") + 1
            message = message.replace("(at end of document)", "").rstrip() + " (at end of file)"
        raise ParseError(f"invalid TOML: {message}", display, line) from None


def yaml_compose(text: str, display: str) -> yaml.Node | None:
    """Compose (not construct) YAML: nodes keep their marks, which give us line numbers."""
    try:
        node: yaml.Node | None = yaml.compose(text, Loader=_YamlLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        raise ParseError(f"invalid YAML: {exc.problem or exc.context}", display, line) from None
    except yaml.YAMLError as exc:
        raise ParseError(f"invalid YAML: {exc}", display) from None
    return node


def yaml_mapping_items(node: yaml.Node | None) -> Iterator[tuple[str, int, yaml.Node]]:
    """(key, 1-based line of the key, value node) for a mapping node; nothing for anything else."""
    if not isinstance(node, yaml.MappingNode):
        return
    for key, value in node.value:
        if isinstance(key, yaml.ScalarNode):
            yield str(key.value), key.start_mark.line + 1, value


def yaml_scalar(node: yaml.Node | None) -> str | None:
    return str(node.value) if isinstance(node, yaml.ScalarNode) else None


def yaml_get(node: yaml.Node | None, key: str) -> yaml.Node | None:
    for name, _line, value in yaml_mapping_items(node):
        if name == key:
            return value
    return None


def make_purl(
    type_: str,
    namespace: str | None,
    name: str,
    version: str | None,
    qualifiers: Mapping[str, str] | None = None,
) -> str:
    """A Package URL string (packageurl-python applies each type's normalisation rules)."""
    quals = {k: v for k, v in (qualifiers or {}).items() if v}
    purl = PackageURL(type=type_, namespace=namespace or None, name=name, version=version, qualifiers=quals)
    return str(purl.to_string())


class LineIndex:
    """Offset → line for a text, plus a cursor search to find where a JSON key or value first appears.

    JSON parsers give no positions, but JSON objects keep their order, so walking the document in order
    and searching forward from the previous hit finds each package's own occurrence, cheaply.
    """

    def __init__(self, text: str) -> None:
        self.text = text
        self._starts = [m.end() for m in re.finditer("\n", text)]
        self.cursor = 0

    def line_at(self, offset: int) -> int:
        return bisect.bisect_right(self._starts, offset) + 1

    def find(self, pattern: str, *, start: int | None = None, advance: bool = True) -> int | None:
        """Line of the first regex match at or after `start` (default: the cursor)."""
        found = re.compile(pattern).search(self.text, self.cursor if start is None else start)
        if found is None:
            return None
        if advance:
            self.cursor = found.end()
        return self.line_at(found.start())

    def find_key(self, key: str, *, opens: str = "{", start: int | None = None) -> int | None:
        """Line of `"key": {` (or `"key": "` with opens='"'), searching forward."""
        quoted = json.dumps(key)
        begin = self.cursor if start is None else start
        # Fast path for the layout every package manager writes; a regex only for other spacing.
        at = self.text.find(f"{quoted}: {opens}", begin)
        if at >= 0:
            self.cursor = at + len(quoted)
            return self.line_at(at)
        return self.find(re.escape(quoted) + r"\s*:\s*" + re.escape(opens), start=start)

    def offset_of(self, pattern: str) -> int:
        found = re.search(pattern, self.text)
        return found.start() if found else 0


_TOML_HEADER = re.compile(r"^\s*\[\[\s*package\s*\]\]\s*(#.*)?$")
_TOML_NAME = re.compile(r"^\s*name\s*=")


def toml_table_lines(text: str, count: int) -> list[int | None]:
    """Lines of `name = ...` in each `[[package]]` table, in order (poetry, Cargo, uv, pdm locks).

    When the number of headers found does not match what the TOML parser saw (a header inside a
    multi-line string, say), we give up on lines rather than give wrong ones.
    """
    lines: list[int | None] = []
    in_package = False
    for number, line in enumerate(text.splitlines(), 1):
        if _TOML_HEADER.match(line):
            lines.append(number)
            in_package = True
        elif line.lstrip().startswith("["):
            in_package = False
        elif in_package and _TOML_NAME.match(line):
            lines[-1] = number
            in_package = False
    if len(lines) != count:
        return [None] * count
    return lines
