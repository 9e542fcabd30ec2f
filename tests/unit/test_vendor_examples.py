"""The vendor examples (examples/vendors, templates/<family>/) pass `ztp check`: every device renders and
its profile accepts what it renders (SONiC JSON, the Cumulus marker, an ONIE '#!')."""

from __future__ import annotations

import json
from pathlib import Path

from ztp.check import validate
from ztp.leases.table import LeaseTable
from ztp.provision import device_view
from ztp.vendors import NAMES, profile_named

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "vendors" / "ztp.yaml"


def test_vendor_examples_pass_ztp_check() -> None:
    snapshot, problems = validate(EXAMPLE)
    assert problems == [] and snapshot is not None
    devices = snapshot.config.inventory.devices
    assert {d.vendor for d in devices} == set(NAMES) - {"generic-tftp"}  # one device of each profile
    renderer = snapshot.renderer()
    table = LeaseTable()
    for device in devices:
        rendered = renderer.render(device_view(snapshot.config, table, device=device, mac=None))
        profile = profile_named(device.vendor or "")
        assert profile is not None and profile.check(rendered) is None, device.hostname
        assert f"{device.hostname}".encode() in rendered
        if device.vendor == "sonic":
            assert json.loads(rendered)["DEVICE_METADATA"]["localhost"]["hostname"] == device.hostname


def test_the_main_example_still_passes() -> None:
    snapshot, problems = validate(REPO / "ztp.yaml")
    assert problems == [] and snapshot is not None
