"""Cargo.lock, composer.lock and Gemfile.lock."""

from __future__ import annotations

from pathlib import Path

import pytest

from tianmu.assets.php import ComposerLockExtractor
from tianmu.assets.ruby import GemfileLockExtractor
from tianmu.assets.rust import CargoLockExtractor
from tianmu.core.errors import ParseError
from tianmu.core.models import Component, Location, Unresolved


def test_cargo_lock_skips_workspace_crate(fixtures: Path) -> None:
    items = list(CargoLockExtractor().extract(fixtures / "rust" / "Cargo.lock", "Cargo.lock"))
    assert items == [
        Component("regex", "1.5.4", "crates.io", "pkg:cargo/regex@1.5.4", Location("Cargo.lock", 14)),
        Component("smallvec", "1.6.0", "crates.io", "pkg:cargo/smallvec@1.6.0", Location("Cargo.lock", 20)),
    ]


def test_cargo_lock_broken(tmp_path: Path) -> None:
    lock = tmp_path / "Cargo.lock"
    lock.write_text('version = 3\n\n[[package]]\nname = "regex"\nversion = "1.5.4\n')
    with pytest.raises(ParseError) as caught:
        list(CargoLockExtractor().extract(lock, "Cargo.lock"))
    assert caught.value.line == 5


def test_composer_lock(fixtures: Path) -> None:
    items = list(ComposerLockExtractor().extract(fixtures / "php" / "composer.lock", "composer.lock"))
    assert [
        (c.name, c.version, c.purl, c.location.line) for c in items if isinstance(c, Component) and c.location
    ] == [
        ("guzzlehttp/guzzle", "6.5.5", "pkg:composer/guzzlehttp/guzzle@6.5.5", 9),
        ("symfony/http-kernel", "4.4.13", "pkg:composer/symfony/http-kernel@4.4.13", 19),  # `v` stripped
        ("phpunit/phpunit", "9.5.0", "pkg:composer/phpunit/phpunit@9.5.0", 31),  # packages-dev
    ]
    assert all(c.ecosystem == "Packagist" for c in items if isinstance(c, Component))
    [branch] = [u for u in items if isinstance(u, Unresolved)]
    assert (branch.name, branch.location.line, branch.reason) == (
        "acme/internal-tools",
        24,
        "a development branch",
    )


def test_gemfile_lock(fixtures: Path) -> None:
    items = list(GemfileLockExtractor().extract(fixtures / "ruby" / "Gemfile.lock", "Gemfile.lock"))
    assert [(c.name, c.version, c.purl, c.location, c.direct) for c in items if isinstance(c, Component)] == [
        ("feature_flags", "0.3.0", "pkg:gem/feature_flags@0.3.0", Location("Gemfile.lock", 5), True),
        ("actionpack", "6.1.4", "pkg:gem/actionpack@6.1.4", Location("Gemfile.lock", 15), True),
        (
            "nokogiri",
            "1.13.1",
            "pkg:gem/nokogiri@1.13.1?platform=x86_64-linux",
            Location("Gemfile.lock", 17),
            True,
        ),
        ("racc", "1.6.0", "pkg:gem/racc@1.6.0", Location("Gemfile.lock", 19), False),
        ("rack", "2.2.3", "pkg:gem/rack@2.2.3", Location("Gemfile.lock", 20), False),
    ]
    assert all(isinstance(c, Component) and c.ecosystem == "RubyGems" for c in items)
    # the PATH gem (`shop`, the project itself) is not a component
    assert "shop" not in {c.name for c in items if isinstance(c, Component)}
