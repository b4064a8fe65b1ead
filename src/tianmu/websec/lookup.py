"""DNS look-ups for the domain checks, over dnspython: records, TXT strings, existence, raw queries.

A name that does not exist (NXDOMAIN) reads as None, a name without records of a type as [], so the
checks can tell a dangling name from a missing record.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import dns.exception
import dns.message
import dns.query
import dns.resolver

__all__ = ["DnsLookup"]


class DnsLookup:
    """Look-ups through one resolver (the system's, or the `nameservers` given) with one timeout."""

    def __init__(self, nameservers: Sequence[str], port: int, timeout: float) -> None:
        self.resolver = dns.resolver.Resolver(configure=not nameservers)
        if nameservers:
            self.resolver.nameservers = list(nameservers)
        self.resolver.port = port
        self.resolver.lifetime = timeout
        self.resolver.timeout = timeout
        self.port = port
        self.timeout = timeout

    def records(self, name: str, rdtype: str) -> list[Any] | None:
        """The rdata, [] when the name has none of that type, None when the name does not exist."""
        try:
            answer = self.resolver.resolve(name, rdtype, raise_on_no_answer=False)
        except dns.resolver.NXDOMAIN:
            return None
        except (dns.resolver.NoNameservers, dns.exception.Timeout, dns.resolver.NoAnswer):
            return []
        return list(answer.rrset) if answer.rrset is not None else []

    def txt(self, name: str) -> list[str]:
        return [b"".join(r.strings).decode(errors="replace") for r in self.records(name, "TXT") or []]

    def exists(self, name: str) -> bool:
        for rdtype in ("A", "AAAA", "CNAME"):
            found = self.records(name, rdtype)
            if found is None:
                return False
            if found:
                return True
        return False

    def query(self, name: str, rdtype: str, dnssec: bool = False) -> dns.message.Message | None:
        message = dns.message.make_query(name, rdtype, want_dnssec=dnssec)
        for server in self.resolver.nameservers:
            try:
                return dns.query.udp(message, str(server), timeout=self.timeout, port=self.port)
            except (dns.exception.DNSException, OSError):
                continue
        return None
