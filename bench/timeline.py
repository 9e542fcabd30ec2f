"""What the device timeline costs, in this process: per packet on the DHCP path, per event off it.

A DORA per new client is decided by the real chain (as bench.chain does) with a `Recorder` attached the way
`ztp serve` attaches it (DhcpServer.observe, the ledger subscription). Reported in microseconds:
    hook_us_per_packet   what the packet path pays: one deque append per decided request
    drain_us_per_event   classifying, the state machine and the listeners, in the recorder's batches
    store_us_per_event   the SQLite append of those events (its own thread in ztp serve)
and the DORA cost with and without the recorder (the ratio the DHCP bench would see on one core).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.chain import NOW, SERVER, _mac, _setup
from ztp.config import load_config
from ztp.dhcp import packet as p
from ztp.dhcp.chain import Chain
from ztp.dhcp.exchange import Ingress, Proposal
from ztp.dhcp.packet import DhcpPacket, build, mac_to_chaddr, parse
from ztp.leases.ledger import Ledger
from ztp.leases.table import LeaseTable
from ztp.timeline.machine import Event
from ztp.timeline.recorder import Recorder
from ztp.timeline.store import SqliteTimelineStore


@dataclass(slots=True)
class TimelineCost:
    """Microseconds per DORA without and with the recorder, and per event recorded."""

    doras: int
    events: int
    us_per_dora: float
    us_per_dora_recorded: float
    hook_us_per_packet: float
    drain_us_per_event: float
    store_us_per_event: float

    def to_json(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)


def _doras(chain: Chain, ledger: Ledger, n: int, base: int, observe: Any = None,
           tick: Any = None) -> float:
    """Microseconds per DORA for `n` new clients; `observe` is called as DhcpServer calls its observer, and
    `tick()` every 500 DORAs as the recorder's timer would (its time is taken out: it returns it)."""
    direct = Ingress(ifindex=2, ifname="bench0", server_ip=SERVER, local_ips=frozenset({SERVER}), broadcast=True)

    def decide(raw: bytes) -> DhcpPacket:
        pkt = parse(raw)
        proposal: Proposal = chain.handle(pkt, direct, NOW)
        if observe is not None:
            observe(pkt, direct, proposal, NOW)
        if proposal.change is not None:
            ledger.commit(proposal.change, lambda error: None)
        assert proposal.reply is not None
        return proposal.reply

    started = time.perf_counter()
    ticks = 0.0
    for i in range(n):
        if tick is not None and i % 500 == 499:
            ticks += tick()
        mac = mac_to_chaddr(_mac(base + i))
        offer = decide(build(DhcpPacket(op=p.BOOTREQUEST, xid=i, chaddr=mac, options={53: bytes((p.DISCOVER,))})))
        decide(build(DhcpPacket(op=p.BOOTREQUEST, xid=i, chaddr=mac, options={
            53: bytes((p.REQUEST,)), 50: offer.yiaddr.packed, 54: SERVER.packed})))
    return (time.perf_counter() - started - ticks) / n * 1e6


def measure(tmp: Path, doras: int, rounds: int = 3) -> TimelineCost:
    """Decide `doras` DORAs bare and with the recorder attached, `rounds` times each, interleaved (the best of
    each: the machine is shared); time the recorder's drain and store on the events of one round."""
    config = load_config(_setup(tmp))
    ledger = Ledger(LeaseTable([]))
    chain = Chain(config, ledger)
    store = SqliteTimelineStore(tmp / "timeline.sqlite3")
    recorder = Recorder(config, ledger.table, store, clock=lambda: NOW)
    captured: list[Event] = []
    recorder._record = captured.extend  # type: ignore[method-assign,assignment]  # stored below, timed on its own
    bare: list[float] = []
    hooked: list[float] = []
    drains: list[float] = []
    base = 5 << 30
    for _ in range(rounds):
        bare.append(_doras(chain, ledger, doras, base))
        base += doras
        ledger.subscribe(recorder.lease)
        captured.clear()
        spent: list[float] = []

        def tick(spent: list[float] = spent) -> float:
            started = time.perf_counter()
            recorder.drain()
            spent.append(time.perf_counter() - started)
            return spent[-1]

        hooked.append(_doras(chain, ledger, doras, base, observe=recorder.dhcp, tick=tick))
        tick()
        ledger._subscribers.remove(recorder.lease)
        base += doras
        drains.append(sum(spent))
    events = max(1, len(captured))
    started = time.perf_counter()
    for i in range(0, len(captured), 500):
        store.append(captured[i:i + 500])
    stored = time.perf_counter() - started
    store.close()
    # The hook alone, called as DhcpServer calls it (the deque emptied between batches, as a drain does).
    pkt = parse(build(DhcpPacket(op=p.BOOTREQUEST, xid=1, chaddr=mac_to_chaddr(_mac(7)),
                                 options={53: bytes((p.DISCOVER,))})))
    direct = Ingress(ifindex=2, ifname="bench0", server_ip=SERVER, local_ips=frozenset({SERVER}), broadcast=True)
    proposal = Proposal()
    calls = 100_000
    started = time.perf_counter()
    for i in range(calls):
        recorder.dhcp(pkt, direct, proposal, NOW)
        if i % 5000 == 4999:
            recorder._raw.clear()
    hook = (time.perf_counter() - started) / calls * 1e6
    recorder._raw.clear()
    drain = min(drains)
    return TimelineCost(doras, events, round(min(bare), 2), round(min(hooked) + drain / doras * 1e6, 2),
                        round(hook, 3), round(drain / events * 1e6, 2), round(stored / events * 1e6, 2))


def timeline_costs(tmp: Path, *, quick: bool) -> dict[str, Any]:
    """One measurement (2,000 DORAs quick, else 10,000)."""
    return measure(tmp, 2000 if quick else 10_000).to_json()


if __name__ == "__main__":
    import json
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        print(json.dumps(timeline_costs(Path(d), quick=False), indent=2))
