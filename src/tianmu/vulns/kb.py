"""The vulnerability knowledge base: import (offline), update (online), status.

`import_path` recognises what it is given by content, not name:

| input                                             | kind  | source name                           |
| ------------------------------------------------- | ----- | ------------------------------------- |
| OSV zip (`all.zip`; records at the root or below) | osv   | `osv:<Ecosystem>` or `osv:<label>`    |
| directory of OSV `.json`/`.yaml`/`.yml` (recursive)| osv   | `osv:<Ecosystem>` or `osv:<label>`    |
| one OSV JSON/YAML file                            | osv   | `osv:file:<file stem>`                |
| CISA KEV JSON (`catalogVersion`/`vulnerabilities`) | kev   | `kev`                                 |
| CISA KEV CSV (`cveID,vendorProject,...`)          | kev   | `kev`                                 |
| FIRST EPSS CSV, plain or gzipped                  | epss  | `epss`                                |
| NVD CVE JSON 2.0 file or folder (see `nvd.py`)    | nvd   | `nvd:file:<stem>`, `nvd:<folder>`     |

Source names. A zip or directory is a *collection*: one source. Whether records of that source
missing from a new copy are deleted is the import mode's to say (`tianmu.store.knowledge.ImportMode`):
`kb import` merges (nothing removed), `--replace` and `kb update` are authoritative (an update that would
remove most of a source is refused). KEV and EPSS follow the same rule. When one ecosystem is
common to all its records (every osv.dev per-ecosystem `all.zip`: a GHSA record in the PyPI zip may
also name npm packages, but every record names a PyPI one), the source is `osv:<Ecosystem>`; any other
collection is one source named after it, `osv:<label>` (the directory name, or the
zip's stem — its parent directory's name when the stem is `all`). A single file is additive: it is its
own source `osv:file:<stem>` so it can never delete the records of a collection.

An advisory id is stored once (the `advisories` primary key). When two sources carry the same id
(GHSA records appear in several ecosystem zips), the first import keeps it; a later source with
*different* content takes it over, and with identical content leaves it where it is.

Incremental: an import whose digest (sha256 of the file; for a directory, of its sorted record
hashes) equals a stored source's digest is skipped at once with status "unchanged". Otherwise each
record's `content_hash` (sha256 of its bytes — `modified` is unusable, the Go data has it zeroed) is
compared: new ones are inserted, changed ones replaced (with their affected and alias rows), and gone
ones deleted. Malformed records are reported (`file:line: message`) and skipped; an existing record
whose file turned malformed is kept rather than deleted, when its id can be read from the file name.
Withdrawn records are stored (the matcher ignores them), so their history stays visible. Writing the
records is `tianmu.vulns.osvstore`'s; this module recognises inputs, imports feeds and downloads.
"""

from __future__ import annotations

import gzip
import os
import shutil
import tempfile
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path

from sqlalchemy import select
from sqlalchemy import update as sql_update

from tianmu.core.errors import KnowledgeBaseError
from tianmu.store.database import Store
from tianmu.store.knowledge import (
    ImportLimits,
    ImportMode,
    ImportReport,
    KbContext,
    KbStatus,
    kb_status,
    removal_refusal,
)
from tianmu.store.schema import kb_sources
from tianmu.vulns import feeds, nvd
from tianmu.vulns.osv import (
    OSV_SUFFIXES,
    canonical_ecosystem,
)
from tianmu.vulns.osvstore import count_rows, file_digest, import_osv, kept_note, save_source, stored_digest

__all__ = [
    "DEFAULT_SOURCES",
    "ImportReport",
    "KbStatus",
    "Progress",
    "VulnKnowledgeBase",
    "detect_kind",
    "import_path",
    "kb_status",
    "source_url",
    "update",
]

Progress = Callable[[str], None]
Fetch = Callable[[str], Path]

OSV_BUCKET = "https://osv-vulnerabilities.storage.googleapis.com"
KEV_URL = "https://www.cisa.gov/sites/default/files/feeds/known_exploited_vulnerabilities.json"
EPSS_URL = "https://epss.empiricalsecurity.com/epss_scores-current.csv.gz"
DEFAULT_SOURCES = (
    "osv:PyPI",
    "osv:npm",
    "osv:Go",
    "osv:Maven",
    "osv:crates.io",
    "osv:RubyGems",
    "osv:Packagist",
    "osv:NuGet",
    "kev",
    "epss",
)


def _head_text(path: Path) -> str:
    with path.open("rb") as handle:
        head = handle.read(4096)
    return head.decode("utf-8", errors="replace").lstrip("\ufeff").lstrip()


def _is_stix(text: str) -> bool:
    """A STIX bundle's opening: JSON with `"type": "bundle"` (an OSV record has no `type`)."""
    return text.startswith("{") and '"bundle"' in text and '"type"' in text


def _holds_osv(folder: Path) -> bool:
    """A folder holds OSV records when it has a record file that is not a STIX bundle."""
    for file in folder.rglob("*"):
        if not file.is_file() or file.suffix.lower() not in OSV_SUFFIXES:
            continue
        if file.suffix.lower() != ".json":
            return True
        try:
            text = _head_text(file)
        except OSError:
            continue
        if text.startswith(("{", "[")) and not _is_stix(text):
            return True
    return False


def detect_kind(path: Path) -> str:
    """`osv`, `kev-json`, `kev-csv`, `epss` or `nvd`, judged from the content (names only break ties)."""
    if nvd.is_nvd(path):
        return "nvd"
    if path.is_dir():
        # Only a folder of OSV records: a folder of intel feeds (a STIX bundle and a list) is not one.
        if _holds_osv(path):
            return "osv"
        raise KnowledgeBaseError(f"{path}: no OSV record file in this folder")
    if zipfile.is_zipfile(path):
        return "osv"
    with path.open("rb") as handle:
        head = handle.read(65536)
    if head[:2] == b"\x1f\x8b":
        with gzip.open(path, "rb") as handle:
            head = handle.read(4096)
    text = head.decode("utf-8", errors="replace").lstrip("\ufeff").lstrip()
    first = text.split("\n", 1)[0].strip().lower()
    if first.startswith("#model_version") or first.startswith("cve,epss"):
        return "epss"
    # JSON first: a minified KEV catalogue is one line holding both `cveID` and `vendorProject`.
    if text.startswith("{") and '"catalogVersion"' in text and '"vulnerabilities"' in text:
        return "kev-json"
    if not text.startswith(("{", "[")) and (
        first.startswith("cveid,") or ("cveid" in first and "vendorproject" in first)
    ):
        return "kev-csv"
    if _is_stix(text):
        raise KnowledgeBaseError(f"{path}: a STIX bundle, not an OSV record")
    if text.startswith(("{", "[")) or path.suffix.lower() in (".yaml", ".yml"):
        return "osv"
    raise KnowledgeBaseError(f"{path}: not an OSV, KEV or EPSS file")


def import_path(
    store: Store,
    path: str | Path,
    *,
    progress: Progress | None = None,
    source: str | None = None,
    mode: ImportMode = ImportMode.MERGE,
    limits: ImportLimits | None = None,
) -> list[ImportReport]:
    """Import one file or directory into the knowledge base (see the module docstring).

    `source` overrides the OSV source name (`update()` passes `osv:<Ecosystem>` for what it downloads).
    `mode`: what the import may remove from a source it already holds (default: nothing).
    """
    path = Path(path)
    limits = limits or ImportLimits()
    if not path.exists():
        raise KnowledgeBaseError(f"{path}: no such file or directory")
    if path.is_dir() and source is None and _is_bundle(path):
        reports: list[ImportReport] = []
        for child in sorted(path.iterdir()):
            if child.is_dir() or child.suffix.lower() in _FEED_OR_RECORD_SUFFIXES:
                try:
                    reports.extend(import_path(store, child, progress=progress, mode=mode, limits=limits))
                except KnowledgeBaseError as exc:
                    # One unreadable child of a bundle must not cost the others.
                    reports.append(
                        ImportReport(child.name, "vulns", str(child), "skipped", errors=[str(exc)])
                    )
        return reports
    kind = detect_kind(path)
    note = progress or (lambda _msg: None)
    if kind == "osv":
        return [import_osv(store, path, note, source, mode, limits)]
    if kind == "nvd":
        return [nvd.import_nvd(store, path, note, mode=mode, limits=limits)]
    return [_import_feed(store, path, kind, note, mode, limits)]


_FEED_OR_RECORD_SUFFIXES = (".json", ".yaml", ".yml", ".csv", ".gz", ".zip")
_BUNDLE_FOLDERS = frozenset({"osv", "kev", "epss", "nvd"})


def _is_bundle(path: Path) -> bool:
    """A folder of knowledge bases (`osv/PyPI/`, `osv/Go/`, `kev/...json`) rather than one collection.

    It is a bundle when no OSV record sits directly in it and it visibly holds several knowledge bases:
    a KEV/EPSS file or an OSV zip, or subfolders named after OSV ecosystems or `osv`/`kev`/`epss`. Then
    each subfolder and file is imported on its own, so each ecosystem keeps its own source name and a
    KEV or EPSS file is read as a feed instead of failing as a malformed advisory. Any other folder (an
    advisory-database tree of year/month folders, say) stays one collection, read recursively.
    """
    marked = False
    for child in path.iterdir():
        if child.is_dir():
            name = child.name.lower()
            marked = marked or name in _BUNDLE_FOLDERS or canonical_ecosystem(name) != name.strip()
        elif child.suffix.lower() in _FEED_OR_RECORD_SUFFIXES:
            try:
                kind = detect_kind(child)
            except (KnowledgeBaseError, OSError):
                continue
            if kind == "osv" and not zipfile.is_zipfile(child):
                return False
            marked = True
    return marked


def _import_feed(
    store: Store, path: Path, kind: str, note: Progress, mode: ImportMode, limits: ImportLimits
) -> ImportReport:
    source = "epss" if kind == "epss" else "kev"
    digest = file_digest(path)
    with store.connect() as conn:
        previous = stored_digest(conn, source, mode)
        if previous == digest:
            count = conn.execute(
                select(kb_sources.c.record_count).where(kb_sources.c.name == source)
            ).scalar()
            note(f"{source}: unchanged")
            return ImportReport(
                source, source, str(path), "unchanged", record_count=int(count or 0), digest=digest
            )
    reader = {"epss": feeds.read_epss, "kev-json": feeds.read_kev_json, "kev-csv": feeds.read_kev_csv}[kind]
    data = reader(path, limits)
    if not data.rows:
        detail = f": {data.errors[0]}" if data.errors else ""
        raise KnowledgeBaseError(f"{path}: no {source} entries could be read{detail}")
    table = feeds.EPSS_TABLE if source == "epss" else feeds.KEV_TABLE
    with store.begin() as conn:
        now = count_rows(conn, table)
        wanted = {row["cve_id"] for row in data.rows}
        refusal = removal_refusal(source, mode, now, len(wanted), limits)
        if refusal is not None:
            return ImportReport(
                source, source, str(path), "refused", errors=[refusal, *data.errors], record_count=now
            )
        note(f"{source}: writing {len(data.rows)} entries")
        added, changed, removed = feeds.sync_table(
            conn, table, data.rows, remove=mode is not ImportMode.MERGE
        )
        count = count_rows(conn, table)
        save_source(
            conn,
            source,
            source,
            str(path),
            digest,
            data.version,
            count,
            {"errors": len(data.errors), "mode": str(mode), "kept": count - len(wanted)},
        )
    status = "imported" if previous is None else ("updated" if added or changed or removed else "unchanged")
    errors = data.errors + kept_note(source, mode, count - len(wanted))
    return ImportReport(source, source, str(path), status, added, changed, removed, errors, count, digest)


def source_url(source: str) -> str:
    """The official download URL of a source name (`osv:<Ecosystem>`, `kev`, `epss`)."""
    if source == "kev":
        return KEV_URL
    if source == "epss":
        return EPSS_URL
    if source.startswith("osv:") and source.count(":") == 1:
        ecosystem = urllib.parse.quote(source[4:], safe="")
        return f"{OSV_BUCKET}/{ecosystem}/all.zip"
    raise KnowledgeBaseError(
        f"unknown knowledge-base source {source!r} (expected osv:<Ecosystem>, kev or epss)"
    )


def download_to(directory: Path, *, timeout: float = 120.0) -> Fetch:
    """A fetcher that downloads a URL into a temporary file under `directory` (urllib, no extra deps)."""

    def fetch(url: str) -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        suffix = "".join(Path(url.rsplit("/", 1)[-1]).suffixes) or ".bin"
        descriptor, name = tempfile.mkstemp(dir=directory, prefix="kb-", suffix=suffix)
        target = Path(name)
        request = urllib.request.Request(url, headers={"User-Agent": "tianmu-kb-update"})
        try:
            with (
                os.fdopen(descriptor, "wb") as handle,
                urllib.request.urlopen(request, timeout=timeout) as response,
            ):
                shutil.copyfileobj(response, handle, 1 << 20)
        except BaseException:
            target.unlink(missing_ok=True)
            raise
        return target

    return fetch


def update(
    store: Store,
    *,
    sources: Sequence[str] = DEFAULT_SOURCES,
    fetch: Fetch | None = None,
    data_dir: Path | None = None,
    progress: Progress | None = None,
    replace: bool = False,
    limits: ImportLimits | None = None,
) -> list[ImportReport]:
    """Download each source from its official URL and import it; one report per source.

    An official full copy is authoritative (records gone from it are removed), but one that would
    remove most of a source is refused for that source unless `replace` (see `removal_refusal`).

    `fetch(url) -> path` is injectable (tests serve fixtures from a local HTTP server). The default
    downloads with urllib into `data_dir/downloads` (or the system temp dir) and deletes the file after
    the import. A source that cannot be downloaded or imported gets a report with status `failed` and
    the reason in `errors`; the other sources still go ahead.
    """
    own_fetch = fetch is None
    base = Path(data_dir) if data_dir is not None else Path(tempfile.gettempdir()) / "tianmu"
    fetcher = fetch or download_to(base / "downloads")
    note = progress or (lambda _msg: None)
    reports: list[ImportReport] = []
    for source in sources:
        url = source_url(source)
        note(f"{source}: downloading {url}")
        downloaded: Path | None = None
        try:
            downloaded = fetcher(url)
            name = source if source.startswith("osv:") else None
            mode = ImportMode.REPLACE if replace else ImportMode.OFFICIAL
            imported = import_path(
                store, downloaded, progress=progress, source=name, mode=mode, limits=limits
            )
            for report in imported:
                report.origin = url
                reports.append(report)
        except (OSError, KnowledgeBaseError, ValueError) as exc:
            reports.append(
                ImportReport(source, source.split(":", 1)[0], url, "failed", errors=[f"{url}: {exc}"])
            )
        finally:
            if own_fetch and downloaded is not None:
                downloaded.unlink(missing_ok=True)
    with store.begin() as conn:
        for report in reports:
            if report.status not in ("failed", "refused", "skipped"):
                # Record the URL, not the temporary file it went through.
                conn.execute(
                    sql_update(kb_sources)
                    .where(kb_sources.c.name == report.source)
                    .values(origin=report.origin)
                )
    return reports


class VulnKnowledgeBase:
    """The vulnerability knowledge base as `tianmu kb` sees it (see `tianmu.store.knowledge`)."""

    name = "vulns"
    bundle_folders: frozenset[str] = _BUNDLE_FOLDERS
    default_sources: tuple[str, ...] = DEFAULT_SOURCES

    def claims(self, path: Path) -> bool:
        try:
            detect_kind(path)
        except (KnowledgeBaseError, OSError):
            return False
        return True

    def import_path(self, ctx: KbContext, path: Path) -> list[ImportReport]:
        return import_path(ctx.store, path, progress=ctx.progress, mode=ctx.import_mode, limits=ctx.limits)

    def handles_source(self, source: str) -> bool:
        return source in ("kev", "epss") or (source.startswith("osv:") and source.count(":") == 1)

    def update(self, ctx: KbContext, sources: Sequence[str]) -> list[ImportReport]:
        return update(
            ctx.store,
            sources=sources,
            data_dir=ctx.home,
            progress=ctx.progress,
            replace=ctx.replace,
            limits=ctx.limits,
        )
