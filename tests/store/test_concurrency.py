"""Two workers storing assessments of the same asset at the same moment: both succeed, nothing doubles."""

from __future__ import annotations

import threading

from sqlalchemy import func, select

from tianmu.core.models import (
    Assessment,
    Asset,
    AssetKind,
    Component,
    Finding,
    FindingKind,
    Location,
    Severity,
    utcnow,
)
from tianmu.store import Store
from tianmu.store.repository import save_assessment
from tianmu.store.schema import assessments, assets, findings

ASSET = Asset(name="/srv/shared-checkout", kind=AssetKind.DIRECTORY)


def _assessment() -> Assessment:
    found = []
    for n in range(40):
        comp = Component(
            f"pkg{n}", "1.0", "PyPI", f"pkg:pypi/pkg{n}@1.0", Location("requirements.txt", n + 1)
        )
        found.append(
            Finding(
                FindingKind.VULNERABILITY,
                f"PYSEC-2026-{n}",
                f"pkg{n} flaw",
                Severity.HIGH,
                ASSET,
                component=comp,
            )
        )
    now = utcnow()
    return Assessment(target=ASSET.name, asset=ASSET, started=now, finished=now, findings=found)


def test_concurrent_first_saves_of_one_asset(store: Store) -> None:
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def save() -> None:
        barrier.wait()
        try:
            save_assessment(store, _assessment())
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=save) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with store.connect() as conn:
        assert conn.execute(select(func.count()).select_from(assets)).scalar() == 1
        assert conn.execute(select(func.count()).select_from(assessments)).scalar() == 4
        assert conn.execute(select(func.count()).select_from(findings)).scalar() == 40
