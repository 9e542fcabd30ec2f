"""HTTP boot end to end (issue 12): `ztp serve` in a namespace serves /configs/<bootfile> over HTTP to the
lease holder only (403 to another host, logged with the device and the peer), with Content-Length, ETag,
If-None-Match and Range; static files streamed with Range; fetched with curl from real client namespaces.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.appliance import REPO, ApplianceLab, write_config
from ztp.lab import Lab

SERVER = "10.60.0.1"


@pytest.fixture
def appliance(lab: Lab, tmp_path: Path) -> Iterator[ApplianceLab]:
    root = tmp_path / "tftproot"
    root.mkdir()
    image = root / "onie-installer-x86_64"
    image.write_bytes(os.urandom(3 << 20))
    image.chmod(0o644)
    config = write_config(tmp_path, dns=False, config_extra="http:\n  port: 80\n")
    config.write_text(config.read_text().replace(str(REPO / "tftpboot"), str(root)))
    app = ApplianceLab(lab=lab, tmp=tmp_path, config=config).build()
    app.start()
    lab.wait_for(lambda: "http listening" in app.log.read_text(errors="replace"), 10, "http listening")
    yield app
    if app.proc is not None:
        app.stop()


def curl(app: ApplianceLab, ns: str, url: str, *args: str) -> tuple[int, dict[str, str], bytes]:
    """(status, headers lowercased, body) of one curl GET from `ns`."""
    body = app.tmp / "body.bin"
    heads = app.tmp / "heads.txt"
    res = app.lab.run(ns, ["curl", "-sS", "--max-time", "20", "-o", str(body), "-D", str(heads),
                           "-w", "%{http_code}", *args, url], timeout=30)
    headers: dict[str, str] = {}
    for line in heads.read_text().splitlines()[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return int(res.stdout.strip()), headers, body.read_bytes()


def test_configs_over_http_only_for_the_lease_holder(appliance: ApplianceLab) -> None:
    device = appliance.client("dev", "02:00:00:00:00:01")
    assert appliance.dhclient(device)["new_ip_address"] == "10.60.0.11"
    stranger = appliance.client("other", "02:00:00:00:00:66")
    appliance.lab.add_addr(stranger, "eth0", "10.60.0.50/24")
    expected = appliance.rendered(hostname="leaf01")

    status, headers, body = curl(appliance, device, f"http://{SERVER}/configs/leaf01.cfg")
    assert status == 200 and body == expected
    assert headers["content-length"] == str(len(expected))
    etag = headers["etag"]
    assert etag == '"' + hashlib.sha256(expected).hexdigest()[:32] + '"'
    status, _, _ = curl(appliance, device, f"http://{SERVER}/configs/leaf01.cfg", "-H", f"If-None-Match: {etag}")
    assert status == 304
    status, headers, body = curl(appliance, device, f"http://{SERVER}/configs/leaf01.cfg", "-r", "0-9")
    assert status == 206 and body == expected[:10] and headers["content-range"] == f"bytes 0-9/{len(expected)}"

    status, _, body = curl(appliance, stranger, f"http://{SERVER}/configs/leaf01.cfg")
    assert status == 403 and expected not in body
    status, _, _ = curl(appliance, device, f"http://{SERVER}/configs/leaf02.cfg")  # another device's
    assert status == 403
    status, _, _ = curl(appliance, device, f"http://{SERVER}/configs/nosuch.cfg")
    assert status == 404
    # A serial header naming another device is refused (leaf01 lists no serial: its own is accepted).
    status, _, _ = curl(appliance, device, f"http://{SERVER}/configs/leaf01.cfg", "-H", "CUMULUS-SERIAL: X1")
    assert status == 200
    refused, provisioned = "02:00:00:00:00:01 http leaf01.cfg refused to 10.60.0.50", "provisioned: leaf01.cfg"
    log = appliance.log_text(refused, provisioned)
    assert refused in log
    assert provisioned in log
    # The device timeline tells the same story as for TFTP, saying HTTP.
    def timeline() -> list[str]:
        _, _, body = curl(appliance, device, f"http://{SERVER}/api/devices/leaf01/timeline")
        return [str(e["text"]) for e in json.loads(body)["events"]]
    appliance.lab.wait_for(lambda: any("HTTP leaf01.cfg delivered" in m for m in timeline()), 10,
                           "the HTTP delivery on leaf01's timeline")
    assert any("HTTP leaf01.cfg refused to 10.60.0.50" in m for m in timeline())


def test_static_files_streamed_with_ranges(appliance: ApplianceLab) -> None:
    device = appliance.client("dev", "02:00:00:00:00:01")
    appliance.dhclient(device)
    image = (appliance.tmp / "tftproot" / "onie-installer-x86_64").read_bytes()
    status, headers, body = curl(appliance, device, f"http://{SERVER}/files/onie-installer-x86_64")
    assert status == 200 and body == image and headers["content-length"] == str(len(image))
    status, headers, body = curl(appliance, device, f"http://{SERVER}/onie-installer-x86_64", "-r", "1000000-")
    assert status == 206 and body == image[1000000:]
    assert headers["content-range"] == f"bytes 1000000-{len(image) - 1}/{len(image)}"
    status, _, _ = curl(appliance, device, f"http://{SERVER}/files/../etc/passwd", "--path-as-is")
    assert status in (403, 404)
    status, _, _ = curl(appliance, device, f"http://{SERVER}/onie-installer-missing")
    assert status == 404
