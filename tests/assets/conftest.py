"""Shared fixtures for the inventory tests, including a synthetic Go binary builder.

No Go toolchain is available where these tests run, so Go binaries are built here: a small blob that
starts with an ELF magic and holds a build-info header in the Go ≥ 1.18 inline layout, exactly as the
linker writes it (16-byte aligned `\\xff Go buildinf:`, pointer size, flags, then two varint-prefixed
strings: the runtime version and the module info wrapped in its 16-byte sentinels).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "assets"

# The sentinels cmd/go wraps around the module info (src/cmd/go/internal/modload/build.go).
INFO_START = bytes.fromhex("3077af0c9274080241e1c107e6d618e6")
INFO_END = bytes.fromhex("f932433186182072008242104116d8f2")


def _uvarint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def build_go_binary(go_version: str, modinfo: str, *, inline: bool = True, padding: int = 4096) -> bytes:
    """An ELF-looking blob with Go build info `padding` bytes in (rounded to 16, like the linker)."""
    header = b"\x7fELF\x02\x01\x01" + b"\x00" * 9
    body = bytearray(header + b"\x90" * (padding - len(header)))
    body += b"\x00" * (-len(body) % 16)
    flags = 0x2 if inline else 0x0
    info = b"\xff Go buildinf:" + bytes([8, flags]) + b"\x00" * 16
    if inline:
        mod = INFO_START + modinfo.encode() + INFO_END
        info += _uvarint(len(go_version)) + go_version.encode() + _uvarint(len(mod)) + mod
    else:
        info += b"\x00" * 16  # two pointers into the data segment, which we do not follow
    return bytes(body + info + b"\x00" * 256)


@pytest.fixture
def fixtures() -> Path:
    return FIXTURES


@pytest.fixture
def go_binary() -> Callable[..., bytes]:
    return build_go_binary
