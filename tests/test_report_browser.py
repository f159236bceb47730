"""The report page in headless Chromium: every image loads, no console error, a screenshot."""

from __future__ import annotations

import json
import os
import shutil

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")


@pytest.mark.skipif(
    CHROMIUM is None or DRIVER is None,
    reason="needs Debian's chromium and chromium-driver (.ci/run installs them)",
)
def test_report_opens_in_chromium(analysed_run, tmp_path):
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--window-size=1280,1000",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=DRIVER))
    try:
        driver.get((analysed_run / "report" / "index.html").as_uri())
        broken = driver.execute_script(
            "return Array.from(document.images).filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src)"
        )
        count = driver.execute_script("return document.images.length")
        height = driver.execute_script("return document.body.scrollHeight")
        errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        driver.set_window_size(1280, min(int(height) + 100, 16000))
        shot = tmp_path / "report.png"
        assert driver.save_screenshot(str(shot))
    finally:
        driver.quit()
    summary = json.loads((analysed_run / "report" / "summary.json").read_text())
    assert count == len(summary["figures"]) >= 12 and broken == []
    assert errors == []
    assert shot.stat().st_size > 50_000
    if keep := os.environ.get("PRUNESCOPE_SCREENSHOT_DIR"):  # to look at it by eye
        shutil.copy(shot, keep)
