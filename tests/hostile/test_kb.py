"""Hostile knowledge-base imports: no crash, no silent shrinking, each bad record reported and isolated.

Every input is made here (issue 21, "Knowledge-base imports"): NaN EPSS scores, a MISP attribute that
is a string, OSV and STIX JSON nested 100,000 deep, a ClamAV `.hdb` whose size overflows the store,
YARA files whose rules fail; records over the size limit (with the limit set low), a partial copy of a
source imported after the full one, and a folder of intel feeds that the vulnerability base used to
claim as OSV.
"""

from __future__ import annotations

import io
import json
import tarfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select
from typer.testing import CliRunner

from tianmu.cli.main import app
from tianmu.core.errors import ConfigError, KnowledgeBaseError
from tianmu.intel import lists
from tianmu.intel.kb import IntelKnowledgeBase
from tianmu.malware import clamav
from tianmu.road.knowledge import import_any
from tianmu.store.database import Store
from tianmu.store.knowledge import (
    ImportLimits,
    ImportMode,
    ImportReport,
    KbContext,
    json_depth_exceeds,
    kb_status,
)
from tianmu.store.schema import advisories, epss_scores, intel_indicators, kev_entries
from tianmu.vulns.kb import detect_kind, update

DEEP = 100_000


@pytest.fixture()
def store(tmp_path: Path) -> Iterator[Store]:
    db = Store("sqlite:///" + str(tmp_path / "kb.db"))
    yield db
    db.close()


@pytest.fixture()
def ctx(store: Store, tmp_path: Path) -> KbContext:
    home = tmp_path / "home"
    home.mkdir()
    return KbContext(store=store, home=home)


def count(store: Store, table: object, *where: object) -> int:
    with store.connect() as conn:
        query = select(func.count()).select_from(table).where(*where)  # type: ignore[arg-type]
        return int(conn.execute(query).scalar_one())


def osv(vid: str, ecosystem: str = "PyPI", **extra: object) -> dict[str, object]:
    return {
        "id": vid,
        "modified": "2024-01-01T00:00:00Z",
        "affected": [
            {
                "package": {"ecosystem": ecosystem, "name": f"pkg-{vid.lower()}"},
                "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "2"}]}],
            }
        ],
        **extra,
    }


def osv_zip(path: Path, records: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, blob in records.items():
            archive.writestr(name, blob)
    return path


def pypi_zip(path: Path, ids: range) -> Path:
    return osv_zip(path, {f"PYSEC-{i}.json": json.dumps(osv(f"PYSEC-{i}")).encode() for i in ids})


# --- one bad record must not cost the import ---------------------------------------------------------


def test_epss_nan_and_out_of_range_scores_are_reported_not_stored(ctx: KbContext, tmp_path: Path) -> None:
    feed = tmp_path / "epss.csv"
    feed.write_text(
        "#model_version:v1,score_date:2025-01-01\ncve,epss,percentile\n"
        "CVE-2020-0001,NaN,0.5\nCVE-2020-0002,0.1,inf\nCVE-2020-0003,2,0.1\nCVE-2020-0004,0.1,0.2\n"
    )
    (report,) = import_any(ctx, feed)
    assert report.record_count == 1 and count(ctx.store, epss_scores) == 1
    assert [e.split(":")[1] for e in report.errors] == ["3", "4", "5"], report.errors
    assert "'NaN' is not a number between 0 and 1" in report.errors[0]


def test_epss_line_over_the_limit_is_skipped_and_reported(store: Store, tmp_path: Path) -> None:
    feed = tmp_path / "epss.csv"
    feed.write_text("cve,epss,percentile\nCVE-2020-0001," + "1" * 5000 + ",0.5\nCVE-2020-0002,0.1,0.2\n")
    ctx = KbContext(store=store, home=tmp_path, limits=ImportLimits(max_line_bytes=1000))
    (report,) = import_any(ctx, feed)
    assert report.record_count == 1
    assert report.errors == ["epss.csv:2: line over 1000 characters skipped (limit max_line_bytes)"]


def test_misp_attribute_that_is_a_string_is_reported_and_the_rest_kept(
    ctx: KbContext, tmp_path: Path
) -> None:
    feed = tmp_path / "misp-feed"
    feed.mkdir()
    (feed / "manifest.json").write_text(json.dumps({"e1": {}, "e2": {}}))
    good = {"type": "ip-dst", "value": "198.51.100.7", "to_ids": True}
    event = {"info": "x", "Attribute": ["oops", good], "Object": ["bad", {"Attribute": "nope"}], "Tag": "t"}
    (feed / "e1.json").write_text(json.dumps({"Event": event}))
    (feed / "e2.json").write_text(json.dumps({"Event": "not an event"}))
    (report,) = import_any(ctx, feed)
    assert report.record_count == 1 and count(ctx.store, intel_indicators) == 1
    text = "\n".join(report.errors)
    assert "e1.json: Attribute[0]: not an object (str), skipped" in text
    assert "e1.json: Object[0]: not an object (str), skipped" in text
    assert "e2.json: cannot read event: `Event` is not an object" in text


def test_deeply_nested_osv_record_is_refused_with_the_limit(ctx: KbContext, tmp_path: Path) -> None:
    deep = "[" * DEEP + "]" * DEEP
    folder = tmp_path / "osv-PyPI"
    folder.mkdir()
    (folder / "PYSEC-1.json").write_text(json.dumps(osv("PYSEC-1")))
    (folder / "PYSEC-2.json").write_text('{"id": "PYSEC-2", "details": ' + deep + "}")
    (report,) = import_any(ctx, folder)
    assert report.source == "osv:PyPI" and report.record_count == 1
    assert report.errors == [
        "PYSEC-2.json: record refused: JSON nested deeper than 64 levels (limit max_depth)"
    ]
    # Alone, it is a located error, not a RecursionError.
    with pytest.raises(KnowledgeBaseError, match="nested deeper than 64 levels"):
        import_any(ctx, folder / "PYSEC-2.json")


def test_deeply_nested_stix_bundle_is_refused_with_the_limit(ctx: KbContext, tmp_path: Path) -> None:
    bundle = tmp_path / "deep-bundle.json"
    bundle.write_text('{"type": "bundle", "id": "bundle--1", "objects": [' + "[" * DEEP + "]" * DEEP + "]}")
    (report,) = import_any(ctx, bundle)
    assert report.source == "stix:deep-bundle" and report.record_count == 0
    assert report.errors == [f"{bundle}: JSON nested deeper than 64 levels (limit max_depth)"]


def test_json_depth_check_ignores_brackets_inside_strings() -> None:
    assert not json_depth_exceeds(b'{"a": "[[[[[[[[\\"[[[["}', 2)
    assert json_depth_exceeds(b'{"a": [[{"b": []}]]}', 3)
    assert not json_depth_exceeds(b'{"a": [[{"b": []}]]}', 5)


def test_clamav_hdb_with_a_huge_size_field_is_reported(ctx: KbContext, tmp_path: Path) -> None:
    hdb = tmp_path / "big.hdb"
    hdb.write_text(
        "44d88612fea8a8f36de82e1278abb02f:" + "9" * 400 + ":Huge.Size\n"
        "44d88612fea8a8f36de82e1278abb02e:68:Good.Size\n"
    )
    (report,) = import_any(ctx, hdb)
    assert report.record_count == 1
    assert len(report.errors) == 1 and "big.hdb:1: file size 999" in report.errors[0]
    assert "over 2**63 - 1" in report.errors[0]


def test_bad_yara_rules_never_give_negative_counts(ctx: KbContext, tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.yar"
    garbage.write_text("not rules at all {\n")  # declares no rule and fails once: was 0 - 1 = -1
    (report,) = import_any(ctx, garbage)
    assert report.record_count == 0 and report.errors
    mixed = tmp_path / "mixed.yar"
    mixed.write_text("rule fine { condition: true }\nrule bad { condition: nosuch }\n")
    (report,) = import_any(ctx, mixed)
    assert report.record_count == 1 and len(report.errors) == 1
    counts = {s.name: s.record_count for s in kb_status(ctx.store)}
    assert counts == {"yara:garbage": 0, "yara:mixed": 1}


# --- bounded records ---------------------------------------------------------------------------------


def test_osv_record_over_the_size_limit_is_refused_unread(store: Store, tmp_path: Path) -> None:
    big = json.dumps(osv("PYSEC-2", summary="x" * 5000)).encode()
    archive = osv_zip(
        tmp_path / "all.zip", {"PYSEC-1.json": json.dumps(osv("PYSEC-1")).encode(), "PYSEC-2.json": big}
    )
    ctx = KbContext(store=store, home=tmp_path, limits=ImportLimits(max_record_bytes=2000))
    (report,) = import_any(ctx, archive)
    assert report.record_count == 1
    assert report.errors == [
        f"PYSEC-2.json: record refused: {len(big)} bytes, over the limit of 2000 (max_record_bytes)"
    ]


def test_osv_field_over_the_field_limit_is_cut_and_reported(store: Store, tmp_path: Path) -> None:
    record = tmp_path / "PYSEC-9.json"
    record.write_text(json.dumps(osv("PYSEC-9", summary="s" * 300, details="d" * 50)))
    ctx = KbContext(store=store, home=tmp_path, limits=ImportLimits(max_field_chars=100))
    (report,) = import_any(ctx, record)
    assert report.errors == [
        "PYSEC-9.json: PYSEC-9: summary: 300 characters cut to 100 (limit max_field_chars)"
    ]
    with store.connect() as conn:
        summary = conn.execute(select(advisories.c.summary)).scalar_one()
    assert summary == "s" * 100


# --- a partial import never silently shrinks a source -------------------------------------------------


def test_partial_osv_import_merges_and_says_what_it_kept(ctx: KbContext, tmp_path: Path) -> None:
    import_any(ctx, pypi_zip(tmp_path / "full.zip", range(10)))
    partial = tmp_path / "demo" / "osv" / "PyPI"
    partial.mkdir(parents=True)
    changed = osv("PYSEC-1", summary="changed")
    (partial / "PYSEC-1.json").write_text(json.dumps(changed))
    (partial / "PYSEC-99.json").write_text(json.dumps(osv("PYSEC-99")))
    (report,) = import_any(ctx, partial)
    assert (report.source, report.added, report.updated, report.removed) == ("osv:PyPI", 1, 1, 0)
    assert report.record_count == 11 and count(ctx.store, advisories) == 11
    assert report.errors == [
        "osv:PyPI: merged: 9 stored record(s) not in this import were kept (--replace removes them)"
    ]
    # --replace makes the same copy authoritative, even though its digest is the one merged before.
    replace = KbContext(store=ctx.store, home=ctx.home, replace=True)
    (authoritative,) = import_any(replace, partial)
    assert (authoritative.removed, authoritative.record_count) == (9, 2)
    assert count(ctx.store, advisories) == 2


def test_partial_kev_import_keeps_the_catalogue(ctx: KbContext, tmp_path: Path) -> None:
    def kev(path: Path, ids: range) -> Path:
        items = [{"cveID": f"CVE-2024-{i:04d}", "vendorProject": "v", "product": "p"} for i in ids]
        path.write_text(json.dumps({"catalogVersion": "1", "vulnerabilities": items}))
        return path

    import_any(ctx, kev(tmp_path / "full.json", range(100)))
    (report,) = import_any(ctx, kev(tmp_path / "demo.json", range(5)))
    assert (report.removed, report.record_count) == (0, 100)
    assert count(ctx.store, kev_entries) == 100


def test_official_update_that_would_remove_most_of_a_source_is_refused(store: Store, tmp_path: Path) -> None:
    full, truncated = pypi_zip(tmp_path / "full.zip", range(10)), pypi_zip(tmp_path / "cut.zip", range(3))
    served = [full]

    def fetch(url: str) -> Path:
        return served[0]

    (first,) = update(store, sources=["osv:PyPI"], fetch=fetch)
    assert first.record_count == 10
    served[0] = truncated
    (refused,) = update(store, sources=["osv:PyPI"], fetch=fetch)
    assert (refused.status, refused.record_count) == ("refused", 10)
    assert refused.errors[0].startswith("osv:PyPI: refused: this copy would remove 7 of its 10 records")
    assert "records now 10, after 3" in refused.errors[0]
    assert count(store, advisories) == 10
    (forced,) = update(store, sources=["osv:PyPI"], fetch=fetch, replace=True)
    assert (forced.status, forced.removed, forced.record_count) == ("updated", 7, 3)


def test_official_update_removing_a_few_withdrawn_records_goes_ahead(store: Store, tmp_path: Path) -> None:
    served = [pypi_zip(tmp_path / "a.zip", range(10))]
    update(store, sources=["osv:PyPI"], fetch=lambda url: served[0])
    served[0] = pypi_zip(tmp_path / "b.zip", range(1, 10))
    (report,) = update(store, sources=["osv:PyPI"], fetch=lambda url: served[0])
    assert (report.status, report.removed, report.record_count) == ("updated", 1, 9)


def test_partial_intel_feed_merges_by_default(ctx: KbContext, tmp_path: Path) -> None:
    feed = tmp_path / "blocklist.txt"
    feed.write_text("".join(f"bad-{i}.example\n" for i in range(10)))
    intel = IntelKnowledgeBase()
    intel.import_path(ctx, feed)
    feed.write_text("bad-0.example\nnew.example\n")
    reports: list[ImportReport] = intel.import_path(ctx, feed)
    assert [(r.added, r.removed, r.record_count) for r in reports] == [(1, 0, 11)]
    assert reports[0].errors == [
        "list:blocklist: merged: 9 stored record(s) not in this import were kept (--replace removes them)"
    ]
    replace = KbContext(store=ctx.store, home=ctx.home, replace=True)
    (authoritative,) = IntelKnowledgeBase().import_path(replace, feed)
    assert (authoritative.removed, authoritative.record_count) == (9, 2)


def test_partial_malware_import_merges_rules_by_file_and_hashes(ctx: KbContext, tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    rules.mkdir()
    for name in ("a", "b", "c"):
        (rules / f"{name}.yar").write_text(f"rule r_{name} {{ condition: false }}\n")
    hashes = rules / "bad.md5"
    hashes.write_text("".join(f"{i:032x} sample-{i}\n" for i in range(1, 5)))
    import_any(ctx, rules)
    for name in ("b", "c"):
        (rules / f"{name}.yar").unlink()
    (rules / "a.yar").write_text("rule r_a { condition: false }\nrule r_a2 { condition: false }\n")
    hashes.write_text(f"{1:032x} sample-1\n")
    by_source = {r.source: r for r in import_any(ctx, rules)}
    assert by_source["yara:rules"].record_count == 4  # a.yar now 2 rules, b and c kept
    assert by_source["hashes:bad"].record_count == 4
    assert "2 stored record(s) not in this import were kept" in by_source["yara:rules"].errors[-1]
    replace = KbContext(store=ctx.store, home=ctx.home, replace=True)
    by_source = {r.source: r for r in import_any(replace, rules)}
    assert (by_source["yara:rules"].record_count, by_source["hashes:bad"].record_count) == (2, 1)


def test_import_mode_of_the_context() -> None:
    assert KbContext(store=None, home=Path()).import_mode is ImportMode.MERGE  # type: ignore[arg-type]
    assert KbContext(store=None, home=Path(), replace=True).import_mode is ImportMode.REPLACE  # type: ignore[arg-type]


# --- a folder of intel feeds is intel's ---------------------------------------------------------------


def test_folder_of_stix_bundle_and_plain_list_goes_to_the_intel_base(ctx: KbContext, tmp_path: Path) -> None:
    folder = tmp_path / "intel"
    folder.mkdir()
    (folder / "partner.json").write_text(
        json.dumps(
            {
                "type": "bundle",
                "id": "bundle--5d0092c5-5f74-4287-9642-33f4c354e56d",
                "objects": [
                    {
                        "type": "indicator",
                        "spec_version": "2.1",
                        "id": "indicator--8e2e2d2b-17d4-4cbf-938f-98ee46b3cd3f",
                        "created": "2024-01-01T00:00:00.000Z",
                        "modified": "2024-01-01T00:00:00.000Z",
                        "pattern": "[domain-name:value = 'c2.example']",
                        "pattern_type": "stix",
                        "valid_from": "2024-01-01T00:00:00Z",
                    }
                ],
            }
        )
    )
    (folder / "blocklist.txt").write_text("203.0.113.9\n")
    (folder / "README.md").write_text("# feeds\n")
    reports = import_any(ctx, folder)
    assert sorted(r.source for r in reports) == ["list:blocklist", "stix:partner"]
    assert count(ctx.store, advisories) == 0
    # And the vulnerability base no longer takes a STIX bundle, or a folder of them, for OSV.
    with pytest.raises(KnowledgeBaseError):
        detect_kind(folder)
    with pytest.raises(KnowledgeBaseError, match="STIX bundle"):
        detect_kind(folder / "partner.json")


# --- more of the same causes ----------------------------------------------------------------------------


def test_yaml_alias_bomb_in_an_osv_record_is_refused(ctx: KbContext, tmp_path: Path) -> None:
    folder = tmp_path / "advisories"
    folder.mkdir()
    (folder / "PYSEC-1.json").write_text(json.dumps(osv("PYSEC-1")))
    levels = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    levels += [f"a{i}: &a{i} [*a{i - 1}, *a{i - 1}, *a{i - 1}, *a{i - 1}]" for i in range(1, 20)]
    (folder / "PYSEC-2.yaml").write_text("id: PYSEC-2\ndatabase_specific:\n  " + "\n  ".join(levels) + "\n")
    (report,) = import_any(ctx, folder)
    assert report.record_count == 1
    assert report.errors == [
        "PYSEC-2.yaml: record refused: YAML aliases (`*name`) are not allowed in an OSV record"
    ]


def test_one_unreadable_part_of_a_bundle_does_not_cost_the_others(ctx: KbContext, tmp_path: Path) -> None:
    bundle = tmp_path / "kb"
    (bundle / "kev").mkdir(parents=True)
    (bundle / "kev" / "broken.json").write_text('{"catalogVersion": "1", "vulnerabilities": "none"}')
    (bundle / "osv").mkdir()
    (bundle / "osv" / "x.json").write_text('{"type": "bundle", "id": "bundle--1", "objects": []}')
    (bundle / "yara").mkdir()
    (bundle / "yara" / "r.yar").write_text("rule r { condition: false }\n")
    reports = {r.source: r for r in import_any(ctx, bundle)}
    assert reports["yara:kb"].record_count == 1
    assert reports["broken.json"].status == "skipped"
    assert "not a KEV catalogue" in reports["broken.json"].errors[0]
    assert reports["osv"].status == "skipped"
    assert reports["osv"].errors == [f"{bundle / 'osv'}: no OSV record file in this folder"]


def test_overlong_intel_line_and_csv_cell_are_reported(ctx: KbContext, tmp_path: Path) -> None:
    plain = tmp_path / "block.txt"
    plain.write_text("203.0.113.1\n" + "a" * (lists.MAX_LINE + 10) + "\n203.0.113.2\n")
    (report,) = IntelKnowledgeBase().import_path(ctx, plain)
    assert report.record_count == 2
    assert report.errors == [f"{plain}:2: line over {lists.MAX_LINE} characters skipped"]
    table = tmp_path / "iocs.csv"
    table.write_text("value,description\n203.0.113.3,ok\n203.0.113.4," + "d" * 200_000 + "\n203.0.113.5,ok\n")
    (report,) = IntelKnowledgeBase().import_path(ctx, table)
    assert report.record_count >= 2 and any("unreadable row" in e for e in report.errors), report.errors


def test_clamav_container_member_over_the_limit_is_left_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(clamav, "MAX_MEMBER", 100)
    body = io.BytesIO()
    with tarfile.open(fileobj=body, mode="w:gz") as tar:
        for name, text in (("big.hdb", "x" * 200), ("ok.hdb", "44d88612fea8a8f36de82e1278abb02f:68:Ok\n")):
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    cld = tmp_path / "local.cld"
    cld.write_bytes(b"ClamAV-VDB:x:1:1:1::::".ljust(512, b" ") + body.getvalue())
    sigs = clamav.read_cvd(cld)
    assert [h.name for h in sigs.hashes] == ["Ok"]
    assert sigs.errors == ["local.cld/big.hdb: 200 bytes, over the limit of 100: left out"]


def test_misp_manifest_cannot_name_files_outside_the_feed(ctx: KbContext, tmp_path: Path) -> None:
    outside = tmp_path / "secret.json"
    attribute = {"type": "ip-dst", "value": "198.51.100.8", "to_ids": True}
    outside.write_text(json.dumps({"Event": {"info": "not the feed's", "Attribute": [attribute]}}))
    feed = tmp_path / "feed"
    feed.mkdir()
    (feed / "manifest.json").write_text(json.dumps({"../secret": {}}))
    (report,) = import_any(ctx, feed)
    assert report.record_count == 0
    assert report.errors == [
        f"{feed / 'manifest.json'}: event '../secret' is not a plain event uuid, skipped"
    ]


def test_osv_range_event_that_is_not_kind_and_version_is_refused(ctx: KbContext, tmp_path: Path) -> None:
    record = osv("PYSEC-7")
    record["affected"][0]["ranges"][0]["events"] = [{"introduced": {"deep": 1}}]  # type: ignore[index]
    folder = tmp_path / "recs"
    folder.mkdir()
    (folder / "PYSEC-7.json").write_text(json.dumps(record))
    (folder / "PYSEC-8.json").write_text(json.dumps(osv("PYSEC-8")))
    (report,) = import_any(ctx, folder)
    assert report.record_count == 1
    assert report.errors == ["PYSEC-7.json: PYSEC-7: affected[0] has an event that is not {kind: version}"]


def test_limits_come_from_the_environment() -> None:
    limits = ImportLimits.from_environment(
        {"TIANMU_KB_MAX_DEPTH": "8", "TIANMU_KB_MAX_REMOVED_FRACTION": "0.25"}
    )
    assert (limits.max_depth, limits.max_removed_fraction, limits.max_record_bytes) == (8, 0.25, 16 << 20)
    with pytest.raises(ConfigError, match="TIANMU_KB_MAX_RECORD_BYTES='lots'"):
        ImportLimits.from_environment({"TIANMU_KB_MAX_RECORD_BYTES": "lots"})


def test_cli_import_merges_and_replace_is_authoritative(tmp_path: Path) -> None:
    env = {"TIANMU_HOME": str(tmp_path / "home"), "TIANMU_DATABASE_URL": ""}
    runner = CliRunner()
    full, part = pypi_zip(tmp_path / "full.zip", range(6)), pypi_zip(tmp_path / "part.zip", range(2))
    assert runner.invoke(app, ["kb", "import", str(full)], env=env).exit_code == 0
    merged = runner.invoke(app, ["kb", "import", str(part), "--json"], env=env)
    assert merged.exit_code == 0, merged.output
    (row,) = json.loads(merged.stdout)
    assert (row["removed"], row["record_count"]) == (0, 6)
    replaced = runner.invoke(app, ["kb", "import", str(part), "--replace", "--json"], env=env)
    (row,) = json.loads(replaced.stdout)
    assert (row["removed"], row["record_count"]) == (4, 2)
    deep = tmp_path / "deep.json"
    deep.write_text('{"id": "PYSEC-99", "details": ' + "[" * 20 + "]" * 20 + "}")
    refused = runner.invoke(app, ["kb", "import", str(deep)], env={**env, "TIANMU_KB_MAX_DEPTH": "8"})
    assert refused.exit_code == 2 and "nested deeper than 8 levels" in refused.output
    assert "Traceback" not in refused.output


def test_signature_file_over_the_document_limit_is_refused(store: Store, tmp_path: Path) -> None:
    hashes = tmp_path / "many.md5"
    hashes.write_text("".join(f"{i:032x} sample\n" for i in range(1, 200)))
    ctx = KbContext(store=store, home=tmp_path, limits=ImportLimits(max_document_bytes=1000))
    with pytest.raises(KnowledgeBaseError, match=r"over the limit of 1000 \(max_document_bytes\)"):
        import_any(ctx, hashes)
