"""Bounded, damage-tolerant reading of log streams: the limits of one read and the guard that keeps them.

A log read from an attacker's reach (an upload, a compromised host's /var/log) may be damaged or hostile:
garbage inside a `.gz`, trailing bytes after a gzip member, a corrupt deflate stream in a zip, a
decompression bomb, a single line of a gigabyte. None of it may end the job or take unbounded memory:

- `ReadLimits` holds the limits (one frozen value, passed down from whoever runs the job; the CLI,
  the worker and the service build it from their `Settings` with `ReadLimits.from_settings`);
- `GuardedStream` wraps a decompressed stream: every decompressor's error (`zlib.error`,
  `gzip.BadGzipFile`, `lzma.LZMAError`, `EOFError`, `zipfile.BadZipFile`, bz2's `OSError`) and every
  size or ratio limit hit becomes one `ReadStopped`, which the reader of the stream turns into a located
  error (`path: read stopped at line N: reason`) after keeping the events read before the damage.
"""

from __future__ import annotations

import io
import lzma
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO

from tianmu.core.config import Settings

__all__ = ["DECOMPRESSION_ERRORS", "Budget", "GuardedStream", "ReadLimits", "ReadStopped"]

DECOMPRESSION_ERRORS: tuple[type[Exception], ...] = (
    OSError,  # gzip.BadGzipFile and bz2's "Invalid data stream" are OSErrors
    EOFError,  # a stream cut before its end marker
    zlib.error,
    lzma.LZMAError,
    zipfile.BadZipFile,  # a zip member's CRC mismatch
)
"""What reading a damaged compressed stream raises."""

_RATIO_FROM = 1 << 20
"""Decompressed bytes below which the ratio is not judged (the first block of any stream inflates a lot)."""


@dataclass(frozen=True, slots=True)
class ReadLimits:
    """Limits of reading one log file; each hit is reported as a located error, never a crash."""

    max_line_bytes: int = 1 << 20
    """Longest line (or JSON array element) read; a longer one is skipped and counted as malformed."""
    max_decompressed_bytes: int = 4 << 30
    """Most bytes a gz/bz2/xz file, or all the members of a zip together, may inflate to; the rest of
    it is not read (members that share their compressed data cannot multiply it)."""
    max_ratio: int = 1000
    """Most decompressed bytes per compressed byte (past the first MiB): beyond, the member is a bomb."""
    max_spool_bytes: int = 256 << 20
    """Largest compressed or archived EVTX spooled for the parser (which needs a seekable file)."""
    max_members: int = 10_000
    """Zip members read from one archive; the rest are reported, not read."""

    @classmethod
    def from_settings(cls, settings: Settings) -> ReadLimits:
        """The limits the operator set (`TIANMU_LIMIT_LINE_BYTES`, `..._DECOMPRESSED_BYTES`,
        `..._RATIO`); the others keep their defaults."""
        return cls(
            max_line_bytes=settings.limit_line_bytes,
            max_decompressed_bytes=settings.limit_decompressed_bytes,
            max_ratio=settings.limit_ratio,
        )


@dataclass(slots=True)
class Budget:
    """Decompressed bytes of one file so far, shared by the streams of its zip members."""

    used: int = 0


class ReadStopped(Exception):
    """The rest of a stream cannot be read: it is damaged, or a limit was reached."""

    def __init__(self, reason: str, line: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.line = line
        """The line at which reading stopped, set by the line reader that saw it happen."""

    def located(self) -> str:
        return (
            f"read stopped at line {self.line}: {self.reason}"
            if self.line
            else f"read stopped: {self.reason}"
        )


class GuardedStream(io.RawIOBase):
    """A decompressed stream whose damage and size limits surface as `ReadStopped`.

    `compressed` tells how many compressed bytes are behind the output so far (the raw file's position,
    or a zip member's declared compressed size), for the ratio limit.
    """

    def __init__(
        self,
        inner: BinaryIO,
        limits: ReadLimits,
        compressed: Callable[[], int] | int,
        budget: Budget | None = None,
    ) -> None:
        self._inner = inner
        self._budget = budget or Budget()
        self._limits = limits
        self._compressed = compressed
        self._out = 0
        self._stopped: ReadStopped | None = None
        self._read: Callable[[int], bytes] = getattr(inner, "read1", inner.read)

    def readable(self) -> bool:
        return True

    def fileno(self) -> int:
        # The compressed file's: its size decides whether a plain-text re-read is worth it.
        fileno = getattr(self._inner, "fileno", None)
        if fileno is None:
            raise io.UnsupportedOperation("fileno")
        return int(fileno())

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        """Only back to the start (a re-read as plain text): the decompressor starts over, limits too."""
        if offset != 0 or whence != io.SEEK_SET:
            raise io.UnsupportedOperation("a decompressed stream only seeks back to its start")
        self._inner.seek(0)
        self._budget.used -= self._out
        self._out = 0
        self._stopped = None
        return 0

    def _compressed_size(self) -> int:
        return self._compressed if isinstance(self._compressed, int) else self._compressed()

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        if self._stopped is not None:
            raise self._stopped  # a damaged decompressor is never asked again
        try:
            # One decompressor step (`read1`): a full `read` that meets damage midway loses the good
            # bytes it had already inflated in that call (the end of a member before trailing garbage).
            data = self._read(len(buffer))
        except DECOMPRESSION_ERRORS as exc:
            self._stopped = ReadStopped(f"damaged data ({type(exc).__name__}: {exc})")
            raise self._stopped from None
        self._out += len(data)
        self._budget.used += len(data)
        limits = self._limits
        if self._budget.used > limits.max_decompressed_bytes:
            where = "" if self._budget.used == self._out else " (with the archive's members before it)"
            self._stopped = ReadStopped(
                f"decompressed size over {limits.max_decompressed_bytes} bytes{where}"
            )
            raise self._stopped
        if self._out > _RATIO_FROM and self._out > limits.max_ratio * max(self._compressed_size(), 1):
            self._stopped = ReadStopped(
                f"compression ratio over {limits.max_ratio}:1 (a decompression bomb?)"
            )
            raise self._stopped
        buffer[: len(data)] = data
        return len(data)
