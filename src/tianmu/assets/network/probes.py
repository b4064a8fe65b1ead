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
import re
import struct
from collections.abc import Awaitable, Callable
from typing import Any

import dns.exception
import dns.message
import dns.rcode
import dns.rdataclass
import dns.rdatatype

from tianmu.assets.network.banners import parse_banner, parse_mysql_greeting
from tianmu.assets.network.connection import USER_AGENT, Identification, ProbeOptions, printable, talk
from tianmu.assets.network.wire import (
    bson_command,
    bson_top_level,
    frame_complete,
    msg_complete,
    op_msg,
    op_msg_reply,
    parse_amqp_start,
)
from tianmu.network.connection import Conn
from tianmu.network.httpfp import parse_http_response, products_of
from tianmu.network.tls import inspect_tls

__all__ = [
    "USER_AGENT",
    "Identification",
    "ProbeOptions",
    "bson_top_level",
    "identify",
    "parse_amqp_start",
    "parse_banner",
    "parse_mysql_greeting",
]

Probe = Callable[[str, int, str | None, ProbeOptions], Awaitable[Identification | None]]


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
    data = await talk(
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
    conn = await Conn.open(address, port, opts.timeout)
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
            return Identification("redis", "Redis", None, printable(reply), info={"auth_required": True})
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
    conn = await Conn.open(address, port, opts.timeout)
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


async def probe_mongodb(
    address: str, port: int, _name: str | None, opts: ProbeOptions
) -> Identification | None:
    conn = await Conn.open(address, port, opts.timeout)
    if conn is None:
        return None
    try:
        await conn.send(op_msg(bson_command("buildInfo"), 1))
        reply = op_msg_reply(await conn.recv(opts.timeout, msg_complete))
        if reply is None or "ok" not in reply:
            return None
        version = reply.get("version") if isinstance(reply.get("version"), str) else None
        await conn.send(op_msg(bson_command("listDatabases"), 2))
        listing = op_msg_reply(await conn.recv(opts.timeout, msg_complete)) or {}
        auth_required = not listing.get("ok") or listing.get("codeName") == "Unauthorized"
        return Identification(
            "mongodb", "MongoDB", version, None, info={"auth_required": bool(auth_required)}
        )
    finally:
        await conn.close()


async def probe_amqp(address: str, port: int, _name: str | None, opts: ProbeOptions) -> Identification | None:
    data = await talk(address, port, b"AMQP\x00\x00\x09\x01", opts, complete=frame_complete)
    return parse_amqp_start(data) if data else None


_MQTT_CONNECT = bytes([0x10, 24]) + b"\x00\x04MQTT\x04\x02\x00\x3c" + b"\x00\x0ctianmu-probe"
_MQTT_SUBSCRIBE = bytes([0x82, 24]) + b"\x00\x01" + b"\x00\x13$SYS/broker/version" + b"\x00"


async def probe_mqtt(address: str, port: int, _name: str | None, opts: ProbeOptions) -> Identification | None:
    conn = await Conn.open(address, port, opts.timeout)
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
    data = await talk(address, port, b"version\r\n", opts, complete=lambda d: d.endswith(b"\r\n"))
    if data and data.startswith(b"VERSION "):
        version = data[8:].strip().decode(errors="replace")
        return Identification(
            "memcached", "memcached", version, printable(data), info={"auth_required": False}
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
    data = await talk(
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
    data = await talk(address, port, b"\x00\x01n", opts)
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
    conn = await Conn.open(address, port, opts.timeout)
    if conn is None:
        return None
    try:
        # A banner is complete at its first line end (or, for binary greetings, the first packet).
        return await conn.recv(opts.banner_wait, lambda d: b"\n" in d or len(d) >= 4)
    finally:
        await conn.close()


async def _ehlo_or_help(address: str, port: int, opts: ProbeOptions) -> str | None:
    """A bare `220` greeting: SMTP answers EHLO with 250, FTP rejects it (500/502)."""
    conn = await Conn.open(address, port, opts.timeout)
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
        return found or Identification("unknown", banner=printable(banner))
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
