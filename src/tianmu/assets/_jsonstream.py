"""Streaming JSON for the inventory: ijson events in bounded memory, with the lines of the values.

A document is fed to ijson's push parser (`basic_parse_coro`: plain events, no prefix strings, whose
building costs the square of the depth) in small chunks, so memory is bounded by what the caller keeps,
not by the file. ijson gives no positions; two things make up for it:

- Values are located as `LineIndex` does for a whole text: JSON objects keep their order, so the line
  of `"key": "value"` is found by searching forward from the previous hit. Only a window is kept: the
  bytes from the previous hit, at most `KEEP` bytes before the chunk being parsed. An event is emitted
  while the chunk holding its last byte is parsed, so its value starts after the previous hit and at
  most its own length before that chunk: a miss never searches more than a chunk and a value.
- A syntax error (or nesting past the limit) is located by parsing again, up to the chunk where it
  happened, then byte by byte: a bad file costs a second pass, a good one nothing.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

# ijson picks its fastest backend itself: yajl2_c (C) where built, else the pure Python one.
import ijson  # type: ignore[import-untyped]

from tianmu.core.errors import ParseError

__all__ = ["CHUNK", "KEEP", "MAX_DEPTH", "Events", "JsonEvents", "members", "skip", "value_of"]

CHUNK = 16 * 1024
"""Bytes fed to the parser at a time: what a value that cannot be found costs to search for."""
KEEP = 64 * 1024
"""Bytes kept behind the chunk being parsed; longer values are read but not located (line None)."""
MAX_DEPTH = 256
"""Deepest nesting of objects and arrays read (an SBOM's nested components are far shallower)."""

_HEAD = 64 * 1024
_BOM = b"\xef\xbb\xbf"
_OPEN = frozenset({"start_map", "start_array"})
_CLOSE = frozenset({"end_map", "end_array"})
# What ijson raises for a damaged document (the pure Python backend: UnicodeDecodeError, a ValueError).
_PARSER_ERRORS = (ijson.JSONError, ValueError)


class JsonEvents:
    """The (event, value) pairs of one JSON file, read in chunks; `line_of` locates string values.

    Iterate once. Raises ParseError (file and line) for a file that is binary, not JSON, or nested
    deeper than `max_depth`; the events before the damage have been delivered by then.
    """

    def __init__(self, path: Path, display: str, *, max_depth: int = MAX_DEPTH) -> None:
        self.path = path
        self.display = display
        self.max_depth = max_depth
        # The window, in the coordinates of the normalised stream (`\/` written as `/`).
        self._buf = bytearray()
        self._buf_at = 0
        """Stream offset of `_buf[0]`."""
        self._cursor = 0
        """Stream offset just past the previous hit: values are searched from here on."""
        self._cursor_line = 1
        self._chunk_at = 0
        """Stream offset of the chunk being parsed."""
        self._carry = b""
        self._keys: dict[str, re.Pattern[bytes]] = {}

    # --- events ---------------------------------------------------------------------------------

    def __iter__(self) -> Iterator[tuple[str, Any]]:
        events = ijson.sendable_list()
        parser = _parser(events)
        depth = 0
        index = 0  # the chunk being parsed: where a failure is looked for again
        failure: Exception | None = None
        # Closed however the iteration ends (damage, a limit, a reader that stops early), so the
        # file is never left open behind a suspended generator.
        with contextlib.closing(self._chunks()) as chunks:
            while failure is None:
                chunk = next(chunks, None)
                try:
                    if chunk is None:
                        parser.close()
                    else:
                        self._slide(chunk)
                        parser.send(chunk)
                except _PARSER_ERRORS as exc:
                    failure = exc  # the events parsed before the damage are still delivered
                began = depth
                for event, value in events:
                    if event in _OPEN:
                        depth += 1
                        if depth > self.max_depth:
                            message = f"JSON nested deeper than {self.max_depth} levels"
                            raise self._located(index, message, began)
                    elif event in _CLOSE:
                        depth -= 1
                    yield event, value
                del events[:]
                if chunk is None:
                    break
                if failure is None:
                    index += 1
        if failure is not None:
            raise self._located(index, f"invalid JSON: {_reason(failure)}")

    def _chunks(self) -> Generator[bytes]:
        """The file's bytes in chunks, less a UTF-8 byte-order mark; binary content is refused."""
        read = 0
        with self.path.open("rb") as handle:
            while chunk := handle.read(CHUNK):
                if read == 0 and chunk.startswith(_BOM):
                    chunk = chunk[len(_BOM) :]
                # NUL never occurs in JSON; finding one early means "binary, misnamed".
                if read < _HEAD and b"\x00" in chunk:
                    raise ParseError("binary content where a text file was expected", self.display)
                read += len(chunk)
                yield chunk

    def _located(self, failed_chunk: int, reason: str, depth: int | None = None) -> ParseError:
        """The error at its line: parse again up to the chunk that failed, then one byte at a time.

        `depth`: for nesting past the limit, the depth where that chunk began (the bytes before it
        are then only fed, never looked at event by event)."""
        events = ijson.sendable_list()
        parser = _parser(events)
        line = 1
        try:
            for index, chunk in enumerate(self._chunks()):
                if index < failed_chunk:
                    parser.send(chunk)
                    del events[:]
                    line += chunk.count(b"\n")
                    continue
                for at in range(len(chunk)):
                    parser.send(chunk[at : at + 1])
                    if depth is not None:
                        depth += _depth_change(events)
                        if depth > self.max_depth:
                            return ParseError(reason, self.display, line)
                    del events[:]
                    line += chunk[at] == 0x0A
                break
            parser.close()
        except _PARSER_ERRORS:
            pass
        return ParseError(reason, self.display, line)

    # --- lines ----------------------------------------------------------------------------------

    def _slide(self, chunk: bytes) -> None:
        """Drop what no later search can need, then append the chunk (with `\\/` unescaped)."""
        start = self._buf_at + len(self._buf)
        keep_from = max(self._cursor, start - KEEP)
        if keep_from > self._cursor:
            self._cursor_line += self._buf.count(b"\n", self._cursor - self._buf_at, keep_from - self._buf_at)
            self._cursor = keep_from
        del self._buf[: keep_from - self._buf_at]
        self._buf_at = keep_from
        self._chunk_at = start
        # Some serialisers (PHP's json_encode) write `/` as `\/`; undo it so values are found verbatim.
        # A `\` ending a chunk may be the first half of one: it waits for the next chunk (no string
        # ends on a backslash, so no event needs it before then).
        text = (self._carry + chunk).replace(b"\\/", b"/")
        self._carry = b"\\" if text.endswith(b"\\") else b""
        self._buf += text[:-1] if self._carry else text

    def mark(self) -> int:
        """Where the event just delivered ends, at the latest, for a `line_of` asked later."""
        return self._chunk_at

    def line_of(self, key: str, value: str, since: int | None = None) -> int | None:
        """Line of `"key": "value"` for the string event just delivered (or for one delivered when
        `mark` gave `since`: the search is then deferred until the line is needed); None when not
        found, or no longer in the window."""
        pattern = self._keys.get(key)
        if pattern is None:
            pattern = re.compile(rb'"' + re.escape(key.encode()) + rb'"\s*:\s*$')
            self._keys[key] = pattern
        needles = [json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass")]
        if not value.isascii():
            needles.append(json.dumps(value).encode())
        for needle in needles:
            if len(needle) > KEEP:
                continue
            chunk_at = self._chunk_at if since is None else since
            low = max(self._cursor, chunk_at - len(needle) - 64) - self._buf_at
            at = self._buf.find(needle, low)
            while at >= 0:
                if pattern.search(self._buf, max(0, at - 64), at):
                    self._cursor_line += self._buf.count(b"\n", self._cursor - self._buf_at, at)
                    self._cursor = self._buf_at + at + len(needle)
                    return self._cursor_line
                at = self._buf.find(needle, at + 1)
        return None


def _parser(events: list[tuple[str, Any]]) -> Any:
    # use_float: numbers as C long long and double. Without it, yajl2_c makes a Python int of an
    # integer's digits, and one of more than 4,300 digits (Python's limit) leaves the parser broken
    # (SystemError, then a crash); with it, an integer beyond 64 bits is a plain "integer overflow".
    return ijson.basic_parse_coro(events, use_float=True)


def _depth_change(events: list[tuple[str, Any]]) -> int:
    change = sum(1 if event in _OPEN else -1 if event in _CLOSE else 0 for event, _ in events)
    del events[:]
    return change


def _reason(exc: Exception) -> str:
    """The first line of yajl's message (`parse error: premature EOF`), without its text excerpt."""
    text = exc.args[0] if exc.args else ""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    if isinstance(exc, UnicodeDecodeError):
        return "not valid UTF-8"
    return str(text).splitlines()[0].strip() if str(text).strip() else type(exc).__name__


# --- reading a document's shape from its events -----------------------------------------------------

Events = Iterator[tuple[str, Any]]


def skip(events: Events, first: str) -> None:
    """Consume the rest of a value whose first event was `first` (nothing more for a scalar)."""
    if first not in _OPEN:
        return
    depth = 1
    for event, _value in events:
        if event in _OPEN:
            depth += 1
        elif event in _CLOSE:
            depth -= 1
            if depth == 0:
                return


def members(events: Events) -> Iterator[str]:
    """The keys of the object just opened; the caller consumes each key's value before the next."""
    for event, value in events:
        if event == "end_map":
            return
        yield str(value)


def value_of(events: Events) -> tuple[str, Any]:
    """The next value's first event and, for a scalar, the value (None for an object or array, whose
    events are left to the caller: `skip` them or read them)."""
    for event, value in events:
        return event, (None if event in _OPEN else value)
    return "end", None  # unreachable: the parser ends the stream with an error first
