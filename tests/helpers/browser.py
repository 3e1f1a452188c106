"""Snakemake's HTML report as a user sees it: opened in the system's headless Chromium through
Selenium (its chromedriver; no browser download), navigated by clicking its menus.

Without /usr/bin/chromium and /usr/bin/chromedriver the tests that need them skip and say why;
in CI (``VISLAW_CI`` set by .ci/run, which installs both as root) they fail instead.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1400,1000",
)
# Every image result of the report, decoded whole by the browser (decode() rejects a truncated
# or corrupt file whose header alone would give a width): [path, naturalWidth] per image.
DECODE_IMAGES = """
const done = arguments[arguments.length - 1];
const images = Object.entries(results).filter(([, r]) => r.mime_type.startsWith("image/"));
Promise.all(images.map(([path, r]) => new Promise(resolve => {
    const img = new Image();
    img.src = r.data_uri;
    img.decode().then(() => resolve([path, img.naturalWidth]), () => resolve([path, 0]));
}))).then(done);
"""


def chromium_or_skip() -> None:
    """Skip (fail in CI) unless Chromium, its driver and Selenium are installed."""
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("the selenium package (dev extra)")
    if missing:
        reason = f"the browser test needs {', '.join(missing)} (apt: chromium chromium-driver)"
        if os.environ.get("VISLAW_CI"):
            pytest.fail(reason)
        pytest.skip(reason)


@contextmanager
def chromium() -> Iterator:
    """A headless Chromium driven by Selenium, with a fresh profile removed afterwards."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="vislaw-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (*FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        driver.set_script_timeout(120)
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def _click_menu(driver, label: str) -> None:
    """Click the navbar's menu entry ``label`` (a category or subcategory)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    xpath = f"//nav//a[span[normalize-space()='{label}']]"
    WebDriverWait(driver, 30).until(ec.element_to_be_clickable((By.XPATH, xpath))).click()


def _listed_results(driver) -> list[str]:
    """The result names the navbar lists now (first cell of its results table)."""
    from selenium.webdriver.common.by import By

    time.sleep(0.2)  # React re-renders the navbar on click
    return [
        cell.text for cell in driver.find_elements(By.XPATH, "//nav//table//tr/td[1]") if cell.text
    ]


def _back_to(driver, crumb: str) -> None:
    """Follow the navbar's breadcrumb link ``crumb`` (Results, or a category)."""
    from selenium.webdriver.common.by import By

    driver.find_element(By.XPATH, f"//nav//ol//a[normalize-space()='{crumb}']").click()


def _view(driver, name: str) -> dict:
    """Click the eye button of result ``name`` (listed now) and read what the content pane
    shows: an image's natural width, or an HTML page's text and markup (inside its iframe)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    ends = f"substring(normalize-space(), string-length(normalize-space()) - {len(name) - 1})"
    row = f"//nav//table//tr[td[1][{ends} = '{name}']]"  # listed as a path ending in name
    pane = "//div[contains(@class, 'grow') and contains(@class, 'justify-center')]"
    tag = "iframe" if name.endswith(".html") else "img"
    shown = f"{pane}//{tag}[@src]"

    def src(d) -> str | None:
        found = d.find_elements(By.XPATH, shown)
        return found[0].get_attribute("src") if found else None

    before = src(driver)
    driver.find_element(By.XPATH, f"{row}//a[@iconname='eye']").click()
    # React renders after the click returns: wait for this result, not the one shown before
    WebDriverWait(driver, 30).until(lambda d: src(d) not in (None, before))
    element = driver.find_element(By.XPATH, shown)
    if tag == "img":
        WebDriverWait(driver, 30).until(
            lambda d: d.execute_script("return arguments[0].complete", element)
        )
        return {"width": driver.execute_script("return arguments[0].naturalWidth", element)}
    frame = element
    driver.switch_to.frame(frame)
    try:
        body = WebDriverWait(driver, 30).until(lambda d: d.find_element(By.TAG_NAME, "body"))
        return {"text": body.text, "html": body.get_attribute("innerHTML")}
    finally:
        driver.switch_to.default_content()


def _view_listed(driver, names: list[str], maps: bool, out: dict) -> None:
    """View each listed HTML page (its text and markup into ``out``) and each figure (a width
    of 0 into ``out["broken"]``); LMVR's many token maps are left to the decoding pass."""
    for name in names:
        if name.endswith(".html"):
            page = _view(driver, name)
            out["texts"][name], out["html"][name] = page["text"], page["html"]
        elif name.endswith(".png") and not maps and _view(driver, name)["width"] == 0:
            out["broken"].append(name)


def report_contents(report: Path) -> dict:
    """Open ``report`` in Chromium and walk it as a user would: every category of its Results
    menu (and each subcategory), the names listed there, each HTML page and each figure outside
    the LMVR maps viewed in the content pane; finally every image result decoded by the
    browser. Returns categories (name -> listed file names), texts and html of the pages,
    images (how many decoded) and broken (images of natural width 0)."""
    from selenium.webdriver.support.ui import WebDriverWait

    out: dict = {"categories": {}, "texts": {}, "html": {}, "broken": []}
    with chromium() as driver:
        driver.get(report.resolve().as_uri())
        WebDriverWait(driver, 60).until(
            lambda d: d.execute_script("return document.querySelectorAll('nav li').length > 3")
        )
        layout = driver.execute_script(
            "return Object.fromEntries(Object.entries(categories).map("
            "([c, subs]) => [c, Object.keys(subs)]))"
        )
        for category, subcategories in layout.items():
            _click_menu(driver, category)
            names = []
            for sub in subcategories if len(subcategories) > 1 else [None]:
                if sub is not None:
                    _click_menu(driver, sub)
                listed = [Path(n).name for n in _listed_results(driver)]
                names += listed
                _view_listed(driver, listed, maps=category == "LMVR", out=out)
                if sub is not None:
                    _back_to(driver, category)
            out["categories"][category] = names
            _back_to(driver, "Results")
        widths = driver.execute_async_script(DECODE_IMAGES)
    out["images"] = len(widths)
    out["broken"] += [Path(path).name for path, width in widths if width == 0]
    return out
