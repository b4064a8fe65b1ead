"""CycloneDX and SPDX JSON documents."""

from __future__ import annotations

from pathlib import Path

import pytest

from tianmu.assets.sbom import CycloneDxExtractor, SpdxExtractor, component_from_purl
from tianmu.core.errors import ParseError
from tianmu.core.models import Component, Location, Unresolved


def test_cyclonedx_nested_components(fixtures: Path) -> None:
    extractor = CycloneDxExtractor()
    path = fixtures / "sbom" / "app.cdx.json"
    assert extractor.matches(Path("app.cdx.json")) and extractor.accepts(path.read_bytes()[:4096])
    items = list(extractor.extract(path, "app.cdx.json"))
    assert [(c.ecosystem, c.name, c.version, c.location) for c in items if isinstance(c, Component)] == [
        ("Maven", "org.apache.logging.log4j:log4j-core", "2.14.1", Location("app.cdx.json", 20)),
        ("Maven", "org.apache.logging.log4j:log4j-api", "2.14.1", Location("app.cdx.json", 26)),
        ("npm", "@babel/core", "7.12.3", Location("app.cdx.json", 35)),
        ("Debian", "libssl1.1", "1.1.1n-0+deb11u3", Location("app.cdx.json", 41)),
    ]
    deb = next(c for c in items if isinstance(c, Component) and c.ecosystem == "Debian")
    assert (deb.source_name, deb.distro_release) == ("openssl", "11")
    # a library without purl is reported; the operating-system entry and metadata.component are not
    assert [(u.name, u.reason) for u in items if isinstance(u, Unresolved)] == [
        ("internal-blob", "no package URL in the SBOM")
    ]


def test_generic_json_names_are_sniffed(fixtures: Path) -> None:
    cdx, spdx = CycloneDxExtractor(), SpdxExtractor()
    config = (fixtures / "sbom" / "sbom-config.json").read_bytes()
    assert cdx.matches(Path("sbom-config.json")) and not cdx.accepts(config) and not spdx.accepts(config)
    assert not cdx.matches(Path("package.json")) and not cdx.matches(Path("tsconfig.json"))
    assert cdx.accepts((fixtures / "sbom" / "bom.json").read_bytes())


def test_spdx_packages(fixtures: Path) -> None:
    items = list(SpdxExtractor().extract(fixtures / "sbom" / "image.spdx.json", "image.spdx.json"))
    assert [
        (c.ecosystem, c.name, c.version, c.purl, c.location) for c in items if isinstance(c, Component)
    ] == [
        (
            "Go",
            "golang.org/x/text",
            "v0.3.5",
            "pkg:golang/golang.org/x/text@v0.3.5",
            Location("image.spdx.json", 33),
        ),
        (
            "Alpine",
            "musl",
            "1.2.4-r2",
            "pkg:apk/alpine/musl@1.2.4-r2?arch=x86_64&distro=alpine-3.18.4",
            Location("image.spdx.json", 46),
        ),
    ]
    # the described image itself is not a dependency; the package without purl is reported
    assert [u.name for u in items if isinstance(u, Unresolved)] == ["mystery-lib"]


def test_purl_mapping() -> None:
    where = Location("x", None)
    gem = component_from_purl("pkg:gem/rails@6.1.4", where)
    assert isinstance(gem, Component) and (gem.ecosystem, gem.name) == ("RubyGems", "rails")
    cargo = component_from_purl("pkg:cargo/regex@1.5.4", where)
    assert isinstance(cargo, Component) and cargo.ecosystem == "crates.io"
    composer = component_from_purl("pkg:composer/symfony/http-kernel@4.4.13", where)
    assert isinstance(composer, Component) and composer.name == "symfony/http-kernel"
    fallback = component_from_purl("pkg:pypi/django", where, fallback_version="3.2.0")
    assert isinstance(fallback, Component) and fallback.purl == "pkg:pypi/django@3.2.0"
    unknown = component_from_purl("pkg:generic/openssl@1.1.1", where)
    assert isinstance(unknown, Unresolved) and "not supported" in unknown.reason
    broken = component_from_purl("not-a-purl", where)
    assert isinstance(broken, Unresolved) and broken.reason.startswith("invalid package URL")


def test_cyclonedx_broken_json(tmp_path: Path) -> None:
    bom = tmp_path / "bom.json"
    bom.write_text(
        '{\n  "bomFormat": "CycloneDX",\n  "components": [\n    {"purl": "pkg:pypi/django@3.2.0"},,\n  ]\n}\n'
    )
    with pytest.raises(ParseError) as caught:
        list(CycloneDxExtractor().extract(bom, "bom.json"))
    assert caught.value.line == 4
