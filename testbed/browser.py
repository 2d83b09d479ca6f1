"""A real browser for the tests: Debian's headless Chromium driven by selenium through Debian's
chromedriver, offline, recording what a page logs to its console and every URL it requests.

    with Browser() as browser:
        visit = browser.visit("out/report.html", "shot.png", ready="window.Plotly !== undefined")
        assert not visit.console_errors and visit.requests == [visit.url]

The requests come from Chrome's performance log (DevTools' Network.requestWillBeSent, through
`goog:loggingPrefs`), the console from its browser log. Host names resolve nowhere
(--host-resolver-rules), so a page that tries the network fails to reach it and still shows the
request in the log.
"""

from __future__ import annotations

import base64
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

CHROMIUM = ("chromium", "chromedriver")  # Debian's chromium and chromium-driver
# A page of Plotly figures is drawn when Plotly has laid out every plot (its SVG in place).
PLOTLY_READY = ("[...document.querySelectorAll('.plotly-graph-div')].every(gd => gd._fullLayout && "
                "gd.querySelector('svg.main-svg')) && "
                "document.querySelectorAll('.plotly-graph-div').length > 0")
INSTALL = "apt-get install chromium chromium-driver (`make` does, where apt is usable)"
FLAGS = (
    "--headless=new",
    "--no-sandbox",  # root in a container has no user namespace for Chromium's sandbox
    "--disable-dev-shm-usage",  # a container's /dev/shm is often 64 MB
    "--use-angle=swiftshader",  # WebGL on the CPU (Plotly draws parallel coordinates with WebGL)
    "--enable-unsafe-swiftshader",
    "--host-resolver-rules=MAP * ~NOTFOUND",  # no name resolves: nothing leaves the machine
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-default-apps",
    "--disable-extensions",
    "--disable-sync",
    "--no-first-run",
    "--no-default-browser-check",
)


def missing_binaries() -> list[str]:
    """The Chromium commands this machine lacks."""
    return [name for name in CHROMIUM if shutil.which(name) is None]


@dataclass
class Visit:
    """What a page did: its URL, the console errors it logged, every URL it requested (its own
    first), the screenshot saved, and what the probe script returned."""

    url: str
    console_errors: list[str]
    requests: list[str]
    screenshot: Path
    probe: object = None


class Browser:
    """One headless Chromium, reused for several visits; ``width`` x ``height`` the window in CSS
    pixels (a screenshot covers the whole page)."""

    def __init__(self, width: int = 1400, height: int = 1000):
        self.width, self.height = width, height
        self.driver = None

    def start(self) -> Browser:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        if missing := missing_binaries():
            raise FileNotFoundError(f"no {', '.join(missing)} on this machine: {INSTALL}")
        options = webdriver.ChromeOptions()
        options.binary_location = shutil.which("chromium")
        for flag in (*FLAGS, f"--window-size={self.width},{self.height}"):
            options.add_argument(flag)
        options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
        # an explicit chromedriver: selenium's own driver manager would look for one on the network
        self.driver = webdriver.Chrome(options=options, service=Service(shutil.which("chromedriver")))
        return self

    def stop(self) -> None:
        if self.driver is not None:
            self.driver.quit()
            self.driver = None

    def __enter__(self) -> Browser:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def visit(self, path: str | Path, screenshot: str | Path, ready: str | None = None,
              probe: str | None = None, timeout: float = 30.0) -> Visit:
        """Open the local file ``path``, wait until the JavaScript expression ``ready`` is true
        (TimeoutError after ``timeout`` seconds), evaluate ``probe``, save a PNG of the whole page
        to ``screenshot``."""
        url = Path(path).resolve().as_uri()
        self.driver.get_log("browser"), self.driver.get_log("performance")  # drop earlier pages' entries
        self.driver.get(url)
        if ready is not None:
            self.wait(ready, timeout)
        found = self.driver.execute_script(f"return ({probe});") if probe is not None else None
        shot = self.screenshot(screenshot)
        console = self.driver.get_log("browser")
        return Visit(url, [e["message"] for e in console if e["level"] == "SEVERE"],
                     self._requests(self.driver.get_log("performance")), shot, found)

    def screenshot(self, path: str | Path) -> Path:
        """A PNG of the whole page, beyond the window, at ``path``."""
        size = self.driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
        png = self.driver.execute_cdp_cmd("Page.captureScreenshot", {
            "format": "png", "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}})
        path = Path(path)
        path.write_bytes(base64.b64decode(png["data"]))
        return path

    def wait(self, ready: str, timeout: float) -> None:
        """Until the JavaScript expression ``ready`` is true on the open page (TimeoutError after
        ``timeout`` seconds)."""
        deadline = time.monotonic() + timeout
        while not self.driver.execute_script(f"return Boolean({ready});"):
            if time.monotonic() > deadline:
                raise TimeoutError(f"the page was not ready after {timeout:g} s: {ready}")
            time.sleep(0.1)

    @staticmethod
    def _requests(entries: list[dict]) -> list[str]:
        """Every URL the page requested, in order, from the performance log's entries."""
        events = (json.loads(e["message"])["message"] for e in entries)
        return [e["params"]["request"]["url"] for e in events if e["method"] == "Network.requestWillBeSent"]
