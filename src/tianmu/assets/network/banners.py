"""Parsers of what services say first: SSH, FTP, SMTP, POP3, IMAP banners, the MySQL/MariaDB greeting,
NATS `INFO`. Plain functions over bytes; the patterns are ours."""

from __future__ import annotations

import re
from typing import Any

from tianmu.assets.network.connection import Identification, printable

__all__ = ["parse_banner", "parse_mysql_greeting"]

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
            return Identification("mysql", "MySQL", None, printable(payload[3:]), info={"refused": True})
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
    text = printable(data)
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
