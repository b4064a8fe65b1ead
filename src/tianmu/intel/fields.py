"""Where events keep indicators: Sigma/ECS/Suricata field names by type, and typed observations.

The matcher asks these helpers what a field value stands for (`observations("dst_ip", "1.2.3.4")` is an
address; a URL field is also its host; Sysmon's `Hashes` is several digests), and compiles the
file-name expressions of the base into one RE2 set.

The file-name expressions (LOKI's filename IOCs and their false-positive expressions, STIX or MISP
`filename` indicators) are a feed's, and the path is the attacker's: they are matched with RE2
(`tianmu.core.regex`), in time linear in the path. An expression RE2 cannot take (back-reference,
look-around, atomic group, possessive quantifier) is refused with its reason when the set is built
(`PathPatterns.refused`) and never matched, by RE2 or by a backtracking engine.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tianmu.core.regex import LinearSet, UnsafePattern, compile_linear, compile_set
from tianmu.intel.models import IntelRecord
from tianmu.intel.normalize import NormalizeError, classify

__all__ = [
    "ALL_FIELDS",
    "FIELD_KINDS",
    "HASH_BY_LENGTH",
    "PATH_FIELDS",
    "PathPatterns",
    "compile_path_set",
    "event_entities",
    "excluded",
    "observations",
    "url_key_of",
]

DEFAULT_PORT = {"http": ":80", "https": ":443", "ftp": ":21"}
# Event fields (Sigma / ECS / Suricata names) holding one typed value each.
IP_FIELDS = (
    "src_ip", "dst_ip", "dest_ip", "SourceIp", "DestinationIp", "c-ip", "s-ip", "IpAddress", "SourceAddress",
    "DestAddress", "ClientIP", "source.ip", "destination.ip", "client.ip", "remote_addr", "rhost",
)  # fmt: skip
DOMAIN_FIELDS = (
    "query", "QueryName", "cs-host", "DestinationHostname", "dns.rrname", "http.hostname", "tls.sni",
    "url.domain", "destination.domain", "dns.question.name", "r-dns",
)  # fmt: skip
URL_FIELDS = ("url", "http.url", "c-uri", "cs-uri", "url.full", "cs-referer", "http.http_refer")
UA_FIELDS = ("cs-user-agent", "c-useragent", "cs(User-Agent)", "http.http_user_agent", "user_agent.original")
HASH_FIELDS = ("Hashes", "md5", "sha1", "sha256", "file.hash.md5", "file.hash.sha1", "file.hash.sha256")
PATH_FIELDS = ("Image", "TargetFilename", "ParentImage", "ImageLoaded", "file.path", "process.executable")


HASH_BY_LENGTH = {32: "md5", 40: "sha1", 64: "sha256", 128: "sha512"}
FIELD_KINDS: dict[str, str] = {
    **{f: "ip" for f in IP_FIELDS},
    **{f: "domain" for f in DOMAIN_FIELDS},
    **{f: "url" for f in URL_FIELDS},
    **{f: "user-agent" for f in UA_FIELDS},
    **{f: "hashes" for f in HASH_FIELDS},
    "ip": "ip",
    "domain": "domain",
    "host": "domain",
    "hash": "hashes",
}
ALL_FIELDS = IP_FIELDS + DOMAIN_FIELDS + URL_FIELDS + UA_FIELDS + HASH_FIELDS


@dataclass(frozen=True, slots=True)
class PathPatterns:
    """The filename expressions of a base in one RE2 set; called with a path, the expressions in it."""

    matcher: LinearSet

    @property
    def refused(self) -> dict[str, str]:
        """`filename` indicators RE2 cannot take, each with the located reason; none of them matches."""
        why = "refused: RE2 (linear-time matching) cannot take it"
        return {
            pattern: f"filename indicator {pattern!r} {why}: {reason}"
            for pattern, reason in self.matcher.refused.items()
        }

    def __call__(self, text: str) -> list[str]:
        return self.matcher.search(text)


def compile_path_set(patterns: list[str]) -> PathPatterns:
    """One RE2 set over every filename expression (a single automaton, no loop over indicators)."""
    # Case-sensitive, as LOKI matches them: the lists carry upper- and lower-case variants on purpose.
    return PathPatterns(compile_set(patterns))


def excluded(record: IntelRecord, text: str) -> bool:
    """LOKI's third field: a path that also matches the false-positive expression is no hit.

    An exclusion RE2 cannot take excludes nothing: the hit is reported rather than hidden by an
    expression that cannot be evaluated in linear time.
    """
    for label in record.labels:
        if label.startswith("exclude:"):
            try:
                if compile_linear(label[8:]).search(text):
                    return True
            except UnsafePattern:
                continue
    return False


def url_key_of(url: str) -> str:
    """`host[:port]/path?query` of a lower-case URL, default port dropped (the index's URL key)."""
    scheme, _, rest = url.partition("://")
    rest = rest.split("#", 1)[0]
    cut = min((i for i in (rest.find("/"), rest.find("?")) if i >= 0), default=len(rest))
    netloc, path = rest[:cut], rest[cut:]
    host = netloc.rpartition("@")[2]
    default = DEFAULT_PORT.get(scheme)
    if default and host.endswith(default):
        host = host[: -len(default)]
    return host + (path if path.startswith("/") else "/" + path)


def observations(name: str, raw: str) -> list[tuple[str, str]]:
    """Normalised (type, value) pairs an observed field value stands for."""
    kind = FIELD_KINDS.get(name)
    text = raw.strip()
    try:
        if kind == "user-agent":
            return [("user-agent", text)]
        if kind == "hashes":
            # Sysmon writes `SHA1=...,MD5=...,SHA256=...,IMPHASH=...`.
            parts = (
                [p.split("=", 1)[-1] for p in text.replace(";", ",").split(",")] if "=" in text else [text]
            )
            return [
                (HASH_BY_LENGTH[len(p)], p.lower())
                for p in (q.strip() for q in parts)
                if len(p) in HASH_BY_LENGTH
            ]
        if kind == "domain":
            text = text.rstrip(".")
        if kind == "url" and text.startswith("/"):
            return []  # a path alone (cs-uri): matched with its host (cs-host+cs-uri) or not at all
        guessed, value = classify(text)
    except NormalizeError:
        return []
    if guessed in ("md5", "sha1", "sha256", "sha512") and kind not in (None, "hashes"):
        return []
    pairs = [(guessed, value)]
    if guessed == "url":
        host = value.split("://", 1)[1].split("/", 1)[0].split("?", 1)[0]
        host = host.rsplit(":", 1)[0] if host.count(":") == 1 else host.strip("[]")
        pairs.append(("ip", host) if host.replace(".", "").isdigit() or ":" in host else ("domain", host))
    if guessed == "email":
        pairs.append(("domain", value.rsplit("@", 1)[1]))
    if guessed == "cidr":
        return []
    return pairs


def event_entities(fields: dict[str, Any]) -> dict[str, list[str]]:
    entities: dict[str, list[str]] = {}
    for name in IP_FIELDS:
        value = fields.get(name)
        if value and value != "-":
            entities.setdefault("ip", [])
            if str(value) not in entities["ip"]:
                entities["ip"].append(str(value))
    for name, kind in (("User", "user"), ("user", "user"), ("Image", "process"), ("TargetFilename", "file")):
        if fields.get(name):
            entities.setdefault(kind, []).append(str(fields[name]))
    return entities
