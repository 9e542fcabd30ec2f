"""Mutated real captures never crash the codec or the policy: bad input is MalformedPacket or a decision."""

from __future__ import annotations

import random
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from ztp.config import load_config
from ztp.dhcp import packet as p
from ztp.dhcp.chain import Chain
from ztp.dhcp.exchange import Ingress
from ztp.leases.ledger import Ledger
from ztp.leases.table import LeaseTable

CAPTURES = Path(__file__).resolve().parent.parent / "data" / "dhcp"
REPO = Path(__file__).resolve().parents[2]
SERVER = IPv4Address("10.60.0.1")
INGRESS = Ingress(ifindex=2, ifname="s1", server_ip=SERVER, local_ips=frozenset({SERVER}), broadcast=True)


def _mutate(rng: random.Random, data: bytes) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        action = rng.random()
        if action < 0.5 and buf:
            buf[rng.randrange(len(buf))] = rng.randrange(256)
        elif action < 0.7:
            del buf[rng.randrange(len(buf) + 1):]
        elif action < 0.85:
            at = rng.randrange(236, len(buf) + 1) if len(buf) > 236 else len(buf)
            buf[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 6)))
        else:
            buf += bytes(rng.randrange(256) for _ in range(rng.randint(1, 40)))
    return bytes(buf)


@pytest.mark.parametrize("capture", sorted(c.stem for c in CAPTURES.glob("*.hex")))
def test_mutated_captures_only_ever_raise_malformed(capture: str, tmp_path: Path) -> None:
    config = load_config(REPO / "ztp.yaml")
    ledger = Ledger(LeaseTable())
    chain = Chain(config, ledger)
    original = bytes.fromhex((CAPTURES / f"{capture}.hex").read_text().strip())
    rng = random.Random(capture)
    parsed = malformed = replies = 0
    for i in range(3000):
        data = _mutate(rng, original)
        try:
            pkt = p.parse(data)
        except p.MalformedPacket:
            malformed += 1
            continue
        parsed += 1
        if pkt.op != p.BOOTREQUEST:
            continue
        try:
            decision = chain.handle(pkt, INGRESS, 1_000.0 + i)
        except p.MalformedPacket:
            continue
        if decision.change is not None:
            ledger.commit(decision.change, lambda error: None)
        if decision.probe is not None:  # dhcp.ping_check: the address is probed, nobody answers
            decision = chain.handle(pkt, INGRESS, 1_000.0 + i, cleared=decision.probe)
            if decision.change is not None:
                ledger.commit(decision.change, lambda error: None)
        if decision.reply is not None:
            replies += 1
            assert p.parse(p.build(decision.reply)).xid == pkt.xid
    assert parsed and malformed  # both paths were exercised
    if capture != "dnsmasq_offer":  # a BOOTREPLY is never answered
        assert replies, (parsed, malformed)
