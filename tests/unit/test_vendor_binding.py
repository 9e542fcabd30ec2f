"""Templates branch on the vendor a device turned out to be (issue 12): the profile its DHCP fingerprint was
recognised as is kept with its lease, so TFTP/HTTP renders and `ztp render --mac` (from the lease database)
see the same `vendor`."""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from ipaddress import IPv4Address
from pathlib import Path

from ztp.config import Config, load_config
from ztp.devices import unknown_boot_file
from ztp.dhcp import packet as p
from ztp.dhcp.chain import Chain
from ztp.dhcp.exchange import Ingress, Proposal
from ztp.dhcp.packet import DhcpPacket, build, mac_to_chaddr, parse
from ztp.leases.ledger import Ledger
from ztp.leases.store.sqlite import SCHEMA_VERSION, LeaseWriter, database_path, load_leases, schema_version
from ztp.leases.table import LeaseTable
from ztp.provision import RenderedConfigs, device_view
from ztp.render import Renderer

SERVER = IPv4Address("10.60.0.1")
DIRECT = Ingress(ifindex=2, ifname="s1", server_ip=SERVER, local_ips=frozenset({SERVER}), broadcast=True)
UNICAST = Ingress(ifindex=2, ifname="s1", server_ip=SERVER, local_ips=frozenset({SERVER}), broadcast=False)
MAC = "02:00:00:00:0a:01"  # in no inventory entry
ARISTA = b"Arista;DCS-7050SX3-48YC8;01.00;JPE12345678"
T0 = 1_000_000.0

ZTP_YAML = """\
state_dir: ./state
templates: ./templates
inventory: ./inventory.yaml
dhcp:
  interfaces: [s1]
  lease_time: 3600
  ping_check: false
  subnets:
    - network: 10.60.0.0/24
      pool: 10.60.0.100-10.60.0.199
      routers: [10.60.0.1]
"""
INVENTORY_YAML = """\
defaults:
  template: default.j2
devices:
  - hostname: leaf01
    mac: 02:00:00:00:00:01
    template: default.j2
"""
DEFAULT_J2 = """\
hostname {{ hostname }}
{% if vendor == "eos" %}management api http-commands
{% else %}# generic ({{ vendor }})
{% endif %}"""


def make_config(tmp_path: Path) -> Config:
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "default.j2").write_text(DEFAULT_J2)
    (tmp_path / "ztp.yaml").write_text(ZTP_YAML)
    (tmp_path / "inventory.yaml").write_text(INVENTORY_YAML)
    return load_config(tmp_path / "ztp.yaml")


def msg(mtype: int, *, extra: dict[int, bytes] | None = None, requested: IPv4Address | None = None,
        ciaddr: IPv4Address | None = None) -> DhcpPacket:
    opts: dict[int, bytes] = {53: bytes((mtype,))}
    if requested is not None:
        opts[50] = requested.packed
        opts[54] = SERVER.packed
    opts.update(extra or {})
    pkt = DhcpPacket(op=p.BOOTREQUEST, xid=0x77, chaddr=mac_to_chaddr(MAC), ciaddr=ciaddr or p.ZERO_IP,
                     options=opts)
    return parse(build(pkt))


class Server:
    """The chain over a ledger whose commits succeed at once."""

    def __init__(self, config: Config) -> None:
        self.table = LeaseTable()
        self.ledger = Ledger(self.table)
        self.chain = Chain(config, self.ledger)

    def handle(self, pkt: DhcpPacket, now: float, ingress: Ingress = DIRECT) -> Proposal:
        proposal = self.chain.handle(pkt, ingress, now)
        if proposal.change is not None:
            self.ledger.commit(proposal.change, lambda error: None)
        assert proposal.reply is not None, proposal.log
        return proposal


def boot(server: Server, discover_extra: dict[int, bytes], request_extra: dict[int, bytes] | None = None,
         now: float = T0) -> IPv4Address:
    offer = server.handle(msg(p.DISCOVER, extra=discover_extra), now).reply
    assert offer is not None
    ack = server.handle(msg(p.REQUEST, extra=request_extra, requested=offer.yiaddr), now).reply
    assert ack is not None and ack.message_type == p.ACK
    return ack.yiaddr


def test_unlisted_arista_renders_the_default_template_as_eos(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    server = Server(config)
    # The REQUEST leaves option 60 out: the offer's recognition carries over to the binding.
    ip = boot(server, {60: ARISTA})
    lease = server.ledger.at(ip)
    assert lease is not None and lease.vendor == "eos"
    served = RenderedConfigs(config, Renderer(config), server.table).get(unknown_boot_file(MAC), (str(ip), 69))
    assert b"management api http-commands" in served

    # The lease database gives `ztp render --mac` the same view, hence the same bytes.
    writer = LeaseWriter(database_path(config.state_dir))
    writer.write_all(server.table.all())
    writer.close()
    stored = LeaseTable(load_leases(database_path(config.state_dir)))
    rendered = Renderer(config).render(device_view(config, stored, device=None, mac=MAC))
    assert rendered == served

    # A renewal without option 60 keeps it; a device that says it is something else is no longer eos.
    renew = server.handle(msg(p.REQUEST, ciaddr=ip), T0 + 1800, UNICAST).reply
    assert renew is not None and renew.message_type == p.ACK
    assert server.ledger.at(ip).vendor == "eos"  # type: ignore[union-attr]
    boot(server, {60: b"udhcp 1.36.1"}, {60: b"udhcp 1.36.1"}, now=T0 + 1900)
    assert server.ledger.at(ip).vendor is None  # type: ignore[union-attr]
    plain = RenderedConfigs(config, Renderer(config), server.table).get(unknown_boot_file(MAC), (str(ip), 69))
    assert b"# generic (generic-tftp)" in plain


def test_a_plain_device_renders_generic(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    server = Server(config)
    ip = boot(server, {60: b"udhcp 1.36.1"})
    assert server.ledger.at(ip).vendor is None  # type: ignore[union-attr]
    view = device_view(config, server.table, device=None, mac=MAC)
    assert Renderer(config).context(view)["vendor"] == "generic-tftp"


def test_sqlite_schema_1_gains_the_vendor_column(tmp_path: Path) -> None:
    path = tmp_path / "leases.sqlite3"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE leases (ip TEXT PRIMARY KEY, client TEXT NOT NULL, mac TEXT NOT NULL, "
                 "state TEXT NOT NULL, expires REAL NOT NULL, updated REAL NOT NULL, hostname TEXT)")
    conn.execute("INSERT INTO leases VALUES ('10.60.0.100', 'c', 'm', 'bound', 2.0, 1.0, NULL)")
    conn.commit()
    conn.close()
    # Tools read a version 1 file as it is (read-only: no upgrade)...
    assert [x.vendor for x in load_leases(path)] == [None]
    # ... and the writer upgrades it in place, keeping the rows.
    writer = LeaseWriter(path)
    old = load_leases(path)[0]
    writer.write_all([replace(old, vendor="sonic")])
    writer.close()
    conn = sqlite3.connect(path)
    assert schema_version(conn) == SCHEMA_VERSION == 3  # 2: the vendor column; 3: the commit log's position
    conn.close()
    assert [x.vendor for x in load_leases(path)] == ["sonic"]


def test_the_api_lease_table_shows_the_recognised_vendor(tmp_path: Path) -> None:
    import asyncio
    import json

    from aiohttp.test_utils import make_mocked_request

    from ztp.api.metrics import ApplianceCollector, Metrics
    from ztp.api.routes import OperatorApi
    from ztp.timeline.recorder import Recorder

    class NoStore:
        def append(self, events: object) -> None: ...
        def close(self) -> None: ...

    config = make_config(tmp_path)
    server = Server(config)
    ip = boot(server, {60: ARISTA})
    recorder = Recorder(config, server.table, NoStore())  # type: ignore[arg-type]
    metrics = Metrics(ApplianceCollector(recorder, lambda: config, server.table, dict, dict, lambda: T0))
    api = OperatorApi(recorder, lambda: config, server.table, metrics, clock=lambda: T0)
    resp = asyncio.run(api.leases(make_mocked_request("GET", "/api/leases")))
    assert resp.text is not None
    assert [(r["ip"], r["vendor"]) for r in json.loads(resp.text)["leases"]] == [(str(ip), "eos")]
