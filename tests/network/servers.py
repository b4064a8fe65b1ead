"""Real servers on 127.0.0.1 for the network and website tests: HTTP(S) sites with configurable
answers, TLS with good/self-signed/expired certificates, banner servers (SSH, FTP), and an in-process
DNS server (dnslib) answering from dnspython zones. Every server binds 127.0.0.1 on a free port."""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import socket
import socketserver
import ssl
import threading
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import dns.zone
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from dnslib import DNSRecord
from dnslib.server import BaseResolver, DNSServer

NOW = dt.datetime.now(dt.UTC)


@dataclass
class CertFiles:
    cert: Path
    key: Path
    pem: bytes


def make_cert(
    directory: Path,
    stem: str,
    common_name: str,
    *,
    sans: tuple[str, ...] = ("localhost", "127.0.0.1"),
    days: tuple[int, int] = (-1, 365),
    issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None = None,
    rsa_bits: int | None = None,
    ca: bool = False,
) -> tuple[CertFiles, x509.Certificate, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey]:
    key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
    key = rsa.generate_private_key(65537, rsa_bits) if rsa_bits else ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    alt: list[x509.GeneralName] = []
    for san in sans:
        try:
            alt.append(x509.IPAddress(ipaddress.ip_address(san)))
        except ValueError:
            alt.append(x509.DNSName(san))
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer[0].subject if issuer else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW + dt.timedelta(days=days[0]))
        .not_valid_after(NOW + dt.timedelta(days=days[1]))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if alt:
        builder = builder.add_extension(x509.SubjectAlternativeName(alt), critical=False)
    signer = issuer[1] if issuer else key
    cert = builder.sign(signer, hashes.SHA256())  # type: ignore[arg-type]
    pem = cert.public_bytes(serialization.Encoding.PEM)
    cert_path = directory / f"{stem}.crt"
    key_path = directory / f"{stem}.key"
    chain = pem + (issuer[0].public_bytes(serialization.Encoding.PEM) if issuer else b"")
    cert_path.write_bytes(chain)
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return CertFiles(cert_path, key_path, pem), cert, key  # type: ignore[return-value]


@dataclass
class Certs:
    ca: CertFiles
    ca_cert: x509.Certificate
    ca_key: ec.EllipticCurvePrivateKey
    good: CertFiles
    self_signed: CertFiles
    expired: CertFiles
    expiring: CertFiles
    wrong_host: CertFiles


def make_certs(directory: Path) -> Certs:
    ca_files, ca_cert, ca_key = make_cert(
        directory, "ca", "Tianmu Test CA", sans=(), ca=True, days=(-10, 3650)
    )
    issuer = (ca_cert, ca_key)
    good, _c, _k = make_cert(directory, "good", "localhost", issuer=issuer)  # type: ignore[arg-type]
    self_signed, _c, _k = make_cert(directory, "self", "localhost")
    expired, _c, _k = make_cert(directory, "expired", "localhost", days=(-400, -30), issuer=issuer)  # type: ignore[arg-type]
    expiring, _c, _k = make_cert(directory, "expiring", "localhost", days=(-300, 5), issuer=issuer)  # type: ignore[arg-type]
    wrong, _c, _k = make_cert(directory, "wrong", "other.example", sans=("other.example",), issuer=issuer)  # type: ignore[arg-type]
    return Certs(ca_files, ca_cert, ca_key, good, self_signed, expired, expiring, wrong)  # type: ignore[arg-type]


# --- HTTP ------------------------------------------------------------------------------------------


@dataclass
class Page:
    status: int = 200
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""


@dataclass
class Site:
    pages: dict[str, Page] = field(default_factory=dict)
    default_headers: list[tuple[str, str]] = field(default_factory=list)
    reflect_origin: bool = False
    cors_credentials: bool = False
    soft_404: bool = False
    requests: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)


def _handler(site: Site) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "TestServer/1.0"

        def log_message(self, *_args: object) -> None:
            pass

        def send_response(self, code: int, message: str | None = None) -> None:
            # Without http.server's own `Server:` header: each page says what server it claims to be.
            self.send_response_only(code, message)
            self.send_header("Date", self.date_time_string())

        def _answer(self, with_body: bool) -> None:
            site.requests.append((self.command, self.path, dict(self.headers)))
            page = site.pages.get(self.path.split("?", 1)[0])
            if page is None:
                page = (
                    Page(200, [("Content-Type", "text/html")], b"<html>ok</html>")
                    if site.soft_404
                    else Page(
                        404, [("Content-Type", "text/html")], b"<html><title>404</title>not found</html>"
                    )
                )
            self.send_response(page.status)
            for key, value in site.default_headers + page.headers:
                self.send_header(key, value)
            origin = self.headers.get("Origin")
            if site.reflect_origin and origin:
                self.send_header("Access-Control-Allow-Origin", origin)
                if site.cors_credentials:
                    self.send_header("Access-Control-Allow-Credentials", "true")
            self.send_header("Content-Length", str(len(page.body)))
            self.end_headers()
            if with_body:
                self.wfile.write(page.body)

        def do_GET(self) -> None:
            self._answer(True)

        def do_HEAD(self) -> None:
            self._answer(False)

        def do_POST(self) -> None:
            site.requests.append(("POST", self.path, dict(self.headers)))
            self.send_response(405)
            self.end_headers()

    return Handler


class QuietHTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        # Scanners reset connections (SO_LINGER 0) and probes speak other protocols: not errors here.
        pass


class QuietTCPServer(socketserver.ThreadingTCPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        pass


@contextmanager
def serve_http(
    site: Site,
    *,
    cert: CertFiles | None = None,
    min_version: ssl.TLSVersion | None = None,
    ciphers: str | None = None,
    host: str = "127.0.0.1",
) -> Iterator[int]:
    """Serve `site` (over TLS with `cert`) on a free port; yields the port."""
    server = QuietHTTPServer((host, 0), _handler(site))
    server.daemon_threads = True
    if cert is not None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert.cert, cert.key)
        if min_version is not None:
            context.set_ciphers("ALL:@SECLEVEL=0")
            with warnings.catch_warnings():  # old versions on purpose: the tests look for them
                warnings.simplefilter("ignore", DeprecationWarning)
                context.minimum_version = min_version
        if ciphers is not None:
            context.set_ciphers(ciphers)
            context.maximum_version = ssl.TLSVersion.TLSv1_2
        server.socket = context.wrap_socket(server.socket, server_side=True, do_handshake_on_connect=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


# --- banner servers -------------------------------------------------------------------------------


@contextmanager
def serve_banner(banner: bytes, reply: Callable[[bytes], bytes | None] | None = None) -> Iterator[int]:
    """A TCP server that greets every client with `banner` and answers each line with `reply(line)`."""

    class Handler(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            try:
                self.wfile.write(banner)
                while reply is not None:
                    line = self.rfile.readline(4096)
                    if not line:
                        break
                    answer = reply(line)
                    if answer is None:
                        break
                    self.wfile.write(answer)
            except OSError:
                pass

    server = QuietTCPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def serve_raw(handler: Callable[[socket.socket], None]) -> Iterator[int]:
    """A TCP server whose connections are given to `handler(sock)` (for binary protocols)."""

    class Handler(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            with contextlib.suppress(OSError):
                handler(self.request)

    server = QuietTCPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- DNS ------------------------------------------------------------------------------------------


class ZoneResolver(BaseResolver):  # type: ignore[misc]
    """Answers from dnspython zones: authoritative data, NXDOMAIN/NODATA, CNAME chasing inside the zone,
    wildcards, DNSSEC records when asked (DO bit), and AXFR for the zones listed in `axfr`."""

    def __init__(self, zones: dict[str, dns.zone.Zone], axfr: set[str], version: str | None = None) -> None:
        self.zones = zones
        self.axfr = axfr
        self.version = version
        self.queries: list[tuple[str, str]] = []

    def _zone(self, name: dns.name.Name) -> dns.zone.Zone | None:
        best = None
        for origin, zone in self.zones.items():
            if name.is_subdomain(dns.name.from_text(origin)) and (
                best is None or len(zone.origin) > len(best.origin)  # type: ignore[arg-type]
            ):
                best = zone
        return best

    def resolve(self, request: DNSRecord, handler: object) -> DNSRecord:
        query = dns.message.from_wire(bytes(request.pack()))
        question = query.question[0]
        name, rdtype = question.name, question.rdtype
        self.queries.append((name.to_text(), dns.rdatatype.to_text(rdtype)))
        reply = dns.message.make_response(query)
        reply.flags |= dns.flags.AA
        if question.rdclass == dns.rdataclass.CH:
            # `version.bind CH TXT`, as BIND answers it (when not hidden by `version "none";`).
            if self.version is not None and name == dns.name.from_text("version.bind."):
                rrset = dns.rrset.from_text(name, 0, "CH", "TXT", f'"{self.version}"')
                reply.answer.append(rrset)
            else:
                reply.set_rcode(dns.rcode.REFUSED)
            return DNSRecord.parse(reply.to_wire())
        # A DS record lives in the parent zone (RFC 4035 3.1.4.1), not at the child's apex.
        zone = self._zone(name.parent() if rdtype == dns.rdatatype.DS and name != dns.name.root else name)
        if zone is None:
            reply.set_rcode(dns.rcode.REFUSED)
            return DNSRecord.parse(reply.to_wire())
        dnssec = query.ednsflags & dns.flags.DO
        if rdtype == dns.rdatatype.AXFR:
            if str(zone.origin) not in self.axfr:
                reply.set_rcode(dns.rcode.REFUSED)
                return DNSRecord.parse(reply.to_wire())
            soa = zone.find_rrset(zone.origin, dns.rdatatype.SOA)
            reply.answer.append(soa)
            for node_name, node in zone.nodes.items():
                for rdataset in node.rdatasets:
                    if (
                        node_name.derelativize(zone.origin) == zone.origin
                        and rdataset.rdtype == dns.rdatatype.SOA
                    ):
                        continue
                    rrset = dns.rrset.RRset(
                        node_name.derelativize(zone.origin), rdataset.rdclass, rdataset.rdtype
                    )
                    rrset.update(rdataset)
                    reply.answer.append(rrset)
            reply.answer.append(soa)
            return DNSRecord.parse(reply.to_wire(max_size=65535))
        current = name
        for _ in range(8):
            node = zone.get_node(current)
            if node is None and current != zone.origin:
                node = zone.get_node(dns.name.Name(("*", *current.labels[1:])))
            if node is None:
                if not reply.answer:
                    reply.set_rcode(dns.rcode.NXDOMAIN)
                break
            found = node.get_rdataset(dns.rdataclass.IN, rdtype)
            if found is not None:
                rrset = dns.rrset.RRset(current, dns.rdataclass.IN, rdtype)
                rrset.update(found)
                reply.answer.append(rrset)
                if dnssec:
                    sig = node.get_rdataset(dns.rdataclass.IN, dns.rdatatype.RRSIG, rdtype)
                    if sig is not None:
                        sigset = dns.rrset.RRset(current, dns.rdataclass.IN, dns.rdatatype.RRSIG, rdtype)
                        sigset.update(sig)
                        reply.answer.append(sigset)
                break
            cname = node.get_rdataset(dns.rdataclass.IN, dns.rdatatype.CNAME)
            if cname is None or rdtype == dns.rdatatype.CNAME:
                break
            rrset = dns.rrset.RRset(current, dns.rdataclass.IN, dns.rdatatype.CNAME)
            rrset.update(cname)
            reply.answer.append(rrset)
            current = cname[0].target
            if not current.is_subdomain(zone.origin):
                target_zone = self._zone(current)
                if target_zone is None:
                    break
                zone = target_zone
        return DNSRecord.parse(reply.to_wire(max_size=65535))


@contextmanager
def serve_dns(
    zones: dict[str, str | dns.zone.Zone], axfr: set[str] | None = None, version: str | None = None
) -> Iterator[tuple[int, ZoneResolver]]:
    """UDP and TCP DNS on one free port of 127.0.0.1, answering from zones (zone-file texts or dnspython
    zones) by origin."""
    parsed = {
        origin: zone
        if isinstance(zone, dns.zone.Zone)
        else dns.zone.from_text(zone, origin=origin, relativize=False, check_origin=False)
        for origin, zone in zones.items()
    }
    resolver = ZoneResolver(parsed, {dns.name.from_text(o).to_text() for o in axfr or set()}, version)
    for _ in range(20):
        port = free_port()
        try:
            udp = DNSServer(resolver, address="127.0.0.1", port=port, logger=_Quiet())
            tcp = DNSServer(resolver, address="127.0.0.1", port=port, tcp=True, logger=_Quiet())
            break
        except OSError:
            continue
    udp.start_thread()
    tcp.start_thread()
    try:
        yield port, resolver
    finally:
        udp.stop()
        tcp.stop()
        udp.server.server_close()
        tcp.server.server_close()


class _Quiet:
    def __getattr__(self, _name: str) -> Callable[..., None]:
        return lambda *_a, **_k: None
