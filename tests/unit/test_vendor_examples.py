"""The vendor examples (examples/vendors, templates/<family>/) pass `ztp check`: every device renders and
its profile accepts what it renders (SONiC JSON, the Cumulus marker, an ONIE '#!')."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

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


def test_explain_shows_what_each_profile_gets_on_the_wire() -> None:
    from ztp.config import load_config
    from ztp.explain import explain

    config = load_config(EXAMPLE)
    cases = {"junos-leaf1": ("junos", 43, "sub-options 1='configs/junos-leaf1.cfg', 3='http'"),
             "iosxe-leaf1": ("iosxe-pnp", 43, "PnP string '5A1N;B2;K4;I10.60.0.1;J80'"),
             "nxos-spine1": ("nxos-poap", 67, "nxos-spine1.poap.py"),
             "onie-sw1": ("onie", 125, "enterprise 42623: 1='http://10.60.0.1/configs/onie-sw1.cfg'"),
             "cumulus-leaf1": ("cumulus", 239, "http://10.60.0.1/configs/cumulus-leaf1.cfg")}
    for hostname, (profile, code, shown) in cases.items():
        x = explain(config, [], hostname=hostname, profile=profile, now=1.0)
        assert x.device == hostname  # junos and nxos-poap found by the serial their fingerprint carries
        row = next(r for r in x.options if r["code"] == code)
        assert row["value"] == shown and row["layer"] in ("vendor profile", "boot file"), row
        assert x.reply_hex  # the exact bytes, in hex


def test_render_prints_the_documents_http_and_tftp_serve(capsys: pytest.CaptureFixture[str]) -> None:
    from ztp.cli import main
    from ztp.config import load_config
    from ztp.provision import RenderedConfigs
    from ztp.render import Renderer

    config = load_config(EXAMPLE)
    served = RenderedConfigs(config, Renderer(config), LeaseTable())
    for name in ("nxos-spine1.poap.py", "sonic-spine1.ztp.json", "eos-leaf1.cfg"):
        assert main(["render", "--config", str(EXAMPLE), "--file", name, "--server", "10.60.0.1"]) == 0
        printed = capsys.readouterr().out.encode()
        assert printed == served.get(name, ("10.60.0.35", 0), server="10.60.0.1"), name


def test_check_reports_what_a_profile_cannot_use(tmp_path: Path) -> None:
    text = EXAMPLE.read_text().replace("http:\n  port: 80\n", "")
    text = text.replace("templates: ../../templates", f"templates: {REPO / 'templates'}")
    text = text.replace("root: ../../tftpboot", f"root: {REPO / 'tftpboot'}")
    inventory = (EXAMPLE.parent / "inventory.yaml").read_text().replace("template: cumulus/leaf.j2",
                                                                         "template: eos/leaf.j2")
    (tmp_path / "ztp.yaml").write_text(text)
    (tmp_path / "inventory.yaml").write_text(inventory)
    _, problems = validate(tmp_path / "ztp.yaml")
    messages = [p.message for p in problems]
    for name in ("eos-leaf1 boots as eos", "sonic-spine1 boots as sonic", "cumulus-leaf1 boots as cumulus"):
        assert any(m.startswith(name) and "add an 'http:' section" in m for m in messages), messages
    assert not any("junos-leaf1 boots" in m or "onie-sw1 boots" in m for m in messages)  # TFTP fallbacks
    assert any("cumulus-leaf1 (cumulus): Cumulus Linux runs a ZTP script only if" in m for m in messages)
