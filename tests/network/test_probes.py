"""Fingerprinting real services on 127.0.0.1: ours (http.server, TLS, SSH/FTP banners, aiosmtpd, a
MongoDB OP_MSG peer, memcached, DNS) and this machine's Redis, PostgreSQL, RabbitMQ, MariaDB, MQTT."""

from __future__ import annotations

import asyncio
import http.server
import socket
import struct
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller

from network.servers import (
    Certs,
    Page,
    Site,
    free_port,
    make_cert,
    serve_banner,
    serve_dns,
    serve_http,
    serve_raw,
)
from network.tests_support import machine_port
from tianmu.assets.network.probes import (
    Identification,
    ProbeOptions,
    bson_top_level,
    identify,
    parse_amqp_start,
    parse_banner,
    parse_mysql_greeting,
)
from tianmu.network.cpe import cpe_for
from tianmu.network.tls import certificate_details

FAST = ProbeOptions(timeout=2.0, banner_wait=0.5, tls_versions=True)


def run(port: int, hostname: str | None = None) -> Identification:
    return asyncio.run(identify("127.0.0.1", port, hostname, FAST))


@pytest.fixture
def simple_http() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_python_http_server(simple_http: int) -> None:
    found = run(simple_http)
    assert found.service == "http"
    assert found.product == "Python http.server"
    assert found.cpe_product == "Python" and found.cpe_version
    assert found.info["status"] == 200
    assert found.banner and found.banner.startswith("HTTP/1.0 200")


def test_http_application_fingerprints() -> None:
    site = Site(
        pages={
            "/": Page(
                200,
                [("Server", "nginx/1.22.1"), ("X-Powered-By", "PHP/8.2.7"), ("Content-Type", "text/html")],
                b'<html><head><title>My blog</title><meta name="generator" content="WordPress 6.4.2">'
                b"</head></html>",
            )
        }
    )
    with serve_http(site) as port:
        found = run(port)
    assert (found.service, found.product, found.version) == ("http", "nginx", "1.22.1")
    names = {(p["name"], p["version"]) for p in found.info["products"]}
    assert {("PHP", "8.2.7"), ("WordPress", "6.4.2")} <= names
    assert found.info["title"] == "My blog"
    assert cpe_for(found.product, found.version) == "cpe:2.3:a:f5:nginx:1.22.1:*:*:*:*:*:*:*"


def test_tls_self_signed(certs: Certs) -> None:
    with serve_http(
        Site(pages={"/": Page(200, [("Server", "Apache/2.4.57 (Debian)")], b"hi")}), cert=certs.self_signed
    ) as port:
        found = run(port, "localhost")
    assert found.service == "https"
    assert (found.product, found.version) == ("Apache httpd", "2.4.57")
    assert found.tls is not None
    cert = found.tls["certificate"]
    assert cert["self_signed"] and not cert["expired"]
    assert cert["key_type"] == "EC (secp256r1)" and cert["key_bits"] == 256
    assert "localhost" in cert["san"] and "127.0.0.1" in cert["san"]
    assert "TLSv1.3" in found.tls["versions"] and "TLSv1.0" not in found.tls["versions"]
    assert found.tls["trusted"] is False


def test_tls_expired_rsa(certs: Certs, tmp_path_factory: pytest.TempPathFactory) -> None:
    rsa_expired, _c, _k = make_cert(
        tmp_path_factory.mktemp("rsa"), "old", "localhost", days=(-100, -1), rsa_bits=2048
    )
    with serve_http(Site(), cert=rsa_expired) as port:
        found = run(port)
    assert found.tls is not None
    assert found.tls["certificate"]["expired"] is True
    assert found.tls["certificate"]["key_type"] == "RSA" and found.tls["certificate"]["key_bits"] == 2048
    with serve_http(Site(), cert=certs.good) as port:
        fresh = run(port)
    assert fresh.tls is not None and fresh.tls["certificate"]["expired"] is False
    assert fresh.tls["certificate"]["self_signed"] is False


def test_ssh_banner() -> None:
    with serve_banner(b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n") as port:
        found = run(port)
    assert (found.service, found.product, found.version) == ("ssh", "OpenSSH", "9.2p1")
    assert found.info["comment"] == "Debian-2+deb12u3"
    assert cpe_for(found.product, found.version) == "cpe:2.3:a:openbsd:openssh:9.2p1:*:*:*:*:*:*:*"


def test_ftp_banner_and_bare_220() -> None:
    with serve_banner(b"220 (vsFTPd 3.0.3)\r\n") as port:
        found = run(port)
    assert (found.service, found.product, found.version) == ("ftp", "vsftpd", "3.0.3")
    # A greeting that names neither protocol: EHLO decides (an FTP server rejects it).
    with serve_banner(b"220 Welcome\r\n", lambda line: b"500 Unknown command\r\n") as port:
        bare = run(port)
    assert bare.service == "ftp"


def test_smtp_with_aiosmtpd() -> None:
    class Sink:
        async def handle_DATA(self, *_args: object) -> str:
            return "250 OK"

    port = free_port()
    controller = Controller(Sink(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        found = run(port)
    finally:
        controller.stop()
    assert found.service == "smtp"
    assert found.product == "aiosmtpd" and found.version


def test_pop3_imap_banners() -> None:
    assert parse_banner(b"+OK Dovecot (Debian) ready.\r\n") == Identification(
        "pop3", "Dovecot", None, "+OK Dovecot (Debian) ready."
    )
    imap = parse_banner(b"* OK [CAPABILITY IMAP4rev1 STARTTLS] Dovecot (Debian) ready.\r\n")
    assert imap is not None and (imap.service, imap.product) == ("imap", "Dovecot")
    assert parse_banner(b"hello there\r\n") is None


def _mysql_greeting(version: bytes) -> bytes:
    payload = b"\x0a" + version + b"\x00" + struct.pack("<I", 7) + b"12345678\x00" + b"\xff\xf7\x08\x02\x00"
    return struct.pack("<I", len(payload))[:3] + b"\x00" + payload


def test_mysql_greetings() -> None:
    maria = parse_mysql_greeting(_mysql_greeting(b"5.5.5-10.11.6-MariaDB-0+deb12u1"))
    assert maria is not None and (maria.product, maria.version) == ("MariaDB", "10.11.6")
    mysql = parse_mysql_greeting(_mysql_greeting(b"8.0.36"))
    assert mysql is not None and (mysql.product, mysql.version) == ("MySQL", "8.0.36")
    assert parse_mysql_greeting(b"HTTP/1.1 400 Bad Request\r\n") is None
    with serve_banner(_mysql_greeting(b"8.0.36-0ubuntu0.22.04.1")) as port:
        found = run(port)
    assert (found.service, found.product, found.version) == ("mysql", "MySQL", "8.0.36")


def _bson_doc(fields: bytes) -> bytes:
    return struct.pack("<i", len(fields) + 5) + fields + b"\x00"


def _mongo_peer(sock: socket.socket) -> None:
    """Answers OP_MSG like a MongoDB 7.0 with authorization on: buildInfo works, listDatabases does not."""
    for _ in range(2):
        header = sock.recv(16)
        if len(header) < 16:
            return
        length, request_id = struct.unpack("<ii", header[:8])
        body = sock.recv(length - 16)
        if b"buildInfo" in body:
            doc = _bson_doc(
                b"\x02version\x00"
                + struct.pack("<i", 6)
                + b"7.0.5\x00"
                + b"\x01ok\x00"
                + struct.pack("<d", 1.0)
            )
        else:
            doc = _bson_doc(
                b"\x01ok\x00"
                + struct.pack("<d", 0.0)
                + b"\x02codeName\x00"
                + struct.pack("<i", 13)
                + b"Unauthorized\x00"
            )
        reply = struct.pack("<I", 0) + b"\x00" + doc
        sock.sendall(struct.pack("<iiii", 16 + len(reply), 99, request_id, 2013) + reply)


def test_mongodb_op_msg() -> None:
    with serve_raw(_mongo_peer) as port:
        found = run(port)
    assert (found.service, found.product, found.version) == ("mongodb", "MongoDB", "7.0.5")
    assert found.info["auth_required"] is True
    assert bson_top_level(_bson_doc(b"\x10n\x00" + struct.pack("<i", 5))) == {"n": 5}


def test_memcached() -> None:
    with serve_banner(
        b"", lambda line: b"VERSION 1.6.21\r\n" if line.strip() == b"version" else None
    ) as port:
        found = run(port)
    assert (found.service, found.product, found.version) == ("memcached", "memcached", "1.6.21")


def test_dns_over_tcp() -> None:
    zone = "@ 3600 IN SOA ns1 host 1 7200 3600 1209600 3600\n@ IN NS ns1\nns1 IN A 127.0.0.1\n"
    with serve_dns({"example.test.": zone}, version="9.18.28-1~deb12u2-Debian") as (port, _resolver):
        found = run(port)
    assert (found.service, found.product, found.version) == ("domain", "ISC BIND", "9.18.28")
    assert cpe_for(found.product, found.version) == "cpe:2.3:a:isc:bind:9.18.28:*:*:*:*:*:*:*"
    with serve_dns({"example.test.": zone}) as (port, _resolver):
        hidden = run(port)
    assert (hidden.service, hidden.product, hidden.info["rcode"]) == ("domain", None, "REFUSED")


def test_pop3_and_imap_servers() -> None:
    with serve_banner(b"+OK Dovecot (Debian) ready.\r\n") as port:
        pop3 = run(port)
    assert (pop3.service, pop3.product) == ("pop3", "Dovecot")
    with serve_banner(b"* OK [CAPABILITY IMAP4rev1 SASL-IR STARTTLS] Dovecot (Debian) ready.\r\n") as port:
        imap = run(port)
    assert (imap.service, imap.product) == ("imap", "Dovecot")


def test_amqp_parser_negative() -> None:
    assert parse_amqp_start(b"HTTP/1.1 400 Bad Request\r\n\r\n") is None
    assert parse_amqp_start(b"AMQP\x00\x00\x09\x01") is not None  # a version-mismatch answer is still AMQP


def test_silent_port_is_unknown() -> None:
    with serve_raw(lambda sock: sock.recv(1) and None) as port:
        found = asyncio.run(identify("127.0.0.1", port, None, ProbeOptions(timeout=0.5, banner_wait=0.2)))
    assert found.service == "unknown"


# --- this machine's services -------------------------------------------------------------------------


def test_redis_of_this_machine() -> None:
    port = machine_port(6379, "Redis")
    found = run(port)
    assert (found.service, found.product) == ("redis", "Redis")
    assert found.version and found.version[0].isdigit()
    assert isinstance(found.info["auth_required"], bool)


def test_postgresql_of_this_machine() -> None:
    port = machine_port(5432, "PostgreSQL")
    found = run(port)
    assert (found.service, found.product) == ("postgresql", "PostgreSQL")
    assert "ssl" in found.info


def test_rabbitmq_of_this_machine() -> None:
    port = machine_port(5672, "RabbitMQ")
    found = run(port)
    assert (found.service, found.product) == ("amqp", "RabbitMQ")
    assert found.version and "PLAIN" in found.info["mechanisms"]
    assert cpe_for(found.product, found.version) == f"cpe:2.3:a:vmware:rabbitmq:{found.version}:*:*:*:*:*:*:*"


def test_mariadb_of_this_machine() -> None:
    port = machine_port(3306, "MariaDB/MySQL", required=False)
    found = run(port)
    assert found.service == "mysql" and found.product in ("MariaDB", "MySQL")


def test_mqtt_of_this_machine() -> None:
    port = machine_port(1883, "an MQTT broker", required=False)
    found = run(port)
    assert found.service == "mqtt"
    assert found.info["connack"] in (0, 5)


def test_sm2_certificate_recognised() -> None:
    """An SM2 certificate (made with OpenSSL 3: `-pkeyopt ec_paramgen_curve:SM2 -sm3`): cryptography
    cannot load its key, so the key type comes from the SM2 OIDs."""
    der = (Path(__file__).resolve().parents[1] / "fixtures" / "websec" / "sm2-selfsigned.der").read_bytes()
    details = certificate_details(der)
    assert (details["key_type"], details["key_bits"]) == ("SM2", 256)
    assert details["signature_algorithm"] == "SM2-with-SM3"
    assert details["subject_cn"] == "sm2.tianmu.test" and details["self_signed"]
