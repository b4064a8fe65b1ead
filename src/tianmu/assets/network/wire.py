"""Binary answers of client-first protocols: the top level of a BSON document (MongoDB OP_MSG), and
AMQP 0-9-1 `Connection.Start` with its field table. Plain functions over bytes."""

from __future__ import annotations

import struct
from typing import Any

from tianmu.assets.network.connection import Identification

__all__ = [
    "bson_command",
    "bson_top_level",
    "frame_complete",
    "msg_complete",
    "op_msg",
    "op_msg_reply",
    "parse_amqp_start",
]


def _bson_cstring(data: bytes, pos: int) -> tuple[str, int]:
    end = data.index(b"\x00", pos)
    return data[pos:end].decode("utf-8", errors="replace"), end + 1


def bson_top_level(data: bytes) -> dict[str, Any]:
    """The scalar top-level fields of a BSON document (nested documents are skipped).

    Hand-written because the only maintained BSON codec ships inside the MongoDB driver, a large
    dependency for the three fields the probe reads.
    """
    out: dict[str, Any] = {}
    pos = 4
    end = min(len(data), struct.unpack("<i", data[:4])[0]) - 1
    fixed = {0x01: 8, 0x07: 12, 0x09: 8, 0x11: 8, 0x12: 8, 0x10: 4, 0x08: 1, 0x0A: 0, 0x13: 16}
    while pos < end:
        kind = data[pos]
        key, pos = _bson_cstring(data, pos + 1)
        if kind == 0x02:
            size = struct.unpack("<i", data[pos : pos + 4])[0]
            out[key] = data[pos + 4 : pos + 3 + size].decode("utf-8", errors="replace")
            pos += 4 + size
        elif kind in (0x03, 0x04):
            pos += struct.unpack("<i", data[pos : pos + 4])[0]
        elif kind == 0x05:
            pos += 5 + struct.unpack("<i", data[pos : pos + 4])[0]
        elif kind in fixed:
            raw = data[pos : pos + fixed[kind]]
            if kind == 0x01:
                out[key] = struct.unpack("<d", raw)[0]
            elif kind == 0x10:
                out[key] = struct.unpack("<i", raw)[0]
            elif kind == 0x12:
                out[key] = struct.unpack("<q", raw)[0]
            elif kind == 0x08:
                out[key] = raw == b"\x01"
            pos += fixed[kind]
        else:
            break
    return out


def bson_command(command: str, db: str = "admin") -> bytes:
    body = b"\x10" + command.encode() + b"\x00" + struct.pack("<i", 1)
    body += b"\x02$db\x00" + struct.pack("<i", len(db) + 1) + db.encode() + b"\x00"
    return struct.pack("<i", len(body) + 5) + body + b"\x00"


def op_msg(document: bytes, request_id: int) -> bytes:
    body = struct.pack("<I", 0) + b"\x00" + document
    return struct.pack("<iiii", 16 + len(body), request_id, 0, 2013) + body


def op_msg_reply(data: bytes) -> dict[str, Any] | None:
    if len(data) < 21 or struct.unpack("<i", data[12:16])[0] != 2013 or data[20] != 0:
        return None
    try:
        return bson_top_level(data[21:])
    except (struct.error, ValueError, IndexError):
        return None


def msg_complete(data: bytes) -> bool:
    return len(data) >= 4 and len(data) >= struct.unpack("<i", data[:4])[0]


def _amqp_table(data: bytes) -> dict[str, Any]:
    out: dict[str, Any] = {}
    pos = 0
    while pos < len(data):
        size = data[pos]
        key = data[pos + 1 : pos + 1 + size].decode("utf-8", errors="replace")
        pos += 1 + size
        kind = chr(data[pos])
        pos += 1
        if kind in "Sx":
            length = struct.unpack("!I", data[pos : pos + 4])[0]
            out[key] = data[pos + 4 : pos + 4 + length].decode("utf-8", errors="replace")
            pos += 4 + length
        elif kind == "F":
            length = struct.unpack("!I", data[pos : pos + 4])[0]
            out[key] = _amqp_table(data[pos + 4 : pos + 4 + length])
            pos += 4 + length
        elif kind == "A":
            pos += 4 + struct.unpack("!I", data[pos : pos + 4])[0]
        elif kind == "t":
            out[key] = data[pos] != 0
            pos += 1
        else:
            widths = {
                "b": 1,
                "B": 1,
                "s": 2,
                "u": 2,
                "I": 4,
                "i": 4,
                "l": 8,
                "L": 8,
                "f": 4,
                "d": 8,
                "D": 5,
                "T": 8,
                "V": 0,
            }
            if kind not in widths:
                break
            pos += widths[kind]
    return out


def parse_amqp_start(data: bytes) -> Identification | None:
    """AMQP 0-9-1 Connection.Start (class 10, method 10): server properties and mechanisms."""
    if data.startswith(b"AMQP") and len(data) == 8:
        return Identification("amqp", None, None, f"AMQP protocol header {data[4:].hex()}")
    if len(data) < 11 or data[0] != 1 or data[7:11] != b"\x00\x0a\x00\x0a":
        return None
    size = struct.unpack("!I", data[3:7])[0]
    payload = data[7 : 7 + size]
    try:
        table_len = struct.unpack("!I", payload[6:10])[0]
        props = _amqp_table(payload[10 : 10 + table_len])
        rest = payload[10 + table_len :]
        mech_len = struct.unpack("!I", rest[:4])[0]
        mechanisms = rest[4 : 4 + mech_len].decode(errors="replace")
    except (struct.error, IndexError):
        return None
    product = props.get("product")
    info = {"amqp_version": f"0-{payload[4]}-{payload[5]}", "mechanisms": mechanisms.split()}
    if isinstance(props.get("platform"), str):
        info["platform"] = props["platform"]
    banner = " ".join(
        str(props[k]) for k in ("product", "version", "platform") if isinstance(props.get(k), str)
    )
    version = props.get("version")
    return Identification(
        "amqp",
        product if isinstance(product, str) else None,
        version if isinstance(version, str) else None,
        banner,
        info=info,
    )


def frame_complete(data: bytes) -> bool:
    if len(data) < 8:
        return False
    return data.startswith(b"AMQP") or len(data) >= 8 + struct.unpack("!I", data[3:7])[0]
