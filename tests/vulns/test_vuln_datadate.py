"""`kb status` tells the data date of an OSV import honestly: sentinel dates (Go's zeroed `modified`)
are no date, and the version says which date it shows and how much of the data has one."""

from __future__ import annotations

import json
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import pytest
from vulns_helpers import SHARED_DATA

from tianmu.store.database import Store
from tianmu.store.knowledge import kb_status
from tianmu.vulns.datadate import real_date
from tianmu.vulns.kb import import_path

ZERO = "0001-01-01T00:00:00Z"
NOW = datetime(2026, 12, 1, tzinfo=UTC)


def _record(vid: str, modified: str | None, published: str | None) -> bytes:
    record: dict[str, object] = {
        "id": vid,
        "affected": [
            {
                "package": {"name": "example.com/m", "ecosystem": "Go"},
                "ranges": [{"type": "SEMVER", "events": [{"introduced": "0"}, {"fixed": "1.0.1"}]}],
            }
        ],
    }
    if modified is not None:
        record["modified"] = modified
    if published is not None:
        record["published"] = published
    return json.dumps(record).encode()


def _zip(path: Path, records: dict[str, tuple[str | None, str | None]], stamp: tuple[int, ...]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for vid, (modified, published) in records.items():
            archive.writestr(
                zipfile.ZipInfo(f"{vid}.json", date_time=stamp), _record(vid, modified, published)
            )
    return path


def _version(store: Store) -> str | None:
    (status,) = [s for s in kb_status(store) if s.name == "osv:Go"]
    return status.version


def test_go_style_zeroed_dates_are_no_date(store: Store, tmp_path: Path) -> None:
    records = {
        "GO-2099-0001": (ZERO, "2022-12-14T18:06:02Z"),
        "GO-2099-0002": (ZERO, ZERO),
        "GO-2099-0003": (ZERO, ZERO),
    }
    import_path(store, _zip(tmp_path / "all.zip", records, (2026, 8, 21, 0, 0, 0)))
    # Before: "2022-12-14T18:06:02Z", as if the data were two years older than it is, and unqualified.
    assert _version(store) == "2022-12-14 (newest published; 2 of 3 records undated; files dated 2026-08-21)"


def test_a_real_modified_date_wins_and_hostile_dates_are_ignored(store: Store, tmp_path: Path) -> None:
    records = {
        "GO-2099-0001": ("2024-10-08T19:19:01.400873Z", "2024-01-01T00:00:00Z"),
        "GO-2099-0002": ("9999-12-31T00:00:00Z", None),  # a date from the future is no date either
        "GO-2099-0003": ("yesterday", "2025-01-01"),
    }
    import_path(store, _zip(tmp_path / "all.zip", records, (2026, 8, 21, 0, 0, 0)))
    assert _version(store) == "2024-10-08 (newest modified; 2 of 3 records undated; files dated 2026-08-21)"


def test_no_record_dated_falls_back_to_the_files_date(store: Store, tmp_path: Path) -> None:
    records = {"GO-2099-0001": (ZERO, ZERO), "GO-2099-0002": (None, None)}
    import_path(store, _zip(tmp_path / "all.zip", records, (2026, 8, 21, 0, 0, 0)))
    assert _version(store) == "2026-08-21 (file date; no record is dated)"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (ZERO, None),
        ("1969-12-31T23:59:59Z", None),
        ("2026-12-03T00:00:00Z", None),  # after tomorrow
        ("not a date", None),
        (None, None),
        ("2022-03-15", datetime(2022, 3, 15, tzinfo=UTC)),
        ("2024-10-08T21:19:01+02:00", datetime(2024, 10, 8, 19, 19, 1, tzinfo=UTC)),
    ],
)
def test_real_date(text: str | None, expected: datetime | None) -> None:
    assert real_date(text, NOW) == expected


GO_ZIP = SHARED_DATA / "osv" / "Go" / "all.zip"


@pytest.mark.skipif(not GO_ZIP.is_file(), reason=f"shared data absent: {GO_ZIP}")
def test_the_go_vulnerability_database(store: Store) -> None:
    import_path(store, GO_ZIP)
    version = _version(store)
    # Every `modified` is 0001-01-01 and most `published` too; the zip's members carry the data's date.
    assert version is not None
    assert version.startswith("2022-12-14 (newest published; ")
    assert "of 4291 records undated; files dated 2026-08-21)" in version
