"""Drive the dashboard in headless Chromium (Debian's chromium + chromium-driver), run inside a namespace.

    python browser.py URL KEY SCREENSHOT_DIR [SUBNET]

Opens URL, prints "LOADED <n>" with SUBNET's pool bar's addresses in use once the page has drawn it (the
test then boots the device), waits for device KEY's row to say `bound` and for that pool bar to change,
prints "SEEN bound" (the test then confirms the device), waits for the same row to say `confirmed`
*without a reload* (a marker set on the first page load must survive), opens the device's timeline page,
saves screenshots and prints one JSON line of findings.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By


def wait(predicate, timeout: float, what: str):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.1)


def main(url: str, key: str, shots: Path, subnet: str = "10.60.0.0/24") -> None:
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1280,800", "--no-proxy-server", f"--user-data-dir={shots / 'profile'}"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path="/usr/bin/chromedriver"), options=options)
    try:
        driver.get(url)
        driver.execute_script("window.__ztpFirstLoad = 'yes';")
        row = f"device-{key}"

        def pool() -> list[str] | None:
            # Read in one script: the bars are redrawn (replaced) by each update, so a held element goes stale.
            found = driver.execute_script(
                "const p = document.querySelector(`#pools .pool[data-subnet='${arguments[0]}']`);"
                "return p ? [p.dataset.used, p.querySelector('.bar span').getAttribute('style')] : null;", subnet)
            return list(found) if found else None

        pool_before = wait(pool, 30, f"the {subnet} pool bar")
        print(f"LOADED {pool_before[0]}", flush=True)

        def text(selector: str) -> str:
            # One script per read (see state()): what it shows is redrawn by live updates.
            return str(driver.execute_script(
                "const e = document.querySelector(arguments[0]); return e ? e.innerText : '';", selector))

        def state() -> str | None:
            # Read in one script, like pool(): the row is replaced by each live update, so an element found
            # first and read after could go stale between the two (it failed a CI run so).
            found = driver.execute_script(
                "const r = document.getElementById(arguments[0]); return r ? r.dataset.state : null;", row)
            return str(found) if found else None

        wait(lambda: state() == "bound", 30, f"{key} bound on the dashboard")
        bound_count = text("#count-bound b")
        # The pool bar follows over the same event stream (at most POOLS_INTERVAL after the binding).
        pool_after = wait(lambda: (p := pool()) is not None and p[0] != pool_before[0] and p, 10,
                          f"the {subnet} pool bar to change live")
        driver.save_screenshot(str(shots / "dashboard-bound.png"))
        print("SEEN bound", flush=True)
        wait(lambda: state() == "confirmed", 30, f"{key} confirmed on the dashboard (live)")
        marker = driver.execute_script("return window.__ztpFirstLoad || null;")
        live = text("#live")
        confirmed_count = text("#count-confirmed b")
        driver.save_screenshot(str(shots / "dashboard.png"))
        driver.find_element(By.CSS_SELECTOR, f"#{row} a").click()
        wait(lambda: len(driver.find_elements(By.CSS_SELECTOR, "#timeline tbody tr")) >= 3, 20, "timeline rows")
        kinds = driver.execute_script(
            "return Array.from(document.querySelectorAll('#timeline tbody tr'), tr => tr.dataset.kind);")
        page_state = text("#state")
        driver.save_screenshot(str(shots / "device.png"))
        print(json.dumps({"marker": marker, "live": live, "bound_count": bound_count, "pool_before": pool_before,
                          "pool_after": pool_after,
                          "confirmed_count": confirmed_count, "kinds": kinds, "page_state": page_state,
                          "url": driver.current_url}), flush=True)
    finally:
        driver.quit()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], Path(sys.argv[3]), *sys.argv[4:5])
