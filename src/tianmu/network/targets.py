"""Reading what the user asks us to scan: targets (IPs, CIDRs, ranges, host names) and port specs.

Safe by default: every address a target expands to must be private, loopback or link-local unless the
caller says the scan is authorized (`--i-am-authorized`), so that a typo can never point Tianmu at
somebody else's network. Host names are resolved once here and the check applies to what they resolve
to, not to the name.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass

from tianmu.core.errors import InputError

__all__ = [
    "MAX_ADDRESSES",
    "Target",
    "TargetError",
    "expand_targets",
    "is_internal",
    "parse_ports",
]

MAX_ADDRESSES = 65536
"""A /16 at most per scan: larger sweeps are almost always a typo (a /8 is 16 million hosts)."""

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# The common ports first when a user asks for `top` (the services Tianmu fingerprints plus the usual
# remote-administration and database ports).
TOP_PORTS = (
    21, 22, 23, 25, 53, 80, 110, 111, 135, 139, 143, 389, 443, 445, 465, 587, 636, 993, 995, 1080, 1433,
    1521, 1883, 2049, 2375, 2376, 3000, 3306, 3389, 4222, 4369, 5000, 5432, 5601, 5672, 5900, 5984, 6379,
    6443, 7001, 8000, 8008, 8080, 8081, 8088, 8443, 8888, 9000, 9090, 9200, 9300, 9418, 10250, 11211,
    15672, 25672, 27017,
)  # fmt: skip


class TargetError(InputError):
    """A target or port specification that cannot be read, or that may not be scanned."""


@dataclass(frozen=True, slots=True)
class Target:
    """One address to scan and the name the user gave for it (None for a literal address)."""

    address: str
    hostname: str | None = None

    @property
    def family(self) -> int:
        return socket.AF_INET6 if ":" in self.address else socket.AF_INET


def is_internal(address: IPAddress) -> bool:
    """Private, loopback or link-local: the ranges Tianmu scans without an explicit authorization."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_private or address.is_loopback or address.is_link_local


def _parse_range(text: str) -> list[IPAddress]:
    """`10.0.0.5-10.0.0.20` or `10.0.0.5-20` (last octet): inclusive."""
    first_text, last_text = text.split("-", 1)
    first = ipaddress.ip_address(first_text.strip())
    last_text = last_text.strip()
    if isinstance(first, ipaddress.IPv4Address) and last_text.isdigit():
        last: IPAddress = ipaddress.IPv4Address((int(first) & 0xFFFFFF00) | int(last_text))
    else:
        last = ipaddress.ip_address(last_text)
    if type(first) is not type(last) or int(last) < int(first):
        raise ValueError("the range must go from a lower to a higher address of the same family")
    if int(last) - int(first) >= MAX_ADDRESSES:
        raise ValueError(f"more than {MAX_ADDRESSES} addresses")
    return [ipaddress.ip_address(n) if first.version == 4 else ipaddress.IPv6Address(n)
            for n in range(int(first), int(last) + 1)]  # fmt: skip


def _resolve(name: str) -> list[str]:
    try:
        infos = socket.getaddrinfo(name, None, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise TargetError(f"target {name!r}: cannot resolve the host name ({exc.strerror})") from exc
    seen: dict[str, None] = {}
    for _family, _type, _proto, _canon, sockaddr in infos:
        seen.setdefault(str(sockaddr[0]).split("%", 1)[0], None)
    return list(seen)


def expand_targets(specs: list[str], *, authorized: bool = False) -> list[Target]:
    """Every address the specs name, in order and without repeats; raises TargetError on bad input.

    A spec is an IPv4/IPv6 address, a CIDR network (`192.168.1.0/24`: its hosts), a range
    (`10.0.0.1-10.0.0.9` or `10.0.0.1-9`) or a host name (every address it resolves to).
    """
    out: dict[str, Target] = {}
    for raw in specs:
        spec = raw.strip()
        if not spec:
            raise TargetError("empty target")
        addresses: list[IPAddress]
        hostname: str | None = None
        try:
            if "/" in spec:
                network = ipaddress.ip_network(spec, strict=False)
                if network.num_addresses > MAX_ADDRESSES:
                    raise ValueError(f"more than {MAX_ADDRESSES} addresses")
                hosts = network.hosts() if network.num_addresses > 2 else iter(network)
                addresses = [ipaddress.ip_address(str(h)) for h in hosts]
            elif "-" in spec and not spec.startswith("[") and _looks_like_range(spec):
                addresses = _parse_range(spec)
            else:
                literal = spec.strip("[]")
                try:
                    addresses = [ipaddress.ip_address(literal.split("%", 1)[0])]
                except ValueError:
                    hostname = spec.lower().rstrip(".")
                    addresses = [ipaddress.ip_address(a) for a in _resolve(hostname)]
        except ValueError as exc:
            raise TargetError(f"target {spec!r}: {exc}") from exc
        if not authorized:
            outside = [a for a in addresses if not is_internal(a)]
            if outside:
                raise TargetError(
                    f"target {spec!r} includes {outside[0]}, which is not a private, loopback or link-local "
                    "address: scanning it needs --i-am-authorized (only scan networks you are allowed to)"
                )
        for address in addresses:
            out.setdefault(str(address), Target(str(address), hostname))
        if len(out) > MAX_ADDRESSES:
            raise TargetError(f"the targets name more than {MAX_ADDRESSES} addresses; split the scan")
    return list(out.values())


def _looks_like_range(spec: str) -> bool:
    first = spec.split("-", 1)[0].strip()
    try:
        ipaddress.ip_address(first)
    except ValueError:
        return False
    return True


def parse_ports(spec: str) -> list[int]:
    """`22,80,8000-8100`, `-` or `all` (1–65535), `top` (the common ports); sorted, without repeats."""
    text = spec.strip().lower()
    if text in ("-", "all", "1-65535", "-p-"):
        return list(range(1, 65536))
    ports: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        if part == "top":
            ports.update(TOP_PORTS)
            continue
        try:
            if "-" in part:
                low_text, high_text = part.split("-", 1)
                low = int(low_text) if low_text else 1
                high = int(high_text) if high_text else 65535
            else:
                low = high = int(part)
        except ValueError as exc:
            raise TargetError(f"port spec {spec!r}: {part!r} is not a port or a range of ports") from exc
        if not 1 <= low <= high <= 65535:
            raise TargetError(f"port spec {spec!r}: {part!r} is outside 1-65535 or reversed")
        ports.update(range(low, high + 1))
    if not ports:
        raise TargetError(f"port spec {spec!r} names no port")
    return sorted(ports)
