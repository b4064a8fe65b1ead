"""Benchmark of network discovery against nmap, on 127.0.0.1 only.

Run: `.venv/bin/python bench/bench_discover.py` (installs the Debian `nmap` package when missing).
Prints tables and writes bench/results/bench_discover.json.

1. Full TCP sweep of 127.0.0.1, ports 1–65535: Tianmu's epoll sweep (library call, and the whole
   `tianmu discover -p - --no-fingerprint` command) against `nmap -sT -Pn -n -p- 127.0.0.1`; median of
   three runs each, the same open ports expected from both. Target: ≤ 1.2× nmap.
2. Service and version fingerprinting (`-sV` style) of the test services: Tianmu's probes against
   `nmap -sT -sV -Pn -n -p <ports>` (and `--version-light`) on the same ports. The services run in a
   separate process so that they do not share the interpreter with the prober: Python's http.server,
   HTTPS with a self-signed and with an expired certificate, an SSH and an FTP banner server, aiosmtpd,
   and this machine's Redis, PostgreSQL, RabbitMQ (plus MariaDB and Mosquitto when present).
   Target: ≤ 0.5× nmap -sV, with every service nmap names named too.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
TIANMU = ROOT / ".venv" / "bin" / "tianmu"
MACHINE_SERVICES = {6379: "redis", 5432: "postgresql", 5672: "amqp", 3306: "mysql", 1883: "mqtt"}
RUNS = 3


def ensure_nmap() -> str:
    found = shutil.which("nmap")
    if found:
        return found
    print("nmap not installed: installing the Debian package", flush=True)
    install = ["flock", "/tmp/apt.lock", "apt-get", "install", "-y", "-qq", "nmap"]
    if subprocess.run(install, check=False).returncode != 0:
        # A fresh machine may have no package lists yet.
        subprocess.run(["flock", "/tmp/apt.lock", "apt-get", "update", "-qq"], check=True)
        subprocess.run(install, check=True)
    found = shutil.which("nmap")
    if not found:
        raise SystemExit("nmap could not be installed")
    return found


def serve() -> None:
    """Child process: start the test services, print their ports as JSON, run until stdin closes."""
    import http.server
    import tempfile
    import threading
    from contextlib import ExitStack

    sys.path.insert(0, str(ROOT / "tests"))
    from aiosmtpd.controller import Controller

    from network.servers import Page, QuietHTTPServer, Site, free_port, make_certs, serve_banner, serve_http

    certs = make_certs(Path(tempfile.mkdtemp(prefix="tianmu-bench-")))
    with ExitStack() as stack:

        class QuietHandler(http.server.SimpleHTTPRequestHandler):
            def log_message(self, *_args: object) -> None:
                pass

        simple = QuietHTTPServer(("127.0.0.1", 0), QuietHandler)
        threading.Thread(target=simple.serve_forever, daemon=True).start()
        page = {
            "/": Page(200, [("Server", "nginx/1.22.1"), ("Content-Type", "text/html")], b"<title>x</title>")
        }
        ports = {
            "http (Python http.server)": simple.server_address[1],
            "https self-signed": stack.enter_context(serve_http(Site(pages=page), cert=certs.self_signed)),
            "https expired": stack.enter_context(serve_http(Site(pages=page), cert=certs.expired)),
            "ssh banner": stack.enter_context(serve_banner(b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n")),
            "ftp banner": stack.enter_context(
                serve_banner(
                    b"220 (vsFTPd 3.0.3)\r\n", lambda line: b"530 Please login with USER and PASS.\r\n"
                )
            ),
        }

        class Sink:
            async def handle_DATA(self, *_args: object) -> str:
                return "250 OK"

        smtp_port = free_port()
        controller = Controller(Sink(), hostname="127.0.0.1", port=smtp_port)
        controller.start()
        ports["smtp (aiosmtpd)"] = smtp_port
        print(json.dumps(ports), flush=True)
        sys.stdin.read()
        controller.stop()
        simple.shutdown()


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _nmap_open_ports(xml: bytes) -> dict[int, dict[str, Any]]:
    from tianmu.assets.network.nmap import parse_nmap_xml

    out: dict[int, dict[str, Any]] = {}
    for host in parse_nmap_xml(xml):
        for port in host.ports:
            if port.state == "open":
                out[port.port] = {"service": port.service, "product": port.product, "version": port.version}
    return out


def bench_sweep(nmap: str) -> dict[str, Any]:
    from tianmu.assets.network.sweep import sweep
    from tianmu.network.targets import Target

    ports = range(1, 65536)
    env = {**os.environ, "TIANMU_HOME": "/tmp/tianmu-bench-home"}

    def command() -> int:
        done = subprocess.run(
            [str(TIANMU), "discover", "127.0.0.1", "-p", "-", "--no-fingerprint", "--no-save", "--json"],
            capture_output=True,
            env=env,
            check=False,
        )
        if done.returncode != 0:
            print(f"tianmu discover failed ({done.returncode}): {done.stderr.decode(errors='replace')}")
        return done.returncode

    # The engines take turns, so that a change of load on the machine weighs on each of them alike.
    timings: dict[str, list[float]] = {"sweep": [], "nmap": [], "cli": []}
    ours: Any = None
    done: Any = None
    cli_rc = 0
    for _ in range(RUNS):
        start = time.monotonic()
        ours = sweep([Target("127.0.0.1")], ports)
        timings["sweep"].append(time.monotonic() - start)
        start = time.monotonic()
        done = subprocess.run(
            [nmap, "-sT", "-Pn", "-n", "-p-", "-oX", "-", "127.0.0.1"], capture_output=True, check=True
        )
        timings["nmap"].append(time.monotonic() - start)
        start = time.monotonic()
        cli_rc = cli_rc or command()
        timings["cli"].append(time.monotonic() - start)
    ours_s, nmap_s, cli_s = (statistics.median(timings[k]) for k in ("sweep", "nmap", "cli"))
    nmap_ports = set(_nmap_open_ports(done.stdout))
    our_ports = set(ours.open["127.0.0.1"])
    return {
        "ports": 65535,
        "tianmu_sweep_s": round(ours_s, 3),
        "tianmu_cli_s": round(cli_s, 3) if cli_rc == 0 else None,
        "nmap_sT_s": round(nmap_s, 3),
        "ratio_sweep_vs_nmap": round(ours_s / nmap_s, 3),
        "ratio_cli_vs_nmap": round(cli_s / nmap_s, 3) if cli_rc == 0 else None,
        "open_ports_tianmu": sorted(our_ports),
        "open_ports_nmap": sorted(nmap_ports),
        "same_open_ports": our_ports == nmap_ports,
        "runs_s": {k: [round(t, 3) for t in v] for k, v in timings.items()},
        "self_connects_ignored": ours.self_connects,
    }


def _same_name(ours: str | None, theirs: str | None, product: str | None = None) -> bool:
    aliases = {
        "domain": {"domain"},
        "amqp": {"amqp"},
        "mysql": {"mysql"},
        "https": {"https", "ssl/http", "ssl/https", "http"},
        "http": {"http", "http-proxy", "http-alt"},
        "postgresql": {"postgresql"},
        "redis": {"redis"},
        "smtp": {"smtp"},
        "ftp": {"ftp"},
        "ssh": {"ssh"},
        "mqtt": {"mqtt"},
    }
    if ours is None or ours == "unknown":
        return False
    # nmap sometimes puts the product in the service name (`mosquitto version 2.0.11` for MQTT).
    named = (theirs or "").lower()
    return ours == theirs or named in aliases.get(ours, {ours}) or bool(product and product.lower() in named)


def bench_fingerprint(nmap: str, services: dict[str, int]) -> dict[str, Any]:
    from tianmu.assets.network.engine import DiscoverOptions, discover

    ports = sorted(services.values())
    spec = ",".join(map(str, ports))
    start = time.monotonic()
    result = discover(None, ["127.0.0.1"], DiscoverOptions(ports=spec, save=False))
    ours_s = time.monotonic() - start
    ours = {s.port: s for s in result.hosts[0].services}
    start = time.monotonic()
    full = subprocess.run(
        [nmap, "-sT", "-sV", "-Pn", "-n", "-p", spec, "-oX", "-", "127.0.0.1"],
        capture_output=True,
        check=True,
    )
    nmap_s = time.monotonic() - start
    start = time.monotonic()
    light = subprocess.run(
        [nmap, "-sT", "-sV", "--version-light", "-Pn", "-n", "-p", spec, "-oX", "-", "127.0.0.1"],
        capture_output=True,
        check=True,
    )
    light_s = time.monotonic() - start
    theirs = _nmap_open_ports(full.stdout)
    theirs_light = _nmap_open_ports(light.stdout)
    rows = []
    missed = []
    names = {port: name for name, port in services.items()}
    for port in ports:
        mine = ours.get(port)
        nm = theirs.get(port, {})
        row = {
            "port": port,
            "what": names[port],
            "tianmu": {
                "service": mine.service,
                "product": mine.product,
                "version": mine.version,
                "cpe": mine.cpe,
            }
            if mine
            else None,
            "nmap": nm or None,
            "nmap_version_light": theirs_light.get(port),
        }
        rows.append(row)
        if (
            nm.get("service")
            and nm["service"] not in ("unknown", "tcpwrapped")
            and not _same_name(mine.service if mine else None, nm["service"], mine.product if mine else None)
        ):
            missed.append(port)
    return {
        "ports": ports,
        "tianmu_s": round(ours_s, 3),
        "nmap_sV_s": round(nmap_s, 3),
        "nmap_sV_light_s": round(light_s, 3),
        "ratio_vs_nmap_sV": round(ours_s / nmap_s, 3),
        "ratio_vs_nmap_sV_light": round(ours_s / light_s, 3),
        "services": rows,
        "named_by_nmap_not_by_tianmu": missed,
    }


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--serve":
        serve()
        return
    from rich.console import Console
    from rich.table import Table

    console = Console(width=160)
    nmap = ensure_nmap()
    version = subprocess.run([nmap, "--version"], capture_output=True, text=True).stdout.splitlines()[0]
    child = subprocess.Popen(
        [sys.executable, __file__, "--serve"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None
        services: dict[str, int] = json.loads(child.stdout.readline())
        for port, name in MACHINE_SERVICES.items():
            if _listening(port):
                services[f"{name} (this machine)"] = port
        sweep = bench_sweep(nmap)
        fingerprint = bench_fingerprint(nmap, services)
    finally:
        assert child.stdin is not None
        child.stdin.close()
        child.wait(timeout=30)
    table = Table(title="Full TCP sweep of 127.0.0.1 (1-65535), median of 3")
    for column in ("Engine", "Wall s", "vs nmap -sT"):
        table.add_column(column)
    table.add_row(
        "tianmu sweep (library)", f"{sweep['tianmu_sweep_s']:.2f}", f"{sweep['ratio_sweep_vs_nmap']:.2f}x"
    )
    table.add_row(
        "tianmu discover (command)", f"{sweep['tianmu_cli_s']:.2f}", f"{sweep['ratio_cli_vs_nmap']:.2f}x"
    )
    table.add_row("nmap -sT -p-", f"{sweep['nmap_sT_s']:.2f}", "1.00x")
    console.print(table)
    console.print(f"same open ports: {sweep['same_open_ports']} {sweep['open_ports_tianmu']}")
    table = Table(title=f"Fingerprinting {len(fingerprint['ports'])} services")
    for column in (
        "Port",
        "Test service",
        "Tianmu service",
        "Tianmu product/version",
        "nmap service",
        "nmap product/version",
    ):
        table.add_column(column, overflow="fold")
    for row in fingerprint["services"]:
        mine = row["tianmu"] or {}
        nm = row["nmap"] or {}
        table.add_row(
            str(row["port"]),
            row["what"],
            mine.get("service") or "",
            f"{mine.get('product') or ''} {mine.get('version') or ''}",
            nm.get("service") or "",
            f"{nm.get('product') or ''} {nm.get('version') or ''}",
        )
    console.print(table)
    console.print(
        f"tianmu {fingerprint['tianmu_s']:.2f} s; nmap -sV {fingerprint['nmap_sV_s']:.2f} s "
        f"(ratio {fingerprint['ratio_vs_nmap_sV']:.2f}); "
        f"nmap -sV --version-light {fingerprint['nmap_sV_light_s']:.2f} s "
        f"(ratio {fingerprint['ratio_vs_nmap_sV_light']:.2f}); named by nmap but not by tianmu: "
        f"{fingerprint['named_by_nmap_not_by_tianmu'] or 'none'}"
    )
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = {
        "benchmark": "discover",
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
        },
        "nmap": version,
        "sweep": sweep,
        "fingerprint": fingerprint,
    }
    (RESULTS / "bench_discover.json").write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
