"""Reading HTTP responses: status, headers, title, and the product/version they give away.

Shared by service fingerprinting (`tianmu discover`) and website checks (`tianmu web`). The patterns
are ours: the `Server`/`X-Powered-By` grammar of common servers and a few well-known applications
recognised by their own markers (headers, generator tags, titles).
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, field

__all__ = ["HttpResponse", "Product", "parse_http_response", "products_of"]


@dataclass(slots=True)
class HttpResponse:
    status: int
    reason: str
    version: str
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        low = name.lower()
        for key, value in self.headers:
            if key.lower() == low:
                return value
        return None

    def all(self, name: str) -> list[str]:
        low = name.lower()
        return [value for key, value in self.headers if key.lower() == low]

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")

    @property
    def title(self) -> str | None:
        match = _TITLE.search(self.body[:65536])
        if not match:
            return None
        return html.unescape(match.group(1).decode("utf-8", errors="replace")).strip()[:200] or None


@dataclass(frozen=True, slots=True)
class Product:
    name: str
    version: str | None = None
    source: str = ""
    """What gave it away: `Server header`, `X-Powered-By header`, `generator tag`..."""
    extra: dict[str, str] = field(default_factory=dict)


_TITLE = re.compile(rb"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)
_STATUS = re.compile(rb"^HTTP/(\d(?:\.\d)?) (\d{3})(?: ([^\r\n]*))?")


def parse_http_response(data: bytes) -> HttpResponse | None:
    """A raw HTTP/1.x response (headers and whatever of the body arrived), or None if it is not one."""
    match = _STATUS.match(data)
    if not match:
        return None
    head, _sep, body = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")[1:]
    headers: list[tuple[str, str]] = []
    for line in lines:
        if b":" in line:
            key, value = line.split(b":", 1)
            headers.append((key.decode("latin-1").strip(), value.decode("latin-1").strip()))
    if any(k.lower() == "transfer-encoding" and "chunked" in v.lower() for k, v in headers):
        body = _dechunk(body)
    return HttpResponse(
        status=int(match.group(2)),
        reason=(match.group(3) or b"").decode("latin-1"),
        version=match.group(1).decode(),
        headers=headers,
        body=body,
    )


def _dechunk(body: bytes) -> bytes:
    out = bytearray()
    rest = body
    while rest:
        size_line, sep, rest = rest.partition(b"\r\n")
        if not sep:
            break
        try:
            size = int(size_line.split(b";", 1)[0], 16)
        except ValueError:
            return body
        if size == 0:
            break
        out += rest[:size]
        rest = rest[size + 2 :]
    return bytes(out)


_V = r"(\d[\w.\-]*)"
# (pattern on the Server header, product name); group 1 is the version when present.
_SERVER_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"^nginx(?:/" + _V + ")?", re.I), "nginx"),
    (re.compile(r"^openresty(?:/" + _V + ")?", re.I), "OpenResty"),
    (re.compile(r"^Apache-Coyote(?:/" + _V + ")?", re.I), "Apache Tomcat"),
    (re.compile(r"^Apache(?:/" + _V + ")?", re.I), "Apache httpd"),
    (re.compile(r"^Microsoft-IIS(?:/" + _V + ")?", re.I), "Microsoft IIS"),
    (re.compile(r"^lighttpd(?:/" + _V + ")?", re.I), "lighttpd"),
    (re.compile(r"^Caddy", re.I), "Caddy"),
    (re.compile(r"^Jetty\(" + _V + r"\)", re.I), "Jetty"),
    (re.compile(r"^gunicorn(?:/" + _V + ")?", re.I), "gunicorn"),
    (re.compile(r"^uvicorn", re.I), "uvicorn"),
    (re.compile(r"^Werkzeug(?:/" + _V + ")?", re.I), "Werkzeug"),
    (re.compile(r"^TornadoServer(?:/" + _V + ")?", re.I), "Tornado"),
    (re.compile(r"^SimpleHTTP(?:/" + _V + ")?", re.I), "Python http.server"),
    (re.compile(r"^BaseHTTP(?:/" + _V + ")?", re.I), "Python http.server"),
    (re.compile(r"^Cowboy", re.I), "Cowboy"),
    (re.compile(r"^MinIO", re.I), "MinIO"),
    (re.compile(r"^envoy", re.I), "Envoy"),
    (re.compile(r"^Kestrel", re.I), "Kestrel"),
]
_PYTHON = re.compile(r"\bPython/" + _V)
_PHP = re.compile(r"\bPHP/" + _V, re.I)
_OPENSSL = re.compile(r"\bOpenSSL/" + _V, re.I)
_GENERATOR = re.compile(rb'<meta[^>]+name=["\']generator["\'][^>]+content=["\']([^"\']+)', re.I)


def _server_products(server: str) -> list[Product]:
    out: list[Product] = []
    for pattern, name in _SERVER_PATTERNS:
        match = pattern.search(server)
        if match:
            version = match.group(1) if match.groups() else None
            out.append(Product(name, version, "Server header"))
            break
    python = _PYTHON.search(server)
    if python:
        out.append(Product("Python", python.group(1), "Server header"))
    php = _PHP.search(server)
    if php:
        out.append(Product("PHP", php.group(1), "Server header"))
    openssl = _OPENSSL.search(server)
    if openssl:
        out.append(Product("OpenSSL", openssl.group(1), "Server header"))
    return out


def products_of(response: HttpResponse) -> list[Product]:
    """Every product the response names, the server first; versions where they are given."""
    out: list[Product] = []
    server = response.header("Server")
    if server:
        out.extend(_server_products(server))
    for powered in response.all("X-Powered-By"):
        php = _PHP.search(powered)
        if php:
            out.append(Product("PHP", php.group(1), "X-Powered-By header"))
        elif powered.lower().startswith("express"):
            out.append(Product("Express", None, "X-Powered-By header"))
        elif powered.lower().startswith("asp.net"):
            out.append(Product("ASP.NET", response.header("X-AspNet-Version"), "X-Powered-By header"))
        elif powered.lower().startswith("next.js"):
            version = powered.split(" ", 1)[1] if " " in powered else None
            out.append(Product("Next.js", version, "X-Powered-By header"))
    jenkins = response.header("X-Jenkins")
    if jenkins:
        out.append(Product("Jenkins", jenkins, "X-Jenkins header"))
    kibana = response.header("kbn-version")
    if kibana or response.header("kbn-name"):
        out.append(Product("Kibana", kibana, "kbn-version header"))
    drupal = response.header("X-Generator")
    if drupal and drupal.lower().startswith("drupal"):
        match = re.search(r"Drupal (\d+)", drupal)
        out.append(Product("Drupal", match.group(1) if match else None, "X-Generator header"))
    generator = _GENERATOR.search(response.body[:65536])
    if generator:
        text = html.unescape(generator.group(1).decode("utf-8", errors="replace"))
        match = re.match(r"([A-Za-z][\w .\-]*?)\s+v?(\d[\w.\-]*)", text)
        if match:
            out.append(Product(match.group(1).strip(), match.group(2), "generator tag"))
        else:
            out.append(Product(text.strip(), None, "generator tag"))
    title = response.title or ""
    body = response.body[:65536]
    if b"You Know, for Search" in body:
        number = re.search(rb'"number"\s*:\s*"([\d.]+)"', body)
        out.append(Product("Elasticsearch", number.group(1).decode() if number else None, "banner JSON"))
    for marker, name in (
        ("RabbitMQ Management", "RabbitMQ Management"),
        ("Grafana", "Grafana"),
        ("phpMyAdmin", "phpMyAdmin"),
        ("GitLab", "GitLab"),
        ("Gitea", "Gitea"),
        ("Prometheus Time Series", "Prometheus"),
        ("Jenkins", "Jenkins"),
    ):
        if marker in title and not any(p.name == name for p in out):
            out.append(Product(name, None, "page title"))
    tomcat = re.search(r"Apache Tomcat/(\d[\w.]*)", title)
    if tomcat:
        out.append(Product("Apache Tomcat", tomcat.group(1), "page title"))
    return out
