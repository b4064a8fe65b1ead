"""Python extractors: requirements (pins, includes, constraints, unresolved), lockfiles, installed."""

from __future__ import annotations

from pathlib import Path

import pytest

from tianmu.assets.interface import Extracted, Extractor
from tianmu.assets.python import (
    InstalledPythonExtractor,
    PdmLockExtractor,
    PipfileLockExtractor,
    PoetryLockExtractor,
    RequirementsExtractor,
    UvLockExtractor,
)
from tianmu.core.errors import InputError, ParseError
from tianmu.core.models import Component, Location, Unresolved


def extract(extractor: Extractor, path: Path, display: str) -> list[Extracted]:
    return list(extractor.extract(path, display))


def components(items: list[Extracted]) -> list[tuple[str, str, str, str | None, int | None]]:
    return [
        (
            c.name,
            c.version,
            c.purl,
            c.location.path if c.location else None,
            c.location.line if c.location else None,
        )
        for c in items
        if isinstance(c, Component)
    ]


def test_requirements_pins_includes_constraints_and_unresolved(fixtures: Path) -> None:
    items = extract(RequirementsExtractor(), fixtures / "python" / "requirements.txt", "requirements.txt")
    assert components(items) == [
        ("Pillow", "8.1.0", "pkg:pypi/pillow@8.1.0", "requirements/base.txt", 2),
        ("django", "3.2.0", "pkg:pypi/django@3.2.0", "requirements.txt", 5),
        # extras, a marker, --hash options and two continuation lines: declared on line 6
        ("requests", "2.19.1", "pkg:pypi/requests@2.19.1", "requirements.txt", 6),
        ("PyYAML", "5.3.1", "pkg:pypi/pyyaml@5.3.1", "requirements.txt", 9),
        # unpinned in requirements.txt, pinned by the -c constraints file: located at the pin
        ("celery", "5.0.5", "pkg:pypi/celery@5.0.5", "constraints.txt", 2),
        ("urllib3", "1.24.1", "pkg:pypi/urllib3@1.24.1", "constraints.txt", 1),
    ]
    assert all(c.direct is True and c.ecosystem == "PyPI" for c in items if isinstance(c, Component))
    unresolved = [u for u in items if isinstance(u, Unresolved)]
    assert [(u.name, u.location.line, u.reason) for u in unresolved] == [
        ("click", 13, "editable install: no version pin"),
        ("Jinja2", 14, "direct URL or path: no version pin"),
        ("flask", 12, "not pinned to one version (~=1.1)"),
    ]
    assert unresolved[2] == Unresolved(
        "flask", "PyPI", "flask~=1.1", Location("requirements.txt", 12), unresolved[2].reason
    )
    errors = [e for e in items if isinstance(e, InputError)]
    assert [str(e) for e in errors] == [
        "requirements/base.txt:3: include loop: ../requirements.txt is already being read"
    ]


def test_requirements_edge_cases(tmp_path: Path) -> None:
    (tmp_path / "requirements-dev.txt").write_text(
        "--require-hashes\n"
        "-rmissing.txt\n"
        "pytest==6.2.4 \\\n"
        "    --hash=sha256:abc\n"
        "Django >= 3.2, < 4\n"
        "coverage\n"
        "numpy==1.*\n"
        "foo @ git+https://github.com/example/foo.git@v1.0\n"
        "!!! not a requirement\n"
        "# pinned in a comment: evil==6.6.6\n"
        "six==1.16.0  # trailing comment\n"
    )
    items = extract(RequirementsExtractor(), tmp_path / "requirements-dev.txt", "requirements-dev.txt")
    assert components(items) == [
        ("pytest", "6.2.4", "pkg:pypi/pytest@6.2.4", "requirements-dev.txt", 3),
        ("six", "1.16.0", "pkg:pypi/six@1.16.0", "requirements-dev.txt", 11),
    ]
    unresolved = {u.name: (u.location.line, u.reason) for u in items if isinstance(u, Unresolved)}
    assert unresolved["Django"] == (5, "not pinned to one version (<4,>=3.2)")
    assert unresolved["coverage"] == (6, "no version specifier")
    assert unresolved["numpy"] == (7, "not pinned to one version (==1.*)")
    assert unresolved["foo"] == (8, "direct URL reference: no version pin")
    line, reason = unresolved["!!! not a requirement"]
    assert line == 9 and reason.startswith("not a valid requirement")
    [error] = [e for e in items if isinstance(e, InputError)]
    assert (error.path, error.line) == ("requirements-dev.txt", 2)
    assert "cannot read included file missing.txt" in error.message


def test_requirements_matching() -> None:
    extractor = RequirementsExtractor()
    assert extractor.matches(Path("requirements.txt"))
    assert extractor.matches(Path("app/requirements-prod.txt"))
    assert extractor.matches(Path("requirements/test.txt"))
    assert not extractor.matches(Path("docs/notes.txt"))
    assert not extractor.matches(Path("requirements.in"))


def test_poetry_lock_lines_and_local_path(fixtures: Path) -> None:
    items = extract(PoetryLockExtractor(), fixtures / "python" / "poetry.lock", "poetry.lock")
    assert components(items) == [
        ("django", "3.2.0", "pkg:pypi/django@3.2.0", "poetry.lock", 4),
        ("pyyaml", "5.3.1", "pkg:pypi/pyyaml@5.3.1", "poetry.lock", 19),
    ]
    [local] = [u for u in items if isinstance(u, Unresolved)]
    assert (local.name, local.location.line, local.reason) == ("mylib", 27, "installed from a local path")


def test_pipfile_lock_default_and_develop(fixtures: Path) -> None:
    items = extract(PipfileLockExtractor(), fixtures / "python" / "Pipfile.lock", "Pipfile.lock")
    assert components(items) == [
        ("requests", "2.19.1", "pkg:pypi/requests@2.19.1", "Pipfile.lock", 19),
        ("urllib3", "1.23", "pkg:pypi/urllib3@1.23", "Pipfile.lock", 26),
        ("pytest", "6.2.4", "pkg:pypi/pytest@6.2.4", "Pipfile.lock", 32),
        # the same pin again in `develop`: its own line, not the first occurrence's
        ("requests", "2.19.1", "pkg:pypi/requests@2.19.1", "Pipfile.lock", 36),
    ]
    [editable] = [u for u in items if isinstance(u, Unresolved)]
    assert (editable.name, editable.requirement, editable.location.line) == (
        "mytool",
        "mytool @ ./tools/mytool",
        40,
    )


def test_uv_lock_skips_project_and_reports_local(fixtures: Path) -> None:
    items = extract(UvLockExtractor(), fixtures / "python" / "uv.lock", "uv.lock")
    assert components(items) == [("certifi", "2023.7.22", "pkg:pypi/certifi@2023.7.22", "uv.lock", 5)]
    assert [(u.name, u.location.line) for u in items if isinstance(u, Unresolved)] == [("vendored", 22)]


def test_pdm_lock(fixtures: Path) -> None:
    items = extract(PdmLockExtractor(), fixtures / "python" / "pdm.lock", "pdm.lock")
    assert components(items) == [
        ("jinja2", "2.10", "pkg:pypi/jinja2@2.10", "pdm.lock", 11),
        ("markupsafe", "1.1.1", "pkg:pypi/markupsafe@1.1.1", "pdm.lock", 20),
    ]


def test_broken_toml_reports_line(tmp_path: Path) -> None:
    lock = tmp_path / "poetry.lock"
    lock.write_text('[[package]]\nname = "django"\nversion = 3.2.0"\n')
    with pytest.raises(ParseError) as caught:
        extract(PoetryLockExtractor(), lock, "poetry.lock")
    assert (caught.value.path, caught.value.line) == ("poetry.lock", 3)
    assert caught.value.message.startswith("invalid TOML: ")
    assert "(at line" not in caught.value.message  # the position moved into .line


def test_broken_pipfile_json_reports_line(tmp_path: Path) -> None:
    lock = tmp_path / "Pipfile.lock"
    lock.write_text('{\n  "default": {\n    "django": {"version": "==3.2.0"},\n  }\n}\n')
    with pytest.raises(ParseError) as caught:
        extract(PipfileLockExtractor(), lock, "Pipfile.lock")
    assert (caught.value.path, caught.value.line) == ("Pipfile.lock", 4)


def test_installed_distributions(fixtures: Path) -> None:
    extractor = InstalledPythonExtractor()
    site = fixtures / "python" / "venv" / "lib" / "python3.11" / "site-packages"
    meta = site / "requests-2.19.1.dist-info" / "METADATA"
    pkg_info = site / "six-1.16.0.egg-info" / "PKG-INFO"
    assert extractor.matches(meta.relative_to(fixtures))
    assert extractor.matches(pkg_info.relative_to(fixtures))
    assert not extractor.matches(Path("build/requests-2.19.1.dist-info/METADATA"))
    assert components(extract(extractor, meta, "METADATA")) == [
        ("requests", "2.19.1", "pkg:pypi/requests@2.19.1", "METADATA", 2)
    ]
    assert components(extract(extractor, pkg_info, "PKG-INFO")) == [
        ("six", "1.16.0", "pkg:pypi/six@1.16.0", "PKG-INFO", 2)
    ]


def test_installed_metadata_without_version(tmp_path: Path) -> None:
    meta = tmp_path / "METADATA"
    meta.write_text("Metadata-Version: 2.1\nName: broken\n\nbody\n")
    with pytest.raises(InputError, match="without Name and Version"):
        extract(InstalledPythonExtractor(), meta, "METADATA")
