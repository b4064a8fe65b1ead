"""Product and version from HTTP responses: servers, frameworks and well-known applications."""

from __future__ import annotations

import pytest

from tianmu.network.httpfp import parse_http_response, products_of


def products(head: str, body: bytes = b"") -> list[tuple[str, str | None]]:
    response = parse_http_response(head.encode() + b"\r\n\r\n" + body)
    assert response is not None
    return [(p.name, p.version) for p in products_of(response)]


@pytest.mark.parametrize(
    ("head", "body", "expected"),
    [
        ("HTTP/1.1 200 OK\r\nServer: nginx/1.24.0", b"", ("nginx", "1.24.0")),
        ("HTTP/1.1 200 OK\r\nServer: Apache/2.4.62 (Debian)", b"", ("Apache httpd", "2.4.62")),
        ("HTTP/1.1 200 OK\r\nServer: Microsoft-IIS/10.0", b"", ("Microsoft IIS", "10.0")),
        ("HTTP/1.1 200 OK\r\nServer: Jetty(9.4.53.v20231009)", b"", ("Jetty", "9.4.53.v20231009")),
        ("HTTP/1.1 200 OK\r\nServer: gunicorn", b"", ("gunicorn", None)),
        ("HTTP/1.1 200 OK\r\nServer: Werkzeug/3.0.1 Python/3.11.4", b"", ("Werkzeug", "3.0.1")),
        ("HTTP/1.1 403 Forbidden\r\nX-Jenkins: 2.440.1", b"", ("Jenkins", "2.440.1")),
        ("HTTP/1.1 302 Found\r\nkbn-name: kibana\r\nkbn-version: 8.12.0", b"", ("Kibana", "8.12.0")),
        ("HTTP/1.1 200 OK\r\nX-Generator: Drupal 10 (https://www.drupal.org)", b"", ("Drupal", "10")),
        ("HTTP/1.1 200 OK\r\nX-Powered-By: Next.js 14.1.0", b"", ("Next.js", "14.1.0")),
        (
            "HTTP/1.1 200 OK\r\nContent-Type: application/json",
            b'{"name":"node-1","version":{"number":"8.12.2"},"tagline":"You Know, for Search"}',
            ("Elasticsearch", "8.12.2"),
        ),
        (
            "HTTP/1.1 200 OK\r\nContent-Type: text/html",
            b"<html><head><title>Apache Tomcat/9.0.85</title></head></html>",
            ("Apache Tomcat", "9.0.85"),
        ),
        (
            "HTTP/1.1 200 OK\r\nServer: Cowboy\r\nContent-Type: text/html",
            b"<html><head><title>RabbitMQ Management</title></head></html>",
            ("RabbitMQ Management", None),
        ),
    ],
)
def test_products(head: str, body: bytes, expected: tuple[str, str | None]) -> None:
    assert expected in products(head, body)


def test_plain_site_names_nothing_and_chunked_body() -> None:
    assert products("HTTP/1.1 200 OK\r\nContent-Type: text/html", b"<title>Welcome</title>") == []
    chunked = parse_http_response(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"7\r\n<title>\r\n8\r\nHi there\r\n8\r\n</title>\r\n0\r\n\r\n"
    )
    assert chunked is not None and chunked.title == "Hi there"
    assert parse_http_response(b"SSH-2.0-OpenSSH_9.6\r\n") is None
