"""CPE 2.3 names for the products the fingerprinting recognises, and parsing CPE names back.

The vendor/product pairs are the ones NVD uses in its CPE dictionary, so that a service's CPE finds the
CVEs whose `configurations` name it (see `tianmu.vulns.nvd`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["CpeName", "cpe_for", "current_vendor", "escape_component", "parse_cpe"]

# product as the fingerprint names it (lower-case) -> (part, vendor, product) in NVD's dictionary
PRODUCTS: dict[str, tuple[str, str, str]] = {
    "openssh": ("a", "openbsd", "openssh"),
    "dropbear": ("a", "dropbear_ssh_project", "dropbear_ssh"),
    "libssh": ("a", "libssh", "libssh"),
    "nginx": ("a", "f5", "nginx"),
    "openresty": ("a", "openresty", "openresty"),
    "apache httpd": ("a", "apache", "http_server"),
    "apache tomcat": ("a", "apache", "tomcat"),
    "microsoft iis": ("a", "microsoft", "internet_information_services"),
    "lighttpd": ("a", "lighttpd", "lighttpd"),
    "caddy": ("a", "caddyserver", "caddy"),
    "jetty": ("a", "eclipse", "jetty"),
    "gunicorn": ("a", "gunicorn", "gunicorn"),
    "werkzeug": ("a", "palletsprojects", "werkzeug"),
    "tornado": ("a", "tornadoweb", "tornado"),
    "python": ("a", "python", "python"),
    "php": ("a", "php", "php"),
    "openssl": ("a", "openssl", "openssl"),
    "wordpress": ("a", "wordpress", "wordpress"),
    "drupal": ("a", "drupal", "drupal"),
    "joomla": ("a", "joomla", "joomla\\!"),
    "jenkins": ("a", "jenkins", "jenkins"),
    "grafana": ("a", "grafana", "grafana"),
    "kibana": ("a", "elastic", "kibana"),
    "elasticsearch": ("a", "elastic", "elasticsearch"),
    "gitea": ("a", "gitea", "gitea"),
    "minio": ("a", "minio", "minio"),
    "vsftpd": ("a", "beasts", "vsftpd"),
    "proftpd": ("a", "proftpd", "proftpd"),
    "pure-ftpd": ("a", "pureftpd", "pure-ftpd"),
    "pyftpdlib": ("a", "pyftpdlib_project", "pyftpdlib"),
    "filezilla server": ("a", "filezilla-project", "filezilla_server"),
    "postfix": ("a", "postfix", "postfix"),
    "exim": ("a", "exim", "exim"),
    "sendmail": ("a", "sendmail", "sendmail"),
    "opensmtpd": ("a", "openbsd", "opensmtpd"),
    "aiosmtpd": ("a", "aiosmtpd_project", "aiosmtpd"),
    "dovecot": ("a", "dovecot", "dovecot"),
    "cyrus imapd": ("a", "cmu", "cyrus_imap_server"),
    "redis": ("a", "redis", "redis"),
    "postgresql": ("a", "postgresql", "postgresql"),
    "mysql": ("a", "oracle", "mysql"),
    "mariadb": ("a", "mariadb", "mariadb"),
    "mongodb": ("a", "mongodb", "mongodb"),
    "rabbitmq": ("a", "vmware", "rabbitmq"),
    "mosquitto": ("a", "eclipse", "mosquitto"),
    "memcached": ("a", "memcached", "memcached"),
    "isc bind": ("a", "isc", "bind"),
    "dnsmasq": ("a", "thekelleys", "dnsmasq"),
    "unbound": ("a", "nlnetlabs", "unbound"),
    "powerdns": ("a", "powerdns", "authoritative"),
    "nats-server": ("a", "linuxfoundation", "nats-server"),
}

_SPECIAL = re.compile(r"([^A-Za-z0-9._\-])")


def escape_component(value: str) -> str:
    """Quote a value for a CPE 2.3 formatted string (section 6.2 of NISTIR 7695)."""
    return _SPECIAL.sub(r"\\\1", value.strip().replace(" ", "_")).lower()


def cpe_for(product: str | None, version: str | None) -> str | None:
    """`cpe:2.3:a:openbsd:openssh:9.2p1:*:*:*:*:*:*:*` for a known product, None otherwise."""
    if not product:
        return None
    entry = PRODUCTS.get(product.lower())
    if entry is None:
        return None
    part, vendor, name = entry
    ver = escape_component(version) if version else "*"
    return f"cpe:2.3:{part}:{vendor}:{name}:{ver}:*:*:*:*:*:*:*"


def current_vendor(cpe: str) -> str:
    """The CPE with the vendor NVD uses today for its product (`igor_sysoev:nginx` → `f5:nginx`,
    `redislabs:redis` → `redis:redis`): nmap's database keeps some older vendor names."""
    name = parse_cpe(cpe)
    if name is None:
        return cpe
    vendors = {
        vendor for part, vendor, product in PRODUCTS.values() if part == name.part and product == name.product
    }
    if len(vendors) != 1 or name.vendor in vendors:
        return cpe
    head = f"cpe:2.3:{name.part}:{name.vendor}:"
    return cpe.replace(head, f"cpe:2.3:{name.part}:{vendors.pop()}:", 1)


@dataclass(frozen=True, slots=True)
class CpeName:
    part: str
    vendor: str
    product: str
    version: str
    update: str
    fields: tuple[str, ...]
    """All 11 components after `cpe:2.3:` (part … other), unescaped where it matters for comparison."""

    @property
    def key(self) -> str:
        return f"{self.vendor}:{self.product}"


def _split(text: str) -> list[str]:
    out: list[str] = []
    current: list[str] = []
    escaped = False
    for char in text:
        if escaped:
            current.append(char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == ":":
            out.append("".join(current))
            current = []
        else:
            current.append(char)
    out.append("".join(current))
    return out


def parse_cpe(text: str) -> CpeName | None:
    """A CPE 2.3 formatted string, or None when `text` is not one."""
    if not text.startswith("cpe:2.3:"):
        return None
    parts = _split(text[len("cpe:2.3:") :])
    if len(parts) < 4:
        return None
    parts = (parts + ["*"] * 11)[:11]
    lowered = tuple(p.lower() for p in parts)
    return CpeName(lowered[0], lowered[1], lowered[2], lowered[3], lowered[4], lowered)
