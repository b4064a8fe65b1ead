"""NVD CVE JSON 2.0: import, and matching a product's CPE name against the CVEs' `configurations`.

Import (through `tianmu kb import`, recognised by content: a JSON object with `"format": "NVD_CVE"` or
`vulnerabilities[].cve`, plain or gzipped; or a folder of such files). Each CVE becomes an advisory
(`source` = `nvd:file:<stem>` for one file, additive; `nvd:<folder>` for a folder, authoritative for
its records), its CVSS vectors stored as OSV-style `severity` entries so the same scoring applies, and
its `configurations` kept whole in `database_specific.nvd`. Every *vulnerable* `cpeMatch` also gets an
`affected_packages` row with ecosystem `CPE` and name `vendor:product`: the index the matcher starts
from. A CVE id already stored from another source (an OSV `CVE-…` record) is left alone and reported.

Matching (`CpeMatcher`): a configuration is a tree of nodes (operator OR/AND, `negate`) whose leaves are
`cpeMatch` criteria with optional version bounds. A criterion matches a CPE when part, vendor and
product are equal, every other component of the criterion is `*`/`-` or equal, and the version lies
within `versionStart*`/`versionEnd*`. A node that names only other products (the platform of an AND
configuration, e.g. an operating system) cannot be judged from one service: it counts as satisfied and
is reported in the finding's `data["conditions"]`, so the reader knows what was assumed.

Versions are compared with a generic ordering (numbers numerically, `rc`/`beta`/`alpha`/`pre`/`dev`
before the release, other letters — OpenSSH's `p1` — after it), since CPE versions follow no one
ecosystem's rules.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import re
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import and_, select

from tianmu.core.errors import KnowledgeBaseError
from tianmu.core.models import utcnow
from tianmu.network.cpe import CpeName, parse_cpe
from tianmu.store.bulk import delete_in, insert_rows, select_in, upsert_row
from tianmu.store.database import Store
from tianmu.store.knowledge import (
    ImportLimits,
    ImportMode,
    ImportReport,
    LimitError,
    Progress,
    cut_field,
    load_json,
    removal_refusal,
)
from tianmu.store.schema import advisories, affected_packages, kb_sources, kev_entries

__all__ = ["CpeHit", "CpeMatcher", "import_nvd", "is_nvd", "parse_nvd", "version_order_key"]

ECOSYSTEM = "CPE"


def _head(path: Path) -> str:
    with path.open("rb") as handle:
        head = handle.read(65536)
    if head[:2] == b"\x1f\x8b":
        with gzip.open(path, "rb") as handle:
            head = handle.read(65536)
    return head.decode("utf-8", errors="replace").lstrip("\ufeff").lstrip()


def _is_nvd_file(path: Path) -> bool:
    try:
        text = _head(path)
    except (OSError, EOFError, gzip.BadGzipFile):
        return False
    if not text.startswith("{"):
        return False
    return '"NVD_CVE"' in text or (
        '"vulnerabilities"' in text and re.search(r'"cve"\s*:\s*\{', text) is not None
    )


def _nvd_files(path: Path) -> list[Path]:
    return sorted(
        p for p in path.rglob("*") if p.is_file() and p.name.lower().endswith((".json", ".json.gz"))
    )


def is_nvd(path: Path) -> bool:
    """An NVD CVE JSON 2.0 file, or a folder whose JSON files all are."""
    if path.is_dir():
        files = _nvd_files(path)
        return bool(files) and all(_is_nvd_file(p) for p in files)
    return _is_nvd_file(path)


@dataclass(slots=True)
class NvdRecord:
    id: str
    content_hash: str
    advisory: dict[str, Any]
    affected: list[dict[str, Any]]


def _cvss_entries(metrics: dict[str, Any]) -> tuple[list[dict[str, str]], float | None, str | None]:
    entries: list[dict[str, str]] = []
    base: float | None = None
    word: str | None = None
    for key, kind in (
        ("cvssMetricV31", "CVSS_V3"),
        ("cvssMetricV30", "CVSS_V3"),
        ("cvssMetricV40", "CVSS_V4"),
        ("cvssMetricV2", "CVSS_V2"),
    ):
        items = metrics.get(key) or []
        primary = sorted(items, key=lambda m: 0 if m.get("type") == "Primary" else 1)
        for metric in primary[:1]:
            data = metric.get("cvssData") or {}
            vector = data.get("vectorString")
            if isinstance(vector, str):
                if kind == "CVSS_V2" and not vector.startswith("AV:"):
                    continue
                entries.append({"type": kind, "score": vector})
                if base is None and isinstance(data.get("baseScore"), int | float):
                    base = float(data["baseScore"])
                    word = data.get("baseSeverity") or metric.get("baseSeverity")
    return entries, base, word


def _walk_matches(nodes: Iterable[Any]) -> Iterable[dict[str, Any]]:
    for node in nodes:
        if isinstance(node, dict):
            yield from (m for m in node.get("cpeMatch") or [] if isinstance(m, dict))
            yield from _walk_matches(node.get("children") or [])


def _parse_cve(cve: Any, where: str, limits: ImportLimits, notes: list[str]) -> NvdRecord:
    if not isinstance(cve, dict) or not isinstance(cve.get("id"), str):
        raise KnowledgeBaseError(f"{where}: expected a `cve` object with an `id`")
    cve_id = cve["id"].strip()
    if not re.match(r"^CVE-\d{4}-\d{4,}$", cve_id):
        raise KnowledgeBaseError(f"{where}: {cve_id!r} is not a CVE id")
    descriptions = [d.get("value", "") for d in cve.get("descriptions") or [] if isinstance(d, dict)]
    english = next(
        (
            d.get("value", "")
            for d in cve.get("descriptions") or []
            if isinstance(d, dict) and d.get("lang") == "en"
        ),
        descriptions[0] if descriptions else "",
    )
    english = cut_field(str(english), limits, f"{where}: {cve_id}: description", notes)
    configurations = cve.get("configurations") or []
    if not isinstance(configurations, list):
        raise KnowledgeBaseError(f"{where}: {cve_id}: `configurations` must be a list")
    severity, base, word = _cvss_entries(cve.get("metrics") or {})
    refs = [
        r["url"] for r in cve.get("references") or [] if isinstance(r, dict) and isinstance(r.get("url"), str)
    ]
    blob = json.dumps(cve, sort_keys=True, separators=(",", ":")).encode()
    advisory = {
        "id": cve_id,
        "content_hash": hashlib.sha256(blob).hexdigest(),
        "modified": cve.get("lastModified"),
        "published": cve.get("published"),
        "withdrawn": cve.get("published") if cve.get("vulnStatus") == "Rejected" else None,
        "summary": english.split(". ")[0][:300],
        "details": english,
        "aliases": [],
        "severity": severity,
        "references": refs,
        "database_specific": {
            "nvd": {"configurations": configurations, "status": cve.get("vulnStatus")},
            **({"severity": word} if word else {}),
            **({"base_score": base} if base is not None else {}),
        },
    }
    affected: list[dict[str, Any]] = []
    seen: set[str] = set()
    for match in _walk_matches(
        n for c in configurations if isinstance(c, dict) for n in c.get("nodes") or []
    ):
        name = parse_cpe(str(match.get("criteria", "")))
        if name is None:
            raise KnowledgeBaseError(f"{where}: {cve_id}: {match.get('criteria')!r} is not a CPE 2.3 name")
        if not match.get("vulnerable") or name.key in seen:
            continue
        seen.add(name.key)
        affected.append(
            {
                "advisory_id": cve_id,
                "ecosystem": ECOSYSTEM,
                "ecosystem_full": ECOSYSTEM,
                "name": name.key,
                "purl": None,
                "versions": [],
                "ranges": [],
                "severity": None,
                "ecosystem_specific": {"part": name.part},
                "database_specific": None,
            }
        )
    return NvdRecord(cve_id, advisory["content_hash"], advisory, affected)


def _load(path: Path, limits: ImportLimits) -> Any:
    """The decoded document, read (and decompressed) no further than `max_document_bytes`."""
    opener = gzip.open if _head_is_gzip(path) else open
    limit = limits.max_document_bytes
    try:
        with opener(path, "rb") as handle:
            data = handle.read(limit + 1)
        if len(data) > limit:
            raise LimitError(f"over {limit} bytes (limit max_document_bytes)")
        return load_json(data, limits)
    except LimitError as exc:
        raise KnowledgeBaseError(f"{path}: refused: {exc}") from exc
    except json.JSONDecodeError as exc:
        raise KnowledgeBaseError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from exc
    except (OSError, EOFError, zlib.error) as exc:
        raise KnowledgeBaseError(f"{path}: cannot read: {exc}") from exc


def _head_is_gzip(path: Path) -> bool:
    with path.open("rb") as handle:
        return handle.read(2) == b"\x1f\x8b"


def parse_nvd(path: Path, limits: ImportLimits | None = None) -> tuple[dict[str, NvdRecord], list[str]]:
    """Every CVE of a file or folder; malformed entries become `file: message` errors and are skipped."""
    limits = limits or ImportLimits()
    records: dict[str, NvdRecord] = {}
    errors: list[str] = []
    for file in _nvd_files(path) if path.is_dir() else [path]:
        try:
            document = _load(file, limits)
        except KnowledgeBaseError as exc:
            errors.append(str(exc))
            continue
        items = document.get("vulnerabilities") if isinstance(document, dict) else None
        if not isinstance(items, list):
            errors.append(f"{file}: no `vulnerabilities` list (expected NVD CVE JSON 2.0)")
            continue
        for index, item in enumerate(items):
            where = f"{file}: vulnerabilities[{index}]"
            try:
                record = _parse_cve(
                    item.get("cve") if isinstance(item, dict) else None, where, limits, errors
                )
            except KnowledgeBaseError as exc:
                errors.append(str(exc))
                continue
            if record.id in records:
                errors.append(f"{where}: duplicate {record.id} (first copy kept)")
                continue
            records[record.id] = record
    return records, errors


def import_nvd(
    store: Store,
    path: Path,
    progress: Progress | None = None,
    *,
    mode: ImportMode = ImportMode.MERGE,
    limits: ImportLimits | None = None,
) -> ImportReport:
    """Import an NVD file (additive) or folder (one source; what it may remove is `mode`'s to say)."""
    limits = limits or ImportLimits()
    note = progress or (lambda _m: None)
    records, errors = parse_nvd(path, limits)
    if not records:
        detail = f": {errors[0]}" if errors else ""
        raise KnowledgeBaseError(f"{path}: no NVD CVE record could be read ({len(errors)} errors){detail}")
    source = f"nvd:{path.resolve().name}" if path.is_dir() else f"nvd:file:{path.name.split('.')[0]}"
    digest = hashlib.sha256("\n".join(sorted(r.content_hash for r in records.values())).encode()).hexdigest()
    with store.begin() as conn:
        previous = conn.execute(
            select(kb_sources.c.digest).where(kb_sources.c.name == source)
        ).scalar_one_or_none()
        if previous == digest:
            note(f"{source}: unchanged")
            return ImportReport(
                source, "nvd", str(path), "unchanged", errors=errors, record_count=len(records), digest=digest
            )
        stored = {
            r.id: (r.source, r.content_hash)
            for r in select_in(
                conn,
                [advisories.c.id, advisories.c.source, advisories.c.content_hash],
                advisories.c.id,
                records,
            )
        }
        owned = dict(
            conn.execute(
                select(advisories.c.id, advisories.c.content_hash).where(advisories.c.source == source)
            ).all()
        )
        foreign = [i for i, (src, _h) in stored.items() if src != source and not src.startswith("nvd")]
        for cve_id in foreign:
            errors.append(
                f"{path}: {cve_id} is already stored from {stored[cve_id][0]}; its NVD record was skipped"
            )
        usable = {i: r for i, r in records.items() if i not in foreign}
        new = [r for i, r in usable.items() if i not in stored]
        changed = [r for i, r in usable.items() if i in stored and stored[i][1] != r.content_hash]
        missing = [i for i in owned if i not in records] if path.is_dir() else []
        refusal = removal_refusal(source, mode, len(owned), len(owned) - len(missing) + len(new), limits)
        if refusal is not None:
            return ImportReport(
                source, "nvd", str(path), "refused", errors=[refusal, *errors], record_count=len(owned)
            )
        removed = missing if mode is not ImportMode.MERGE else []
        if len(missing) > len(removed):
            errors.append(
                f"{source}: merged: {len(missing) - len(removed)} stored record(s) not in this import "
                "were kept (--replace removes them)"
            )
        gone = [r.id for r in changed] + removed
        delete_in(conn, affected_packages.c.advisory_id, gone)
        delete_in(conn, advisories.c.id, gone)
        insert_rows(conn, advisories, [{**r.advisory, "source": source} for r in new + changed])
        insert_rows(conn, affected_packages, [row for r in new + changed for row in r.affected])
        version = max((str(r.advisory["modified"] or "") for r in usable.values()), default="") or None
        row = {
            "name": source,
            "kind": "nvd",
            "origin": str(path),
            "digest": digest,
            "version": version,
            "record_count": len(owned) - len(removed) + len(new),
            "imported_at": utcnow(),
            "details": {"errors": len(errors), "mode": str(mode), "kept": len(missing) - len(removed)},
        }
        upsert_row(conn, kb_sources, kb_sources.c.name, row)
    note(f"{source}: {len(new)} new, {len(changed)} changed, {len(removed)} removed")
    status = "imported" if previous is None else "updated" if new or changed or removed else "unchanged"
    return ImportReport(
        source,
        "nvd",
        str(path),
        status,
        len(new),
        len(changed),
        len(removed),
        errors,
        len(owned) - len(removed) + len(new),
        digest,
    )


# --- matching ---------------------------------------------------------------------------------------

_PRE = frozenset({"dev", "pre", "alpha", "a", "beta", "b", "rc", "cr", "preview", "snapshot", "m"})


def version_order_key(version: str) -> tuple[tuple[int, Any], ...]:
    """A generic version ordering for CPE versions (see the module docstring)."""
    parts: list[tuple[int, Any]] = []
    for token in re.findall(r"\d+|[a-z]+", version.lower()):
        if token.isdigit():
            parts.append((2, int(token)))
        else:
            parts.append((0 if token in _PRE else 1, token))
    return tuple(parts)


def _compare(a: str, b: str) -> int:
    ka, kb = list(version_order_key(a)), list(version_order_key(b))
    width = max(len(ka), len(kb))
    ka += [(1, "")] * (width - len(ka))
    kb += [(1, "")] * (width - len(kb))
    return (ka > kb) - (ka < kb)


def _criterion_matches(match: dict[str, Any], target: CpeName) -> bool:
    name = parse_cpe(str(match.get("criteria", "")))
    if name is None or (name.part, name.vendor, name.product) != (target.part, target.vendor, target.product):
        return False
    version = target.version
    for index, value in enumerate(name.fields[3:], start=3):
        if value in ("*", "-") or (index == 3 and value == version):
            continue
        if value != target.fields[index]:
            return False
    if version in ("*", "-", ""):
        # An unknown version matches only a criterion that names no version at all.
        return name.version == "*" and not any(k.startswith("version") for k in match)
    bounds: tuple[tuple[str, Callable[[int], bool]], ...] = (
        ("versionStartIncluding", lambda c: c >= 0),
        ("versionStartExcluding", lambda c: c > 0),
        ("versionEndIncluding", lambda c: c <= 0),
        ("versionEndExcluding", lambda c: c < 0),
    )
    for key, ok in bounds:
        bound = match.get(key)
        if isinstance(bound, str) and not ok(_compare(version, bound)):
            return False
    return True


@dataclass(slots=True)
class _NodeResult:
    matched: bool
    """The service satisfies the node through a vulnerable criterion naming its product."""
    unknown: list[str] = field(default_factory=list)
    """Criteria of other products the node depends on (assumed satisfied)."""


def _node(node: dict[str, Any], target: CpeName) -> _NodeResult | None:
    """None when the node names the target's product but the target does not satisfy it."""
    matches = [m for m in node.get("cpeMatch") or [] if isinstance(m, dict)]
    children = [_node(c, target) for c in node.get("children") or [] if isinstance(c, dict)]
    mine = [
        m
        for m in matches
        if (p := parse_cpe(str(m.get("criteria", "")))) and p.key == target.key and p.part == target.part
    ]
    hits = [m for m in mine if _criterion_matches(m, target)]
    others = [str(m.get("criteria")) for m in matches if m not in mine]
    operator = str(node.get("operator", "OR")).upper()
    negate = bool(node.get("negate"))
    if negate:
        return None if hits else _NodeResult(False, others)
    if operator == "AND":
        if (mine and len(hits) < len(mine)) or any(c is None for c in children):
            return None
        return _NodeResult(
            any(m.get("vulnerable") for m in hits) or any(c.matched for c in children if c), others
        )
    if any(m.get("vulnerable") for m in hits) or any(c is not None and c.matched for c in children):
        return _NodeResult(True, others)
    if mine or hits:
        return None
    return _NodeResult(False, others + [u for c in children if c for u in c.unknown])


def configuration_matches(configuration: dict[str, Any], target: CpeName) -> tuple[bool, list[str]]:
    """(does the configuration make `target` vulnerable, the other products it was assumed to need)."""
    nodes = [_node(n, target) for n in configuration.get("nodes") or [] if isinstance(n, dict)]
    operator = str(configuration.get("operator", "OR")).upper()
    if operator == "AND":
        if any(n is None for n in nodes) or not any(n.matched for n in nodes if n):
            return False, []
        return True, sorted({u for n in nodes if n and not n.matched for u in n.unknown})
    hit = any(n is not None and n.matched for n in nodes)
    return hit, []


@dataclass(frozen=True, slots=True)
class CpeHit:
    cve_id: str
    summary: str
    score: float | None
    severity_word: str | None
    vectors: list[dict[str, str]]
    references: list[str]
    conditions: list[str]
    kev: bool


class CpeMatcher:
    """CVEs whose NVD configurations make a CPE name vulnerable (one query per distinct product)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def match(self, cpe: str) -> list[CpeHit]:
        target = parse_cpe(cpe)
        if target is None:
            return []
        with self.store.connect() as conn:
            ids = [
                r.advisory_id
                for r in conn.execute(
                    select(affected_packages.c.advisory_id).where(
                        and_(
                            affected_packages.c.ecosystem == ECOSYSTEM, affected_packages.c.name == target.key
                        )
                    )
                )
            ]
            rows = select_in(conn, list(advisories.c), advisories.c.id, ids)
            kev = {r.cve_id for r in select_in(conn, [kev_entries.c.cve_id], kev_entries.c.cve_id, ids)}
        hits: list[CpeHit] = []
        for row in rows:
            if row.withdrawn:
                continue
            nvd = (row.database_specific or {}).get("nvd") or {}
            conditions: list[str] = []
            matched = False
            for configuration in nvd.get("configurations") or []:
                ok, needs = configuration_matches(configuration, target)
                if ok:
                    matched = True
                    conditions = needs
                    if not needs:
                        break
            if matched:
                specific = row.database_specific or {}
                hits.append(
                    CpeHit(
                        row.id,
                        row.summary,
                        specific.get("base_score"),
                        specific.get("severity"),
                        list(row.severity or []),
                        list(row.references or []),
                        conditions,
                        row.id in kev,
                    )
                )
        return sorted(hits, key=lambda h: (-(h.score or 0.0), h.cve_id))
