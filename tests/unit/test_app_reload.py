"""SIGHUP reload (`Appliance.reload`): validation, the swap, and what is kept. No listening sockets: the
appliance is built but never started."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Iterator
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from ztp.app import Appliance, keep_fixed_settings
from ztp.config import load_config
from ztp.dhcp import packet as p
from ztp.dhcp.exchange import Ingress
from ztp.dhcp.packet import DhcpPacket, build, mac_to_chaddr, parse
from ztp.leases.table import LeaseState
from ztp.provision import device_view
from ztp.render import Renderer

SERVER = IPv4Address("10.60.0.1")
DIRECT = Ingress(ifindex=2, ifname="s1", server_ip=SERVER, local_ips=frozenset({SERVER}), broadcast=True)
NEW_MAC = "02:00:00:00:00:09"

ZTP_YAML = """\
state_dir: ./state
templates: ./templates
inventory: ./inventory.yaml
dhcp:
  interfaces: [s1]
  subnets:
    - network: 10.60.0.0/24
      pool: 10.60.0.100-10.60.0.199
      routers: [10.60.0.1]
dns:
  zone: lab.test
  records: {ntp: 10.60.0.5}
"""
INVENTORY = """\
defaults:
  template: default.j2
devices:
  - hostname: leaf01
    mac: 02:00:00:00:00:01
    ip: 10.60.0.11
    template: leaf.j2
"""
LEAF09 = """\
  - hostname: leaf09
    mac: 02:00:00:00:00:09
    ip: 10.60.0.19
    template: leaf.j2
    vars: {asn: 65009}
"""


@pytest.fixture
def app(tmp_path: Path) -> Iterator[Appliance]:
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "default.j2").write_text("hostname {{ hostname }}\n")
    (tmp_path / "templates" / "leaf.j2").write_text("hostname {{ hostname }}\nasn {{ asn | default(0) }}\n")
    (tmp_path / "ztp.yaml").write_text(ZTP_YAML)
    (tmp_path / "inventory.yaml").write_text(INVENTORY)
    appliance = Appliance(load_config(tmp_path / "ztp.yaml"))
    yield appliance
    appliance.writer.close()


def discover(mac: str) -> DhcpPacket:
    pkt = DhcpPacket(op=p.BOOTREQUEST, xid=0x1234, chaddr=mac_to_chaddr(mac), flags=0, ciaddr=p.ZERO_IP,
                     giaddr=p.ZERO_IP, hops=0, options={53: bytes((p.DISCOVER,))}, bootp=False)
    return parse(build(pkt))


def offer_for(app: Appliance, mac: str) -> DhcpPacket:
    now = time.time()
    decision = app.chain.handle(discover(mac), DIRECT, now)
    if decision.probe is not None:  # dhcp.ping_check, and nobody answers
        decision = app.chain.handle(discover(mac), DIRECT, now, cleared=decision.probe)
    assert decision.reply is not None, decision.log
    return decision.reply


def reload(app: Appliance) -> bool:
    return asyncio.run(app.reload())


def test_reload_adds_a_device_everywhere(app: Appliance, tmp_path: Path) -> None:
    before = offer_for(app, NEW_MAC)
    assert before.file == b"020000000009.cfg" and before.yiaddr == IPv4Address("10.60.0.100")
    # An unrelated device holds a lease with a dynamic DNS name: both must survive the reload.
    now = time.time()
    held = app.table.bind(IPv4Address("10.60.0.150"), "02:00:00:00:00:77", "02:00:00:00:00:77",
                          lease_time=3600, now=now, hostname="printer")
    app._bound(held)
    old_config, old_table = app.config, app.table
    old_chain = app.chain

    (tmp_path / "inventory.yaml").write_text(INVENTORY + LEAF09)
    (tmp_path / "ztp.yaml").write_text(ZTP_YAML.replace("interfaces: [s1]", "interfaces: [s1, s2]"))
    assert reload(app) is True

    assert app.config is not old_config and len(app.config.inventory.devices) == 2
    assert app.chain is not old_chain and app.chain.config is app.config and app.dhcp.chain is app.chain
    assert app.dhcp.interfaces == frozenset({"s1", "s2"})
    # DHCP: the reservation, the host name and <hostname>.cfg (the options cache was rebuilt).
    after = offer_for(app, NEW_MAC)
    assert after.yiaddr == IPv4Address("10.60.0.19")
    assert after.file == b"leaf09.cfg"
    assert after.options[12] == b"leaf09" and after.options[67] == b"leaf09.cfg"
    # TFTP: the new device's config, byte-identical to what `ztp render` would print.
    device = app.config.inventory.by_hostname["leaf09"]
    expected = Renderer(app.config).render(device_view(app.config, app.table, device=device, mac=None))
    assert app.tftp.content.get("leaf09.cfg", ("10.60.0.19", 1069)) == expected == b"hostname leaf09\nasn 65009\n"
    # Leases untouched; DNS has the new reservation, the static record and the leased name.
    assert app.table is old_table and app.table.at(IPv4Address("10.60.0.150")).state == LeaseState.BOUND
    assert app.zone is not None and app.dns is not None and app.dns.zone is app.zone
    hosts = app.zone.hosts()
    assert hosts["leaf09.lab.test."][0] == "10.60.0.19"
    assert hosts["leaf01.lab.test."][0] == "10.60.0.11"
    assert hosts["printer.lab.test."] == ("10.60.0.150", held.expires)


@pytest.mark.parametrize("broken", [
    pytest.param(("inventory.yaml", INVENTORY + LEAF09.replace("leaf.j2", "nosuch.j2")), id="unknown-template"),
    pytest.param(("inventory.yaml", INVENTORY + "  - hostname: [oops\n"), id="yaml-error"),
    pytest.param(("ztp.yaml", ZTP_YAML + "bogus: 1\n"), id="unknown-key"),
])
def test_broken_reload_keeps_everything(app: Appliance, tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                        broken: tuple[str, str]) -> None:
    offer_for(app, NEW_MAC)
    old = (app.config, app.renderer, app.tftp.content, app.zone, app.dhcp.interfaces)
    name, text = broken
    (tmp_path / name).write_text(text)
    with caplog.at_level(logging.INFO, logger="ztp"):
        assert reload(app) is False
    assert (app.config, app.renderer, app.tftp.content, app.zone, app.dhcp.interfaces) == old
    assert app.chain.config is old[0] and app.dhcp.chain is app.chain
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert errors[-1] == "reload failed: 1 problem(s); still serving the previous configuration"
    assert errors[0].startswith(f"{tmp_path / name}:") and int(errors[0].split(":")[1]) > 0, errors
    assert not any("reloaded" in r.getMessage() for r in caplog.records)
    assert offer_for(app, NEW_MAC).file == b"020000000009.cfg"  # still the old inventory


def test_settings_needing_new_sockets_keep_their_old_values(app: Appliance, tmp_path: Path,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    text = ZTP_YAML.replace("state_dir: ./state", "state_dir: ./elsewhere")
    text = text.replace("  interfaces: [s1]", "  interfaces: [s1]\n  port: 1067")
    text = text.replace("  zone: lab.test", "  zone: lab.test\n  port: 1053\n  ttl: 60")
    (tmp_path / "ztp.yaml").write_text(text + "tftp:\n  port: 1069\n")
    (tmp_path / "inventory.yaml").write_text(INVENTORY + LEAF09)
    with caplog.at_level(logging.INFO, logger="ztp"):
        assert reload(app) is True
    warning = next(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert warning.startswith("reload: state_dir, dhcp.port, tftp.port, dns.port changed;"), warning
    assert app.config.state_dir == tmp_path / "state" and app.config.dhcp_port == 67
    assert app.config.tftp_port == 69 and app.config.dns is not None and app.config.dns.port == 53
    assert app.config.dns.ttl == 60  # the rest of the dns section is reloaded
    assert "reloaded: 1 subnets, 2 devices" in [r.getMessage() for r in caplog.records]


def test_dns_stays_as_it_was_when_enabled_or_disabled(app: Appliance) -> None:
    assert app.config.dns is not None
    without = dataclasses.replace(app.config, dns=None)
    kept, names = keep_fixed_settings(app.config, without)
    assert kept.dns == app.config.dns and names == ["dns (enabling or disabling it)"]
    kept, names = keep_fixed_settings(without, app.config)
    assert kept.dns is None and names == ["dns (enabling or disabling it)"]
    same, names = keep_fixed_settings(app.config, app.config)
    assert same is app.config and names == []


def test_sighups_during_a_reload_coalesce_into_one_more(app: Appliance, tmp_path: Path) -> None:
    calls: list[int] = []

    async def fake_reload() -> bool:
        calls.append(len(calls))
        await asyncio.sleep(0.01)
        return True

    async def main() -> None:
        app.reload = fake_reload  # type: ignore[method-assign]
        for _ in range(5):
            app.request_reload()
        assert app._reload_task is not None
        await app._reload_task

    asyncio.run(main())
    assert calls == [0, 1]
