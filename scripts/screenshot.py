"""Save a screenshot of a page with headless Chromium (Debian's chromium + chromium-driver, via selenium).

    python scripts/screenshot.py URL OUT.png [WIDTH HEIGHT]

Run it where the page is reachable (for the demo: inside the appliance's namespace, `ip netns exec`).
"""

from __future__ import annotations

import sys
import tempfile
import time

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By


def main(url: str, out: str, width: int = 1280, height: int = 720) -> int:
    with tempfile.TemporaryDirectory(prefix="ztp-shot-") as profile:
        options = webdriver.ChromeOptions()
        options.binary_location = "/usr/bin/chromium"
        for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    f"--window-size={width},{height}", "--no-proxy-server", f"--user-data-dir={profile}"):
            options.add_argument(arg)
        driver = webdriver.Chrome(service=Service(executable_path="/usr/bin/chromedriver"), options=options)
        try:
            driver.get(url)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and driver.find_element(By.ID, "live").text != "live":
                time.sleep(0.1)  # the table is drawn and the event stream is up
            driver.save_screenshot(out)
        finally:
            driver.quit()
    return 0


if __name__ == "__main__":
    size = [int(x) for x in sys.argv[3:5]]
    raise SystemExit(main(sys.argv[1], sys.argv[2], *size))
