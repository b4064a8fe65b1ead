"""Check templates: small YAML files, in the spirit of nuclei's, that say what to request and what
in the answer proves a problem. Tianmu ships its own starter set (`websec/checks/`); users add theirs
with `tianmu web --templates DIR`.

    id: git-head-exposed                 # unique; becomes the finding's rule id as `web.<id>`
    name: Git metadata exposed
    severity: high                        # critical | high | medium | low | info
    kind: exposure                        # exposure | misconfiguration | vulnerability
    description: ...
    references: [https://...]
    request:
      method: GET                         # GET or HEAD only: checks are never destructive
      paths: ["/.git/HEAD"]               # relative to the site's base URL; each path is one request
      headers: {Accept: "*/*"}
    matchers-condition: and               # and (default) | or
    matchers:
      - type: status                      # status | word | regex | header
        status: [200]
      - type: word
        part: body                        # body (default) | header | all
        words: ["ref: refs/"]
        condition: or                     # between the words: or (default) | and
        case-insensitive: false
      - type: regex
        regex: ["^ref: refs/heads/"]
      - type: header
        name: Content-Type
        words: ["text/html"]
        negative: true                    # true: the matcher holds when it does NOT match

Errors name the file, line and template (`checks/x.yaml:7: template 'x': matchers[1]: unknown type
'words'`); a directory is loaded with the bad templates reported and the good ones kept.

Regular expressions are written in Python's syntax and matched with RE2 (`tianmu.core.regex`), in time
linear in the answer: the answer is the scanned site's, and a template may be imported from anywhere, so
`(a+)+b` against a long body must not keep the check busy for hours. An expression RE2 cannot take
(back-references, look-around, atomic groups, possessive quantifiers) refuses its template with the
reason, at load; it is never matched by a backtracking engine. A matcher's expressions are searched in
multi-line mode (`^` and `$` at every line), case-insensitively with `case-insensitive: true`.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tianmu.core.errors import ParseError
from tianmu.core.models import FindingKind, Severity
from tianmu.core.regex import LinearPattern, UnsafePattern, compile_linear
from tianmu.websec.client import WebResponse

__all__ = [
    "BUILTIN_CHECKS",
    "CheckTemplate",
    "Matcher",
    "load_template",
    "load_templates",
    "looks_like_template",
    "parse_template",
]

BUILTIN_CHECKS = Path(__file__).parent / "checks"
_ID = re.compile(r"^[a-z0-9][a-z0-9\-_.]*$")
_TOP_KEYS = {
    "id",
    "name",
    "severity",
    "kind",
    "description",
    "references",
    "request",
    "matchers",
    "matchers-condition",
    "tags",
}


@dataclass(frozen=True, slots=True)
class Matcher:
    type: str
    part: str = "body"
    words: tuple[str, ...] = ()
    regex: tuple[LinearPattern, ...] = ()
    status: tuple[int, ...] = ()
    name: str | None = None
    condition: str = "or"
    negative: bool = False
    case_insensitive: bool = False

    def _haystack(self, response: WebResponse) -> str:
        if self.type == "header" and self.name:
            return ", ".join(response.headers.get_list(self.name))
        if self.part == "header":
            return response.raw_head()
        if self.part == "all":
            return response.raw_head() + "\r\n\r\n" + response.text
        return response.text

    def matches(self, response: WebResponse) -> bool:
        if self.type == "status":
            hit = response.status in self.status
        else:
            text = self._haystack(response)
            if self.type in ("word", "header"):
                if self.type == "header" and not self.words:
                    hit = bool(text)
                else:
                    needle = [w.lower() for w in self.words] if self.case_insensitive else list(self.words)
                    hay = text.lower() if self.case_insensitive else text
                    results = [w in hay for w in needle]
                    hit = all(results) if self.condition == "and" else any(results)
            else:
                results = [p.search(text) for p in self.regex]
                hit = all(results) if self.condition == "and" else any(results)
        return hit != self.negative


@dataclass(frozen=True, slots=True)
class CheckTemplate:
    id: str
    name: str
    severity: Severity
    kind: FindingKind
    paths: tuple[str, ...]
    matchers: tuple[Matcher, ...]
    method: str = "GET"
    headers: dict[str, str] = field(default_factory=dict)
    condition: str = "and"
    description: str = ""
    references: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    source: str = ""

    @property
    def rule_id(self) -> str:
        return f"web.{self.id}"

    def matches(self, response: WebResponse) -> bool:
        results = (m.matches(response) for m in self.matchers)
        return all(results) if self.condition == "and" else any(results)


def _lines(text: str) -> dict[str, int]:
    """Line (1-based) of each top-level key and of each `matchers` item, for error messages."""
    out: dict[str, int] = {}
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return out
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            out[str(key.value)] = key.start_mark.line + 1
            if key.value == "request" and isinstance(value, yaml.MappingNode):
                for sub_key, _sub in value.value:
                    out[f"request.{sub_key.value}"] = sub_key.start_mark.line + 1
            if key.value == "matchers" and isinstance(value, yaml.SequenceNode):
                for index, item in enumerate(value.value):
                    out[f"matchers[{index}]"] = item.start_mark.line + 1
    return out


def _strings(value: Any, what: str) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and all(isinstance(v, str | int) for v in value):
        return tuple(str(v) for v in value)
    raise ValueError(f"{what} must be a string or a list of strings")


def _regex(source: str, flags: int) -> LinearPattern:
    try:
        # Python's compiler says whether the expression is valid in the syntax templates are written in
        # (compiling does not backtrack); RE2 then says whether it can be matched in linear time. Its
        # warning of `[[` would say no more than the refusal below.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "Possible nested set", FutureWarning)
            re.compile(source, flags)
    except re.error as exc:
        raise ValueError(f"bad regex {source!r}: {exc}") from exc
    try:
        return compile_linear(source, flags)
    except UnsafePattern as exc:
        raise ValueError(
            f"regex {source!r} refused: RE2 (linear-time matching) cannot take it: {exc}"
        ) from exc


def _matcher(raw: Any) -> Matcher:
    if not isinstance(raw, dict):
        raise ValueError("a matcher must be a mapping")
    kind = raw.get("type")
    if kind not in ("status", "word", "regex", "header"):
        raise ValueError(f"unknown type {kind!r} (expected status, word, regex or header)")
    part = raw.get("part", "body")
    if part not in ("body", "header", "all"):
        raise ValueError(f"unknown part {part!r} (expected body, header or all)")
    condition = raw.get("condition", "or")
    if condition not in ("and", "or"):
        raise ValueError(f"condition must be and/or, not {condition!r}")
    insensitive = bool(raw.get("case-insensitive", False))
    status: tuple[int, ...] = ()
    words: tuple[str, ...] = ()
    patterns: tuple[LinearPattern, ...] = ()
    if kind == "status":
        values = raw.get("status")
        if not isinstance(values, list) or not values or not all(isinstance(v, int) for v in values):
            raise ValueError("a status matcher needs `status: [codes]`")
        status = tuple(values)
    elif kind == "word":
        words = _strings(raw.get("words"), "words")
    elif kind == "regex":
        flags = re.MULTILINE | (re.IGNORECASE if insensitive else 0)
        patterns = tuple(_regex(p, flags) for p in _strings(raw.get("regex"), "regex"))
    else:
        if not isinstance(raw.get("name"), str):
            raise ValueError("a header matcher needs `name`")
        words = _strings(raw["words"], "words") if "words" in raw else ()
    return Matcher(
        kind,
        part,
        words,
        patterns,
        status,
        raw.get("name"),
        condition,
        bool(raw.get("negative", False)),
        insensitive,
    )


def load_template(path: Path) -> CheckTemplate:
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ParseError(f"cannot read: {exc}", source) from exc
    return parse_template(text, source)


def looks_like_template(path: Path) -> bool:
    """A YAML file whose top level has `id`, `request` and `matchers` (cheap: no validation)."""
    if path.suffix.lower() not in (".yaml", ".yml") or not path.is_file():
        return False
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8", errors="replace")[:65536])
    except yaml.YAMLError:
        return False
    return isinstance(data, dict) and {"id", "request", "matchers"} <= set(data)


def parse_template(text: str, source: str) -> CheckTemplate:
    """One template from its YAML text; `source` names it in errors (a path, or `store:<id>`)."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise ParseError(
            f"not valid YAML: {getattr(exc, 'problem', exc)}", source, mark.line + 1 if mark else None
        ) from exc
    lines = _lines(text)
    if not isinstance(data, dict):
        raise ParseError("a check template must be a YAML mapping", source, 1)

    def fail(message: str, key: str) -> ParseError:
        fallback = key.split("[")[0].split(".")[0]
        return ParseError(message, source, lines.get(key) or lines.get(fallback))

    unknown = sorted(set(data) - _TOP_KEYS)
    if unknown:
        raise fail(f"unknown key {unknown[0]!r} (expected {', '.join(sorted(_TOP_KEYS))})", unknown[0])
    for key in ("id", "name", "severity", "request", "matchers"):
        if key not in data:
            raise ParseError(f"missing `{key}`", source, 1)
    if not isinstance(data["id"], str) or not _ID.match(data["id"]):
        raise fail("`id` must be lower-case letters, digits, '-', '_' or '.'", "id")
    try:
        severity = Severity.parse(str(data["severity"]))
    except ValueError as exc:
        raise fail(f"unknown severity {data['severity']!r}", "severity") from exc
    try:
        kind = FindingKind(str(data.get("kind", "exposure")))
    except ValueError as exc:
        raise fail(f"unknown kind {data.get('kind')!r}", "kind") from exc
    request = data["request"]
    if not isinstance(request, dict):
        raise fail("`request` must be a mapping with `paths`", "request")
    method = str(request.get("method", "GET")).upper()
    if method not in ("GET", "HEAD"):
        raise fail(f"request method {method} is not allowed: checks use GET or HEAD only", "request.method")
    try:
        paths = _strings(request.get("paths"), "request.paths")
    except ValueError as exc:
        raise fail(str(exc), "request.paths") from exc
    if not all(p.startswith("/") for p in paths):
        raise fail("every request path must start with '/'", "request.paths")
    headers = request.get("headers") or {}
    if not isinstance(headers, dict):
        raise fail("request.headers must be a mapping", "request.headers")
    raw_matchers = data["matchers"]
    if not isinstance(raw_matchers, list) or not raw_matchers:
        raise fail("`matchers` must be a non-empty list", "matchers")
    matchers = []
    for index, raw in enumerate(raw_matchers):
        try:
            matchers.append(_matcher(raw))
        except ValueError as exc:
            raise fail(f"template {data['id']!r}: matchers[{index}]: {exc}", f"matchers[{index}]") from exc
    condition = data.get("matchers-condition", "and")
    if condition not in ("and", "or"):
        raise fail("matchers-condition must be and/or", "matchers-condition")
    return CheckTemplate(
        id=data["id"],
        name=str(data["name"]),
        severity=severity,
        kind=kind,
        paths=paths,
        matchers=tuple(matchers),
        method=method,
        headers={str(k): str(v) for k, v in headers.items()},
        condition=condition,
        description=str(data.get("description", "")).strip(),
        references=_strings(data.get("references") or [], "references"),
        tags=_strings(data.get("tags") or [], "tags"),
        source=source,
    )


def load_templates(*directories: Path) -> tuple[list[CheckTemplate], list[str]]:
    """Every `*.yaml`/`*.yml` under the directories (default: the built-in checks), and the errors."""
    roots = directories or (BUILTIN_CHECKS,)
    templates: dict[str, CheckTemplate] = {}
    errors: list[str] = []
    for root in roots:
        if root.is_file():
            files = [root]
        elif root.is_dir():
            files = sorted(p for p in root.rglob("*") if p.suffix.lower() in (".yaml", ".yml"))
        else:
            errors.append(f"{root}: no such file or directory")
            continue
        for file in files:
            try:
                template = load_template(file)
            except ParseError as exc:
                errors.append(str(exc))
                continue
            if template.id in templates:
                errors.append(
                    f"{file}: duplicate id {template.id!r} (first in {templates[template.id].source})"
                )
                continue
            templates[template.id] = template
    return list(templates.values()), errors
