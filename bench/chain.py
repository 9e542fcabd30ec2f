"""The DHCP decision's cost per packet, in this process: the handler chain and the ledger, no sockets.

Measured with 1k, 10k and 50k leases already in the table (issue 14: the cost must stay flat as the
table grows), as microseconds per DORA (DISCOVER + REQUEST decided, replies built to bytes, lease
changes applied) and per DISCOVER on a pool whose every address is taken by a live binding.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

from ztp.config import load_config
from ztp.dhcp import packet as p
from ztp.dhcp.chain import Chain
from ztp.dhcp.exchange import Ingress
from ztp.dhcp.packet import DhcpPacket, build, mac_to_chaddr, parse
from ztp.leases.ledger import Ledger
from ztp.leases.table import Lease, LeaseState, LeaseTable

SERVER = IPv4Address("10.64.0.1")
NOW = 1_000_000.0
_CONFIG = """\
state_dir: ./state
templates: ./templates
inventory: ./inventory.yaml
log_level: warning
dhcp:
  interfaces: [bench0]
  ping_check: false               # the decision alone: a probe would defer every new offer
  subnets:
    - network: 10.64.0.0/12
      pool: 10.64.1.0-10.79.255.250
      routers: [10.64.0.1]
      dns_servers: [10.64.0.1]
      domain: bench.test
    - network: 10.96.0.0/24
      pool: 10.96.0.10-10.96.0.250
      routers: [10.96.0.1]
"""
_PRL = bytes((1, 3, 6, 12, 15, 28, 42, 51, 54, 58, 59, 66, 67))


@dataclass(slots=True)
class ChainCost:
    """Microseconds per DORA and per DISCOVER on a full pool, with `leases` existing leases."""

    leases: int
    us_per_dora: float
    us_per_full_pool_discover: float

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)


def _mac(i: int) -> str:
    return "02:" + (i & 0xFF_FFFF_FFFF).to_bytes(5, "big").hex(":")


def _setup(tmp: Path) -> Path:
    (tmp / "templates").mkdir(parents=True, exist_ok=True)
    (tmp / "templates" / "d.j2").write_text("hostname {{ hostname }}\n")
    (tmp / "inventory.yaml").write_text("defaults:\n  template: d.j2\ndevices: []\n")
    (tmp / "ztp.yaml").write_text(_CONFIG)
    return tmp / "ztp.yaml"


def _table(existing: int) -> LeaseTable:
    first = int(IPv4Address("10.64.1.0"))
    leases = [Lease(ip=IPv4Address(first + i), client=_mac(1 << 30 | i), mac=_mac(1 << 30 | i),
                    state=LeaseState.BOUND, expires=NOW + 86_400, updated=NOW - 1) for i in range(existing)]
    # A small pool held entirely by live bindings: the worst case for a DISCOVER.
    small = int(IPv4Address("10.96.0.10"))
    leases += [Lease(ip=IPv4Address(small + i), client=_mac(2 << 30 | i), mac=_mac(2 << 30 | i),
                     state=LeaseState.BOUND, expires=NOW + 86_400, updated=NOW - 1) for i in range(241)]
    return LeaseTable(leases)


def measure(tmp: Path, existing: int, exchanges: int) -> ChainCost:
    """Decide `exchanges` DORAs for new clients, then full-pool DISCOVERs, with `existing` leases loaded."""
    config = load_config(_setup(tmp))
    ledger = Ledger(_table(existing))
    chain = Chain(config, ledger)
    direct = Ingress(ifindex=2, ifname="bench0", server_ip=SERVER, local_ips=frozenset({SERVER}), broadcast=True)

    def decide(raw: bytes, ingress: Ingress) -> DhcpPacket | None:
        proposal = chain.handle(parse(raw), ingress, NOW)
        if proposal.change is not None:
            ledger.commit(proposal.change, lambda error: None)
        if proposal.reply is not None:
            build(proposal.reply)
        return proposal.reply

    discovers = [build(DhcpPacket(op=p.BOOTREQUEST, xid=i, chaddr=mac_to_chaddr(_mac(3 << 30 | i)),
                                  options={53: bytes((p.DISCOVER,)), 55: _PRL})) for i in range(exchanges)]
    started = time.perf_counter()
    for i, raw in enumerate(discovers):
        offer = decide(raw, direct)
        assert offer is not None
        request = build(DhcpPacket(op=p.BOOTREQUEST, xid=i, chaddr=mac_to_chaddr(_mac(3 << 30 | i)),
                                   options={53: bytes((p.REQUEST,)), 50: offer.yiaddr.packed,
                                            54: SERVER.packed, 55: _PRL}))
        decide(request, direct)
    dora = (time.perf_counter() - started) / exchanges * 1e6
    relayed = Ingress(ifindex=3, ifname="bench1", server_ip=SERVER, local_ips=frozenset({SERVER}))
    full = [build(DhcpPacket(op=p.BOOTREQUEST, xid=i, chaddr=mac_to_chaddr(_mac(4 << 30 | i)), hops=1,
                             giaddr=IPv4Address("10.96.0.1"), options={53: bytes((p.DISCOVER,)), 55: _PRL}))
            for i in range(min(exchanges, 2000))]
    started = time.perf_counter()
    for raw in full:
        assert decide(raw, relayed) is None  # no free address: silence
    full_us = (time.perf_counter() - started) / len(full) * 1e6
    return ChainCost(existing, round(dora, 1), round(full_us, 1))


def chain_costs(tmp: Path, *, quick: bool) -> list[dict[str, Any]]:
    """The per-packet cost at 1k, 10k and 50k existing leases."""
    exchanges = 2000 if quick else 10_000
    return [measure(tmp / f"chain{n}", n, exchanges).to_json() for n in (1_000, 10_000, 50_000)]
