"""Protocol-correct probes: what service listens on an open port, which product and which version.

Each probe speaks the first exchange of its protocol exactly as a client would (an HTTP GET, a Redis
PING, a PostgreSQL SSLRequest and StartupMessage, a MySQL/MariaDB greeting read, a MongoDB OP_MSG
`buildInfo`, an AMQP 0-9-1 protocol header, an MQTT 3.1.1 CONNECT, a memcached `version`, a DNS
`version.bind CH TXT` query...) and parses the answer by the protocol's grammar. Nothing a probe sends
changes server state; the MQTT and MongoDB probes only read (`$SYS/broker/version`, `listDatabases`).

Order (`identify`): the probe the port number suggests goes first, so a well-known service costs one
exchange; then a wait for a banner (services that speak first: SSH, FTP, SMTP, POP3, IMAP, MySQL, NATS);
then every client-first probe at once (TLS first in rank). The parsers are plain functions over
bytes, tested on their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import ssl
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import dns.exception
import dns.message
import dns.rdataclass
import dns.rdatatype

from tianmu.assets.network.httpfp import parse_http_response, products_of
from tianmu.assets.network.tls import insecure_context, inspect_tls

__all__ = [
    "USER_AGENT",
    "Identification",
    "ProbeOptions",
    "identify",
    "parse_amqp_start",
    "parse_banner",
    "parse_mysql_greeting",
]

USER_AGENT = "Tianmu-Discovery/0.1 (+asset inventory; GET only)"


@dataclass(slots=True)
class Identification:
    service: str
    product: str | None = None
    version: str | None = None
    banner: str | None = None
    tls: dict[str, Any] | None = None
    info: dict[str, Any] = field(default_factory=dict)
    """Probe-specific facts (auth_required, title, mechanisms...) that findings are drawn from."""
    cpe_product: str | None = None
    """The product to name the CPE after when it is not `product` (Python for http.server)."""
    cpe_version: str | None = None


@dataclass(frozen=True, slots=True)
class ProbeOptions:
    timeout: float = 3.0
    """Seconds for one exchange (connect + answer)."""
    banner_wait: float = 1.5
    """Seconds to wait for a service that speaks first before trying client-first probes."""
    tls_versions: bool = True
    """Survey each TLS protocol version (4 extra handshakes per TLS port)."""


class _Conn:
    """One TCP (optionally TLS) conversation with read deadlines."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(
        cls, address: str, port: int, timeout: float, tls: bool = False, server_name: str | None = None
    ) -> _Conn | None:
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(
                    address,
                    port,
                    ssl=insecure_context() if tls else None,
                    server_hostname=(server_name or address) if tls else None,
                    limit=1 << 20,
                ),
                timeout,
            )
        except (OSError, TimeoutError, ssl.SSLError, EOFError):
            return None
        return cls(reader, writer)

    async def send(self, data: bytes) -> bool:
        try:
            self.writer.write(data)
            await self.writer.drain()
        except (OSError, ssl.SSLError):
            return False
        return True

    async def recv(
        self, timeout: float, complete: Callable[[bytes], bool] | None = None, limit: int = 262144
    ) -> bytes:
        data = b""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while len(data) < limit:
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            try:
                chunk = await asyncio.wait_for(self.reader.read(65536), remaining)
            except (OSError, TimeoutError, ssl.SSLError, EOFError):
                break
            if not chunk:
                break
            data += chunk
            if complete is not None and complete(data):
                break
        return data

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.writer.wait_closed(), 1.0)


def _printable(data: bytes, limit: int = 512) -> str:
    text = data[:limit].decode("utf-8", errors="replace")
    return "".join(ch if ch.isprintable() or ch in "\r\n\t" else "." for ch in text).strip()


# --- parsers of what services say first ------------------------------------------------------------

_V = r"(\d[\w.\-~+]*)"
_BANNER_PRODUCTS: list[tuple[str, re.Pattern[str], str]] = [
    ("ftp", re.compile(r"vsFTPd " + _V, re.I), "vsftpd"),
    ("ftp", re.compile(r"ProFTPD " + _V, re.I), "ProFTPD"),
    ("ftp", re.compile(r"Pure-FTPd", re.I), "Pure-FTPd"),
    ("ftp", re.compile(r"pyftpdlib " + _V, re.I), "pyftpdlib"),
    ("ftp", re.compile(r"FileZilla Server(?: version)? " + _V, re.I), "FileZilla Server"),
    ("ftp", re.compile(r"Microsoft FTP Service", re.I), "Microsoft ftpd"),
    ("smtp", re.compile(r"ESMTP Postfix", re.I), "Postfix"),
    ("smtp", re.compile(r"Exim " + _V, re.I), "Exim"),
    ("smtp", re.compile(r"Sendmail " + _V, re.I), "Sendmail"),
    ("smtp", re.compile(r"OpenSMTPD", re.I), "OpenSMTPD"),
    ("smtp", re.compile(r"Python SMTP " + _V, re.I), "aiosmtpd"),
    ("smtp", re.compile(r"Microsoft ESMTP MAIL Service", re.I), "Microsoft Exchange smtpd"),
    ("pop3", re.compile(r"Dovecot", re.I), "Dovecot"),
    ("imap", re.compile(r"Dovecot", re.I), "Dovecot"),
    ("imap", re.compile(r"Cyrus IMAP(?:4)? v?" + _V, re.I), "Cyrus IMAPd"),
    ("imap", re.compile(r"Courier-IMAP", re.I), "Courier IMAP"),
]


def _ssh(text: str) -> Identification:
    first = text.splitlines()[0] if text else text
    match = re.match(r"SSH-([\d.]+)-(\S+)(?:\s+(.*))?", first)
    if not match:
        return Identification("ssh", banner=first)
    software = match.group(2)
    info: dict[str, Any] = {"protocol": match.group(1)}
    if match.group(3):
        info["comment"] = match.group(3)
    name, _sep, version = software.partition("_")
    products = {"openssh": "OpenSSH", "dropbear": "Dropbear", "libssh": "libssh"}
    product = products.get(name.lower(), name)
    if name.lower() == "libssh" and "-" in version:
        version = version.split("-", 1)[-1]
    return Identification("ssh", product, version or None, first, info=info)


def parse_mysql_greeting(data: bytes) -> Identification | None:
    """The MySQL/MariaDB server greeting (protocol 10) or its refusal (an ERR packet)."""
    if len(data) < 5:
        return None
    length = data[0] | data[1] << 8 | data[2] << 16
    payload = data[4 : 4 + length]
    if not payload or length > 4096:
        return None
    if payload[0] == 0xFF and len(payload) > 3:
        message = payload[3:].lstrip(b"#").decode("utf-8", errors="replace")
        message = message[5:] if message[:5].isalnum() and len(message) > 5 else message
        if "mysql" in message.lower() or "mariadb" in message.lower() or "host" in message.lower():
            return Identification("mysql", "MySQL", None, _printable(payload[3:]), info={"refused": True})
        return None
    if payload[0] != 10 or b"\x00" not in payload[1:80]:
        return None
    version = payload[1 : payload.index(b"\x00", 1)].decode("ascii", errors="replace")
    if not re.match(r"\d+\.\d+", version):
        return None
    if "mariadb" in version.lower():
        clean = re.sub(r"^5\.5\.5-", "", version)
        return Identification("mysql", "MariaDB", clean.split("-", 1)[0], version)
    return Identification("mysql", "MySQL", version.split("-", 1)[0], version)


def parse_banner(data: bytes) -> Identification | None:
    """A service that spoke first, identified from what it said (None: not one we know)."""
    mysql = parse_mysql_greeting(data)
    if mysql is not None:
        return mysql
    text = _printable(data)
    if text.startswith("SSH-"):
        return _ssh(text)
    if text.startswith("INFO {"):
        match = re.search(r'"version"\s*:\s*"([^"]+)"', text)
        return Identification("nats", "nats-server", match.group(1) if match else None, text[:200])
    if text.startswith("+OK"):
        service = "pop3"
    elif text.startswith("* OK") or text.startswith("* PREAUTH"):
        service = "imap"
    elif text.startswith("220"):
        lowered = text.lower()
        service = "smtp" if ("smtp" in lowered or "mail" in lowered) else "ftp" if "ftp" in lowered else ""
    else:
        return None
    first = text.splitlines()[0]
    for kind, pattern, product in _BANNER_PRODUCTS:
        if service in ("", kind):
            match = pattern.search(text)
            if match:
                version = match.group(1) if match.groups() else None
                return Identification(kind, product, version, first)
    return Identification(service or "ftp-or-smtp", None, None, first)


# --- client-first probes --------------------------------------------------------------------------

Probe = Callable[[str, int, str | None, ProbeOptions], Awaitable[Identification | None]]


async def _talk(
    address: str,
    port: int,
    payload: bytes,
    opts: ProbeOptions,
    *,
    tls: bool = False,
    server_name: str | None = None,
    complete: Callable[[bytes], bool] | None = None,
) -> bytes | None:
    conn = await _Conn.open(address, port, opts.timeout, tls, server_name)
    if conn is None:
        return None
    try:
        if not await conn.send(payload):
            return b""
        return await conn.recv(opts.timeout, complete)
    finally:
        await conn.close()


def _http_request(host: str) -> bytes:
    return (
        f"GET / HTTP/1.1\r\nHost: {host}\r\nUser-Agent: {USER_AGENT}\r\nAccept: */*\r\n"
        "Connection: close\r\n\r\n"
    ).encode()


def _http_complete(data: bytes) -> bool:
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        return False
    match = re.search(rb"\r\ncontent-length:\s*(\d+)", head, re.I)
    return (match is not None and len(body) >= int(match.group(1))) or len(body) > 65536


def identify_http(data: bytes, tls: bool) -> Identification | None:
    response = parse_http_response(data)
    if response is None:
        return None
    products = products_of(response)
    service = "https" if tls else "http"
    info: dict[str, Any] = {"status": response.status}
    if response.title:
        info["title"] = response.title
    for name in ("Server", "X-Powered-By"):
        value = response.header(name)
        if value:
            info[name.lower()] = value
    if products:
        info["products"] = [{"name": p.name, "version": p.version, "source": p.source} for p in products]
    status_line = f"HTTP/{response.version} {response.status} {response.reason}".strip()
    ident = Identification(
        service, banner=status_line + (f"; Server: {info['server']}" if "server" in info else "")
    )
    ident.info = info
    if products:
        main = products[0]
        ident.product, ident.version = main.name, main.version
        if main.name == "Python http.server":
            python = next((p for p in products if p.name == "Python"), None)
            ident.cpe_product, ident.cpe_version = "Python", python.version if python else None
    return ident


async def probe_http(
    address: str, port: int, name: str | None, opts: ProbeOptions, tls: bool = False
) -> Identification | None:
    host = name or (f"[{address}]" if ":" in address else address)
    if port not in (80, 443):
        host = f"{host}:{port}"
    data = await _talk(
        address, port, _http_request(host), opts, tls=tls, server_name=name, complete=_http_complete
    )
    return identify_http(data, tls) if data else None


async def probe_https(address: str, port: int, name: str | None, opts: ProbeOptions) -> Identification | None:
    tls = await inspect_tls(address, port, server_name=name, timeout=opts.timeout, versions=opts.tls_versions)
    if tls is None:
        return None
    ident = await probe_http(address, port, name, opts, tls=True)
    if ident is None:
        ident = Identification("ssl")
    ident.tls = tls
    return ident


async def probe_redis(
    address: str, port: int, _name: str | None, opts: ProbeOptions
) -> Identification | None:
    conn = await _Conn.open(address, port, opts.timeout)
    if conn is None:
        return None
    try:
        await conn.send(b"*1\r\n$4\r\nPING\r\n")
        reply = await conn.recv(opts.timeout, lambda d: d.endswith(b"\r\n"))
        if reply.startswith(b"+PONG"):
            await conn.send(b"*2\r\n$4\r\nINFO\r\n$6\r\nserver\r\n")
            info_reply = await conn.recv(
                opts.timeout,
                lambda d: d.startswith(b"$") and d.count(b"\r\n") > 2 and d.endswith(b"\r\n\r\n"),
            )
            text = info_reply.decode("utf-8", errors="replace")
            valkey = re.search(r"valkey_version:(\S+)", text)
            version = re.search(r"redis_version:(\S+)", text)
            product = "Valkey" if valkey else "Redis"
            found = valkey or version
            ver = found.group(1) if found else None
            mode = re.search(r"redis_mode:(\S+)", text)
            info = {"auth_required": False, "mode": mode.group(1) if mode else None}
            return Identification("redis", product, ver, "+PONG", info=info)
        if reply.startswith((b"-NOAUTH", b"-DENIED", b"-ERR operation not permitted")) or (
            reply.startswith(b"-") and b"auth" in reply.lower()
        ):
            return Identification("redis", "Redis", None, _printable(reply), info={"auth_required": True})
        return None
    finally:
        await conn.close()


def _pg_fields(payload: bytes) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in payload.split(b"\x00"):
        if len(part) > 1:
            out[chr(part[0])] = part[1:].decode("utf-8", errors="replace")
    return out


async def probe_postgresql(
    address: str, port: int, _name: str | None, opts: ProbeOptions
) -> Identification | None:
    conn = await _Conn.open(address, port, opts.timeout)
    if conn is None:
        return None
    try:
        await conn.send(struct.pack("!II", 8, 80877103))  # SSLRequest
        answer = await conn.recv(opts.timeout, lambda d: len(d) >= 1)
        if answer not in (b"S", b"N"):
            return None
        info: dict[str, Any] = {"ssl": answer == b"S"}
        if answer == b"S":
            return Identification("postgresql", "PostgreSQL", None, None, info=info)
        params = b"user\x00tianmu-probe\x00database\x00tianmu-probe\x00application_name\x00tianmu\x00\x00"
        await conn.send(struct.pack("!II", 8 + len(params), 196608) + params)
        reply = await conn.recv(
            opts.timeout, lambda d: len(d) >= 5 and len(d) >= 1 + struct.unpack("!I", d[1:5])[0]
        )
        version = None
        if reply[:1] == b"E":
            fields = _pg_fields(reply[5:])
            info["error"] = fields.get("M")
            info["sqlstate"] = fields.get("C")
        elif reply[:1] == b"R" and len(reply) >= 9:
            code = struct.unpack("!I", reply[5:9])[0]
            info["auth"] = {0: "trust", 3: "password", 5: "md5", 10: "scram-sha-256"}.get(code, str(code))
            match = re.search(rb"server_version\x00([^\x00]+)", reply)
            version = match.group(1).decode().split(" ", 1)[0] if match else None
        else:
            return None
        return Identification("postgresql", "PostgreSQL", version, None, info=info)
    finally:
        await conn.close()


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


def _bson_command(command: str, db: str = "admin") -> bytes:
    body = b"\x10" + command.encode() + b"\x00" + struct.pack("<i", 1)
    body += b"\x02$db\x00" + struct.pack("<i", len(db) + 1) + db.encode() + b"\x00"
    return struct.pack("<i", len(body) + 5) + body + b"\x00"


def _op_msg(document: bytes, request_id: int) -> bytes:
    body = struct.pack("<I", 0) + b"\x00" + document
    return struct.pack("<iiii", 16 + len(body), request_id, 0, 2013) + body


def _op_msg_reply(data: bytes) -> dict[str, Any] | None:
    if len(data) < 21 or struct.unpack("<i", data[12:16])[0] != 2013 or data[20] != 0:
        return None
    try:
        return bson_top_level(data[21:])
    except (struct.error, ValueError, IndexError):
        return None


def _msg_complete(data: bytes) -> bool:
    return len(data) >= 4 and len(data) >= struct.unpack("<i", data[:4])[0]


async def probe_mongodb(
    address: str, port: int, _name: str | None, opts: ProbeOptions
) -> Identification | None:
    conn = await _Conn.open(address, port, opts.timeout)
    if conn is None:
        return None
    try:
        await conn.send(_op_msg(_bson_command("buildInfo"), 1))
        reply = _op_msg_reply(await conn.recv(opts.timeout, _msg_complete))
        if reply is None or "ok" not in reply:
            return None
        version = reply.get("version") if isinstance(reply.get("version"), str) else None
        await conn.send(_op_msg(_bson_command("listDatabases"), 2))
        listing = _op_msg_reply(await conn.recv(opts.timeout, _msg_complete)) or {}
        auth_required = not listing.get("ok") or listing.get("codeName") == "Unauthorized"
        return Identification(
            "mongodb", "MongoDB", version, None, info={"auth_required": bool(auth_required)}
        )
    finally:
        await conn.close()


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


def _frame_complete(data: bytes) -> bool:
    if len(data) < 8:
        return False
    return data.startswith(b"AMQP") or len(data) >= 8 + struct.unpack("!I", data[3:7])[0]


async def probe_amqp(address: str, port: int, _name: str | None, opts: ProbeOptions) -> Identification | None:
    data = await _talk(address, port, b"AMQP\x00\x00\x09\x01", opts, complete=_frame_complete)
    return parse_amqp_start(data) if data else None


_MQTT_CONNECT = bytes([0x10, 24]) + b"\x00\x04MQTT\x04\x02\x00\x3c" + b"\x00\x0ctianmu-probe"
_MQTT_SUBSCRIBE = bytes([0x82, 24]) + b"\x00\x01" + b"\x00\x13$SYS/broker/version" + b"\x00"


async def probe_mqtt(address: str, port: int, _name: str | None, opts: ProbeOptions) -> Identification | None:
    conn = await _Conn.open(address, port, opts.timeout)
    if conn is None:
        return None
    try:
        await conn.send(_MQTT_CONNECT)
        ack = await conn.recv(opts.timeout, lambda d: len(d) >= 4)
        if len(ack) < 4 or ack[0] != 0x20 or ack[1] != 2:
            return None
        code = ack[3]
        info: dict[str, Any] = {"connack": code, "anonymous": code == 0}
        product = version = None
        if code == 0:
            await conn.send(_MQTT_SUBSCRIBE)
            data = await conn.recv(
                min(opts.timeout, 2.0), lambda d: b"version" in d and d.rstrip()[-1:].isdigit()
            )
            match = re.search(rb"mosquitto version (\d[\w.]*)", data)
            if match:
                product, version = "Mosquitto", match.group(1).decode()
            await conn.send(b"\xe0\x00")
        banner = f"MQTT CONNACK return code {code}"
        return Identification("mqtt", product, version, banner, info=info)
    finally:
        await conn.close()


async def probe_memcached(
    address: str, port: int, _name: str | None, opts: ProbeOptions
) -> Identification | None:
    data = await _talk(address, port, b"version\r\n", opts, complete=lambda d: d.endswith(b"\r\n"))
    if data and data.startswith(b"VERSION "):
        version = data[8:].strip().decode(errors="replace")
        return Identification(
            "memcached", "memcached", version, _printable(data), info={"auth_required": False}
        )
    return None


def _dns_product(text: str) -> tuple[str | None, str | None]:
    patterns = [
        (r"^(\d+\.\d+\.\d+)", "ISC BIND"),
        (r"dnsmasq-(\d[\w.]*)", "dnsmasq"),
        (r"unbound (\d[\w.]*)", "Unbound"),
        (r"PowerDNS.*?(\d+\.\d+\.\d+)", "PowerDNS"),
    ]
    for pattern, product in patterns:
        match = re.search(pattern, text, re.I)
        if match:
            return product, match.group(1)
    return None, None


async def probe_dns(address: str, port: int, _name: str | None, opts: ProbeOptions) -> Identification | None:
    query = dns.message.make_query("version.bind", dns.rdatatype.TXT, dns.rdataclass.CH)
    wire = query.to_wire()
    data = await _talk(
        address, port, struct.pack("!H", len(wire)) + wire, opts,
        complete=lambda d: len(d) >= 2 and len(d) >= 2 + struct.unpack("!H", d[:2])[0],
    )  # fmt: skip
    if not data or len(data) < 14:
        return None
    try:
        reply = dns.message.from_wire(data[2 : 2 + struct.unpack("!H", data[:2])[0]])
    except (dns.exception.DNSException, ValueError):
        return None
    if reply.id != query.id:
        return None
    text = ""
    for rrset in reply.answer:
        for rdata in rrset:
            text = b"".join(getattr(rdata, "strings", [])).decode(errors="replace")
    product, version = _dns_product(text) if text else (None, None)
    info = {"rcode": dns.rcode.to_text(reply.rcode()), "version_bind": text or None}
    return Identification("domain", product, version, text or None, info=info)


async def probe_epmd(address: str, port: int, _name: str | None, opts: ProbeOptions) -> Identification | None:
    """Erlang Port Mapper: NAMES_REQ lists the Erlang nodes (RabbitMQ's among them) and their ports."""
    data = await _talk(address, port, b"\x00\x01n", opts)
    if not data or len(data) < 4:
        return None
    names = re.findall(rb"name (\S+) at port (\d+)", data[4:])
    if not names and len(data) != 4:
        return None
    nodes = {n.decode(errors="replace"): int(p) for n, p in names}
    banner = ", ".join(f"{n}:{p}" for n, p in nodes.items()) or None
    return Identification("epmd", "Erlang Port Mapper Daemon", None, banner, info={"nodes": nodes})


CLIENT_FIRST: dict[str, Probe] = {
    "https": probe_https,
    "http": probe_http,
    "redis": probe_redis,
    "postgresql": probe_postgresql,
    "amqp": probe_amqp,
    "mqtt": probe_mqtt,
    "mongodb": probe_mongodb,
    "memcached": probe_memcached,
    "domain": probe_dns,
    "epmd": probe_epmd,
}
# Port-number hints (IANA assignments and common practice); a hint is only tried first, never trusted.
PORT_HINTS: dict[int, str] = {
    53: "domain", 80: "http", 443: "https", 465: "https", 636: "https", 993: "https", 995: "https",
    1883: "mqtt", 4369: "epmd", 5432: "postgresql", 5671: "https", 5672: "amqp", 6379: "redis", 6443: "https",
    8000: "http", 8008: "http", 8080: "http", 8081: "http", 8443: "https", 8888: "http", 9000: "http",
    9200: "http", 11211: "memcached", 15672: "http", 27017: "mongodb",
}  # fmt: skip
_BANNER_PORTS = frozenset({21, 22, 23, 25, 110, 143, 587, 2222, 3306, 4222})


async def _banner(address: str, port: int, opts: ProbeOptions) -> bytes | None:
    conn = await _Conn.open(address, port, opts.timeout)
    if conn is None:
        return None
    try:
        # A banner is complete at its first line end (or, for binary greetings, the first packet).
        return await conn.recv(opts.banner_wait, lambda d: b"\n" in d or len(d) >= 4)
    finally:
        await conn.close()


async def _ehlo_or_help(address: str, port: int, opts: ProbeOptions) -> str | None:
    """A bare `220` greeting: SMTP answers EHLO with 250, FTP rejects it (500/502)."""
    conn = await _Conn.open(address, port, opts.timeout)
    if conn is None:
        return None
    try:
        await conn.recv(opts.timeout, lambda d: b"\n" in d)
        await conn.send(b"EHLO tianmu.invalid\r\n")
        reply = await conn.recv(opts.timeout, lambda d: b"\n" in d)
        await conn.send(b"QUIT\r\n")
        return "smtp" if reply.startswith(b"250") else "ftp" if reply[:1] == b"5" else None
    finally:
        await conn.close()


async def identify(
    address: str, port: int, hostname: str | None = None, options: ProbeOptions | None = None
) -> Identification:
    """Name the service on one open TCP port (see the module docstring for the order of probes)."""
    opts = options or ProbeOptions()
    tried: set[str] = set()
    hint = PORT_HINTS.get(port)
    if hint is not None:
        tried.add(hint)
        found = await CLIENT_FIRST[hint](address, port, hostname, opts)
        if found is not None:
            return found
    banner = await _banner(address, port, opts)
    if banner:
        found = parse_banner(banner)
        if found is not None and found.service == "ftp-or-smtp":
            found.service = await _ehlo_or_help(address, port, opts) or "unknown"
        return found or Identification("unknown", banner=_printable(banner))
    if port in _BANNER_PORTS and banner is None:
        return Identification("unknown")
    # Every remaining probe at once, each on its own connection: a silent port then costs one probe
    # timeout instead of one per probe. The parsers are strict (each accepts only its own protocol's
    # grammar), so the first probe to recognise the service wins and the others are cancelled.
    names = [name for name in CLIENT_FIRST if name not in tried]
    tasks = [asyncio.ensure_future(CLIENT_FIRST[name](address, port, hostname, opts)) for name in names]
    try:
        for next_done in asyncio.as_completed(tasks):
            result = await next_done
            if result is not None:
                return result
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return Identification("unknown")
