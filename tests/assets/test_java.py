"""pom.xml and Gradle lockfiles."""

from __future__ import annotations

from pathlib import Path

import pytest

from tianmu.assets.java import GradleLockExtractor, PomExtractor
from tianmu.core.errors import ParseError
from tianmu.core.models import Component, Unresolved


def test_pom_versions_properties_and_unresolved(fixtures: Path) -> None:
    items = list(PomExtractor().extract(fixtures / "java" / "pom.xml", "pom.xml"))
    assert [
        (c.name, c.version, c.purl, c.location.line) for c in items if isinstance(c, Component) and c.location
    ] == [
        (
            "org.apache.logging.log4j:log4j-core",
            "2.14.1",
            "pkg:maven/org.apache.logging.log4j/log4j-core@2.14.1",
            31,
        ),
        (
            "com.fasterxml.jackson.core:jackson-databind",
            "2.9.8",
            "pkg:maven/com.fasterxml.jackson.core/jackson-databind@2.9.8",
            36,
        ),
        (
            "commons-collections:commons-collections",
            "3.2.1",
            "pkg:maven/commons-collections/commons-collections@3.2.1",
            41,
        ),
        # version from this POM's own dependencyManagement
        ("com.google.guava:guava", "29.0-jre", "pkg:maven/com.google.guava/guava@29.0-jre", 46),
        (
            "com.example:billing-api",
            "1.4.0",
            "pkg:maven/com.example/billing-api@1.4.0",
            59,
        ),  # ${project.version}
    ]
    assert all(c.direct is True and c.ecosystem == "Maven" for c in items if isinstance(c, Component))
    assert [(u.name, u.location.line, u.reason) for u in items if isinstance(u, Unresolved)] == [
        (
            "org.springframework.boot:spring-boot-starter-web",
            50,
            "no version: managed by a parent POM or BOM",
        ),
        ("org.yaml:snakeyaml", 54, "version property not defined: ${snakeyaml.version}"),
        ("junit:junit", 64, "a version range"),
    ]


def test_pom_malformed_xml(tmp_path: Path) -> None:
    pom = tmp_path / "pom.xml"
    pom.write_text("<project>\n  <dependencies>\n    <dependency>\n  </dependencies>\n</project>\n")
    with pytest.raises(ParseError) as caught:
        list(PomExtractor().extract(pom, "pom.xml"))
    assert (caught.value.line, caught.value.message) == (4, "invalid XML: mismatched tag")


def test_pom_rejects_entity_expansion(tmp_path: Path) -> None:
    pom = tmp_path / "pom.xml"
    pom.write_text('<?xml version="1.0"?>\n<!DOCTYPE p [<!ENTITY a "aaaaaaaaaa">]>\n<project>&a;</project>\n')
    with pytest.raises(ParseError, match="entity declarations"):
        list(PomExtractor().extract(pom, "pom.xml"))


def test_gradle_lockfiles(fixtures: Path) -> None:
    extractor = GradleLockExtractor()
    assert extractor.matches(Path("java/gradle.lockfile"))
    assert extractor.matches(Path("java/gradle/dependency-locks/compileClasspath.lockfile"))
    assert not extractor.matches(Path("java/other.lockfile"))
    items = list(extractor.extract(fixtures / "java" / "gradle.lockfile", "gradle.lockfile"))
    assert [
        (c.name, c.version, c.location.line) for c in items if isinstance(c, Component) and c.location
    ] == [
        ("com.fasterxml.jackson.core:jackson-databind", "2.9.8", 4),
        ("org.apache.logging.log4j:log4j-core", "2.14.1", 5),
        ("org.yaml:snakeyaml", "1.26", 6),
    ]
    legacy = fixtures / "java" / "gradle" / "dependency-locks" / "compileClasspath.lockfile"
    [spring] = list(extractor.extract(legacy, "compileClasspath.lockfile"))
    assert isinstance(spring, Component)
    assert spring.purl == "pkg:maven/org.springframework/spring-core@5.2.8.RELEASE"


def test_gradle_lockfile_bad_line(tmp_path: Path) -> None:
    lock = tmp_path / "gradle.lockfile"
    lock.write_text("# header\norg.yaml:snakeyaml=runtimeClasspath\n")
    with pytest.raises(ParseError) as caught:
        list(GradleLockExtractor().extract(lock, "gradle.lockfile"))
    assert caught.value.line == 2
