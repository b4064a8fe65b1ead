"""Real local receivers on 127.0.0.1 for alert delivery tests: HTTP, syslog UDP/TCP, SMTP (aiosmtpd)."""

from __future__ import annotations

import socket
import socketserver
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from tianmu.core.config import Settings
from tianmu.core.models import Assessment
from tianmu.store.database import open_store
from tianmu.store.repository import save_assessment

from .scenario import DB01, WEB01, scenario_findings


@dataclass
class HttpReceiver:
    url: str
    requests: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    fail_first: int = 0
    fail_status: int = 503


@pytest.fixture
def http_receiver() -> Iterator[HttpReceiver]:
    state = HttpReceiver(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            state.requests.append(({k.lower(): v for k, v in self.headers.items()}, body))
            if len(state.requests) <= state.fail_first:
                self.send_response(state.fail_status)
            else:
                self.send_response(204)
            self.end_headers()

        def log_message(self, *_args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


@dataclass
class SyslogReceiver:
    port: int
    messages: list[bytes] = field(default_factory=list)
    arrived: threading.Event = field(default_factory=threading.Event)


@pytest.fixture
def udp_syslog() -> Iterator[SyslogReceiver]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.2)
    state = SyslogReceiver(sock.getsockname()[1])
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            try:
                data, _ = sock.recvfrom(65535)
            except TimeoutError:
                continue
            state.messages.append(data)
            state.arrived.set()

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    yield state
    stop.set()
    thread.join()
    sock.close()


@pytest.fixture
def tcp_syslog() -> Iterator[SyslogReceiver]:
    state = SyslogReceiver(0)

    class Handler(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            # RFC 6587 octet counting: "<length> <message>".
            while True:
                digits = b""
                while (char := self.rfile.read(1)) not in (b" ", b""):
                    digits += char
                if not digits:
                    return
                state.messages.append(self.rfile.read(int(digits)))
                state.arrived.set()

    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


@dataclass
class SmtpReceiver:
    port: int
    messages: list[tuple[str, list[str], bytes]] = field(default_factory=list)
    fail_first: int = 0
    attempts: int = 0


@pytest.fixture
def smtp_receiver() -> Iterator[SmtpReceiver]:
    state = SmtpReceiver(0)

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            state.attempts += 1
            if state.attempts <= state.fail_first:
                return "451 4.3.0 Try again later"
            state.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
            return "250 OK"

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(Handler(), hostname="127.0.0.1", port=port)
    controller.start()
    state.port = port
    yield state
    controller.stop()


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """A data directory whose store holds the scenario's findings, as the engines would have saved them."""
    values = {"TIANMU_HOME": str(tmp_path / "home"), "TIANMU_DATABASE_URL": "", "TIANMU_TENANT": ""}
    findings = scenario_findings()
    now = datetime(2026, 11, 24, tzinfo=UTC)
    with open_store(Settings.from_env(values)) as store:
        for asset in (WEB01, DB01):
            mine = [f for f in findings if f.asset.name == asset.name]
            save_assessment(store, Assessment(asset.name, asset, now, now, findings=mine))
    return values
