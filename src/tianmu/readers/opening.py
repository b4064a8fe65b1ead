"""Opening a log file's streams: the file itself, a gz/bz2/xz decompressor, or each member of a zip.

Every decompressed stream is a `GuardedStream` (`tianmu.readers.limits`), so damage and the size and
ratio limits surface as `ReadStopped` while it is read; `peek` looks at a stream's first bytes without
losing them, and without losing the part before damage found there.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import zipfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import BinaryIO, cast

from tianmu.readers.limits import Budget, GuardedStream, ReadLimits, ReadStopped

__all__ = ["Prefixed", "open_members", "peek"]


def _decompressor(head: bytes) -> Callable[[BinaryIO], BinaryIO] | None:
    if head[:2] == b"\x1f\x8b":
        return lambda raw: gzip.GzipFile(fileobj=raw)  # type: ignore[return-value]
    if head[:3] == b"BZh":
        return lambda raw: bz2.BZ2File(raw)  # type: ignore[return-value]
    if head[:6] == b"\xfd7zXZ\x00":
        return lambda raw: lzma.LZMAFile(raw)  # type: ignore[return-value]
    return None


_OPEN_ERRORS: tuple[type[Exception], ...] = (
    OSError,
    EOFError,
    zlib.error,
    zipfile.BadZipFile,
    NotImplementedError,
    RuntimeError,
)
"""Opening a zip member: a bad local header, an unknown compression method, an encrypted member
(`zipfile` raises RuntimeError for one: "password required for extraction")."""


def open_members(
    path: Path, stack: ExitStack, limits: ReadLimits | None = None
) -> Iterator[tuple[str, BinaryIO]]:
    """(display path, decompressed binary stream) of a file: itself, or each member of a zip.

    Decompressed streams are guarded (`GuardedStream`): their damage and the limits of `limits` surface
    as `ReadStopped` while they are read. A zip member that cannot even be opened is a stream that
    raises why on its first read: the zip's other members are still read.
    """
    limits = limits or ReadLimits()
    raw: BinaryIO = stack.enter_context(path.open("rb"))
    head = raw.read(8)
    raw.seek(0)
    if head[:4] == b"PK\x03\x04":
        archive = stack.enter_context(zipfile.ZipFile(raw))
        budget = Budget()
        members = [info for info in archive.infolist() if not info.is_dir()]
        for number, info in enumerate(members):
            name = f"{path}!{info.filename}"
            if number == limits.max_members:
                rest = ReadStopped(
                    f"{len(members) - number} more members not read (limit {limits.max_members})"
                )
                yield name, cast(BinaryIO, _Failed(rest))
                return
            try:
                member = cast(BinaryIO, stack.enter_context(archive.open(info)))
            except _OPEN_ERRORS as exc:
                yield name, cast(BinaryIO, _Failed(ReadStopped(f"cannot open member: {exc}")))
                continue
            yield name, cast(BinaryIO, GuardedStream(member, limits, info.compress_size, budget))
        return
    opener = _decompressor(head)
    if opener is None:
        yield str(path), raw
        return
    inner = stack.enter_context(opener(raw))
    yield str(path), cast(BinaryIO, GuardedStream(inner, limits, raw.tell))


class _Failed(io.RawIOBase):
    """A stream whose first read raises why it cannot be read."""

    def __init__(self, error: ReadStopped) -> None:
        self._error = error

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        raise self._error


def peek(stream: BinaryIO, size: int = 65536) -> tuple[bytes, BinaryIO]:
    """The first bytes of a stream, and a stream that still yields them.

    Damage within the first bytes keeps what came before it: the returned stream yields those bytes,
    then raises the same `ReadStopped`, so the events before the damage are still read.
    """
    if stream.seekable():
        head = stream.read(size)
        stream.seek(0)
        return head, stream
    pieces: list[bytes] = []
    got = 0
    stopped: ReadStopped | None = None
    while got < size:
        try:
            piece = stream.read(min(8192, size - got))
        except ReadStopped as exc:
            stopped = exc
            break
        if not piece:
            break
        pieces.append(piece)
        got += len(piece)
    head = b"".join(pieces)
    return head, Prefixed(head, stream, stopped)  # type: ignore[return-value]


class Prefixed(io.RawIOBase):
    """A non-seekable stream (a decompressor) with the bytes already read put back in front."""

    def __init__(self, head: bytes, rest: BinaryIO, stopped: ReadStopped | None = None) -> None:
        self._head = head
        self._rest = rest
        self.stopped = stopped

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        if self._head:
            size = min(len(buffer), len(self._head))
            buffer[:size] = self._head[:size]
            self._head = self._head[size:]
            return size
        if self.stopped is not None:
            raise self.stopped
        data = self._rest.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)
