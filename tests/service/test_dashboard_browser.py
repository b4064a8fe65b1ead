"""The dashboard in a real browser (Playwright driving Debian's Chromium): sign in, read the overview and
check it against the API, filter findings, triage one, export them; screenshots of the overview are kept
in docs/screenshots so the documentation shows what a user sees."""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from platform_data import PASSWORD, Platform, build_platform

from testsupport import free_port, serve_app

CHROMIUM = "/usr/bin/chromium"

playwright_api = pytest.importorskip("playwright.sync_api")


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Platform]]:
    port = free_port()
    origin = f"http://localhost:{port}"
    platform = build_platform(tmp_path / "home", origin)
    with serve_app(platform.app, port):
        yield origin, platform


@pytest.fixture
def screenshots(tmp_path: Path) -> Path:
    """Where the screenshots go: `make screenshots` sets TIANMU_SCREENSHOTS=docs/screenshots; a plain
    test run keeps them in its temporary folder so it leaves the work tree as it was."""
    folder = Path(os.environ.get("TIANMU_SCREENSHOTS") or tmp_path / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def page() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        reason = f"{CHROMIUM} is not installed (make test installs the Debian chromium package)"
        if os.environ.get("TIANMU_REQUIRE_SERVICES") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    with playwright_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        context = browser.new_context(viewport={"width": 1366, "height": 900}, accept_downloads=True)
        yield context.new_page()
        browser.close()


def _sign_in(page: Any, origin: str, user: str) -> None:
    page.goto(f"{origin}/")
    assert "/auth/sign-in" in page.url  # no session: the dashboard sends a person to sign in
    page.fill("#username", user)
    page.fill("#password", PASSWORD)
    page.click("#password-form button[type=submit]")
    page.wait_for_url(f"{origin}/")


def test_sign_in_overview_filter_triage_export(
    served: tuple[str, Platform], page: Any, screenshots: Path
) -> None:
    origin, _platform = served
    _sign_in(page, origin, "anna")
    api = page.request.get(f"{origin}/api/v1/overview").json()  # the browser's own session
    shown = int(page.get_attribute("[data-testid=open-findings] [data-value]", "data-value"))
    assert shown == api["open_findings"] == 6
    assert int(page.get_attribute("[data-testid=kev] [data-value]", "data-value")) == api["kev_open"]
    for severity, count in api["by_severity"].items():
        assert int(page.get_attribute(f"[data-severity={severity}]", "data-value")) == count
    page.screenshot(path=str(screenshots / "dashboard-overview.png"), full_page=True)
    assert (screenshots / "dashboard-overview.png").stat().st_size > 20_000

    # Filter: only detections.
    page.click("nav >> text=Findings")
    page.select_option("select[name=kind]", "detection")
    page.click("form.filters button[type=submit]")
    page.wait_for_url("**/findings?kind=detection**")
    rows = page.locator("[data-testid=findings] tbody tr")
    assert rows.count() == 2
    assert "ssh-bruteforce" in page.inner_text("[data-testid=findings]")

    # Triage the first one as a false positive.
    first_rule = rows.nth(0).locator("td").nth(3).inner_text()
    rows.nth(0).locator("input[type=checkbox]").check()
    page.select_option("#bulk select[name=status]", "false_positive")
    page.click("#bulk button[type=submit]")
    page.wait_for_selector(".flash")
    assert "1 → false_positive" in page.inner_text(".flash")
    listed = page.request.get(f"{origin}/api/v1/findings?kind=detection").json()["items"]
    statuses = {item["rule"]: item["status"] for item in listed}
    assert statuses[first_rule.split()[0]] == "false_positive"

    # Export what the filter shows, as a person would: the link downloads a CSV.
    with page.expect_download() as download_info:
        page.click("[data-testid=export-csv]")
    download = download_info.value
    rows_csv = list(csv.DictReader(io.StringIO(Path(download.path()).read_text("utf-8"))))
    assert sorted(r["rule"] for r in rows_csv) == sorted(statuses)
    assert {r["status"] for r in rows_csv} == {"open", "false_positive"}


def test_chinese_overview_screenshot(served: tuple[str, Platform], page: Any, screenshots: Path) -> None:
    origin, _platform = served
    _sign_in(page, origin, "victor")
    page.goto(f"{origin}/?lang=zh_CN")
    assert "安全态势" in page.inner_text("h1")
    page.screenshot(path=str(screenshots / "dashboard-overview-zh.png"), full_page=True)
