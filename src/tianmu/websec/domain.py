"""`check_domains`: the security of domain names, over DNS with dnspython.

| rule id                       | what                                                                 |
| ----------------------------- | -------------------------------------------------------------------- |
| `domain.spf.*`                | SPF: missing, several records, syntax, `+all`/`?all`, > 10 lookups    |
| `domain.dmarc.*`              | DMARC: missing, invalid, `p=none`, `pct` < 100                        |
| `domain.dkim.*`               | DKIM for the selectors given: missing, revoked, weak (< 1024-bit RSA) |
| `domain.dnssec.*`             | unsigned; signatures or the DS at the parent do not validate          |
| `domain.caa.missing`          | no CAA record on the name or its parents                              |
| `domain.mx.dangling`          | an MX host that does not resolve                                      |
| `domain.tlsrpt.missing`, `domain.mta-sts.*` | mail transport security reporting / policy              |
| `domain.cname.dangling`       | a CNAME to a name that does not exist (cloud names: takeover)         |
| `domain.axfr.open`            | a name server hands out the whole zone                                |
| `domain.wildcard`             | a random label resolves                                               |

DNSSEC validation here is local: the DNSKEY RRset must be signed by one of its keys, the SOA by a zone
key, and the parent's DS must match a DNSKEY. Whether the parent itself chains to the root is for a
validating resolver to say; we report the AD bit of the answer when the resolver sets it.

With a store, the engine writes the scan audit trail around its queries; the road
(`tianmu.road.network.run_domain`) stores one assessment per domain and updates the situation.
"""

from __future__ import annotations

import re
import secrets
import socket
import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import dns.dnssec
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rdatatype
import dns.resolver
import dns.xfr
import dns.zone

from tianmu.core.errors import InputError
from tianmu.core.models import Asset, AssetKind, Finding, FindingKind, Severity, utcnow
from tianmu.core.serialize import finding_to_dict
from tianmu.network.audit import record_scan_end, record_scan_start
from tianmu.store.database import Store
from tianmu.websec.lookup import DnsLookup
from tianmu.websec.mail import dkim_issues, dmarc_issues, spf_issues
from tianmu.websec.site import Issue

__all__ = ["CLOUD_SUFFIXES", "DomainCheck", "DomainOptions", "DomainResult", "check_domains", "spf_issues"]

Progress = Callable[[str], None]

CLOUD_SUFFIXES = (
    "s3.amazonaws.com",
    "s3-website",
    "cloudfront.net",
    "elasticbeanstalk.com",
    "azurewebsites.net",
    "cloudapp.net",
    "cloudapp.azure.com",
    "trafficmanager.net",
    "blob.core.windows.net",
    "azureedge.net",
    "herokuapp.com",
    "herokudns.com",
    "github.io",
    "netlify.app",
    "netlify.com",
    "vercel.app",
    "pages.dev",
    "fastly.net",
    "ghost.io",
    "surge.sh",
    "bitbucket.io",
    "readthedocs.io",
    "appspot.com",
    "firebaseapp.com",
    "web.app",
    "myshopify.com",
    "zendesk.com",
    "wordpress.com",
    "aliyuncs.com",
    "myqcloud.com",
)


@dataclass(frozen=True, slots=True)
class DomainOptions:
    nameservers: tuple[str, ...] = ()
    """Resolver addresses (default: the system's)."""
    port: int = 53
    timeout: float = 5.0
    dkim_selectors: tuple[str, ...] = ()
    names: tuple[str, ...] = ()
    """Extra labels or names under each domain to check for dangling CNAMEs (`www`, `shop.example.com`)."""
    axfr: bool = True
    mta_sts_port: int = 443
    ca_file: str | None = None
    """Trust anchors for the MTA-STS policy host instead of the system store."""
    tenant: str = "default"
    save: bool = True
    """Whether the road stores the findings (the engine itself only writes the scan audit trail)."""


@dataclass(slots=True)
class DomainCheck:
    """One domain that answered: the asset its findings belong to, and when it was checked."""

    asset: Asset
    findings: list[Finding]
    started: datetime
    finished: datetime


@dataclass(slots=True)
class DomainResult:
    domains: list[dict[str, Any]]
    findings: list[Finding]
    errors: list[str] = field(default_factory=list)
    checked: list[DomainCheck] = field(default_factory=list)
    """Per domain checked, for the road to store one assessment each."""

    def as_json(self) -> dict[str, Any]:
        return {
            "domains": self.domains,
            "findings": [finding_to_dict(f) for f in self.findings],
            "errors": self.errors,
        }


def _dnssec_issues(domain: str, dns_: DnsLookup) -> tuple[list[Issue], dict[str, Any]]:
    name = dns.name.from_text(domain)
    reply = dns_.query(domain, "DNSKEY", dnssec=True)
    facts: dict[str, Any] = {"signed": False, "valid": None, "ad": None}
    keys = reply.get_rrset(reply.answer, name, dns.rdataclass.IN, dns.rdatatype.DNSKEY) if reply else None
    if reply is None or keys is None:
        return [
            Issue(
                "domain.dnssec.unsigned",
                "The zone is not signed (no DNSSEC)",
                Severity.LOW,
                summary="Answers for this domain can be forged by whoever can spoof DNS.",
            )
        ], facts
    facts["signed"] = True
    facts["ad"] = bool(reply.flags & dns.flags.AD)
    problems: list[str] = []
    sigs = reply.get_rrset(reply.answer, name, dns.rdataclass.IN, dns.rdatatype.RRSIG, dns.rdatatype.DNSKEY)
    keyring: dict[dns.name.Name, Any] = {name: keys}
    if sigs is None:
        problems.append("DNSKEY: no RRSIG over the DNSKEY RRset")
    else:
        try:
            dns.dnssec.validate(keys, sigs, keyring)
        except dns.exception.ValidationFailure as exc:
            problems.append(f"DNSKEY: {exc}")
    soa_reply = dns_.query(domain, "SOA", dnssec=True)
    if soa_reply is not None:
        soa = soa_reply.get_rrset(soa_reply.answer, name, dns.rdataclass.IN, dns.rdatatype.SOA)
        soa_sig = soa_reply.get_rrset(
            soa_reply.answer, name, dns.rdataclass.IN, dns.rdatatype.RRSIG, dns.rdatatype.SOA
        )
        if soa is None or soa_sig is None:
            problems.append("SOA: not signed")
        else:
            try:
                dns.dnssec.validate(soa, soa_sig, keyring)
            except dns.exception.ValidationFailure as exc:
                problems.append(f"SOA: {exc}")
    ds_records = dns_.records(domain, "DS") or []
    if not ds_records:
        problems.append("no DS record at the parent: the chain of trust stops above this zone")
    else:
        digests = {(ds.key_tag, ds.digest_type, ds.digest) for ds in ds_records}
        made = set()
        for key in keys:
            for digest_type in {ds.digest_type for ds in ds_records}:
                try:
                    ds = dns.dnssec.make_ds(name, key, digest_type)
                except (dns.exception.UnsupportedAlgorithm, ValueError):
                    continue
                made.add((ds.key_tag, ds.digest_type, ds.digest))
        if not digests & made:
            problems.append("no DS at the parent matches a DNSKEY of the zone")
    facts["valid"] = not problems
    facts["problems"] = problems
    if problems:
        return [
            Issue(
                "domain.dnssec.invalid",
                "DNSSEC does not validate",
                Severity.HIGH,
                summary="Validating resolvers will refuse this domain (SERVFAIL): " + "; ".join(problems),
                extra={"problems": problems},
            )
        ], facts
    return [], facts


def _caa_issues(domain: str, dns_: DnsLookup) -> list[Issue]:
    labels = domain.split(".")
    for index in range(len(labels) - 1):
        records = dns_.records(".".join(labels[index:]), "CAA") or []
        if records:
            critical = [
                r
                for r in records
                if r.flags & 128 and r.tag.decode().lower() not in ("issue", "issuewild", "iodef")
            ]
            if critical:
                return [
                    Issue(
                        "domain.caa.unknown-critical",
                        "CAA has a critical tag CAs do not know",
                        Severity.MEDIUM,
                        summary="CAs must refuse to issue for this name.",
                        extra={"tags": [r.tag.decode() for r in critical]},
                    )
                ]
            return []
    return [
        Issue(
            "domain.caa.missing",
            "No CAA record",
            Severity.LOW,
            summary="Any certificate authority may issue certificates for this domain.",
        )
    ]


def _mail_issues(domain: str, dns_: DnsLookup, options: DomainOptions) -> list[Issue]:
    mx = dns_.records(domain, "MX") or []
    hosts = [str(r.exchange).rstrip(".") for r in mx if str(r.exchange) != "."]
    if not hosts:
        return []
    issues = []
    for host in hosts:
        if not dns_.exists(host):
            issues.append(
                Issue(
                    "domain.mx.dangling",
                    f"MX host {host} does not resolve",
                    Severity.MEDIUM,
                    summary="Mail for the domain cannot be delivered, or goes to whoever registers the name.",
                    extra={"mx": host},
                    key=host,
                )
            )
    if not [t for t in dns_.txt(f"_smtp._tls.{domain}") if t.lower().startswith("v=tlsrptv1")]:
        issues.append(
            Issue(
                "domain.tlsrpt.missing",
                "No SMTP TLS reporting (TLS-RPT) record",
                Severity.INFO,
                summary="Publish `_smtp._tls` `v=TLSRPTv1; rua=mailto:...` to hear about TLS failures.",
            )
        )
    sts = [t for t in dns_.txt(f"_mta-sts.{domain}") if t.lower().startswith("v=stsv1")]
    if not sts:
        issues.append(
            Issue(
                "domain.mta-sts.missing",
                "No MTA-STS policy",
                Severity.LOW,
                summary="Sending servers may deliver mail to this domain without TLS (downgrade).",
            )
        )
    else:
        policy = _fetch_mta_sts(domain, dns_, options)
        if policy is None or "version: stsv1" not in policy.lower():
            issues.append(
                Issue(
                    "domain.mta-sts.policy-unavailable",
                    "MTA-STS is announced but its policy cannot be fetched",
                    Severity.MEDIUM,
                    summary=f"https://mta-sts.{domain}/.well-known/mta-sts.txt must serve the policy.",
                )
            )
        elif re.search(r"^mode:\s*testing", policy, re.I | re.M):
            issues.append(Issue("domain.mta-sts.testing", "MTA-STS policy is in testing mode", Severity.INFO))
    return issues


def _fetch_mta_sts(domain: str, dns_: DnsLookup, options: DomainOptions) -> str | None:
    host = f"mta-sts.{domain}"
    addresses = [str(r) for r in dns_.records(host, "A") or []]
    if not addresses:
        return None
    context = ssl.create_default_context(cafile=options.ca_file)
    request = (
        f"GET /.well-known/mta-sts.txt HTTP/1.1\r\nHost: {host}\r\n"
        "User-Agent: Tianmu-DomainCheck/0.1\r\nConnection: close\r\n\r\n"
    ).encode()
    try:
        with (
            socket.create_connection((addresses[0], options.mta_sts_port), timeout=options.timeout) as raw,
            context.wrap_socket(raw, server_hostname=host) as tls,
        ):
            tls.sendall(request)
            data = b""
            while chunk := tls.recv(65536):
                data += chunk
                if len(data) > 65536:
                    break
    except (OSError, ssl.SSLError):
        return None
    head, _sep, body = data.partition(b"\r\n\r\n")
    return (
        body.decode(errors="replace")
        if head.startswith(b"HTTP/1.1 200") or head.startswith(b"HTTP/1.0 200")
        else None
    )


def _cname_issues(domain: str, dns_: DnsLookup, names: Sequence[str]) -> list[Issue]:
    issues = []
    for label in [domain, *names]:
        name = label if label.endswith(domain) else f"{label}.{domain}"
        for record in dns_.records(name, "CNAME") or []:
            target = str(record.target).rstrip(".").lower()
            if dns_.records(target, "A") is None:
                cloud = next((s for s in CLOUD_SUFFIXES if target.endswith(s) or s in target), None)
                severity = Severity.HIGH if cloud else Severity.MEDIUM
                issues.append(
                    Issue(
                        "domain.cname.dangling",
                        f"{name} points to {target}, which does not exist",
                        severity,
                        summary=(
                            "Anyone who claims that cloud name serves content as "
                            f"{name} (subdomain takeover)."
                            if cloud
                            else "Remove the stale CNAME."
                        ),
                        extra={"name": name, "target": target, "cloud": cloud},
                        key=name,
                    )
                )
    return issues


def _axfr_issues(domain: str, dns_: DnsLookup) -> list[Issue]:
    issues = []
    for ns in dns_.records(domain, "NS") or []:
        ns_name = str(ns.target).rstrip(".")
        for address in [str(a) for a in dns_.records(ns_name, "A") or []][:2]:
            try:
                zone = dns.zone.from_xfr(
                    dns.query.xfr(
                        address,
                        domain,
                        port=dns_.port,
                        timeout=dns_.timeout,
                        lifetime=dns_.timeout * 2,
                    )
                )
            except (dns.exception.DNSException, OSError, EOFError, dns.xfr.TransferError, ConnectionError):
                continue
            issues.append(
                Issue(
                    "domain.axfr.open",
                    f"Name server {ns_name} allows zone transfer (AXFR)",
                    Severity.HIGH,
                    FindingKind.EXPOSURE,
                    "Anyone can list every name in the zone; allow AXFR only to secondaries.",
                    extra={"nameserver": ns_name, "address": address, "names": len(zone.nodes)},
                    key=ns_name,
                )
            )
            break
    return issues


def _wildcard_issues(domain: str, dns_: DnsLookup) -> list[Issue]:
    probe = f"tianmu-{secrets.token_hex(6)}.{domain}"
    if dns_.exists(probe):
        return [
            Issue(
                "domain.wildcard",
                "Wildcard DNS: any name under the domain resolves",
                Severity.LOW,
                summary="Typos and forgotten names resolve, which hides dangling records and helps phishing.",
                extra={"probe": probe},
            )
        ]
    return []


def _check(domain: str, options: DomainOptions) -> tuple[list[Issue], dict[str, Any]]:
    dns_ = DnsLookup(options.nameservers, options.port, options.timeout)
    # The resolver must answer for the domain at all; otherwise every record would look missing.
    try:
        dns_.resolver.resolve(domain, "SOA", raise_on_no_answer=False)
    except dns.resolver.NXDOMAIN as exc:
        raise InputError(f"{domain}: the domain does not exist (NXDOMAIN)") from exc
    except (dns.resolver.NoNameservers, dns.exception.Timeout) as exc:
        raise InputError(f"{domain}: no usable answer from the resolver ({exc.__class__.__name__})") from exc
    issues = spf_issues(domain, dns_.txt) + dmarc_issues(domain, dns_.txt)
    issues += dkim_issues(domain, options.dkim_selectors, dns_.txt)
    dnssec_issues, dnssec_facts = _dnssec_issues(domain, dns_)
    issues += dnssec_issues + _caa_issues(domain, dns_) + _mail_issues(domain, dns_, options)
    issues += _cname_issues(domain, dns_, options.names) + _wildcard_issues(domain, dns_)
    if options.axfr:
        issues += _axfr_issues(domain, dns_)
    return issues, {"domain": domain, "dnssec": dnssec_facts}


def check_domains(
    store: Store | None,
    domains: Sequence[str],
    options: DomainOptions | None = None,
    *,
    progress: Progress | None = None,
) -> DomainResult:
    """Check each domain; a domain that does not resolve is an error of the result, not a failure."""
    opts = options or DomainOptions()
    names = []
    for raw in domains:
        name = raw.strip().lower().rstrip(".")
        if not re.match(r"^(?=.{1,253}$)([a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9])?\.)+[a-z0-9-]{2,63}$", name):
            raise InputError(f"{raw!r} is not a domain name")
        names.append(name)
    result = DomainResult([], [])
    audit_id = None
    if store is not None:
        audit_id = record_scan_start(
            store,
            tenant=opts.tenant,
            action="domain",
            targets=names,
            ports=None,
            authorized=True,
            engine="dnspython",
        )
    for name in names:
        started = utcnow()
        try:
            issues, facts = _check(name, opts)
        except InputError as exc:
            result.errors.append(str(exc))
            continue
        asset = Asset(name=name, kind=AssetKind.DOMAIN, tenant=opts.tenant)
        findings = []
        for issue in issues:
            evidence: dict[str, Any] = {"domain": name, "entities": {"domain": [name]}, **issue.extra}
            if issue.key is not None:
                evidence["fingerprint_extra"] = issue.key
            findings.append(
                Finding(
                    kind=issue.kind,
                    rule_id=issue.rule,
                    title=f"{name}: {issue.title}",
                    severity=issue.severity,
                    asset=asset,
                    summary=issue.summary,
                    evidence=evidence,
                )
            )
        findings.sort(key=lambda f: (-f.severity.rank, f.rule_id))
        result.findings.extend(findings)
        result.domains.append(facts)
        result.checked.append(DomainCheck(asset, findings, started, utcnow()))
        if progress is not None:
            progress(name)
    if store is not None and audit_id is not None:
        record_scan_end(store, audit_id, {"domains": len(names), "findings": len(result.findings)})
    return result
