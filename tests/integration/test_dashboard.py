"""The live dashboard in a real browser: headless Chromium in the appliance's namespace watches a device go
from `bound` to `confirmed` and its pool's bar move without reloading, then opens its timeline; screenshots
are kept under the test's tmp dir (dashboard-bound.png, dashboard.png, device.png)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import skip_or_fail
from tests.integration.appliance import REPO, ApplianceLab, write_config
from ztp.lab import Lab

TOKEN = "dashboard-token-0123456789"
BROWSER = str(Path(__file__).with_name("browser.py"))


def test_dashboard_updates_live_and_shows_the_timeline(lab: Lab, tmp_path: Path) -> None:
    for prog in ("/usr/bin/chromium", "/usr/bin/chromedriver", "curl", "dhclient"):
        if shutil.which(prog) is None:
            skip_or_fail(f"{prog} is not installed (scripts/setup-debian.sh)")
    try:
        import selenium  # noqa: F401
    except ImportError:
        skip_or_fail("selenium is not installed (pip install -e '.[dev]')")
    config = write_config(tmp_path, dns=False, config_extra=f"http:\n  token: {TOKEN}\n")
    app = ApplianceLab(lab=lab, tmp=tmp_path, config=config).build()
    app.start()
    lab.wait_for(lambda: "http listening" in app.log.read_text(), 10, "http listening")
    lab.run(app.srv, ["ip", "link", "set", "lo", "up"])  # chromedriver talks to chromium over 127.0.0.1
    shots = tmp_path / "screenshots"
    shots.mkdir()
    env = dict(os.environ, PYTHONPATH=str(REPO), HOME=str(tmp_path), SE_AVOID_STATS="true")
    browser = subprocess.Popen(["ip", "netns", "exec", app.srv, sys.executable, BROWSER, "http://10.60.0.1/",
                                "leaf02", str(shots)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=env, start_new_session=True)
    try:
        assert browser.stdout is not None
        loaded = browser.stdout.readline()  # the page is drawn (pool bars included) before the device boots
        assert loaded.startswith("LOADED "), (loaded, browser.stderr.read() if browser.poll() is not None else "")
        ns = app.client("c2", "02:00:00:00:00:02")
        assert app.dhclient(ns)["new_bootfile_name"] == "leaf02.cfg"  # bound, and no fetch yet
        line = browser.stdout.readline()
        assert line.strip() == "SEEN bound", (line, browser.stderr.read() if browser.poll() is not None else "")
        res = lab.run(app.srv, ["curl", "-sS", "--max-time", "5", "-X", "POST", "-H",
                                f"Authorization: Bearer {TOKEN}", "http://10.60.0.1/api/devices/leaf02/confirm"])
        assert json.loads(res.stdout)["state"] == "confirmed"
        out, err = browser.communicate(timeout=90)
    finally:
        if browser.poll() is None:
            os.killpg(browser.pid, 9)
            browser.wait(timeout=10)
    assert browser.returncode == 0, err
    seen = json.loads(out.strip().splitlines()[-1])
    assert seen["marker"] == "yes"  # the same page: updated over server-sent events, never reloaded
    assert seen["live"] == "live" and seen["bound_count"] == "1" and seen["confirmed_count"] == "1"
    assert seen["url"].endswith("/device/leaf02") and seen["page_state"] == "confirmed"
    # leaf02 took one address of the 10.60.0.100-199 pool: the bar moved on the open page, over the stream.
    assert int(seen["pool_after"][0]) == int(seen["pool_before"][0]) + 1, seen
    assert seen["pool_after"][1] != seen["pool_before"][1] and "width" in seen["pool_after"][1], seen
    assert {"offer", "bound", "confirmed"} <= set(seen["kinds"]), seen["kinds"]
    for name in ("dashboard-bound.png", "dashboard.png", "device.png"):
        assert (shots / name).stat().st_size > 5000
    print(f"screenshots: {shots}")
