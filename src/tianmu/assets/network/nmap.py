"""`--engine nmap`: drive the nmap binary (for users who already trust it) and read its XML.

nmap runs as a TCP connect scan (`-sT`, no root needed, the same packets as the built-in sweep) with
`-Pn -n` (the targets are already resolved and checked by `targets.expand_targets`) and `-sV` when
fingerprinting is wanted. Its XML (`-oX -`) is the stable interface; we read hosts, open ports and the
`service` element (name, product, version, extrainfo, CPE). nmap's CPEs are CPE 2.2 URIs and are
rewritten as CPE 2.3 names.
"""

from __future__ import annotations

import shutil
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tianmu.core.errors import InputError, TianmuError
from tianmu.network.targets import Target

__all__ = [
    "NmapError",
    "NmapHost",
    "NmapPort",
    "cpe22_to_23",
    "nmap_available",
    "parse_nmap_xml",
    "read_nmap_xml",
    "run_nmap",
]


class NmapError(TianmuError):
    """nmap is missing, failed, or wrote XML we cannot read."""


@dataclass(slots=True)
class NmapPort:
    port: int
    transport: str
    state: str
    service: str | None = None
    product: str | None = None
    version: str | None = None
    extrainfo: str | None = None
    cpe: str | None = None


@dataclass(slots=True)
class NmapHost:
    address: str
    hostname: str | None
    ports: list[NmapPort] = field(default_factory=list)


def nmap_available() -> str | None:
    return shutil.which("nmap")


def cpe22_to_23(uri: str) -> str:
    """`cpe:/a:openbsd:openssh:9.2p1` → `cpe:2.3:a:openbsd:openssh:9.2p1:*:*:*:*:*:*:*`."""
    if uri.startswith("cpe:2.3:"):
        return uri
    parts = uri.removeprefix("cpe:/").split(":")
    parts = [p.replace("%7e", "~").replace("%21", "\\!") or "*" for p in parts]
    parts = (parts + ["*"] * 11)[:11]
    return "cpe:2.3:" + ":".join(parts)


def _service_name(service: ET.Element | None) -> str | None:
    """nmap's service name, with its TLS tunnel made explicit (`http` over `tunnel="ssl"` is https)."""
    if service is None:
        return None
    name = service.get("name")
    if service.get("tunnel") == "ssl" and name:
        return "https" if name == "http" else f"ssl/{name}"
    return name


def parse_nmap_xml(text: str | bytes, source: str = "nmap XML") -> list[NmapHost]:
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        line = exc.position[0] if exc.position else None
        raise InputError(f"not nmap XML: {exc}", source, line) from exc
    if root.tag != "nmaprun":
        raise InputError(f"expected an <nmaprun> document, found <{root.tag}>", source)
    hosts: list[NmapHost] = []
    for host in root.iter("host"):
        address_el = next((a for a in host.iter("address") if a.get("addrtype") in ("ipv4", "ipv6")), None)
        if address_el is None:
            continue
        name_el = host.find("hostnames/hostname")
        item = NmapHost(address_el.get("addr", ""), name_el.get("name") if name_el is not None else None)
        for port in host.iter("port"):
            state_el = port.find("state")
            service = port.find("service")
            cpe_el = service.find("cpe") if service is not None else None
            item.ports.append(
                NmapPort(
                    port=int(port.get("portid", "0")),
                    transport=port.get("protocol", "tcp"),
                    state=state_el.get("state", "unknown") if state_el is not None else "unknown",
                    service=_service_name(service),
                    product=service.get("product") if service is not None else None,
                    version=service.get("version") if service is not None else None,
                    extrainfo=service.get("extrainfo") if service is not None else None,
                    cpe=cpe22_to_23(cpe_el.text) if cpe_el is not None and cpe_el.text else None,
                )
            )
        hosts.append(item)
    return hosts


def read_nmap_xml(path: Path) -> tuple[list[NmapHost], list[int]]:
    """An nmap XML file written elsewhere: its hosts, and the TCP ports the scan covered (`scaninfo`)."""
    try:
        text = path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror}", str(path)) from exc
    hosts = parse_nmap_xml(text, str(path))
    covered: set[int] = set()
    root = ET.fromstring(text)
    for info in root.iter("scaninfo"):
        if info.get("protocol", "tcp") == "tcp" and info.get("services"):
            for part in str(info.get("services")).split(","):
                low, _sep, high = part.partition("-")
                if low.isdigit() and (not high or high.isdigit()):
                    covered.update(range(int(low), int(high or low) + 1))
    for host in hosts:
        covered.update(p.port for p in host.ports if p.transport == "tcp")
    return hosts, sorted(covered)


def _port_spec(ports: Sequence[int]) -> str:
    ranges: list[str] = []
    start = prev = None
    for port in sorted(set(ports)):
        if start is None:
            start = prev = port
        elif port == prev + 1:  # type: ignore[operator]
            prev = port
        else:
            ranges.append(f"{start}-{prev}" if start != prev else str(start))
            start = prev = port
    if start is not None:
        ranges.append(f"{start}-{prev}" if start != prev else str(start))
    return ",".join(ranges)


def nmap_command(
    targets: Sequence[Target],
    ports: Sequence[int],
    *,
    version_scan: bool,
    rate: float | None = None,
    binary: str = "nmap",
) -> list[str]:
    command = [binary, "-sT", "-Pn", "-n", "-oX", "-", "-p", _port_spec(ports)]
    if any(t.family == 10 for t in targets):  # AF_INET6
        command.append("-6")
    if version_scan:
        command.append("-sV")
    if rate:
        command += ["--max-rate", str(rate)]
    return command + [t.address for t in targets]


def run_nmap(
    targets: Sequence[Target],
    ports: Sequence[int],
    *,
    version_scan: bool = True,
    rate: float | None = None,
    timeout: float = 3600.0,
) -> list[NmapHost]:
    """Run nmap once per address family and read its XML."""
    binary = nmap_available()
    if binary is None:
        raise NmapError(
            "--engine nmap: nmap is not installed (apt-get install nmap), or use the built-in engine"
        )
    hosts: list[NmapHost] = []
    for family in (2, 10):
        group = [t for t in targets if t.family == family]
        if not group:
            continue
        command = nmap_command(group, ports, version_scan=version_scan, rate=rate, binary=binary)
        try:
            done = subprocess.run(command, capture_output=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired as exc:
            raise NmapError(f"nmap did not finish within {timeout:.0f} s") from exc
        if done.returncode != 0:
            message = done.stderr.decode(errors="replace").strip().splitlines()
            raise NmapError(
                f"nmap failed (exit {done.returncode}): {message[-1] if message else 'no message'}"
            )
        hosts.extend(parse_nmap_xml(done.stdout))
    names = {t.address: t.hostname for t in targets}
    for host in hosts:
        host.hostname = names.get(host.address) or host.hostname
    return hosts
