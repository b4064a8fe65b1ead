"""Go inventory: go.mod files, and the build information the Go linker embeds in every binary.

Binaries: we support the Go ≥ 1.18 build-info layout, in which the version and module strings follow
the `\\xff Go buildinf:` header inline. Older binaries keep only pointers there, which would need the
executable's section table to follow; for those we report an InputError ("pre-1.18 build info not
supported") instead of guessing, so the user knows the file was seen but not inventoried.
Files are memory-mapped, never read whole into Python memory.
"""

from __future__ import annotations

import mmap
import re
from collections.abc import Iterator
from pathlib import Path

from tianmu.assets._common import make_purl, read_text
from tianmu.assets.interface import Extracted, Extractor
from tianmu.core.errors import InputError, ParseError
from tianmu.core.models import Component, Location, Unresolved

__all__ = ["GoBinaryExtractor", "GoModExtractor", "parse_buildinfo_modinfo"]

ECOSYSTEM = "Go"
BUILDINFO_MAGIC = b"\xff Go buildinf:"
_BINARY_MAGICS = (
    b"\x7fELF",
    b"MZ",
    b"\xfe\xed\xfa\xce",
    b"\xfe\xed\xfa\xcf",
    b"\xce\xfa\xed\xfe",
    b"\xcf\xfa\xed\xfe",
    b"\xca\xfe\xba\xbe",
)
# Go binaries rarely have an extension; these are the ones they do have. Everything else is skipped
# by name, so a source tree's thousands of .go/.json/.py files are never opened for sniffing.
_BINARY_SUFFIXES = {"", ".exe", ".bin", ".out", ".so", ".dll", ".dylib", ".elf"}


def _component(path: str, version: str, display: str, line: int | None, direct: bool | None) -> Component:
    namespace, _, name = path.rpartition("/")
    return Component(
        name=path,
        version=version,
        ecosystem=ECOSYSTEM,
        purl=make_purl("golang", namespace or None, name, version),
        location=Location(display, line),
        direct=direct,
    )


def _is_local(path: str) -> bool:
    return (
        path.startswith(("./", "../", "/", ".\\", "..\\"))
        or path in (".", "..")
        or re.match(r"^[A-Za-z]:[\\/]", path) is not None
    )


# --- go.mod -------------------------------------------------------------------------------------


def _fields(text: str) -> list[str]:
    return [part.strip('"`') for part in text.split()]


class GoModExtractor(Extractor):
    name = "go-mod"
    ecosystem = ECOSYSTEM

    def matches(self, relpath: Path) -> bool:
        return relpath.name == "go.mod"

    def extract(self, path: Path, display_path: str) -> Iterator[Extracted]:
        requires: list[tuple[str, str, int, bool]] = []  # path, version, line, indirect
        replaces: dict[tuple[str, str | None], tuple[str, str | None, int]] = {}
        block: str | None = None
        for number, raw in enumerate(read_text(path, display_path).splitlines(), 1):
            code, _, comment = raw.partition("//")
            indirect = comment.strip().startswith("indirect")
            line = code.strip()
            if not line:
                continue
            if block is not None:
                if line == ")":
                    block = None
                    continue
                directive, rest = block, line
            else:
                directive, _, rest = line.partition(" ")
                rest = rest.strip()
                if rest == "(":
                    block = directive
                    continue
            if directive == "require":
                parts = _fields(rest)
                if len(parts) != 2:
                    raise ParseError(f"malformed require: {rest!r}", display_path, number)
                requires.append((parts[0], parts[1], number, indirect))
            elif directive == "replace":
                old, arrow, new = rest.partition("=>")
                olds, news = _fields(old), _fields(new)
                if not arrow or len(olds) not in (1, 2) or len(news) not in (1, 2):
                    raise ParseError(f"malformed replace: {rest!r}", display_path, number)
                replaces[(olds[0], olds[1] if len(olds) == 2 else None)] = (
                    news[0],
                    news[1] if len(news) == 2 else None,
                    number,
                )
        for module, version, number, indirect in requires:
            replacement = replaces.get((module, version)) or replaces.get((module, None))
            if replacement is None:
                yield _component(module, version, display_path, number, not indirect)
                continue
            new_path, new_version, replace_line = replacement
            if new_version is None or _is_local(new_path):
                yield Unresolved(
                    module,
                    ECOSYSTEM,
                    f"{module} {version} => {new_path}",
                    Location(display_path, replace_line),
                    "replaced by a local directory",
                )
            else:
                yield _component(new_path, new_version, display_path, replace_line, not indirect)


# --- binaries -----------------------------------------------------------------------------------


def _uvarint(buf: bytes | mmap.mmap, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise ValueError("truncated varint")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def parse_buildinfo_modinfo(modinfo: str) -> list[tuple[str, str, str | None]]:
    """Module lines of `runtime/debug.BuildInfo` text: (kind, path, version); kind is mod or dep.

    A `=>` line replaces the dep before it; a replacement without version is a local directory,
    returned with version None.
    """
    # The linker wraps the text in two 16-byte sentinels; strip them when present.
    if len(modinfo) >= 33 and modinfo[-17] == "\n":
        modinfo = modinfo[16:-16]
    out: list[tuple[str, str, str | None]] = []
    for line in modinfo.splitlines():
        parts = line.split("\t")
        if parts[0] in ("mod", "dep") and len(parts) >= 3:
            out.append((parts[0], parts[1], parts[2]))
        elif parts[0] == "=>" and len(parts) >= 2 and out:
            kind, old_path, _old = out[-1]
            if len(parts) >= 3 and parts[2]:
                out[-1] = (kind, parts[1], parts[2])
            else:
                out[-1] = (kind, old_path, None)
    return out


class GoBinaryExtractor(Extractor):
    """Executables (ELF, PE, Mach-O) carrying Go build information."""

    name = "go-binary"
    ecosystem = ECOSYSTEM
    max_bytes = None  # memory-mapped: size does not cost memory
    sniff_bytes = 4
    generic_names = True

    def matches(self, relpath: Path) -> bool:
        return relpath.suffix.lower() in _BINARY_SUFFIXES

    def accepts(self, head: bytes) -> bool:
        return head.startswith(_BINARY_MAGICS)

    def extract(self, path: Path, display_path: str) -> Iterator[Extracted]:
        with path.open("rb") as handle:
            try:
                mapped = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
            except ValueError:  # empty file
                return
            with mapped:
                yield from self._extract(mapped, display_path)

    def _extract(self, data: mmap.mmap, display: str) -> Iterator[Extracted]:
        at = data.find(BUILDINFO_MAGIC)
        while at >= 0 and at % 16:  # the header is 16-byte aligned; other hits are coincidences
            at = data.find(BUILDINFO_MAGIC, at + 1)
        if at < 0:
            return  # not a Go binary (or a stripped one): nothing to report
        header = data[at : at + 32]
        if len(header) < 32:
            raise ParseError("truncated Go build info header", display)
        if not header[15] & 0x2:
            yield InputError("Go build info in the pre-1.18 pointer format is not supported", display)
            return
        try:
            length, pos = _uvarint(data, at + 32)
            go_version = bytes(data[pos : pos + length]).decode("utf-8", "replace")
            length, pos = _uvarint(data, pos + length)
            modinfo = bytes(data[pos : pos + length]).decode("utf-8", "replace")
        except ValueError as exc:
            raise ParseError(f"malformed Go build info: {exc}", display) from None
        runtime = go_version.split()[0] if go_version.split() else ""
        if runtime.startswith("go"):
            yield _component("stdlib", runtime[2:], display, None, None)
        for _kind, module, version in parse_buildinfo_modinfo(modinfo):
            if version is None:
                yield Unresolved(
                    module, ECOSYSTEM, module, Location(display), "replaced by a local directory"
                )
            elif version == "(devel)":
                continue  # the main module built from a working tree: it is the binary itself
            else:
                yield _component(module, version, display, None, None)
