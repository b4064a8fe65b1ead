"""Knowledge-base import: detection by content, idempotency, incremental updates, errors, status."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import pytest
from sqlalchemy import func, select
from vulns_helpers import FIXTURES, OSV_DIR, make_zip, osv_files

from tianmu.core.errors import KnowledgeBaseError
from tianmu.store.database import Store
from tianmu.store.knowledge import ImportMode
from tianmu.store.schema import advisories, advisory_aliases, affected_packages, epss_scores, kev_entries
from tianmu.vulns.kb import detect_kind, import_path, kb_status


def count(store: Store, table: object) -> int:
    with store.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())  # type: ignore[arg-type]


def test_detect_kind_by_content(tmp_path: Path) -> None:
    kev = tmp_path / "catalogue.txt"
    shutil.copy(FIXTURES / "kev.json", kev)
    assert detect_kind(kev) == "kev-json"
    epss = tmp_path / "scores.bin"
    epss.write_bytes(gzip.compress((FIXTURES / "epss_scores-2025-08-25.csv").read_bytes()))
    assert detect_kind(epss) == "epss"
    assert detect_kind(OSV_DIR) == "osv"
    assert detect_kind(make_zip(tmp_path / "x.dat", osv_files())) == "osv"
    assert detect_kind(OSV_DIR / "PYSEC-2023-61.json") == "osv"
    junk = tmp_path / "junk.txt"
    junk.write_text("hello\n")
    with pytest.raises(KnowledgeBaseError, match="not an OSV, KEV or EPSS"):
        import_path(Store("sqlite:///" + str(tmp_path / "j.db")), junk)


def test_directory_import_is_multi_ecosystem_and_recursive(store: Store) -> None:
    (report,) = import_path(store, OSV_DIR)
    assert report.source == "osv:osv"  # several ecosystems: named after the directory
    assert report.status == "imported"
    assert report.record_count == 15 and report.added == 15 and not report.errors
    with store.connect() as conn:
        names = set(conn.execute(select(affected_packages.c.ecosystem, affected_packages.c.name)).all())
        yaml_row = conn.execute(select(advisories).where(advisories.c.id == "PYSEC-2021-66")).one()
    assert ("PyPI", "jinja2") in names and ("PyPI", "zope-interface") in names
    assert ("Debian", "openssl") in names and ("Alpine", "openssl") in names
    assert yaml_row.published == "2021-02-01T20:15:00Z"  # YAML timestamps stay the text written
    (again,) = import_path(store, OSV_DIR)
    assert again.status == "unchanged" and again.added == again.updated == again.removed == 0


def test_zip_import_idempotent_and_incremental(store: Store, tmp_path: Path) -> None:
    files = {f"sub/{k}": v for k, v in osv_files().items() if "GO-" in k}  # records in a subfolder
    first = make_zip(tmp_path / "all.zip", files)
    (report,) = import_path(store, first)
    assert (report.source, report.status, report.added) == ("osv:Go", "imported", 2)
    assert count(store, advisories) == 2

    (again,) = import_path(store, first)
    assert again.status == "unchanged" and again.digest == report.digest

    # New copy of the feed: one record changed, one gone, one new.
    changed = json.loads(files["sub/GO-2021-0052.json"])
    changed["affected"][0]["ranges"][0]["events"][1]["fixed"] = "1.9.0"
    changed["aliases"] = ["CVE-2020-28483"]
    new = {
        "id": "GO-2023-1737",
        "summary": "Improper handling of filenames in Content-Disposition HTTP header in gin",
        "aliases": ["CVE-2023-29401"],
        "affected": [
            {
                "package": {"ecosystem": "Go", "name": "github.com/gin-gonic/gin"},
                "ranges": [
                    {
                        "type": "SEMVER",
                        "events": [{"introduced": "1.3.1-0.20190301021747-ccb9e902956d"}, {"fixed": "1.9.1"}],
                    }
                ],
            }
        ],
    }
    second = make_zip(
        tmp_path / "all-2.zip",
        {"GO-2021-0052.json": json.dumps(changed).encode(), "GO-2023-1737.json": json.dumps(new).encode()},
    )
    # `--replace`: the new copy is authoritative, so the record gone from it is removed.
    (upd,) = import_path(store, second, mode=ImportMode.REPLACE)
    assert (upd.source, upd.status, upd.added, upd.updated, upd.removed) == ("osv:Go", "updated", 1, 1, 1)
    with store.connect() as conn:
        ids = set(conn.execute(select(advisories.c.id)).scalars())
        aliases = set(
            conn.execute(
                select(advisory_aliases.c.alias).where(advisory_aliases.c.advisory_id == "GO-2021-0052")
            ).scalars()
        )
        ranges = conn.execute(
            select(affected_packages.c.ranges).where(affected_packages.c.advisory_id == "GO-2021-0052")
        ).scalar_one()
    assert ids == {"GO-2021-0052", "GO-2023-1737"}
    assert aliases == {"CVE-2020-28483"}
    assert ranges[0]["events"][1] == {"fixed": "1.9.0"}
    assert count(store, affected_packages) == 2


def test_malformed_record_is_reported_and_the_rest_imported(store: Store, tmp_path: Path) -> None:
    files = osv_files()
    files["PYSEC-2099-1.json"] = b'{\n  "id": "PYSEC-2099-1",\n  "affected": [\n    {"package": }\n  ]\n}\n'
    files["no-id.json"] = b'{"summary": "no id here"}'
    (report,) = import_path(store, make_zip(tmp_path / "bad.zip", files))
    assert report.record_count == 14 and report.added == 14
    assert len(report.errors) == 2
    assert any(e.startswith("PYSEC-2099-1.json:4: invalid JSON") for e in report.errors), report.errors
    assert any(e.startswith("no-id.json: OSV record without an `id`") for e in report.errors), report.errors
    assert count(store, advisories) == 14


def test_record_turned_malformed_is_kept_not_deleted(store: Store, tmp_path: Path) -> None:
    files = {k: v for k, v in osv_files().items() if k.startswith("PYSEC")}
    import_path(store, make_zip(tmp_path / "a.zip", files))
    files["PYSEC-2020-102.json"] = b"{ broken"
    (report,) = import_path(store, make_zip(tmp_path / "b.zip", files))
    assert report.removed == 0 and len(report.errors) == 1
    assert count(store, advisories) == 4


def test_single_file_is_additive(store: Store, tmp_path: Path) -> None:
    import_path(
        store, make_zip(tmp_path / "all.zip", {k: v for k, v in osv_files().items() if k.startswith("GO-")})
    )
    (single,) = import_path(store, OSV_DIR / "PYSEC-2023-61.json")
    assert single.source == "osv:file:PYSEC-2023-61" and single.added == 1
    assert count(store, advisories) == 3


def test_kev_and_epss_import(store: Store, tmp_path: Path) -> None:
    (kev,) = import_path(store, FIXTURES / "kev.json")
    assert (kev.source, kev.kind, kev.status, kev.added, kev.record_count) == ("kev", "kev", "imported", 3, 3)
    gz = tmp_path / "epss_scores-2025-08-25.csv.gz"
    gz.write_bytes(gzip.compress((FIXTURES / "epss_scores-2025-08-25.csv").read_bytes()))
    (epss,) = import_path(store, gz)
    assert (epss.source, epss.added, epss.record_count) == ("epss", 4, 4)
    assert import_path(store, gz)[0].status == "unchanged"
    # A newer day's scores: one moved, one dropped, one line broken.
    text = (FIXTURES / "epss_scores-2025-08-25.csv").read_text().replace("0.01234,0.78210", "0.02000,0.80000")
    text = text.replace("CVE-2020-28483,0.00210,0.58000\n", "CVE-2020-28483,oops\n")
    newer = tmp_path / "epss_scores-2025-08-26.csv"
    newer.write_text(text)
    # `--replace`: the newer snapshot is authoritative, the dropped score goes.
    (epss2,) = import_path(store, newer, mode=ImportMode.REPLACE)
    assert (epss2.status, epss2.added, epss2.updated, epss2.removed) == ("updated", 0, 1, 1)
    assert epss2.errors and epss2.errors[0].startswith("epss_scores-2025-08-26.csv:6:")
    assert count(store, epss_scores) == 3 and count(store, kev_entries) == 3
    status = {s.name: s for s in kb_status(store)}
    assert status["kev"].version == "2025.08.25" and status["kev"].record_count == 3
    assert status["epss"].version == "v2025.03.14,2025-08-25T12:55:00Z"
    row = status["kev"].as_dict()
    assert row["name"] == "kev" and isinstance(row["imported_at"], str)
    assert epss2.as_dict()["updated"] == 1


def test_kev_csv_matches_json(store: Store, tmp_path: Path) -> None:
    data = json.loads((FIXTURES / "kev.json").read_text())
    header = (
        "cveID,vendorProject,product,vulnerabilityName,dateAdded,shortDescription,"
        "requiredAction,dueDate,knownRansomwareCampaignUse,notes,cwes"
    )
    lines = [header] + [
        ",".join(
            json.dumps(str(v.get(k, ""))) if k != "cwes" else json.dumps(", ".join(v["cwes"]))
            for k in header.split(",")
        )
        for v in data["vulnerabilities"]
    ]
    csv_path = tmp_path / "kev.csv"
    csv_path.write_text("\n".join(lines) + "\n")
    import_path(store, FIXTURES / "kev.json")
    (report,) = import_path(store, csv_path)
    assert report.kind == "kev" and report.record_count == 3
    assert (report.added, report.updated, report.removed) == (0, 0, 0)


def test_missing_path(store: Store, tmp_path: Path) -> None:
    with pytest.raises(KnowledgeBaseError, match="no such file"):
        import_path(store, tmp_path / "nope.zip")


def test_bundle_folder_imports_each_knowledge_base_on_its_own(store: Store, tmp_path: Path) -> None:
    bundle = tmp_path / "kb"
    (bundle / "osv" / "PyPI").mkdir(parents=True)
    (bundle / "osv" / "Go").mkdir(parents=True)
    (bundle / "kev").mkdir()
    shutil.copy(OSV_DIR / "PYSEC-2020-102.json", bundle / "osv" / "PyPI")
    shutil.copy(OSV_DIR / "GO-2022-0535.json", bundle / "osv" / "Go")
    shutil.copy(FIXTURES / "kev.json", bundle / "kev" / "known_exploited_vulnerabilities.json")

    reports = import_path(store, bundle)
    assert sorted(r.source for r in reports) == ["kev", "osv:Go", "osv:PyPI"]
    assert all(not r.errors for r in reports)
    assert {row.name for row in kb_status(store)} == {"kev", "osv:Go", "osv:PyPI"}


def test_advisory_tree_without_bundle_markers_is_one_collection(store: Store, tmp_path: Path) -> None:
    tree = tmp_path / "advisories" / "2020" / "07"
    tree.mkdir(parents=True)
    shutil.copy(OSV_DIR / "PYSEC-2020-102.json", tree)
    (reports,) = [import_path(store, tmp_path / "advisories")]
    assert [r.source for r in reports] == ["osv:PyPI"]
    assert reports[0].record_count == 1
