"""go.mod and Go binaries (build info built synthetically by the conftest, see its docstring)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tianmu.assets.golang import GoBinaryExtractor, GoModExtractor, parse_buildinfo_modinfo
from tianmu.core.errors import InputError, ParseError
from tianmu.core.models import Component, Location, Unresolved

MODINFO = (
    "path\tgithub.com/example/agent/cmd/agent\n"
    "mod\tgithub.com/example/agent\tv1.4.2\th1:abc=\n"
    "dep\tgolang.org/x/text\tv0.3.5\th1:i6eZZ+zk0SOf0xgBpEpPD18qWcJda6q1sxs3S0kzV0Q=\n"
    "dep\tgithub.com/gorilla/websocket\tv1.4.0\th1:x=\n"
    "=>\tgithub.com/gorilla/websocket\tv1.4.2\th1:y=\n"
    "dep\tgithub.com/example/internal\tv0.0.0\n"
    "=>\t../internal\t\n"
    "build\t-compiler=gc\n"
    "build\tGOOS=linux\n"
)


def test_go_mod(fixtures: Path) -> None:
    items = list(GoModExtractor().extract(fixtures / "go" / "go.mod", "go.mod"))
    assert [(c.name, c.version, c.purl, c.location, c.direct) for c in items if isinstance(c, Component)] == [
        (
            "github.com/gin-gonic/gin",
            "v1.6.3",
            "pkg:golang/github.com/gin-gonic/gin@v1.6.3",
            Location("go.mod", 6),
            True,
        ),
        ("golang.org/x/text", "v0.3.5", "pkg:golang/golang.org/x/text@v0.3.5", Location("go.mod", 7), False),
        # replaced by another version: reported as what is built, at the replace directive
        ("gopkg.in/yaml.v2", "v2.2.8", "pkg:golang/gopkg.in/yaml.v2@v2.2.8", Location("go.mod", 14), True),
        (
            "github.com/dgrijalva/jwt-go",
            "v3.2.0+incompatible",
            "pkg:golang/github.com/dgrijalva/jwt-go@v3.2.0%2Bincompatible",
            Location("go.mod", 12),
            True,
        ),
    ]
    assert [i for i in items if not isinstance(i, Component)] == [
        Unresolved(
            "github.com/example/shared",
            "Go",
            "github.com/example/shared v0.0.0-20210101000000-abcdef123456 => ../shared",
            Location("go.mod", 16),
            "replaced by a local directory",
        )
    ]


def test_go_mod_malformed_require(tmp_path: Path) -> None:
    gomod = tmp_path / "go.mod"
    gomod.write_text("module example.com/x\n\nrequire (\n\tgolang.org/x/text\n)\n")
    with pytest.raises(ParseError) as caught:
        list(GoModExtractor().extract(gomod, "go.mod"))
    assert (caught.value.path, caught.value.line) == ("go.mod", 4)


def test_modinfo_parsing_applies_replacements() -> None:
    assert parse_buildinfo_modinfo(MODINFO) == [
        ("mod", "github.com/example/agent", "v1.4.2"),
        ("dep", "golang.org/x/text", "v0.3.5"),
        ("dep", "github.com/gorilla/websocket", "v1.4.2"),
        ("dep", "github.com/example/internal", None),
    ]


def test_go_binary(tmp_path: Path, go_binary: Callable[..., bytes]) -> None:
    binary = tmp_path / "agent"
    binary.write_bytes(go_binary("go1.21.3", MODINFO))
    extractor = GoBinaryExtractor()
    assert extractor.matches(Path("usr/local/bin/agent")) and extractor.matches(Path("agent.exe"))
    assert not extractor.matches(Path("main.go"))
    assert extractor.accepts(binary.read_bytes()[:4])
    assert not extractor.accepts(b"#!/b")
    items = list(extractor.extract(binary, "bin/agent"))
    assert [(c.name, c.version, c.purl, c.location) for c in items if isinstance(c, Component)] == [
        ("stdlib", "1.21.3", "pkg:golang/stdlib@1.21.3", Location("bin/agent")),
        (
            "github.com/example/agent",
            "v1.4.2",
            "pkg:golang/github.com/example/agent@v1.4.2",
            Location("bin/agent"),
        ),
        ("golang.org/x/text", "v0.3.5", "pkg:golang/golang.org/x/text@v0.3.5", Location("bin/agent")),
        (
            "github.com/gorilla/websocket",
            "v1.4.2",
            "pkg:golang/github.com/gorilla/websocket@v1.4.2",
            Location("bin/agent"),
        ),
    ]
    [local] = [u for u in items if isinstance(u, Unresolved)]
    assert (local.name, local.reason) == ("github.com/example/internal", "replaced by a local directory")


def test_go_binary_devel_main_module_and_experiment_suffix(
    tmp_path: Path, go_binary: Callable[..., bytes]
) -> None:
    binary = tmp_path / "tool"
    binary.write_bytes(
        go_binary("go1.22.1 X:boringcrypto", "path\tex.com/tool\nmod\tex.com/tool\t(devel)\t\n", padding=100)
    )
    items = list(GoBinaryExtractor().extract(binary, "tool"))
    assert [(c.name, c.version) for c in items if isinstance(c, Component)] == [("stdlib", "1.22.1")]


def test_go_binary_old_format_is_reported(tmp_path: Path, go_binary: Callable[..., bytes]) -> None:
    binary = tmp_path / "old"
    binary.write_bytes(go_binary("go1.16", "", inline=False))
    [note] = list(GoBinaryExtractor().extract(binary, "old"))
    assert isinstance(note, InputError) and "pre-1.18" in note.message


def test_non_go_binary_yields_nothing(tmp_path: Path) -> None:
    binary = tmp_path / "ls"
    binary.write_bytes(b"\x7fELF" + b"\x00" * 10_000)
    assert list(GoBinaryExtractor().extract(binary, "ls")) == []
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    assert list(GoBinaryExtractor().extract(empty, "empty")) == []


def test_truncated_buildinfo(tmp_path: Path, go_binary: Callable[..., bytes]) -> None:
    blob = go_binary("go1.21.3", MODINFO)
    cut = blob.index(b"\xff Go buildinf:") + 40
    binary = tmp_path / "cut"
    binary.write_bytes(blob[:cut])
    with pytest.raises(ParseError, match="malformed Go build info"):
        list(GoBinaryExtractor().extract(binary, "cut"))
