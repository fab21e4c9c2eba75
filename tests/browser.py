"""A real browser check of an HTML page: Debian's Chromium driven through ChromeDriver (Selenium).

What a reader would notice goes wrong is asked of the browser itself: console errors,
images that did not decode (naturalWidth 0), resources fetched from the network, a
page wider than a phone's screen. A full-page screenshot is kept for people to look at.
No browser is downloaded: scripts/test.sh installs Debian's `chromium` and `chromium-driver`.
"""

from __future__ import annotations

import base64
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

REPO = Path(__file__).resolve().parents[1]
PHONE_WIDTH = 412  # CSS pixels of a common Android phone (Pixel 7 class)
# Without the background-networking flags Chromium keeps trying Google's hosts, which this
# machine's closed network refuses; a fresh profile keeps runs independent.
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync")


def screenshot_folder() -> Path:
    """Where the screenshots are kept after the run (CI can collect them): build/test-artifacts by default."""
    folder = Path(os.environ.get("EDGERESNET_TEST_ARTIFACTS", REPO / "build" / "test-artifacts"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@dataclass
class PageCheck:
    console_errors: list[str]
    broken_images: list[str]  # alt text (or src head) of each <img> the browser could not decode
    images: int
    network_resources: list[str]
    scroll_width: int
    viewport_width: int
    texts: dict[str, str]  # element id -> its rendered text, for the ids asked for
    screenshot: Path
    pdf_bytes: int
    problems: list[str] = field(default_factory=list)

    def assert_ok(self) -> None:
        assert not self.problems, f"{self.screenshot}: " + "; ".join(self.problems)


def _driver(profile: str) -> webdriver.Chrome:
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    chromedriver = shutil.which("chromedriver") or "/usr/bin/chromedriver"
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(options=options, service=Service(executable_path=chromedriver))


IMAGES_JS = """return Array.from(document.images).map(i => [i.complete && i.naturalWidth > 0, i.alt || i.src.slice(0, 40)]);"""
RESOURCES_JS = """return performance.getEntriesByType('resource').map(r => r.name);"""


def check_page(page: Path, name: str, ids: tuple[str, ...] = (), width: int = PHONE_WIDTH) -> PageCheck:
    """Open `page` at `width` CSS pixels (a phone, touch and mobile viewport) and read what a reader would see."""
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        driver = _driver(profile)
        try:
            driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride",
                                   {"width": width, "height": 900, "deviceScaleFactor": 1, "mobile": True})
            driver.get(page.resolve().as_uri())
            images = driver.execute_script(IMAGES_JS)
            resources = driver.execute_script(RESOURCES_JS)
            scroll_width, viewport_width = driver.execute_script(
                "return [document.documentElement.scrollWidth, document.documentElement.clientWidth];")
            texts = {}
            for element_id in ids:
                texts[element_id] = driver.execute_script(
                    "const e = document.getElementById(arguments[0]); return e ? e.innerText : null;", element_id)
            console = [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
            shot = driver.execute_cdp_cmd("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True})
            screenshot = screenshot_folder() / f"{name}.png"
            screenshot.write_bytes(base64.b64decode(shot["data"]))
            pdf = base64.b64decode(driver.execute_cdp_cmd("Page.printToPDF", {"printBackground": False})["data"])
        finally:
            driver.quit()
    check = PageCheck(console, [alt for ok, alt in images if not ok], len(images),
                      [r for r in resources if not r.startswith(("data:", "file:"))], scroll_width, viewport_width,
                      texts, screenshot, len(pdf) if pdf.startswith(b"%PDF") else 0)
    check.problems += [f"console error: {message}" for message in console]
    check.problems += [f"image not loaded: {alt}" for alt in check.broken_images]
    check.problems += [f"fetched from the network: {url}" for url in check.network_resources]
    if scroll_width > viewport_width:
        check.problems.append(f"scrolls sideways at {width} px: the page is {scroll_width} px wide")
    check.problems += [f"no element #{i} in the page" for i, text in texts.items() if text is None]
    if not check.pdf_bytes:
        check.problems.append("printing gave no PDF")
    return check
