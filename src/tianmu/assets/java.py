"""Java inventory: Maven pom.xml (literal and `${property}` versions) and Gradle dependency lockfiles.

A pom.xml alone does not determine every version (parents, BOMs, ranges); what we cannot settle from
the file itself is reported as Unresolved rather than guessed.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from xml.parsers import expat

from tianmu.assets._common import make_purl, read_text, version_problem
from tianmu.assets.interface import Extracted, Extractor
from tianmu.core.errors import InputError, ParseError
from tianmu.core.models import Component, Location, Unresolved

__all__ = ["GradleLockExtractor", "PomExtractor"]

ECOSYSTEM = "Maven"
_PROPERTY = re.compile(r"\$\{([^}]+)\}")


def _component(
    group: str, artifact: str, version: str, path: str, line: int | None, direct: bool | None
) -> Component:
    return Component(
        name=f"{group}:{artifact}",
        version=version,
        ecosystem=ECOSYSTEM,
        purl=make_purl("maven", group, artifact, version),
        location=Location(path, line),
        direct=direct,
    )


@dataclass(slots=True)
class _Node:
    tag: str
    line: int
    text: str = ""
    children: list[_Node] = field(default_factory=list)

    def child(self, tag: str) -> _Node | None:
        return next((c for c in self.children if c.tag == tag), None)

    def value(self, tag: str) -> str:
        found = self.child(tag)
        return found.text.strip() if found else ""

    def path(self, *tags: str) -> list[_Node]:
        nodes = [self]
        for tag in tags:
            nodes = [c for n in nodes for c in n.children if c.tag == tag]
        return nodes


def _parse_xml(text: str, display: str) -> _Node:
    """A tiny element tree with line numbers (ElementTree drops them). No DTDs or entities fetched."""
    parser = expat.ParserCreate()
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    stack: list[_Node] = [_Node("#document", 0)]

    def start(tag: str, _attrs: dict[str, str]) -> None:
        node = _Node(tag.rpartition(":")[2], parser.CurrentLineNumber)
        stack[-1].children.append(node)
        stack.append(node)

    def end(_tag: str) -> None:
        stack.pop()

    def data(chunk: str) -> None:
        stack[-1].text += chunk

    def entity_decl(*_args: object) -> None:
        # Entity declarations are how "billion laughs" documents blow up; a pom never needs them.
        raise ParseError("XML entity declarations are not accepted", display, parser.CurrentLineNumber)

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = data
    parser.EntityDeclHandler = entity_decl
    try:
        parser.Parse(text, True)
    except expat.ExpatError as exc:
        raise ParseError(f"invalid XML: {expat.ErrorString(exc.code)}", display, exc.lineno) from None
    document = stack[0]
    if not document.children or document.children[0].tag != "project":
        raise ParseError("not a Maven POM (no <project> root element)", display, 1)
    return document.children[0]


class PomExtractor(Extractor):
    name = "maven-pom"
    ecosystem = ECOSYSTEM

    def matches(self, relpath: Path) -> bool:
        return relpath.name == "pom.xml"

    def extract(self, path: Path, display_path: str) -> Iterator[Extracted]:
        project = _parse_xml(read_text(path, display_path), display_path)
        props = self._properties(project)
        managed: dict[tuple[str, str], str] = {}
        for dep in project.path("dependencyManagement", "dependencies", "dependency"):
            group, artifact = (
                self._resolve(dep.value("groupId"), props),
                self._resolve(dep.value("artifactId"), props),
            )
            if group and artifact and dep.value("version"):
                managed[(group, artifact)] = dep.value("version")
        for dep in project.path("dependencies", "dependency"):
            group, artifact = (
                self._resolve(dep.value("groupId"), props),
                self._resolve(dep.value("artifactId"), props),
            )
            raw = dep.value("version") or managed.get((group or "", artifact or ""), "")
            where = Location(display_path, dep.line)
            name = f"{group or dep.value('groupId')}:{artifact or dep.value('artifactId')}"
            if not group or not artifact:
                yield Unresolved(
                    name, ECOSYSTEM, name, where, "groupId or artifactId uses an unknown property"
                )
                continue
            if not raw:
                yield Unresolved(name, ECOSYSTEM, name, where, "no version: managed by a parent POM or BOM")
                continue
            version = self._resolve(raw, props)
            if version is None:
                yield Unresolved(
                    name, ECOSYSTEM, f"{name}:{raw}", where, f"version property not defined: {raw}"
                )
            elif version[:1] in "[(" or "," in version:
                yield Unresolved(name, ECOSYSTEM, f"{name}:{version}", where, "a version range")
            elif (problem := version_problem(version)) is not None:
                yield InputError(f"dependency {name}: {problem}: not a component", display_path, dep.line)
            else:
                yield _component(group, artifact, version, display_path, dep.line, True)

    @staticmethod
    def _properties(project: _Node) -> dict[str, str]:
        props: dict[str, str] = {}
        for holder in project.path("properties"):
            props.update({node.tag: node.text.strip() for node in holder.children})
        parent = project.child("parent")
        for key in ("version", "groupId", "artifactId"):
            value = project.value(key) or (parent.value(key) if parent and key != "artifactId" else "")
            if value:
                props.setdefault(f"project.{key}", value)
                props.setdefault(f"pom.{key}", value)
        if parent:
            for key in ("version", "groupId"):
                if parent.value(key):
                    props.setdefault(f"project.parent.{key}", parent.value(key))
        return props

    @staticmethod
    def _resolve(value: str, props: dict[str, str]) -> str | None:
        """Substitute `${name}` from the POM's own properties; None when one is not defined here."""
        for _ in range(10):  # properties may refer to properties; bounded against cycles
            if "${" not in value:
                return value
            missing = [name for name in _PROPERTY.findall(value) if name not in props]
            if missing:
                return None
            value = _PROPERTY.sub(lambda m: props[m.group(1)], value)
        return None


class GradleLockExtractor(Extractor):
    """`gradle.lockfile` (Gradle ≥ 6.8) and per-configuration `gradle/dependency-locks/*.lockfile`."""

    name = "gradle-lock"
    ecosystem = ECOSYSTEM

    def matches(self, relpath: Path) -> bool:
        if relpath.name == "gradle.lockfile" or relpath.name.endswith(".gradle.lockfile"):
            return True
        return relpath.suffix == ".lockfile" and relpath.parent.parts[-2:] == ("gradle", "dependency-locks")

    def extract(self, path: Path, display_path: str) -> Iterator[Extracted]:
        for number, raw in enumerate(read_text(path, display_path).splitlines(), 1):
            line = raw.strip()
            if not line or line.startswith("#") or line.startswith("empty="):
                continue
            coordinates = line.split("=", 1)[0]
            parts = coordinates.split(":")
            if len(parts) != 3 or not all(parts):
                raise ParseError(
                    f"expected group:artifact:version, got {coordinates!r}", display_path, number
                )
            group, artifact, version = parts
            yield _component(group, artifact, version, display_path, number, None)
