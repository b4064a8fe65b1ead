"""Indicator normalisation: one canonical spelling per indicator, whatever feed or log it came from.

Feeds and logs write the same indicator many ways: `hxxp://Evil[.]com/`, `EVIL.COM.`, `evil.com:443`,
`1.2.3.4:80`, `1.2.3.0/24`, upper-case hashes, Unicode domain names. Matching is by exact set
membership, so both sides go through these functions: refang, lower-case, IDNA (punycode) for domains,
a canonical URL, a CIDR only when the network is wider than one address, and the hash type from the
length of the hex digest.
"""

from __future__ import annotations

import ipaddress
import re
import urllib.parse

import idna

from tianmu.core.regex import pattern_problem

__all__ = [
    "HASH_TYPES",
    "INDICATOR_TYPES",
    "NormalizeError",
    "classify",
    "hash_type",
    "normalize",
    "normalize_cidr",
    "normalize_domain",
    "normalize_email",
    "normalize_hash",
    "normalize_ip",
    "normalize_url",
    "refang",
    "url_key",
]

HASH_TYPES = {32: "md5", 40: "sha1", 64: "sha256", 128: "sha512"}
INDICATOR_TYPES = (
    "ip",
    "cidr",
    "domain",
    "url",
    "md5",
    "sha1",
    "sha256",
    "sha512",
    "email",
    "user-agent",
    "filename",
)
"""Types of `tianmu.core.models.IndicatorType`, plus sha512 and user-agent (STIX and MISP carry both) and
filename (a regular expression over a file path, as LOKI's filename IOCs are)."""


class NormalizeError(ValueError):
    """The value is not an indicator of the type asked for (the message says what was expected)."""


# Defanging conventions seen in reports and feeds: hxxp, [.], (.), {.}, [dot], [:], [@], [at].
_DEFANG = re.compile(
    r"h[x\*]{2}p(s?)(?=\[?:)|\[\.\]|\(\.\)|\{\.\}|\[dot\]|\(dot\)|\[:\]|\[://\]|\[@\]|\[at\]|\(at\)",
    re.IGNORECASE,
)
_REFANGED = {
    "[.]": ".",
    "(.)": ".",
    "{.}": ".",
    "[dot]": ".",
    "(dot)": ".",
    "[:]": ":",
    "[://]": "://",
    "[@]": "@",
    "[at]": "@",
    "(at)": "@",
}


def _refang_one(match: re.Match[str]) -> str:
    text = match.group(0)
    if text[0] in "hH":
        return "http" + match.group(1).lower()
    return _REFANGED[text.lower()]


def refang(text: str) -> str:
    """Undo the usual defanging (`hxxp://evil[.]com` → `http://evil.com`); other text is unchanged."""
    if "[" not in text and "(" not in text and "{" not in text and "xx" not in text.lower():
        return text
    return _DEFANG.sub(_refang_one, text)


_LABEL = re.compile(r"^(?!-)[a-z0-9_-]{1,63}(?<!-)$")
_ONION = re.compile(r"^[a-z2-7]{16,}$|^[a-z0-9]{16,}$")


def normalize_domain(value: str) -> str:
    """Lower-case ASCII (punycode) domain without a trailing dot; IDNA for Unicode names."""
    text = refang(value.strip()).rstrip(".").lower()
    if text.startswith("*."):
        text = text[2:]
    if not text or len(text) > 253 or "." not in text:
        raise NormalizeError(f"not a domain name: {value!r}")
    if not text.isascii():
        try:
            text = idna.encode(text, uts46=True).decode("ascii")
        except idna.IDNAError as exc:
            raise NormalizeError(f"not a valid internationalised domain name: {value!r} ({exc})") from exc
    labels = text.split(".")
    if labels[-1] == "onion" and len(labels) >= 2 and _ONION.match(labels[-2]):
        return text  # Tor v3 addresses are 56 characters, longer than a DNS label may be
    if not all(_LABEL.match(label) for label in labels) or labels[-1].isdigit():
        raise NormalizeError(f"not a domain name: {value!r}")
    return text


def normalize_ip(value: str) -> str:
    """Canonical address text (compressed IPv6); `1.2.3.4:80` and `[::1]:80` lose their port."""
    text = refang(value.strip())
    if text.startswith("[") and "]" in text:
        text = text[1 : text.index("]")]
    elif text.count(":") == 1:
        text = text.split(":", 1)[0]
    try:
        return str(ipaddress.ip_address(text))
    except ValueError as exc:
        raise NormalizeError(f"not an IP address: {value!r}") from exc


def normalize_cidr(value: str) -> tuple[str, str]:
    """(`cidr`, network) for a network, or (`ip`, address) when it holds one address (`/32`)."""
    text = refang(value.strip())
    try:
        network = ipaddress.ip_network(text, strict=False)
    except ValueError as exc:
        raise NormalizeError(f"not a network (CIDR): {value!r}") from exc
    if network.num_addresses == 1:
        return "ip", str(network.network_address)
    return "cidr", str(network)


def normalize_hash(value: str, expected: str | None = None) -> tuple[str, str]:
    """(hash type, lower-case hex) — the type follows from the length."""
    text = value.strip().lower()
    kind = HASH_TYPES.get(len(text))
    if kind is None or not all(c in "0123456789abcdef" for c in text):
        raise NormalizeError(f"not an MD5/SHA-1/SHA-256/SHA-512 hex digest: {value!r}")
    if expected is not None and expected != kind:
        raise NormalizeError(f"{value!r} is a {kind} digest by its length, not {expected}")
    return kind, text


def hash_type(value: str) -> str | None:
    try:
        return normalize_hash(value)[0]
    except NormalizeError:
        return None


_EMAIL = re.compile(r"^[a-z0-9.!#$%&'*+/=?^_`{|}~-]+@[^@\s]+$")


def normalize_email(value: str) -> str:
    text = refang(value.strip()).lower()
    if not _EMAIL.match(text):
        raise NormalizeError(f"not an e-mail address: {value!r}")
    local, domain = text.rsplit("@", 1)
    return f"{local}@{normalize_domain(domain)}"


_DEFAULT_PORTS = {"http": 80, "https": 443, "ftp": 21}


def normalize_url(value: str) -> str:
    """`scheme://host[:port]/path[?query]`: scheme and host lower-cased, default port and fragment
    dropped, an empty path made `/`. A URL without scheme (`evil.com/x.php`, as maltrail writes them)
    gets `http://`. Path and query keep their case: servers may treat them case-sensitively.
    """
    text = refang(value.strip())
    if "://" not in text:
        text = "http://" + text
    try:
        parts = urllib.parse.urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise NormalizeError(f"not a URL: {value!r} ({exc})") from exc
    scheme = parts.scheme.lower()
    if not scheme or not parts.hostname:
        raise NormalizeError(f"not a URL (no host): {value!r}")
    host = parts.hostname
    try:
        host = normalize_ip(host) if _looks_like_ip(host) else normalize_domain(host)
    except NormalizeError as exc:
        raise NormalizeError(f"not a URL (bad host {host!r}): {value!r}") from exc
    if ":" in host:
        host = f"[{host}]"
    netloc = host if port is None or port == _DEFAULT_PORTS.get(scheme) else f"{host}:{port}"
    path = parts.path or "/"
    query = f"?{parts.query}" if parts.query else ""
    return f"{scheme}://{netloc}{path}{query}"


def url_key(url: str) -> str:
    """The matching key of a normalised URL: without its scheme (maltrail trails have none)."""
    return url.split("://", 1)[1]


def _looks_like_ip(text: str) -> bool:
    """IPv6 (two colons or more), or dotted digits with an optional `:port`."""
    return text.count(":") >= 2 or text.split(":", 1)[0].replace(".", "").isdigit()


def normalize(kind: str, value: str) -> tuple[str, str]:
    """(type, canonical value) for a value of a declared type; the type may change (cidr `/32` → ip)."""
    if kind == "ip":
        text = value.strip()
        return normalize_cidr(text) if "/" in text else ("ip", normalize_ip(text))
    if kind == "cidr":
        return normalize_cidr(value)
    if kind == "domain":
        return "domain", normalize_domain(value)
    if kind == "url":
        return "url", normalize_url(value)
    if kind in ("md5", "sha1", "sha256", "sha512"):
        return normalize_hash(value, kind)
    if kind == "hash":
        return normalize_hash(value)
    if kind == "email":
        return "email", normalize_email(value)
    if kind == "filename":
        text = value.strip()
        try:
            re.compile(text)
        except re.error as exc:
            raise NormalizeError(f"not a valid file-name regular expression: {text!r} ({exc})") from exc
        # Matched with RE2 (linear time, over attacker-named paths): refused here, with the reason, so
        # an indicator that could never match is not stored as if it would.
        problem = pattern_problem(text)
        if problem is not None:
            raise NormalizeError(f"file-name regular expression {text!r} refused: {problem}")
        return "filename", text
    if kind == "user-agent":
        text = value.strip()
        if not text:
            raise NormalizeError("empty user agent")
        return "user-agent", text
    raise NormalizeError(f"unknown indicator type {kind!r} (expected one of {', '.join(INDICATOR_TYPES)})")


def classify(value: str) -> tuple[str, str]:
    """Guess the type of a bare indicator (plain lists, `tianmu intel lookup`) and normalise it."""
    text = refang(value.strip())
    if not text:
        raise NormalizeError("empty value")
    if "://" in text:
        return "url", normalize_url(text)
    if hash_type(text):
        return normalize_hash(text)
    if "@" in text and "/" not in text:
        return "email", normalize_email(text)
    if "/" in text:
        head, _, tail = text.partition("/")
        if tail.isdigit() and _looks_like_ip(head):
            return normalize_cidr(text)
        return "url", normalize_url(text)
    if _looks_like_ip(text) or (text.startswith("[") and "]" in text):
        return "ip", normalize_ip(text)
    if ":" in text:
        host, _, port = text.rpartition(":")
        if port.isdigit():
            # `evil.com:8080` in maltrail: the host is the indicator, the port is detail.
            return "domain", normalize_domain(host)
    return "domain", normalize_domain(text)
