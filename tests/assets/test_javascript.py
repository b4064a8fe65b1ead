"""npm, yarn (classic and berry) and pnpm (v5, v6, v9) lockfiles."""

from __future__ import annotations

from pathlib import Path

import pytest

from tianmu.assets.interface import Extracted, Extractor
from tianmu.assets.javascript import NpmLockExtractor, PnpmLockExtractor, YarnLockExtractor
from tianmu.core.errors import ParseError
from tianmu.core.models import Component, Unresolved


def extract(extractor: Extractor, path: Path) -> list[Extracted]:
    return list(extractor.extract(path, "lock"))


def rows(items: list[Extracted]) -> list[tuple[str, str, str, int | None, bool | None]]:
    return [
        (c.name, c.version, c.purl, c.location.line if c.location else None, c.direct)
        for c in items
        if isinstance(c, Component)
    ]


def test_package_lock_v1_nested(fixtures: Path) -> None:
    items = extract(NpmLockExtractor(), fixtures / "js" / "npm-v1" / "package-lock.json")
    assert rows(items) == [
        ("@babel/code-frame", "7.8.3", "pkg:npm/%40babel/code-frame@7.8.3", 7, None),
        ("express", "4.16.0", "pkg:npm/express@4.16.0", 13, None),
        # nested under express: its own line, not the top-level lodash's
        ("lodash", "4.17.4", "pkg:npm/lodash@4.17.4", 21, None),
        ("lodash", "4.17.15", "pkg:npm/lodash@4.17.15", 28, None),
        # an npm alias: "underscore-alias": {"version": "npm:underscore@1.8.3"}
        ("underscore", "1.8.3", "pkg:npm/underscore@1.8.3", 36, None),
    ]
    [local] = [u for u in items if isinstance(u, Unresolved)]
    assert (local.name, local.requirement, local.location.line) == (
        "my-utils",
        "my-utils@file:packages/my-utils",
        33,
    )
    assert all(c.ecosystem == "npm" for c in items if isinstance(c, Component))


def test_package_lock_v3_flat(fixtures: Path) -> None:
    items = extract(NpmLockExtractor(), fixtures / "js" / "npm-v3" / "package-lock.json")
    assert rows(items) == [
        ("@babel/core", "7.12.3", "pkg:npm/%40babel/core@7.12.3", 21, True),
        ("lodash", "4.17.15", "pkg:npm/lodash@4.17.15", 26, True),
        ("minimist", "1.2.0", "pkg:npm/minimist@1.2.0", 31, True),
        ("mkdirp", "0.5.1", "pkg:npm/mkdirp@0.5.1", 37, False),
        ("minimist", "0.0.8", "pkg:npm/minimist@0.0.8", 46, False),
    ]
    # root "", the workspace link and the workspace folder are the project itself
    assert [i for i in items if not isinstance(i, Component)] == []


def test_package_lock_broken_json(tmp_path: Path) -> None:
    lock = tmp_path / "package-lock.json"
    lock.write_text(
        '{\n  "lockfileVersion": 3,\n  "packages": {\n'
        '    "node_modules/lodash": {"version": 4.17.15}\n  }\n}\n'
    )
    with pytest.raises(ParseError) as caught:
        extract(NpmLockExtractor(), lock)
    assert caught.value.line == 4
    assert "invalid JSON" in caught.value.message


def test_yarn_classic(fixtures: Path) -> None:
    items = extract(YarnLockExtractor(), fixtures / "js" / "yarn-classic" / "yarn.lock")
    assert rows(items) == [
        ("@babel/code-frame", "7.8.3", "pkg:npm/%40babel/code-frame@7.8.3", 5, None),
        ("lodash", "4.17.15", "pkg:npm/lodash@4.17.15", 12, None),
        ("string_decoder", "1.1.1", "pkg:npm/string_decoder@1.1.1", 17, None),
    ]
    [local] = [u for u in items if isinstance(u, Unresolved)]
    assert (local.name, local.location.line, local.reason) == ("local-lib", 23, "local package")


def test_yarn_classic_garbage_line(tmp_path: Path) -> None:
    lock = tmp_path / "yarn.lock"
    lock.write_text('# yarn lockfile v1\n\nlodash@^4.17.15:\n  version "4.17.15"\nthis is not yarn\n')
    with pytest.raises(ParseError) as caught:
        extract(YarnLockExtractor(), lock)
    assert caught.value.line == 5


def test_yarn_berry(fixtures: Path) -> None:
    items = extract(YarnLockExtractor(), fixtures / "js" / "yarn-berry" / "yarn.lock")
    assert rows(items) == [
        ("@babel/core", "7.12.3", "pkg:npm/%40babel/core@7.12.3", 8, None),
        ("lodash", "4.17.20", "pkg:npm/lodash@4.17.20", 17, None),
        ("resolve", "1.17.0", "pkg:npm/resolve@1.17.0", 24, None),  # a patched package keeps its version
    ]
    assert [i for i in items if not isinstance(i, Component)] == []  # the workspace entry is skipped


def test_yarn_berry_broken_yaml(tmp_path: Path) -> None:
    lock = tmp_path / "yarn.lock"
    lock.write_text(
        '__metadata:\n  version: 6\n\n"lodash@npm:^4":\n  version: 4.17.20\n   resolution: [oops\n'
    )
    with pytest.raises(ParseError) as caught:
        extract(YarnLockExtractor(), lock)
    assert caught.value.line == 6
    assert caught.value.message.startswith("invalid YAML")


@pytest.mark.parametrize(
    ("folder", "expected"),
    [
        (
            "pnpm-v5",
            [
                ("@babel/runtime", "7.12.5", "pkg:npm/%40babel/runtime@7.12.5", 13, False),
                ("lodash", "4.17.15", "pkg:npm/lodash@4.17.15", 19, True),
                ("react-dom", "17.0.2", "pkg:npm/react-dom@17.0.2", 23, True),  # `_react@17.0.2` peer suffix
                ("string_decoder", "1.3.0", "pkg:npm/string_decoder@1.3.0", 29, False),
            ],
        ),
        (
            "pnpm-v6",
            [
                ("@babel/core", "7.12.3", "pkg:npm/%40babel/core@7.12.3", 17, True),
                ("minimist", "1.2.5", "pkg:npm/minimist@1.2.5", 22, False),
                ("react-dom", "17.0.2", "pkg:npm/react-dom@17.0.2", 26, True),  # `(react@17.0.2)` peers
            ],
        ),
        (
            "pnpm-v9",
            [
                ("@types/node", "20.8.10", "pkg:npm/%40types/node@20.8.10", 20, True),
                ("axios", "0.21.0", "pkg:npm/axios@0.21.0", 23, True),
                ("follow-redirects", "1.13.0", "pkg:npm/follow-redirects@1.13.0", 26, False),
            ],
        ),
    ],
)
def test_pnpm_lock_versions(
    fixtures: Path, folder: str, expected: list[tuple[str, str, str, int, bool]]
) -> None:
    items = extract(PnpmLockExtractor(), fixtures / "js" / folder / "pnpm-lock.yaml")
    assert rows(items) == expected
    assert [i for i in items if not isinstance(i, Component)] == []


def test_pnpm_non_registry_package(tmp_path: Path) -> None:
    lock = tmp_path / "pnpm-lock.yaml"
    lock.write_text(
        "lockfileVersion: '6.0'\n\npackages:\n\n"
        "  github.com/example/widget/1a2b3c:\n    resolution: {tarball: https://codeload.github.com/x}\n"
        "    name: widget\n    version: 2.0.0\n\n"
        "  file:vendor/thing:\n    resolution: {directory: vendor/thing}\n"
    )
    items = extract(PnpmLockExtractor(), lock)
    assert rows(items) == [("widget", "2.0.0", "pkg:npm/widget@2.0.0", 5, None)]
    [local] = [u for u in items if isinstance(u, Unresolved)]
    assert (local.requirement, local.location.line) == ("file:vendor/thing", 10)
