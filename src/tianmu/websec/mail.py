"""Mail authentication records of a domain: SPF (RFC 7208), DMARC (RFC 7489), DKIM keys (RFC 6376,
RFC 8301). Pure functions over a TXT look-up (`lookup_txt(name) -> [strings]`), so each is tested
without DNS; `domain.py` gives them dnspython's resolver."""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Sequence

from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import load_der_public_key

from tianmu.core.models import Severity
from tianmu.websec.site import Issue

__all__ = ["dkim_issues", "dmarc_issues", "spf_issues"]

_SPF_LOOKUP_MECHANISMS = ("include", "a", "mx", "ptr", "exists")
_SPF_TERM = re.compile(
    r"^(?P<q>[+\-~?]?)(?P<m>all|include|a|mx|ptr|ip4|ip6|exists)(?P<arg>[:/].*)?$|^(?P<mod>redirect|exp)=(?P<val>.+)$",
    re.I,
)


def spf_issues(domain: str, lookup_txt: Callable[[str], list[str]]) -> list[Issue]:
    records = [t for t in lookup_txt(domain) if t.lower().startswith("v=spf1")]
    if not records:
        return [
            Issue(
                "domain.spf.missing",
                "No SPF record",
                Severity.MEDIUM,
                summary="Anyone can send mail as this domain undetected; publish `v=spf1 ... -all`.",
            )
        ]
    if len(records) > 1:
        return [
            Issue(
                "domain.spf.multiple",
                f"{len(records)} SPF records (a permanent error)",
                Severity.MEDIUM,
                summary="RFC 7208 4.5: more than one SPF record makes SPF fail.",
                extra={"records": records},
            )
        ]
    issues: list[Issue] = []
    record = records[0]
    lookups = 0
    seen: set[str] = set()

    def walk(name: str, text: str, depth: int) -> None:
        nonlocal lookups
        for term in text.split()[1:]:
            match = _SPF_TERM.match(term)
            if not match:
                if depth == 0:
                    issues.append(
                        Issue(
                            "domain.spf.syntax",
                            f"SPF term {term!r} is not valid",
                            Severity.MEDIUM,
                            summary="Receivers treat an SPF record with a syntax error as a permanent error.",
                            extra={"record": record},
                            key=term,
                        )
                    )
                continue
            mechanism = (match.group("m") or match.group("mod") or "").lower()
            if mechanism in _SPF_LOOKUP_MECHANISMS or mechanism == "redirect":
                lookups += 1
            target = (match.group("arg") or "")[1:] if match.group("m") else match.group("val")
            if mechanism in ("include", "redirect") and target and target not in seen and depth < 10:
                seen.add(target)
                nested = [t for t in lookup_txt(target) if t.lower().startswith("v=spf1")]
                if nested:
                    walk(target, nested[0], depth + 1)
            if depth == 0 and mechanism == "all":
                qualifier = match.group("q") or "+"
                if qualifier == "+":
                    issues.append(
                        Issue(
                            "domain.spf.pass-all",
                            "SPF allows every sender (`+all`)",
                            Severity.HIGH,
                            summary="Any server on the Internet passes SPF for this domain.",
                            extra={"record": record},
                        )
                    )
                elif qualifier == "?":
                    issues.append(
                        Issue(
                            "domain.spf.neutral-all",
                            "SPF ends in `?all` (no policy)",
                            Severity.LOW,
                            extra={"record": record},
                        )
                    )

    walk(domain, record, 0)
    if lookups > 10:
        issues.append(
            Issue(
                "domain.spf.too-many-lookups",
                f"SPF needs {lookups} DNS lookups (limit 10)",
                Severity.MEDIUM,
                summary="RFC 7208 4.6.4: more than 10 lookups is a permanent error.",
                extra={"record": record, "lookups": lookups},
            )
        )
    return issues


def _tags(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in text.split(";"):
        if "=" in part:
            key, value = part.split("=", 1)
            out[key.strip().lower()] = value.strip()
    return out


def dmarc_issues(domain: str, lookup_txt: Callable[[str], list[str]]) -> list[Issue]:
    records = [t for t in lookup_txt(f"_dmarc.{domain}") if t.lower().startswith("v=dmarc1")]
    if not records:
        return [
            Issue(
                "domain.dmarc.missing",
                "No DMARC record",
                Severity.MEDIUM,
                summary="Receivers get no policy for mail failing SPF/DKIM; publish `_dmarc` with p=reject.",
            )
        ]
    tags = _tags(records[0])
    policy = tags.get("p", "").lower()
    if policy not in ("none", "quarantine", "reject"):
        return [
            Issue(
                "domain.dmarc.invalid",
                f"DMARC record has no valid policy (p={policy or 'missing'})",
                Severity.MEDIUM,
                extra={"record": records[0]},
            )
        ]
    issues = []
    if policy == "none":
        issues.append(
            Issue(
                "domain.dmarc.policy-none",
                "DMARC policy is `p=none` (monitoring only)",
                Severity.LOW,
                summary="Spoofed mail is still delivered; move to quarantine or reject.",
                extra={"record": records[0]},
            )
        )
    pct = tags.get("pct")
    if pct and pct.isdigit() and int(pct) < 100:
        issues.append(
            Issue(
                "domain.dmarc.partial",
                f"DMARC applies to {pct}% of mail",
                Severity.LOW,
                extra={"record": records[0]},
            )
        )
    return issues


def dkim_issues(domain: str, selectors: Sequence[str], lookup_txt: Callable[[str], list[str]]) -> list[Issue]:
    issues = []
    for selector in selectors:
        name = f"{selector}._domainkey.{domain}"
        records = [t for t in lookup_txt(name) if "p=" in t]
        if not records:
            issues.append(
                Issue(
                    "domain.dkim.missing",
                    f"No DKIM key for selector {selector!r}",
                    Severity.MEDIUM,
                    extra={"selector": selector},
                    key=selector,
                )
            )
            continue
        tags = _tags(records[0])
        key_text = tags.get("p", "").replace(" ", "")
        if not key_text:
            issues.append(
                Issue(
                    "domain.dkim.revoked",
                    f"DKIM selector {selector!r} is revoked (empty p=)",
                    Severity.INFO,
                    extra={"selector": selector},
                    key=selector,
                )
            )
            continue
        try:
            key = load_der_public_key(base64.b64decode(key_text))
        except (ValueError, TypeError):
            issues.append(
                Issue(
                    "domain.dkim.invalid",
                    f"DKIM key of selector {selector!r} cannot be read",
                    Severity.MEDIUM,
                    extra={"selector": selector},
                    key=selector,
                )
            )
            continue
        if isinstance(key, rsa.RSAPublicKey) and key.key_size < 1024:
            issues.append(
                Issue(
                    "domain.dkim.weak-key",
                    f"DKIM selector {selector!r} uses a {key.key_size}-bit RSA key",
                    Severity.MEDIUM,
                    summary="RFC 8301: at least 1024 bits, 2048 recommended.",
                    extra={"selector": selector, "bits": key.key_size},
                    key=selector,
                )
            )
    return issues
