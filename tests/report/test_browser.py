"""The HTML report in a real browser: Debian's headless chromium driven by Selenium.

In CI (CI=true) a missing browser, driver or selenium fails these tests; elsewhere they are skipped.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

STUDY = "digits-cnn"
CHROMIUM = os.environ.get("EFFSEARCH_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("EFFSEARCH_CHROMEDRIVER", "/usr/bin/chromedriver")
FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
    # Software WebGL for the parallel-coordinates plot; newer chromium no longer falls back to it silently.
    "--enable-unsafe-swiftshader", "--window-size=1400,1800",
)


def _missing(what: str) -> None:
    if os.environ.get("CI", "").lower() in ("true", "1"):
        pytest.fail(f"{what}; CI must install Debian's chromium and chromium-driver (and selenium) for this test")
    pytest.skip(what)


@pytest.fixture(scope="module")
def driver() -> Iterator[object]:
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        _missing("selenium is not installed")
    for path in (CHROMIUM, CHROMEDRIVER):
        if not (Path(path).is_file() and os.access(path, os.X_OK)):
            _missing(f"{path} is not installed")
    profile = tempfile.mkdtemp(prefix="effsearch-chromium-")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in FLAGS:
        opts.add_argument(flag)
    opts.add_argument(f"--user-data-dir={profile}")
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # Selenium Manager must not look for (or download) a driver: Debian's is given explicitly.
    drv = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    try:
        yield drv
    finally:
        drv.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(scope="module")
def report(cli, digits_study: tuple[Path, str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The HTML report of the session's two-run digits study, written once for this file."""
    cwd, url = digits_study
    out = tmp_path_factory.mktemp("browser") / "report.html"
    r = cli("dashboard", "--storage", url, "-o", str(out), cwd=cwd)
    assert r.returncode == 0, r.stderr
    return out


def _visible_rows(drv) -> int:
    from selenium.webdriver.common.by import By

    return sum(1 for tr in drv.find_elements(By.CSS_SELECTOR, "#front-table tr.front-row") if tr.is_displayed())


def _wait(drv, condition, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    return condition()


def test_report_renders_and_limits_narrow_the_front(driver, report: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    drv = driver
    drv.get(report.as_uri())
    assert _wait(drv, lambda: drv.execute_script("return document.body.dataset.ready === 'true'")), "the page's script never finished"
    # Plotly drew the plots: its SVG is in every scatter, not just the script.
    scatters = drv.find_elements(By.CSS_SELECTOR, "div[id^='scatter-']")
    assert len(scatters) == 3  # accuracy, latency_ms, energy_j: three pairs
    for div in scatters:
        assert div.find_elements(By.CSS_SELECTOR, ".main-svg"), div.get_attribute("id")
        assert div.find_elements(By.CSS_SELECTOR, ".scatterlayer .point")
    assert drv.find_elements(By.CSS_SELECTOR, "#hypervolume .main-svg")
    assert drv.find_elements(By.CSS_SELECTOR, "#parallel .main-svg")

    total = _visible_rows(drv)
    assert total >= 1
    assert drv.find_element(By.ID, "front-count").text.startswith(f"{total} of {total}")

    # The latency limit at its lowest leaves no front trial; the table shrinks, and so does the front in the plots.
    slider = drv.find_element(By.ID, "max-latency")
    slider.send_keys(Keys.HOME)
    assert _wait(drv, lambda: _visible_rows(drv) < total), "moving the latency limit did not narrow the table"
    assert _visible_rows(drv) == 0
    assert drv.find_element(By.ID, "front-count").text.startswith(f"0 of {total}")
    outside = drv.execute_script(
        "const gd = document.getElementById('scatter-0'); return [gd.data[3].x.length, gd.data[4].x.length];"
    )
    assert outside == [0, total]

    drv.find_element(By.ID, "reset-limits").click()
    assert _wait(drv, lambda: _visible_rows(drv) == total)

    # The metric-drop limit, stepped down from its top, drops the worst front trials first.
    drop = drv.find_element(By.ID, "max-drop")
    drop.send_keys(Keys.HOME)
    assert _wait(drv, lambda: _visible_rows(drv) == 0)
    drop.send_keys(Keys.END)
    assert _wait(drv, lambda: _visible_rows(drv) == total)

    severe = [e for e in drv.get_log("browser") if e.get("level") == "SEVERE"]
    assert not severe, severe
